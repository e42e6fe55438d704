"""EU AI Act Art. 73 through the API: ``POST /incidents/{id}/serious`` (deadline by basis),
``POST /incidents/{id}/reported``, and ``GET /incidents/{id}/report`` as JSON or printable HTML."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from governance.choices import AuditAction, RiskClass, Role
from governance.models import AuditLog
from incidents.models import Incident, IncidentEventKind
from tests.factories import AISystemFactory
from tests.incidents.factories import IncidentFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/incidents"
NOW = datetime(2025, 6, 2, 8, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def frozen_clock():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def security(make_user, team):
    return make_user(Role.SECURITY, teams=[team], username="sam")


@pytest.fixture
def high_risk_system(team):
    return AISystemFactory(name="credit-scoring", team=team, risk_class=RiskClass.HIGH)


@pytest.fixture
def incident(high_risk_system):
    return IncidentFactory(
        system=high_risk_system, title="Applicants <script>alert(1)</script> denied", description="Denials spiked."
    )


def error_fields(response) -> dict:
    return response.json()["error"]["fields"]


# --- marking serious ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("basis", "days"), [("standard", 15), ("widespread", 2), ("death", 10)])
def test_marking_serious_sets_the_art_73_deadline_for_the_basis(client_for, security, incident, basis, days):
    response = client_for(security).post(f"{URL}/{incident.id}/serious", {"basis": basis})

    assert response.status_code == 200, response.json()
    body = response.json()
    deadline = NOW + timedelta(days=days)
    assert (body["serious"], body["regulatory_basis"]) == (True, basis)
    assert body["regulatory_deadline_at"] == deadline.isoformat().replace("+00:00", "Z")
    countdown = body["regulatory_countdown"]
    assert countdown["remaining_seconds"] == days * 86400
    assert (countdown["overdue"], countdown["basis"]) == (False, basis)
    assert body["timeline"][-1]["kind"] == IncidentEventKind.REGULATORY
    assert AuditLog.objects.filter(action=AuditAction.INCIDENT_MARKED_SERIOUS, actor="sam").count() == 1


def test_the_deadline_counts_from_when_the_provider_became_aware(client_for, security, incident):
    aware_at = NOW - timedelta(days=1)

    body = (
        client_for(security)
        .post(f"{URL}/{incident.id}/serious", {"basis": "widespread", "aware_at": aware_at.isoformat()})
        .json()
    )

    assert body["regulatory_deadline_at"] == "2025-06-03T08:00:00Z"
    assert body["regulatory_countdown"]["remaining_seconds"] == 86400


def test_the_countdown_turns_overdue_after_the_deadline(client_for, security, incident):
    client = client_for(security)
    client.post(f"{URL}/{incident.id}/serious", {"basis": "widespread"})

    with time_machine.travel(NOW + timedelta(days=2, hours=1), tick=False):
        countdown = client_for(security).get(f"{URL}/{incident.id}").json()["regulatory_countdown"]

    assert countdown["overdue"] is True
    assert countdown["remaining_seconds"] == -3600


def test_an_incident_on_a_system_that_is_not_high_risk_cannot_be_serious(client_for, security, own_system):
    incident = IncidentFactory(system=own_system)  # limited risk

    response = client_for(security).post(f"{URL}/{incident.id}/serious", {"basis": "standard"})

    assert response.status_code == 400
    assert "serious" in error_fields(response)
    assert Incident.objects.get(pk=incident.pk).serious is False


def test_an_unknown_basis_is_a_400_naming_it(client_for, security, incident):
    response = client_for(security).post(f"{URL}/{incident.id}/serious", {"basis": "bad"})

    assert response.status_code == 400
    assert "basis" in error_fields(response)


@pytest.mark.parametrize("role", [Role.REVIEWER, Role.VIEWER])
def test_only_admins_leads_and_security_mark_serious_or_reported(client_for, make_user, team, incident, role):
    client = client_for(make_user(role, teams=[team]))

    assert client.post(f"{URL}/{incident.id}/serious", {"basis": "standard"}).status_code == 403
    assert client.post(f"{URL}/{incident.id}/reported", {"reference": "X-1"}).status_code == 403
    assert Incident.objects.get(pk=incident.pk).serious is False


def test_a_lead_may_mark_serious(client_for, lead, incident):
    assert client_for(lead).post(f"{URL}/{incident.id}/serious", {"basis": "standard"}).status_code == 200


def test_marking_another_teams_incident_is_404(client_for, security, other_team):
    foreign = IncidentFactory(system=AISystemFactory(team=other_team, risk_class=RiskClass.HIGH))

    assert client_for(security).post(f"{URL}/{foreign.id}/serious", {"basis": "standard"}).status_code == 404


# --- reported -----------------------------------------------------------------------------------------
def test_reporting_records_the_reference_and_stops_the_countdown(client_for, security, incident):
    client = client_for(security)
    client.post(f"{URL}/{incident.id}/serious", {"basis": "standard"})

    with time_machine.travel(NOW + timedelta(days=3), tick=False):
        response = client_for(security).post(f"{URL}/{incident.id}/reported", {"reference": "MSA-2025-0042"})

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["regulatory_reported_at"] == "2025-06-05T08:00:00Z"
    assert body["regulatory_countdown"]["reported"] is True
    assert body["regulatory_countdown"]["remaining_seconds"] == 12 * 86400
    assert AuditLog.objects.get(action=AuditAction.INCIDENT_REPORTED).data["reference"] == "MSA-2025-0042"


def test_reporting_an_incident_not_marked_serious_is_a_400(client_for, security, incident):
    response = client_for(security).post(f"{URL}/{incident.id}/reported", {"reference": "MSA-1"})

    assert response.status_code == 400
    assert "serious" in error_fields(response)


def test_reporting_twice_is_a_409(client_for, security, incident):
    client = client_for(security)
    client.post(f"{URL}/{incident.id}/serious", {"basis": "standard"})
    client.post(f"{URL}/{incident.id}/reported", {"reference": "MSA-1"})

    response = client.post(f"{URL}/{incident.id}/reported", {"reference": "MSA-2"})

    assert response.status_code == 409
    assert AuditLog.objects.filter(action=AuditAction.INCIDENT_REPORTED).count() == 1


def test_a_missing_reference_is_a_400_naming_it(client_for, security, incident):
    response = client_for(security).post(f"{URL}/{incident.id}/reported", {})

    assert response.status_code == 400
    assert "reference" in error_fields(response)


# --- the report ---------------------------------------------------------------------------------------
def test_the_report_is_json_with_the_art_73_fields(client_for, security, incident, high_risk_system):
    client = client_for(security)
    client.post(f"{URL}/{incident.id}/serious", {"basis": "death"})
    with time_machine.travel(NOW + timedelta(minutes=5), tick=False):
        client_for(security).patch(
            f"{URL}/{incident.id}/rca", {"root_cause": "A stale model", "impact": "12 wrongful denials"}
        )

    response = client.get(f"{URL}/{incident.id}/report")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/json")
    report = response.json()
    assert report["incident"]["id"] == str(incident.id)
    assert report["ai_system"]["name"] == "credit-scoring"
    assert report["ai_system"]["risk_class"] == "high"
    assert report["provider"]["name"] == high_risk_system.team.name
    assert report["regulatory"]["basis"] == "death"
    assert report["regulatory"]["deadline_at"] is not None
    assert (report["root_cause"], report["impact"]) == ("A stale model", "12 wrongful denials")
    assert [entry["kind"] for entry in report["timeline"]] == ["regulatory", "rca_updated"]


@pytest.mark.parametrize(("params", "headers"), [({"format": "html"}, {}), ({}, {"HTTP_ACCEPT": "text/html"})])
def test_the_report_is_a_printable_html_page_with_user_text_escaped(client_for, viewer, incident, params, headers):
    response = client_for(viewer).get(f"{URL}/{incident.id}/report", params, **headers)

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    page = response.content.decode()
    assert page.lstrip().lower().startswith("<!doctype html")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script>alert(1)</script>" not in page


def test_an_unknown_report_of_another_team_answers_json_404_even_when_html_was_asked(client_for, viewer,
                                                                                      other_team):  # fmt: skip
    foreign = IncidentFactory(system=AISystemFactory(team=other_team))

    response = client_for(viewer).get(f"{URL}/{foreign.id}/report", {"format": "html"})

    assert response.status_code == 404
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["error"]["code"] == "not_found"


def test_the_report_needs_authentication(anon_client, incident):
    response = anon_client.get(f"{URL}/{incident.id}/report", {"format": "html"})

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
