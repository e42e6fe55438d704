"""``/api/v1/alerts``: read-only, team-scoped, with the incident and review each alert led to."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from governance.choices import Role
from hitl.models import ReviewItem, ReviewType
from incidents.models import Incident, IncidentStatus
from oversight.models import AlertStatus, DetectionRule
from tests.factories import AISystemFactory
from tests.oversight.factories import AlertFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/alerts"
ALERT_FIELDS = {
    "id",
    "fingerprint",
    "rule",
    "rule_kind",
    "system",
    "system_name",
    "status",
    "severity",
    "category",
    "signal",
    "first_event_at",
    "detected_at",
    "last_seen_at",
    "resolved_at",
    "count",
    "labels",
    "annotations",
    "evidence_event_ids",
    "incident_id",
    "review_id",
    "mttd_seconds",
}


def open_incident(alert, *, source=True, status=IncidentStatus.OPEN) -> Incident:
    return Incident.objects.create(
        title="PSI drift",
        system=alert.system,
        team=alert.system.team,
        severity=alert.severity,
        status=status,
        fingerprint=alert.fingerprint,
        source_alert=alert if source else None,
        opened_at=timezone.now(),
        closed_at=timezone.now() if status == IncidentStatus.CLOSED else None,
    )


def queue_review(alert) -> ReviewItem:
    return ReviewItem.objects.create(
        review_type=ReviewType.ALERT_TRIAGE,
        title="Triage",
        system=alert.system,
        severity=alert.severity,
        source_alert=alert,
        sla_due_at=timezone.now() + timedelta(hours=4),
    )


def test_an_alert_is_listed_with_every_documented_field(client_for, viewer, own_system):
    detected = timezone.now()
    alert = AlertFactory(
        system=own_system,
        first_event_at=detected - timedelta(seconds=90),
        detected_at=detected,
        evidence_event_ids=["e-1"],
        annotations={"value": 0.4},
    )

    [row] = client_for(viewer).get(URL).json()["results"]

    assert set(row) == ALERT_FIELDS
    assert row["id"] == str(alert.pk)
    assert (row["rule"], row["rule_kind"]) == ("threshold:data_quality", "threshold")
    assert (row["system"], row["system_name"]) == (str(own_system.pk), "fraud-scorer")
    assert (row["status"], row["severity"], row["count"]) == ("firing", "high", 1)
    assert (row["evidence_event_ids"], row["annotations"]) == (["e-1"], {"value": 0.4})
    assert row["mttd_seconds"] == 90.0
    assert (row["incident_id"], row["review_id"]) == (None, None)


def test_a_pending_alert_has_no_mttd(client_for, viewer, own_system):
    AlertFactory(system=own_system, status=AlertStatus.PENDING, detected_at=None)

    [row] = client_for(viewer).get(URL).json()["results"]

    assert (row["detected_at"], row["mttd_seconds"]) == (None, None)


def test_an_alert_names_the_incident_opened_from_it(client_for, viewer, own_system):
    alert = AlertFactory(system=own_system)
    incident = open_incident(alert)

    row = client_for(viewer).get(f"{URL}/{alert.pk}").json()

    assert row["incident_id"] == str(incident.pk)


def test_a_refired_alert_names_the_incident_still_open_for_its_fingerprint(client_for, viewer, own_system):
    first = AlertFactory(system=own_system, status=AlertStatus.RESOLVED, resolved_at=timezone.now())
    incident = open_incident(first)
    refired = AlertFactory(system=own_system, fingerprint=first.fingerprint)

    row = client_for(viewer).get(f"{URL}/{refired.pk}").json()

    assert row["incident_id"] == str(incident.pk)


def test_an_alert_whose_fingerprint_incident_is_closed_and_not_its_own_has_none(client_for, viewer, own_system):
    earlier = AlertFactory(system=own_system, status=AlertStatus.RESOLVED, resolved_at=timezone.now())
    open_incident(earlier, status=IncidentStatus.CLOSED)
    later = AlertFactory(system=own_system, fingerprint=earlier.fingerprint)

    assert client_for(viewer).get(f"{URL}/{later.pk}").json()["incident_id"] is None


def test_an_alert_names_the_review_queued_for_it(client_for, viewer, own_system):
    alert = AlertFactory(system=own_system, severity="medium")
    review = queue_review(alert)

    assert client_for(viewer).get(f"{URL}/{alert.pk}").json()["review_id"] == str(review.pk)


def test_the_list_shows_only_the_callers_teams_alerts(client_for, viewer, own_system, foreign_system):
    mine = AlertFactory(system=own_system)
    AlertFactory(system=foreign_system)

    rows = client_for(viewer).get(URL).json()["results"]

    assert [row["id"] for row in rows] == [str(mine.pk)]


def test_another_teams_alert_is_404(client_for, viewer, foreign_system):
    alert = AlertFactory(system=foreign_system)

    assert client_for(viewer).get(f"{URL}/{alert.pk}").status_code == 404


@pytest.mark.parametrize("ref", ["6f1c0b7e-0000-4000-8000-000000000003", "not-a-uuid"])
def test_an_unknown_alert_is_404(client_for, viewer, ref):
    assert client_for(viewer).get(f"{URL}/{ref}").status_code == 404


@pytest.mark.parametrize("role", [Role.ADMIN, Role.GOVERNANCE_LEAD, Role.REVIEWER, Role.SECURITY, Role.VIEWER])
def test_every_human_role_may_read_alerts(client_for, make_user, team, role):
    assert client_for(make_user(role, teams=[team])).get(URL).status_code == 200


@pytest.mark.parametrize("role", [Role.INGEST, Role.CICD])
def test_service_accounts_may_not_read_alerts(client_for, make_user, team, role):
    assert client_for(make_user(role, teams=[team], is_service_account=True)).get(URL).status_code == 403


def test_an_anonymous_caller_is_401(anon_client):
    assert anon_client.get(URL).status_code == 401


def test_alerts_are_read_only(client_for, admin_user, own_system):
    alert = AlertFactory(system=own_system)
    client = client_for(admin_user)

    assert client.post(URL, {}).status_code == 405
    assert client.patch(f"{URL}/{alert.pk}", {"status": "resolved"}).status_code == 405
    assert client.delete(f"{URL}/{alert.pk}").status_code == 405


@pytest.fixture
def alerts(own_system, team):
    churn = AISystemFactory(name="churn-model", team=team)
    now = timezone.now()
    compound = DetectionRule.objects.get(name="compound")
    return {
        "psi": AlertFactory(system=own_system, signal="psi", last_seen_at=now - timedelta(hours=3)),
        "resolved": AlertFactory(
            system=own_system,
            signal="null_rate",
            status=AlertStatus.RESOLVED,
            severity="low",
            resolved_at=now,
            last_seen_at=now - timedelta(hours=2),
        ),
        "compound": AlertFactory(
            system=churn, rule=compound, category="", signal="", severity="critical", last_seen_at=now
        ),
        "fairness": AlertFactory(
            system=churn,
            rule=DetectionRule.objects.get(name="threshold:fairness"),
            category="fairness",
            signal="dp_gap",
            last_seen_at=now - timedelta(minutes=30),
        ),
    }


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"status": "resolved"}, {"resolved"}),
        ({"status": "firing"}, {"psi", "compound", "fairness"}),
        ({"severity": "critical"}, {"compound"}),
        ({"system": "churn-model"}, {"compound", "fairness"}),
        ({"rule": "compound"}, {"compound"}),
        ({"category": "fairness"}, {"fairness"}),
    ],
)
def test_alerts_can_be_filtered(client_for, viewer, alerts, query, expected):
    by_id = {str(alert.pk): name for name, alert in alerts.items()}

    rows = client_for(viewer).get(URL, query).json()["results"]

    assert {by_id[row["id"]] for row in rows} == expected


def test_alerts_can_be_filtered_by_system_id(client_for, viewer, alerts, own_system):
    rows = client_for(viewer).get(URL, {"system": str(own_system.pk)}).json()["results"]

    assert {row["signal"] for row in rows} == {"psi", "null_rate"}


def test_alerts_can_be_filtered_by_last_seen_since(client_for, viewer, alerts):
    since = (timezone.now() - timedelta(hours=1)).isoformat()

    rows = client_for(viewer).get(URL, {"since": since}).json()["results"]

    assert {row["id"] for row in rows} == {str(alerts["compound"].pk), str(alerts["fairness"].pk)}


def test_listing_costs_the_same_queries_however_many_incidents_and_reviews(client_for, viewer, own_system, team):
    open_incident(AlertFactory(system=own_system))
    client = client_for(viewer)
    client.get(URL)
    with CaptureQueriesContext(connection) as one:
        client.get(URL)
    for system in AISystemFactory.create_batch(6, team=team):
        alert = AlertFactory(system=system, severity="medium")
        open_incident(alert)
        queue_review(alert)

    with CaptureQueriesContext(connection) as many:
        rows = client.get(URL).json()["results"]

    assert len(rows) == 7
    assert sum(row["incident_id"] is not None for row in rows) == 7
    assert len(many) == len(one)
