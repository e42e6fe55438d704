"""The event pipeline's KPIs (events ingested, MTTD and MTTR of critical problems) and the continuous
monitoring capability, measured from data through the scorecard."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from config import registry
from governance.choices import Severity
from governance.services.kpis import kpi_report
from incidents.models import Incident
from oversight.models import DetectionRule, EventRaw
from tests.factories import AISystemFactory
from tests.oversight.factories import AlertFactory, IngestBatchFactory

pytestmark = pytest.mark.django_db

NOW = timezone.now().replace(microsecond=0)


def kpi(code: str) -> dict:
    return next(item for item in kpi_report()["kpis"] if item["code"] == code)


def capability(code: str) -> dict:
    return next(item for item in kpi_report()["capabilities"]["items"] if item["code"] == code)


@pytest.fixture
def frozen():
    with time_machine.travel(NOW, tick=False):
        yield


# --- events ingested ------------------------------------------------------------------------------
def store_events(count: int) -> None:
    system, batch = AISystemFactory(), IngestBatchFactory()
    EventRaw.objects.bulk_create(
        [
            EventRaw(
                event_id=uuid.uuid4(),
                system=system,
                category="data_quality",
                severity="info",
                signal="psi",
                value=0.01,
                occurred_at=NOW,
                received_at=NOW,
                batch=batch,
            )
            for _ in range(count)
        ],
        batch_size=2000,
    )


def test_events_ingested_counts_events_raw_and_is_not_met_below_ten_thousand():
    store_events(9_999)

    item = kpi("events_ingested")

    assert (item["value"], item["display"], item["status"]) == (9_999, "9,999", "not_met")


def test_events_ingested_is_met_at_ten_thousand():
    store_events(10_000)

    item = kpi("events_ingested")

    assert (item["value"], item["display"], item["status"]) == (10_000, "10,000", "met")


# --- MTTD (critical) ------------------------------------------------------------------------------
def critical_alert(*, took: float, detected_at=None):
    detected_at = detected_at or NOW - timedelta(hours=1)
    return AlertFactory(
        severity=Severity.CRITICAL, first_event_at=detected_at - timedelta(seconds=took), detected_at=detected_at
    )


def test_mttd_without_a_critical_alert_is_not_invented(frozen):
    AlertFactory(severity=Severity.HIGH, detected_at=NOW, first_event_at=NOW - timedelta(seconds=1))

    item = kpi("mttd_critical")

    assert (item["value"], item["status"]) == (None, "not_measured")
    assert item["detail"] == "no critical alert fired in the last 7 days: nothing to measure"


def test_mttd_is_the_p95_of_critical_alerts_of_the_last_week_against_the_slo(frozen):
    for took in (10, 20, 30, 40, 240):
        critical_alert(took=took)
    critical_alert(took=9000, detected_at=NOW - timedelta(days=8))  # older than the week

    item = kpi("mttd_critical")

    assert (item["value"], item["display"], item["status"]) == (240.0, "4.0 min", "met")
    assert item["target"] == "≤ 5.0 min (p95)"
    assert "5 critical alerts" in item["detail"]


def test_mttd_above_the_slo_is_not_met_and_the_target_follows_the_config(frozen, admin_user):
    critical_alert(took=90)
    assert kpi("mttd_critical")["status"] == "met"

    registry.set(
        "slo.mttd_seconds", {**registry.get("slo.mttd_seconds"), "critical": 60}, user=admin_user, reason="test"
    )

    item = kpi("mttd_critical")
    assert (item["value"], item["status"], item["target"]) == (90.0, "not_met", "≤ 60.0 s (p95)")


# --- MTTR (critical) ------------------------------------------------------------------------------
def critical_incident(*, minutes: float | None, resolved_at=None):
    resolved_at = resolved_at or NOW - timedelta(hours=2)
    system = AISystemFactory()
    return Incident.objects.create(
        title="critical",
        system=system,
        team=system.team,
        severity=Severity.CRITICAL,
        opened_at=resolved_at - timedelta(minutes=minutes or 0),
        resolved_at=resolved_at if minutes is not None else None,
        status="resolved" if minutes is not None else "open",
    )


def test_mttr_without_a_resolved_critical_incident_is_not_invented(frozen):
    critical_incident(minutes=None)

    item = kpi("mttr_critical")

    assert (item["value"], item["status"]) == (None, "not_measured")
    assert "no critical incident resolved in the last 30 days" in item["detail"]


def test_mttr_is_the_p95_of_critical_incidents_resolved_in_the_last_30_days(frozen):
    for minutes in (5, 15, 45):
        critical_incident(minutes=minutes)
    critical_incident(minutes=600, resolved_at=NOW - timedelta(days=31))

    item = kpi("mttr_critical")

    assert (item["value"], item["display"], item["status"]) == (45.0, "45.0 min", "met")
    assert item["target"] == "≤ 60 min (p95)"


def test_mttr_above_the_slo_is_not_met(frozen):
    critical_incident(minutes=30)
    critical_incident(minutes=90)

    assert kpi("mttr_critical")["status"] == "not_met"


# --- continuous monitoring ------------------------------------------------------------------------
def test_monitoring_is_enforced_with_enabled_rules_recent_processing_and_a_current_outbox(frozen):
    IngestBatchFactory(received_at=NOW - timedelta(hours=1), processed_at=NOW - timedelta(hours=1))
    IngestBatchFactory(received_at=NOW - timedelta(minutes=1))  # waiting, but only for a minute

    cap = capability("continuous_monitoring")

    assert cap["status"] == "enforced"
    assert "1 batches processed in the last 24 h" in cap["evidence"]


def test_monitoring_is_not_enforced_when_every_rule_is_disabled(frozen):
    IngestBatchFactory(processed_at=NOW)
    DetectionRule.objects.update(enabled=False)

    cap = capability("continuous_monitoring")

    assert (cap["status"], cap["evidence"]) == ("not_enforced", "every detection rule is disabled")


def test_monitoring_is_not_enforced_without_processing_in_the_last_day(frozen):
    IngestBatchFactory(received_at=NOW - timedelta(days=2), processed_at=NOW - timedelta(days=2))

    cap = capability("continuous_monitoring")

    assert (cap["status"], cap["evidence"]) == ("not_enforced", "no telemetry was processed in the last 24 h")


def test_monitoring_is_not_enforced_while_a_batch_waits_more_than_five_minutes(frozen):
    IngestBatchFactory(processed_at=NOW)
    IngestBatchFactory(received_at=NOW - timedelta(minutes=6))

    cap = capability("continuous_monitoring")

    assert cap["status"] == "not_enforced"
    assert cap["evidence"] == "1 batch(es) waiting; the oldest for 6.0 min (limit 5 min)"
