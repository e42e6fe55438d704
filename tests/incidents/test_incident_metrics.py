"""``incidents.selectors.incident_metrics`` and ``GET /api/v1/incidents/metrics``: open incidents by
severity, MTTA/MTTR per severity over the last 30 days (DESIGN §6), SLA breaches and open serious
incidents — measured from data, scoped to the caller's teams."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from governance.choices import Role, Severity
from incidents.models import Incident
from incidents.selectors import incident_metrics
from incidents.services.lifecycle import incident_acknowledge, incident_close, incident_resolve
from tests.incidents.factories import IncidentFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/incidents/metrics"
NOW = datetime(2025, 5, 20, 12, 0, tzinfo=UTC)


@pytest.fixture
def reviewer(make_user, team):
    return make_user(Role.REVIEWER, teams=[team], username="rita")


def opened(system, *, at: datetime, severity=Severity.HIGH, **fields) -> Incident:
    with time_machine.travel(at, tick=False):
        return IncidentFactory(system=system, severity=severity, **fields)


def acknowledge(incident, *, at: datetime, actor) -> None:
    with time_machine.travel(at, tick=False):
        incident_acknowledge(incident_id=incident.id, actor=actor)


def resolve(incident, *, at: datetime, actor) -> None:
    with time_machine.travel(at, tick=False):
        incident_resolve(incident_id=incident.id, actor=actor)


def metrics(**kwargs):
    return incident_metrics(queryset=Incident.objects.all(), now=NOW, **kwargs)


def test_mtta_and_mttr_are_measured_per_severity_from_the_timestamps(own_system, reviewer):
    start = NOW - timedelta(days=2)
    for minutes_to_ack, minutes_to_resolve in [(2, 30), (4, 50), (10, 90)]:
        incident = opened(own_system, at=start, severity=Severity.CRITICAL)
        acknowledge(incident, at=start + timedelta(minutes=minutes_to_ack), actor=reviewer)
        resolve(incident, at=start + timedelta(minutes=minutes_to_resolve), actor=reviewer)
    high = opened(own_system, at=start, severity=Severity.HIGH)
    acknowledge(high, at=start + timedelta(minutes=20), actor=reviewer)

    figures = metrics()

    # Nearest-rank percentiles: p50 of three is the second, p95 the third.
    assert figures.mtta_seconds[Severity.CRITICAL] == {"p50": 240.0, "p95": 600.0, "count": 3}
    assert figures.mttr_seconds[Severity.CRITICAL] == {"p50": 3000.0, "p95": 5400.0, "count": 3}
    assert figures.mtta_seconds[Severity.HIGH] == {"p50": 1200.0, "p95": 1200.0, "count": 1}
    assert Severity.HIGH not in figures.mttr_seconds
    assert figures.mtta_seconds["all"]["count"] == 4


def test_only_incidents_acknowledged_or_resolved_in_the_last_30_days_count(own_system, reviewer):
    long_ago = NOW - timedelta(days=40)
    old = opened(own_system, at=long_ago)
    acknowledge(old, at=long_ago + timedelta(minutes=5), actor=reviewer)
    resolve(old, at=long_ago + timedelta(hours=1), actor=reviewer)
    recent = opened(own_system, at=NOW - timedelta(days=1))
    resolve(recent, at=NOW - timedelta(days=1) + timedelta(minutes=30), actor=reviewer)

    figures = metrics()

    assert figures.mtta_seconds["all"]["count"] == 0
    assert figures.mttr_seconds[Severity.HIGH] == {"p50": 1800.0, "p95": 1800.0, "count": 1}
    assert figures.window_days == 30


def test_closing_without_resolving_counts_towards_mttr(own_system, reviewer):
    incident = opened(own_system, at=NOW - timedelta(hours=3), severity=Severity.LOW)
    with time_machine.travel(NOW - timedelta(hours=1), tick=False):
        incident_close(incident_id=incident.id, actor=reviewer)

    assert metrics().mttr_seconds[Severity.LOW]["p50"] == 7200.0


def test_open_incidents_are_counted_by_severity_with_every_severity_present(own_system, reviewer):
    opened(own_system, at=NOW - timedelta(hours=1), severity=Severity.CRITICAL)
    opened(own_system, at=NOW - timedelta(hours=1), severity=Severity.LOW)
    acknowledged = opened(own_system, at=NOW - timedelta(hours=1), severity=Severity.LOW)
    acknowledge(acknowledged, at=NOW - timedelta(minutes=30), actor=reviewer)
    done = opened(own_system, at=NOW - timedelta(hours=1), severity=Severity.MEDIUM)
    resolve(done, at=NOW - timedelta(minutes=10), actor=reviewer)

    assert metrics().open_by_severity == {"critical": 1, "high": 0, "medium": 0, "low": 2, "info": 0}


def test_breached_sla_counts_open_incidents_past_a_target(own_system, reviewer):
    opened(own_system, at=NOW - timedelta(minutes=10), severity=Severity.CRITICAL)  # ack due 5 min after open
    opened(own_system, at=NOW - timedelta(minutes=10), severity=Severity.LOW)  # ack due after 4 h
    late_but_resolved = opened(own_system, at=NOW - timedelta(hours=3), severity=Severity.CRITICAL)
    resolve(late_but_resolved, at=NOW - timedelta(hours=1), actor=reviewer)

    assert metrics().breached_sla == 1


def test_serious_open_counts_open_incidents_marked_serious(own_system, reviewer):
    opened(own_system, at=NOW - timedelta(hours=1), serious=True)
    done = opened(own_system, at=NOW - timedelta(hours=1), serious=True)
    resolve(done, at=NOW - timedelta(minutes=5), actor=reviewer)
    opened(own_system, at=NOW - timedelta(hours=1))

    assert metrics().serious_open == 1


def test_metrics_cost_a_fixed_number_of_queries(own_system, reviewer):
    for hours in range(1, 21):
        incident = opened(own_system, at=NOW - timedelta(hours=hours))
        resolve(incident, at=NOW - timedelta(hours=hours) + timedelta(minutes=20), actor=reviewer)

    with CaptureQueriesContext(connection) as queries:
        metrics()

    assert len(queries.captured_queries) == 4


# --- the endpoint -------------------------------------------------------------------------------------
def test_the_endpoint_answers_every_documented_field_for_your_teams_only(client_for, reviewer, own_system,
                                                                         foreign_system):  # fmt: skip
    opened(own_system, at=NOW - timedelta(hours=1), severity=Severity.CRITICAL)
    opened(foreign_system, at=NOW - timedelta(hours=1), severity=Severity.CRITICAL)

    with time_machine.travel(NOW, tick=False):
        response = client_for(reviewer).get(URL)

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"open_by_severity", "mtta_seconds", "mttr_seconds", "breached_sla", "serious_open",
                         "window_days", "as_of"}  # fmt: skip
    assert body["open_by_severity"]["critical"] == 1
    assert body["breached_sla"] == 1
    assert body["mtta_seconds"] == {"all": {"p50": None, "p95": None, "count": 0}}
    assert body["as_of"] == "2025-05-20T12:00:00Z"


def test_a_viewer_may_read_the_metrics(client_for, viewer):
    assert client_for(viewer).get(URL).status_code == 200


def test_the_metrics_need_authentication(anon_client):
    assert anon_client.get(URL).status_code == 401
