"""The processing engine: rules over a batch and its window, alert lifecycle, routing, the outbox."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from config import registry
from governance.models import AuditLog
from hitl.models import ReviewItem
from incidents.models import Incident, IncidentEvent
from oversight.models import Alert, AlertStatus, DetectionRule, EventRaw, IngestBatch, SystemHeartbeat
from oversight.services import alerts as alert_service
from oversight.services import processing
from tests.factories import AISystemFactory

pytestmark = pytest.mark.django_db

NOW = timezone.now().replace(microsecond=0)


def make_batch(events, *, received_at=None):
    """Store events as one ingested batch (the ingest service's output) and return the batch."""
    batch = IngestBatch.objects.create(received_at=received_at or NOW, accepted=len(events))
    EventRaw.objects.bulk_create(
        [
            EventRaw(
                event_id=uuid.uuid4(),
                system=e["system"],
                category=e["category"],
                severity=e.get("severity", "info"),
                signal=e["signal"],
                value=e["value"],
                occurred_at=e.get("at", NOW),
                received_at=batch.received_at,
                batch=batch,
                scenario_id=e.get("scenario_id"),
            )
            for e in events
        ]
    )
    return batch


def psi(system, value, *, at=None, severity="info"):
    return {
        "system": system,
        "category": "data_quality",
        "signal": "psi",
        "value": value,
        "at": at or NOW,
        "severity": severity,
    }


def ev(system, category, signal, value, *, at=None, severity="info"):
    return {
        "system": system,
        "category": category,
        "signal": signal,
        "value": value,
        "at": at or NOW,
        "severity": severity,
    }


def process(events, **kwargs):
    batch = make_batch(events, **kwargs)
    return processing.process_batch(batch_id=batch.id, now=kwargs.get("received_at") or NOW)


@pytest.fixture
def system():
    return AISystemFactory()


def firing(rule=None):
    alerts = Alert.objects.filter(status=AlertStatus.FIRING)
    return alerts.filter(rule__name=rule) if rule else alerts


# --- threshold ------------------------------------------------------------------------------------
def test_a_critical_breach_fires_a_threshold_alert_with_its_evidence_and_timing(system):
    breach_at = NOW - timedelta(seconds=5)
    outcome = process([psi(system, 0.4, at=breach_at, severity="high"), psi(system, 0.02)])

    alert = Alert.objects.get()
    assert outcome.alerts_fired == 1
    assert (alert.rule.name, alert.status, alert.severity) == ("threshold:data_quality", "firing", "high")
    assert alert.first_event_at == breach_at and alert.detected_at == NOW
    assert alert.count == 1 and len(alert.evidence_event_ids) == 1
    assert alert.labels == {"rule": "threshold:data_quality", "system": str(system.id), "signal": "psi"}


def test_a_warning_level_value_alone_fires_nothing(system):
    process([psi(system, 0.15)])
    assert not firing().exists()


def test_alert_severity_is_the_higher_of_rule_floor_and_declared_severity(system):
    process([psi(system, 0.5, severity="low"), ev(AISystemFactory(), "fairness", "dp_gap", 0.5, severity="critical")])
    assert dict(firing().values_list("signal", "severity")) == {"psi": "high", "dp_gap": "critical"}


def test_changing_a_threshold_in_the_registry_changes_what_fires_on_the_next_batch(system, admin_user):
    process([psi(system, 0.3)])
    assert firing().count() == 1
    thresholds = registry.get("oversight.thresholds.data_quality")
    registry.set(
        "oversight.thresholds.data_quality",
        {**thresholds, "psi": {**thresholds["psi"], "critical": 0.5}},
        user=admin_user,
        reason="psi is noisy for this fleet",
    )
    other = AISystemFactory()
    process([psi(other, 0.3)])
    assert firing().count() == 1  # 0.3 is now below critical: the second system does not alert
    process([psi(other, 0.6)])
    assert firing().filter(system=other).count() == 1


def test_a_disabled_rule_fires_nothing(system):
    DetectionRule.objects.filter(name="threshold:data_quality").update(enabled=False)
    process([psi(system, 0.9)])
    assert not Alert.objects.exists()


# --- rate -----------------------------------------------------------------------------------------
def test_warning_breaches_below_the_count_keep_a_pending_alert_that_fires_when_reached(system):
    process([psi(system, 0.15, at=NOW - timedelta(seconds=60)), psi(system, 0.16, at=NOW - timedelta(seconds=40))])
    alert = Alert.objects.get()
    assert (alert.status, alert.detected_at, alert.count) == ("pending", None, 2)

    process([psi(system, 0.17, at=NOW - timedelta(seconds=20), severity="medium")])
    alert.refresh_from_db()
    assert (alert.rule.name, alert.status, alert.count, alert.severity) == ("rate:data_quality", "firing", 3, "medium")
    assert alert.first_event_at == NOW - timedelta(seconds=60) and alert.detected_at == NOW


def test_breaches_spread_wider_than_the_rate_window_do_not_fire(system):
    process([psi(system, 0.15, at=NOW - timedelta(seconds=s)) for s in (900, 500, 100)])
    assert not firing().exists()


# --- compound -------------------------------------------------------------------------------------
def test_a_compound_scenario_raises_exactly_one_compound_alert(system):
    process(
        [
            psi(system, 0.15, at=NOW - timedelta(seconds=90), severity="high"),
            ev(system, "fairness", "dp_gap", 0.15, at=NOW - timedelta(seconds=60)),
        ]
    )
    process([ev(system, "security", "prompt_injection_score", 0.6, at=NOW - timedelta(seconds=30))])

    alert = firing().get()
    assert alert.rule.name == "compound" and alert.severity == "high" and alert.count == 3
    assert alert.first_event_at == NOW - timedelta(seconds=90)
    assert alert.annotations["signals"] == ["dp_gap", "prompt_injection_score", "psi"]


def test_the_single_signal_parts_of_a_compound_scenario_alone_raise_nothing(system):
    process([psi(system, 0.15, at=NOW - timedelta(seconds=90))])
    process([ev(AISystemFactory(), "fairness", "dp_gap", 0.15, at=NOW - timedelta(seconds=60))])
    assert not firing().exists()


def test_signals_further_apart_than_the_correlation_window_are_not_correlated(system):
    process([psi(system, 0.15, at=NOW - timedelta(seconds=400)), ev(system, "fairness", "dp_gap", 0.15)])
    assert not firing("compound").exists()


# --- idempotency, lifecycle, routing ---------------------------------------------------------------
def test_processing_a_batch_twice_creates_nothing_new(system):
    batch = make_batch([psi(system, 0.5, severity="critical"), psi(AISystemFactory(), 0.15, severity="medium")])
    first = processing.process_batch(batch_id=batch.id, now=NOW)
    counts = (Alert.objects.count(), Incident.objects.count(), ReviewItem.objects.count(), AuditLog.objects.count())
    second = processing.process_batch(batch_id=batch.id, now=NOW)

    assert first.processed and not second.processed
    assert counts == (
        Alert.objects.count(),
        Incident.objects.count(),
        ReviewItem.objects.count(),
        AuditLog.objects.count(),
    )
    assert not EventRaw.objects.filter(processed_at__isnull=True).exists()
    assert IngestBatch.objects.get().processed_at == NOW


def test_a_repeated_breach_updates_the_open_alert_instead_of_duplicating_it(system):
    process([psi(system, 0.4, at=NOW - timedelta(seconds=30))])
    process([psi(system, 0.5, severity="critical")])
    alert = firing().get()
    assert alert.count == 2 and alert.last_seen_at == NOW and alert.severity == "critical"
    assert Incident.objects.count() == 1


def test_an_alert_resolves_after_the_quiet_period_and_a_later_breach_is_a_new_occurrence(system):
    process([psi(system, 0.4)])
    with time_machine.travel(NOW + timedelta(seconds=899), tick=False):
        assert alert_service.resolve_stale_alerts() == 0
    with time_machine.travel(NOW + timedelta(seconds=901), tick=False):
        assert alert_service.resolve_stale_alerts() == 1
    later = NOW + timedelta(hours=1)
    process([psi(system, 0.4, at=later)], received_at=later)
    assert list(Alert.objects.order_by("created_at").values_list("status", flat=True)) == ["resolved", "firing"]


def test_a_breach_after_the_quiet_period_supersedes_an_alert_the_sweeper_has_not_resolved_yet(system):
    process([psi(system, 0.4)])
    later = NOW + timedelta(hours=1)
    process([psi(system, 0.4, at=later)], received_at=later)
    old, new = Alert.objects.order_by("created_at")
    assert old.status == "resolved" and old.resolved_at == NOW + timedelta(seconds=900)
    assert new.status == "firing" and new.detected_at == later


def test_high_alerts_open_one_incident_per_fingerprint_while_open(system):
    process([psi(system, 0.4, severity="high")])
    process([psi(system, 0.45, severity="high", at=NOW + timedelta(seconds=5))])
    incident = Incident.objects.get()
    assert incident.source_alert == Alert.objects.get()
    assert incident.team == system.team and incident.severity == "high"
    assert incident.sla_due_at == NOW + timedelta(minutes=15)
    assert list(IncidentEvent.objects.values_list("kind", flat=True)) == ["opened"]
    assert AuditLog.objects.filter(action="incident.opened", object_id=str(incident.id)).count() == 1


def test_medium_alerts_queue_a_review_with_the_hitl_sla(system):
    process([psi(system, 0.15, severity="medium", at=NOW - timedelta(seconds=s)) for s in (30, 20, 10)])
    review = ReviewItem.objects.get()
    assert review.source_alert == firing().get() and review.status == "pending"
    assert review.sla_due_at == NOW + timedelta(hours=24)
    assert not Incident.objects.exists()


def test_low_alerts_are_recorded_but_not_routed(system):
    process([psi(system, 0.15, severity="low", at=NOW - timedelta(seconds=s)) for s in (30, 20, 10)])
    assert firing().get().severity == "low"
    assert not Incident.objects.exists() and not ReviewItem.objects.exists()


def test_every_fired_alert_is_audited(system):
    process([psi(system, 0.4), ev(AISystemFactory(), "fairness", "dp_gap", 0.5)])
    assert AuditLog.objects.filter(action="alert.fired").count() == 2


# --- absence --------------------------------------------------------------------------------------
def heartbeat(system, at):
    return ev(system, "model_perf", "heartbeat", 1.0, at=at)


def test_a_system_sending_telemetry_but_no_heartbeat_raises_an_absence_alert_in_event_time(system):
    start = NOW - timedelta(hours=2)
    process([heartbeat(system, start)])
    process([psi(system, 0.02, at=start + timedelta(seconds=300))])
    assert not firing().exists()
    process([psi(system, 0.02, at=start + timedelta(seconds=700))])
    alert = firing("absence:heartbeat").get()
    assert alert.first_event_at == start + timedelta(seconds=600)
    assert Incident.objects.filter(source_alert=alert).exists()


def test_a_silence_and_the_resumed_beats_in_one_batch_still_raise_an_absence_alert(system):
    start = NOW - timedelta(hours=2)
    process([heartbeat(system, start)])
    process(
        [
            psi(system, 0.02, at=start + timedelta(seconds=650)),
            heartbeat(system, start + timedelta(seconds=1200)),
            heartbeat(system, start + timedelta(seconds=1300)),
        ]
    )
    alert = firing("absence:heartbeat").get()
    assert alert.first_event_at == start + timedelta(seconds=600)
    assert alert.evidence_event_ids == [
        str(EventRaw.objects.filter(signal="heartbeat").earliest("occurred_at").event_id)
    ]


def test_a_late_heartbeat_never_moves_the_last_heartbeat_backwards(system):
    process([heartbeat(system, NOW)])
    process([heartbeat(system, NOW - timedelta(minutes=5))], received_at=NOW + timedelta(seconds=10))
    beat = SystemHeartbeat.objects.get()
    assert beat.last_seen_at == NOW and beat.last_received_at == NOW + timedelta(seconds=10)
    assert str(beat.last_event_id) == str(EventRaw.objects.get(occurred_at=NOW).event_id)


def test_regular_heartbeats_raise_nothing(system):
    start = NOW - timedelta(hours=2)
    process([heartbeat(system, start + timedelta(seconds=s)) for s in range(0, 3000, 300)])
    process([psi(system, 0.02, at=start + timedelta(seconds=3100))])
    assert not Alert.objects.exists()


def test_batches_processed_out_of_order_see_no_silence_that_is_not_there(system):
    """Three consecutive batches of regular beats, the last processed before the middle one."""
    start = NOW - timedelta(hours=2)

    def beats(first, last):
        return make_batch([heartbeat(system, start + timedelta(seconds=s)) for s in range(first, last, 300)])

    first, middle = beats(0, 1500), beats(1500, 3000)
    last = make_batch(
        [heartbeat(system, start + timedelta(seconds=3000)), psi(system, 0.02, at=start + timedelta(seconds=3100))]
    )
    for batch in (first, last, middle):
        processing.process_batch(batch_id=batch.id, now=NOW)
    assert not Alert.objects.exists()


def test_a_silent_system_raises_an_absence_alert_on_the_wall_clock_check(system):
    process([heartbeat(system, NOW)])
    assert SystemHeartbeat.objects.get().last_received_at == NOW
    assert processing.check_heartbeats(now=NOW + timedelta(seconds=599)) == 0
    assert processing.check_heartbeats(now=NOW + timedelta(seconds=601)) == 1
    assert processing.check_heartbeats(now=NOW + timedelta(seconds=660)) == 0  # still the same alert
    assert firing("absence:heartbeat").count() == 1


def test_inactive_systems_are_not_watched_for_heartbeats(system):
    process([heartbeat(system, NOW)])
    system.is_active = False
    system.save()
    assert processing.check_heartbeats(now=NOW + timedelta(hours=1)) == 0


# --- the outbox -----------------------------------------------------------------------------------
def test_the_sweeper_reenqueues_only_batches_unprocessed_for_over_a_minute(system, django_capture_on_commit_callbacks):
    fresh = make_batch([psi(system, 0.02)], received_at=NOW - timedelta(seconds=30))
    stale = make_batch([psi(system, 0.4)], received_at=NOW - timedelta(seconds=90))
    with django_capture_on_commit_callbacks(execute=True):
        assert processing.sweep_outbox(now=NOW) == 1
    stale.refresh_from_db()
    fresh.refresh_from_db()
    assert stale.processed_at is not None and stale.enqueue_count == 2
    assert fresh.processed_at is None
    assert firing().count() == 1
