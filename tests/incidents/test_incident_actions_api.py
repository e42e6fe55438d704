"""``POST /api/v1/incidents/{id}/acknowledge|mitigate|resolve|close|reopen|assign|notes`` and ``PUT/PATCH
/incidents/{id}/rca``: each a guarded transition answering the incident's detail, 409 from the wrong
status, 400 naming each bad field (``rca.<field>`` when closing without the RCA), 403 for viewers and
404 outside your teams — and nothing written when refused."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine

from governance.choices import AuditAction, Role, Severity
from governance.models import AuditLog
from incidents.models import Incident, IncidentEvent, IncidentStatus
from incidents.services.lifecycle import STOPPED_TOKEN, incident_resolve
from tests.conftest import bearer_client
from tests.incidents.factories import IncidentFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/incidents"
NOW = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
ACTIONS = ["acknowledge", "mitigate", "resolve", "close", "reopen", "assign", "notes"]
COMPLETE_RCA = {
    "root_cause": "The upstream feed dropped a column.",
    "impact": "Scores were stale for two hours.",
    "affected_data": "transactions_2025_03",
    "corrective_actions": "Schema check on ingest.",
}


@pytest.fixture
def reviewer(make_user, team):
    return make_user(Role.REVIEWER, teams=[team], username="rita")


@pytest.fixture
def incident(own_system):
    with time_machine.travel(NOW, tick=False):
        return IncidentFactory(system=own_system, severity=Severity.HIGH)


# Each request mints its token at the (travelled) time it is made: a token minted at another moment
# is not valid yet, or no longer.
def post(user, incident, verb, body=None):
    return bearer_client(user).post(f"{URL}/{incident.id}/{verb}", body or {})


def write_rca(user, incident, body, *, method="patch"):
    return getattr(bearer_client(user), method)(f"{URL}/{incident.id}/rca", body)


def error_fields(response) -> dict:
    return response.json()["error"]["fields"]


def timeline_kinds(incident) -> list[str]:
    return list(
        IncidentEvent.objects.filter(incident=incident).order_by("at", "created_at").values_list("kind", flat=True)
    )


# --- acknowledge / mitigate ---------------------------------------------------------------------------
def test_acknowledging_answers_the_detail_and_records_who_and_when(reviewer, incident):
    with time_machine.travel(NOW + timedelta(minutes=3), tick=False):
        response = post(reviewer, incident, "acknowledge", {"note": "on it"})

    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["status"], body["acknowledged_at"]) == ("acknowledged", "2025-03-10T12:03:00Z")
    assert body["assignee"] == str(reviewer.id)  # whoever acknowledges an unassigned incident owns it
    assert [(e["kind"], e["actor"], e["message"]) for e in body["timeline"]] == [("acknowledged", "rita", "on it")]
    entry = AuditLog.objects.get(action=AuditAction.INCIDENT_ACKNOWLEDGED)
    assert (entry.actor, entry.object_id) == ("rita", str(incident.id))


def test_acknowledging_twice_is_a_409_that_writes_nothing(reviewer, incident):
    post(reviewer, incident, "acknowledge")

    response = post(reviewer, incident, "acknowledge")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "conflict"
    assert timeline_kinds(incident) == ["acknowledged"]
    assert AuditLog.objects.filter(action=AuditAction.INCIDENT_ACKNOWLEDGED).count() == 1


def test_mitigating_keeps_the_resolve_target_running(reviewer, incident):
    with time_machine.travel(NOW + timedelta(minutes=20), tick=False):
        body = post(reviewer, incident, "mitigate", {"note": "feature flag off"}).json()

    assert (body["status"], body["mitigated_at"]) == ("mitigated", "2025-03-10T12:20:00Z")
    assert body["resolve_due_at"] == "2025-03-10T16:00:00Z"


# --- resolve ------------------------------------------------------------------------------------------
def test_resolving_with_a_configured_reason_and_a_follow_up_date(reviewer, incident):
    with time_machine.travel(NOW + timedelta(hours=1), tick=False):
        response = post(
            reviewer,
            incident,
            "resolve",
            {"resolution_reason": "Fixed", "note": "column restored", "follow_up_date": "2025-03-24"},
        )

    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["status"], body["resolution_reason"], body["follow_up_date"]) == ("resolved", "Fixed", "2025-03-24")
    assert body["resolved_at"] == "2025-03-10T13:00:00Z"
    assert body["next_escalation_at"] is None
    assert Incident.objects.get(pk=incident.pk).escalation_token == STOPPED_TOKEN
    assert AuditLog.objects.get(action=AuditAction.INCIDENT_RESOLVED).data["resolution_reason"] == "Fixed"


def test_an_unconfigured_resolution_reason_is_a_400_naming_it(reviewer, incident):
    response = post(reviewer, incident, "resolve", {"resolution_reason": "Because"})

    assert response.status_code == 400
    assert "resolution_reason" in error_fields(response)
    assert Incident.objects.get(pk=incident.pk).status == IncidentStatus.OPEN


def test_a_follow_up_date_in_the_past_is_a_400_naming_it(reviewer, incident):
    with time_machine.travel(NOW, tick=False):
        response = post(reviewer, incident, "resolve", {"follow_up_date": "2025-03-09"})

    assert response.status_code == 400
    assert "follow_up_date" in error_fields(response)


# --- close --------------------------------------------------------------------------------------------
def test_closing_a_high_incident_without_its_rca_names_each_missing_field(reviewer, incident):
    write_rca(reviewer, incident, {"root_cause": "The upstream feed dropped a column."})

    response = post(reviewer, incident, "close", {"reason": "done"})

    assert response.status_code == 400
    assert set(error_fields(response)) == {"rca.impact", "rca.affected_data", "rca.corrective_actions"}
    assert Incident.objects.get(pk=incident.pk).status == IncidentStatus.OPEN
    assert not AuditLog.objects.filter(action=AuditAction.INCIDENT_CLOSED).exists()


def test_a_high_incident_with_its_rca_complete_closes(reviewer, incident):
    write_rca(reviewer, incident, COMPLETE_RCA)

    with time_machine.travel(NOW + timedelta(hours=2), tick=False):
        response = post(reviewer, incident, "close", {"reason": "Fixed"})

    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["status"], body["closed_at"]) == ("closed", "2025-03-10T14:00:00Z")
    assert body["resolved_at"] == "2025-03-10T14:00:00Z"  # closing unresolved counts as resolving (MTTR)


def test_a_low_incident_closes_without_an_rca(reviewer, own_system):
    incident = IncidentFactory(system=own_system, severity=Severity.LOW)

    response = post(reviewer, incident, "close")

    assert response.status_code == 200
    assert response.json()["status"] == "closed"


def test_closing_a_closed_incident_is_a_409(reviewer, own_system):
    incident = IncidentFactory(system=own_system, severity=Severity.LOW)
    post(reviewer, incident, "close")

    assert post(reviewer, incident, "close").status_code == 409


# --- reopen -------------------------------------------------------------------------------------------
def test_reopening_after_resolve_keeps_the_timeline_and_restarts_the_timers(reviewer, incident):
    with time_machine.travel(NOW + timedelta(minutes=5), tick=False):
        post(reviewer, incident, "acknowledge")
    with time_machine.travel(NOW + timedelta(hours=1), tick=False):
        post(reviewer, incident, "resolve", {"resolution_reason": "Fixed"})
    with time_machine.travel(NOW + timedelta(days=1), tick=False):
        response = post(reviewer, incident, "reopen", {"reason": "drift is back"})

    assert response.status_code == 200, response.json()
    body = response.json()
    assert [e["kind"] for e in body["timeline"]] == ["acknowledged", "resolved", "reopened"]
    assert (body["status"], body["resolved_at"], body["acknowledged_at"]) == ("open", None, None)
    assert body["sla_due_at"] == "2025-03-11T12:15:00Z"
    assert body["resolution_reason"] == ""


def test_reopening_needs_a_reason(reviewer, incident):
    post(reviewer, incident, "resolve")

    response = post(reviewer, incident, "reopen", {"reason": "  "})

    assert response.status_code == 400
    assert "reason" in error_fields(response)
    assert Incident.objects.get(pk=incident.pk).status == IncidentStatus.RESOLVED


def test_reopening_an_open_incident_is_a_409(reviewer, incident):
    assert post(reviewer, incident, "reopen", {"reason": "again"}).status_code == 409


# --- assign and notes ---------------------------------------------------------------------------------
def test_assigning_to_a_team_member_and_unassigning(reviewer, lead, incident):

    assigned = post(reviewer, incident, "assign", {"assignee": str(lead.id)})
    unassigned = post(reviewer, incident, "assign", {"assignee": None})

    assert assigned.status_code == 200
    assert assigned.json()["assignee"] == str(lead.id)
    assert unassigned.json()["assignee"] is None
    assert timeline_kinds(incident) == ["assigned", "assigned"]
    assert AuditLog.objects.filter(action=AuditAction.INCIDENT_ASSIGNED).count() == 2


def test_assigning_to_someone_outside_the_team_is_a_400_naming_assignee(reviewer, make_user,
                                                                        other_team, incident):  # fmt: skip
    outsider = make_user(Role.REVIEWER, teams=[other_team])

    response = post(reviewer, incident, "assign", {"assignee": str(outsider.id)})

    assert response.status_code == 400
    assert "assignee" in error_fields(response)
    assert Incident.objects.get(pk=incident.pk).assignee_id is None


def test_assigning_to_an_unknown_user_is_a_400_naming_assignee(reviewer, incident):
    response = post(reviewer, incident, "assign", {"assignee": "00000000-0000-0000-0000-000000000001"})

    assert response.status_code == 400
    assert "assignee" in error_fields(response)


def test_a_note_is_a_201_timeline_entry(reviewer, incident):
    with time_machine.travel(NOW + timedelta(minutes=7), tick=False):
        response = post(reviewer, incident, "notes", {"message": "paged the data team"})

    assert response.status_code == 201
    assert response.json() == {
        "kind": "note",
        "at": "2025-03-10T12:07:00Z",
        "actor": "rita",
        "message": "paged the data team",
        "data": {},
    }
    assert Incident.objects.get(pk=incident.pk).last_activity_at == NOW + timedelta(minutes=7)


def test_an_empty_note_is_a_400_naming_message(reviewer, incident):
    response = post(reviewer, incident, "notes", {"message": ""})

    assert response.status_code == 400
    assert "message" in error_fields(response)
    assert not IncidentEvent.objects.filter(incident=incident).exists()


# --- RCA ----------------------------------------------------------------------------------------------
def test_patching_the_rca_merges_fields_and_marks_it_complete_once_all_are_filled(reviewer, incident):

    first = write_rca(reviewer, incident, {"root_cause": "feed", "impact": "stale"}).json()
    with time_machine.travel(NOW + timedelta(hours=3), tick=False):
        second = write_rca(
            reviewer, incident, {"affected_data": "transactions", "corrective_actions": "schema check"}, method="put"
        ).json()

    assert first["rca_missing_fields"] == ["affected_data", "corrective_actions"]
    assert first["rca_completed_at"] is None
    assert second["rca"] == {
        "root_cause": "feed",
        "impact": "stale",
        "affected_data": "transactions",
        "corrective_actions": "schema check",
    }
    assert second["rca_missing_fields"] == []
    assert second["rca_completed_at"] == "2025-03-10T15:00:00Z"
    assert AuditLog.objects.filter(action=AuditAction.INCIDENT_RCA_UPDATED).count() == 2


def test_an_empty_text_clears_an_rca_field(reviewer, incident):
    write_rca(reviewer, incident, COMPLETE_RCA)

    body = write_rca(reviewer, incident, {"impact": ""}).json()

    assert "impact" not in body["rca"]
    assert body["rca_missing_fields"] == ["impact"]
    assert body["rca_completed_at"] is None


@pytest.mark.parametrize(
    ("body", "field"),
    [({"root_cause": 42}, "rca.root_cause"), ({"root cause!": "x"}, "rca.root cause!"), ({}, "rca")],
)
def test_an_invalid_rca_is_a_400_naming_the_field(reviewer, incident, body, field):
    response = write_rca(reviewer, incident, body)

    assert response.status_code == 400
    assert field in error_fields(response)
    assert Incident.objects.get(pk=incident.pk).rca == {}


def test_an_rca_that_is_not_an_object_is_a_400(reviewer, incident):
    response = write_rca(reviewer, incident, ["root_cause"])

    assert response.status_code == 400
    assert "rca" in error_fields(response)


# --- who may act --------------------------------------------------------------------------------------
@pytest.mark.parametrize("verb", ACTIONS)
def test_a_viewer_may_not_act_on_incidents(viewer, incident, verb):
    response = post(viewer, incident, verb, {"reason": "x", "message": "x", "assignee": None})

    assert response.status_code == 403
    assert Incident.objects.get(pk=incident.pk).status == IncidentStatus.OPEN
    assert not IncidentEvent.objects.filter(incident=incident).exists()


def test_a_viewer_may_not_write_the_rca(viewer, incident):
    assert write_rca(viewer, incident, {"root_cause": "x"}).status_code == 403


@pytest.mark.parametrize("role", [Role.SECURITY, Role.GOVERNANCE_LEAD, Role.ADMIN])
def test_security_leads_and_admins_may_acknowledge(make_user, team, incident, role):
    user = make_user(role, teams=[team])

    assert post(user, incident, "acknowledge").status_code == 200


@pytest.mark.parametrize("verb", ACTIONS)
def test_acting_on_another_teams_incident_is_404_and_changes_nothing(reviewer, foreign_system, verb):
    incident = IncidentFactory(system=foreign_system, severity=Severity.LOW)

    response = post(reviewer, incident, verb, {"reason": "x", "message": "x", "assignee": None})

    assert response.status_code == 404
    assert not IncidentEvent.objects.filter(incident=incident).exists()


def test_resolving_then_resolving_again_through_the_service_and_api_is_a_409(reviewer, incident):
    incident_resolve(incident_id=incident.id, actor=reviewer)

    response = post(reviewer, incident, "resolve", {"resolution_reason": "Fixed"})

    assert response.status_code == 409
    assert "resolved" in response.json()["error"]["message"]


def test_every_transition_date_is_today_or_later_for_follow_ups(reviewer, incident):
    with time_machine.travel(NOW, tick=False):
        response = post(reviewer, incident, "resolve", {"follow_up_date": str(date(2025, 3, 10))})

    assert response.status_code == 200
    assert response.json()["follow_up_date"] == "2025-03-10"
