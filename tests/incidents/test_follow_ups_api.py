"""Follow-ups through the API: ``GET/POST /incidents/{id}/follow-ups``, ``GET /follow-ups`` and ``POST
/follow-ups/{id}/complete`` — scheduled with an owner and a due date, completed once, audited."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
import time_machine

from governance.choices import AuditAction, Role
from governance.models import AuditLog
from incidents.models import FollowUp, FollowUpStatus, IncidentEvent, IncidentEventKind
from tests.incidents.factories import FollowUpFactory, IncidentFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/incidents"
FOLLOW_UPS_URL = "/api/v1/follow-ups"
NOW = datetime(2025, 4, 1, 9, 0, tzinfo=UTC)
FOLLOW_UP_FIELDS = {
    "id",
    "incident",
    "title",
    "owner",
    "owner_username",
    "due_date",
    "status",
    "completed_at",
    "notified_at",
    "escalated_at",
    "created_at",
    "updated_at",
}


@pytest.fixture(autouse=True)
def frozen_clock():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def reviewer(make_user, team):
    return make_user(Role.REVIEWER, teams=[team], username="rita")


@pytest.fixture
def incident(own_system):
    return IncidentFactory(system=own_system)


def error_fields(response) -> dict:
    return response.json()["error"]["fields"]


# --- scheduling ---------------------------------------------------------------------------------------
def test_a_follow_up_is_scheduled_with_an_owner_and_a_due_date(client_for, reviewer, lead, incident):
    response = client_for(reviewer).post(
        f"{URL}/{incident.id}/follow-ups",
        {"title": "Add a schema check on ingest", "owner": str(lead.id), "due_date": "2025-04-15"},
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert set(body) == FOLLOW_UP_FIELDS
    assert (body["title"], body["owner"], body["owner_username"]) == ("Add a schema check on ingest", str(lead.id),
                                                                      "lena")  # fmt: skip
    assert (body["due_date"], body["status"], body["incident"]) == ("2025-04-15", "open", str(incident.id))
    assert IncidentEvent.objects.filter(incident=incident, kind=IncidentEventKind.FOLLOW_UP).count() == 1
    assert AuditLog.objects.get(action=AuditAction.FOLLOW_UP_CREATED).object_id == str(incident.id)


def test_without_a_due_date_it_falls_due_after_the_configured_days(client_for, reviewer, incident):
    body = client_for(reviewer).post(f"{URL}/{incident.id}/follow-ups", {"title": "Retrain"}).json()

    assert body["due_date"] == "2025-04-15"  # incidents.follow_ups.default_days = 14
    assert body["owner"] is None


def test_a_due_date_in_the_past_is_a_400_naming_it(client_for, reviewer, incident):
    response = client_for(reviewer).post(
        f"{URL}/{incident.id}/follow-ups", {"title": "Retrain", "due_date": "2025-03-31"}
    )

    assert response.status_code == 400
    assert "due_date" in error_fields(response)
    assert not FollowUp.objects.exists()


def test_an_owner_outside_the_incidents_team_is_a_400_naming_owner(client_for, reviewer, make_user, other_team,
                                                                   incident):  # fmt: skip
    outsider = make_user(Role.REVIEWER, teams=[other_team])

    response = client_for(reviewer).post(
        f"{URL}/{incident.id}/follow-ups", {"title": "Retrain", "owner": str(outsider.id)}
    )

    assert response.status_code == 400
    assert "owner" in error_fields(response)
    assert not FollowUp.objects.exists()


def test_an_unknown_owner_is_a_400_naming_owner(client_for, reviewer, incident):
    response = client_for(reviewer).post(
        f"{URL}/{incident.id}/follow-ups", {"title": "Retrain", "owner": "00000000-0000-0000-0000-000000000001"}
    )

    assert response.status_code == 400
    assert "owner" in error_fields(response)


def test_a_follow_up_needs_a_title(client_for, reviewer, incident):
    response = client_for(reviewer).post(f"{URL}/{incident.id}/follow-ups", {"title": "  "})

    assert response.status_code == 400
    assert "title" in error_fields(response)


def test_the_follow_ups_of_an_incident_are_listed_by_due_date(client_for, viewer, incident):
    later = FollowUpFactory(incident=incident, due_date=date(2025, 5, 1))
    sooner = FollowUpFactory(incident=incident, due_date=date(2025, 4, 10))
    FollowUpFactory()  # another incident's

    response = client_for(viewer).get(f"{URL}/{incident.id}/follow-ups")

    assert response.status_code == 200
    assert [row["id"] for row in response.json()] == [str(sooner.id), str(later.id)]


def test_a_viewer_reads_follow_ups_but_may_not_schedule_one(client_for, viewer, incident):
    response = client_for(viewer).post(f"{URL}/{incident.id}/follow-ups", {"title": "Retrain"})

    assert response.status_code == 403
    assert not FollowUp.objects.exists()


def test_another_teams_incident_has_no_follow_ups_for_you(client_for, reviewer, foreign_system):
    foreign = IncidentFactory(system=foreign_system)
    client = client_for(reviewer)

    assert client.get(f"{URL}/{foreign.id}/follow-ups").status_code == 404
    assert client.post(f"{URL}/{foreign.id}/follow-ups", {"title": "Retrain"}).status_code == 404


# --- across incidents, and completing -----------------------------------------------------------------
def test_follow_ups_of_your_teams_are_listed_soonest_first(client_for, reviewer, incident, foreign_system):
    later = FollowUpFactory(incident=incident, due_date=date(2025, 5, 1))
    sooner = FollowUpFactory(incident=incident, due_date=date(2025, 4, 10))
    FollowUpFactory(incident=IncidentFactory(system=foreign_system))

    response = client_for(reviewer).get(FOLLOW_UPS_URL)

    assert response.status_code == 200
    assert [row["id"] for row in response.json()["results"]] == [str(sooner.id), str(later.id)]


def test_the_owner_me_filter_lists_your_follow_ups(client_for, reviewer, lead, incident):
    mine = FollowUpFactory(incident=incident, owner=reviewer)
    FollowUpFactory(incident=incident, owner=lead)

    response = client_for(reviewer).get(FOLLOW_UPS_URL, {"owner": "me", "status": "open"})

    assert [row["id"] for row in response.json()["results"]] == [str(mine.id)]


def test_completing_a_follow_up_marks_it_done_with_a_timeline_and_audit_entry(client_for, reviewer, incident):
    follow_up = FollowUpFactory(incident=incident)

    response = client_for(reviewer).post(f"{FOLLOW_UPS_URL}/{follow_up.id}/complete")

    assert response.status_code == 200, response.json()
    assert (response.json()["status"], response.json()["completed_at"]) == ("done", "2025-04-01T09:00:00Z")
    assert IncidentEvent.objects.filter(incident=incident, kind=IncidentEventKind.FOLLOW_UP).count() == 1
    assert AuditLog.objects.filter(action=AuditAction.FOLLOW_UP_COMPLETED).count() == 1


def test_completing_twice_is_a_409_that_writes_nothing(client_for, reviewer, incident):
    follow_up = FollowUpFactory(incident=incident)
    client = client_for(reviewer)
    client.post(f"{FOLLOW_UPS_URL}/{follow_up.id}/complete")

    response = client.post(f"{FOLLOW_UPS_URL}/{follow_up.id}/complete")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "conflict"
    assert AuditLog.objects.filter(action=AuditAction.FOLLOW_UP_COMPLETED).count() == 1


def test_a_viewer_may_not_complete_a_follow_up(client_for, viewer, incident):
    follow_up = FollowUpFactory(incident=incident)

    assert client_for(viewer).post(f"{FOLLOW_UPS_URL}/{follow_up.id}/complete").status_code == 403
    assert FollowUp.objects.get(pk=follow_up.pk).status == FollowUpStatus.OPEN


def test_another_teams_follow_up_is_404(client_for, reviewer, foreign_system):
    follow_up = FollowUpFactory(incident=IncidentFactory(system=foreign_system))
    client = client_for(reviewer)

    assert client.get(f"{FOLLOW_UPS_URL}/{follow_up.id}").status_code == 404
    assert client.post(f"{FOLLOW_UPS_URL}/{follow_up.id}/complete").status_code == 404
    assert FollowUp.objects.get(pk=follow_up.pk).status == FollowUpStatus.OPEN
