"""Detection metrics on hand-made data: matching alerts to scenarios, precision / recall / F1 overall
and per category and severity, MTTD and MTTR, counters, the platform-wide window metrics, the gate."""

from __future__ import annotations

import uuid
from datetime import timedelta

import factory
import pytest
import time_machine
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st

from governance.choices import Severity
from hitl.models import ReviewItem
from incidents.models import Incident
from oversight.metrics import (
    latency_by_severity,
    oversight_metrics,
    percentile,
    quality_gate_failures,
    simulation_report,
)
from oversight.models import AlertStatus, DetectionRule, ScenarioLabel, Simulation, SimulationStatus
from tests.factories import AISystemFactory
from tests.oversight.factories import AlertFactory, EventRawFactory, IngestBatchFactory

pytestmark = pytest.mark.django_db

NOW = timezone.now().replace(microsecond=0)


# --- factories for this file's hand-made data -------------------------------------------------------
class SimulationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Simulation
        skip_postgeneration_save = True

    status = SimulationStatus.RUNNING
    total = 1000
    started_at = factory.LazyFunction(lambda: NOW - timedelta(minutes=10))

    @factory.post_generation
    def systems(self, create, extracted, **kwargs):
        if create and extracted:
            self.systems.set(extracted)


class ScenarioLabelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ScenarioLabel

    scenario_id = factory.Sequence(lambda n: f"test:single_breach:{n:04d}")
    seed = 7
    kind = "single_breach"
    system = factory.SubFactory(AISystemFactory)
    category = "data_quality"
    severity = Severity.HIGH
    signals = factory.LazyFunction(lambda: ["psi"])
    expected_rule = "threshold:data_quality"
    onset_at = factory.LazyFunction(lambda: NOW - timedelta(seconds=30))
    event_count = 1


class IncidentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Incident

    title = "psi breach"
    system = factory.SubFactory(AISystemFactory)
    team = factory.LazyAttribute(lambda o: o.system.team)
    severity = Severity.HIGH
    opened_at = factory.LazyFunction(lambda: NOW - timedelta(minutes=5))


class ReviewItemFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ReviewItem

    review_type = "alert_triage"
    title = "Triage"
    system = factory.SubFactory(AISystemFactory)
    severity = Severity.MEDIUM
    sla_due_at = factory.LazyFunction(lambda: NOW + timedelta(hours=24))


def rule(name: str) -> DetectionRule:
    return DetectionRule.objects.get(name=name)


def fired(system, rule_name="threshold:data_quality", *, detected_at=None, **kwargs):
    """A firing alert of ``rule_name`` on ``system`` detected at ``detected_at`` (default NOW)."""
    return AlertFactory(
        system=system,
        rule=rule(rule_name),
        detected_at=detected_at or NOW,
        labels={"rule": rule_name, "system": str(system.pk), "n": str(uuid.uuid4())},
        **kwargs,
    )


@pytest.fixture
def systems():
    return [AISystemFactory() for _ in range(4)]


@pytest.fixture
def simulation(systems):
    return SimulationFactory(systems=systems)


def label(simulation, system, **kwargs) -> ScenarioLabel:
    return ScenarioLabelFactory(simulation=simulation, system=system, **kwargs)


# --- matching, precision, recall ------------------------------------------------------------------
def test_an_alert_of_the_expected_rule_on_the_scenario_system_is_true_and_detects_it(simulation, systems):
    label(simulation, systems[0])
    fired(systems[0])

    quality = simulation_report(simulation)["quality"]

    assert (quality["precision"], quality["recall"], quality["f1"]) == (1.0, 1.0, 1.0)
    assert (quality["alerts"], quality["true_alerts"], quality["scenarios"], quality["detected"]) == (1, 1, 1, 1)
    assert quality["missed"] == quality["false_alerts"] == []


def test_an_alert_of_another_rule_on_the_scenario_system_is_false_and_the_scenario_missed(simulation, systems):
    scenario = label(simulation, systems[0])
    wrong = fired(systems[0], "rate:data_quality")

    quality = simulation_report(simulation)["quality"]

    assert (quality["precision"], quality["recall"], quality["f1"]) == (0.0, 0.0, 0.0)
    assert quality["missed"] == [scenario.scenario_id]
    assert quality["false_alerts"] == [str(wrong.pk)]


def test_the_expected_rule_firing_on_another_system_does_not_detect_the_scenario(simulation, systems):
    label(simulation, systems[0])
    fired(systems[1])

    quality = simulation_report(simulation)["quality"]

    assert (quality["precision"], quality["recall"]) == (0.0, 0.0)


def test_any_alert_on_a_near_miss_system_is_false_and_near_misses_are_not_scenarios_to_detect(simulation, systems):
    label(simulation, systems[0], kind="near_miss", expected_rule="")
    label(simulation, systems[1])
    fired(systems[0])
    fired(systems[1])

    quality = simulation_report(simulation)["quality"]

    assert (quality["alerts"], quality["true_alerts"]) == (2, 1)
    assert (quality["scenarios"], quality["detected"]) == (1, 1)
    assert (quality["precision"], quality["recall"]) == (0.5, 1.0)
    assert quality["f1"] == pytest.approx(0.6667)


def test_pending_alerts_and_alerts_outside_the_simulation_do_not_count(simulation, systems):
    label(simulation, systems[0])
    AlertFactory(system=systems[0], status=AlertStatus.PENDING, detected_at=None)
    fired(AISystemFactory())  # a system of no simulation

    quality = simulation_report(simulation)["quality"]

    assert quality["alerts"] == 0
    assert quality["recall"] == 0.0


def test_precision_and_recall_are_none_not_zero_when_nothing_can_be_divided(simulation):
    quality = simulation_report(simulation)["quality"]

    assert (quality["precision"], quality["recall"], quality["f1"]) == (None, None, None)
    assert (quality["alerts"], quality["scenarios"]) == (0, 0)


def test_precision_is_none_when_no_alert_fired_while_recall_is_measured(simulation, systems):
    label(simulation, systems[0])

    quality = simulation_report(simulation)["quality"]

    assert (quality["precision"], quality["recall"], quality["f1"]) == (None, 0.0, None)


def test_quality_is_broken_down_by_category_and_by_severity(simulation, systems):
    label(simulation, systems[0], category="data_quality", severity=Severity.HIGH)
    label(
        simulation,
        systems[1],
        category="fairness",
        severity=Severity.MEDIUM,
        kind="sustained_drift",
        expected_rule="rate:fairness",
    )
    fired(systems[0], severity=Severity.HIGH, category="data_quality")
    fired(systems[2], "threshold:fairness", severity=Severity.CRITICAL, category="fairness")  # false

    quality = simulation_report(simulation)["quality"]

    assert quality["by_category"]["data_quality"] == {
        "precision": 1.0,
        "recall": 1.0,
        "f1": 1.0,
        "alerts": 1,
        "true_alerts": 1,
        "scenarios": 1,
        "detected": 1,
    }
    fairness = quality["by_category"]["fairness"]
    assert (fairness["precision"], fairness["recall"], fairness["f1"]) == (0.0, 0.0, 0.0)
    assert list(quality["by_severity"]) == ["critical", "high", "medium"]
    assert quality["by_severity"]["critical"]["precision"] == 0.0
    assert quality["by_severity"]["critical"]["recall"] is None  # no critical scenario
    assert quality["by_severity"]["medium"]["precision"] is None  # no medium alert
    assert quality["by_severity"]["medium"]["recall"] == 0.0


def test_missed_scenarios_and_false_alerts_are_listed_at_most_twenty(simulation):
    for _ in range(25):
        system = AISystemFactory()
        simulation.systems.add(system)
        label(simulation, system)
        fired(system, "rate:security")

    quality = simulation_report(simulation)["quality"]

    assert len(quality["missed"]) == len(quality["false_alerts"]) == 20
    assert (quality["scenarios"], quality["alerts"]) == (25, 25)


# --- MTTD and MTTR --------------------------------------------------------------------------------
def test_mttd_runs_from_onset_to_the_earliest_matching_alert_by_scenario_severity(simulation, systems):
    onset = NOW - timedelta(seconds=60)
    label(simulation, systems[0], severity=Severity.CRITICAL, onset_at=onset)
    label(simulation, systems[1], severity=Severity.HIGH, onset_at=onset)
    fired(systems[0], detected_at=onset + timedelta(seconds=2))
    fired(systems[0], detected_at=onset + timedelta(seconds=40), status=AlertStatus.RESOLVED)  # a later occurrence
    fired(systems[1], detected_at=onset + timedelta(seconds=4))

    mttd = simulation_report(simulation)["mttd_seconds"]

    assert mttd["critical"] == {"p50": 2.0, "p95": 2.0, "count": 1}
    assert mttd["high"] == {"p50": 4.0, "p95": 4.0, "count": 1}
    assert mttd["all"] == {"p50": 2.0, "p95": 4.0, "count": 2}
    assert list(mttd) == ["critical", "high", "all"]


def test_mttd_of_replayed_history_starts_when_the_onset_event_arrived(simulation, systems):
    onset = NOW - timedelta(hours=3)  # the event occurred long ago, it arrived just now
    label(simulation, systems[0], onset_at=onset)
    EventRawFactory(system=systems[0], occurred_at=onset, received_at=NOW - timedelta(seconds=1.5))
    fired(systems[0], detected_at=NOW)

    assert simulation_report(simulation)["mttd_seconds"]["all"]["p50"] == 1.5


def test_mttd_starts_at_the_onset_when_nothing_arrived_after_it_before_detection(simulation, systems):
    onset = NOW - timedelta(seconds=30)  # a heartbeat silence caught by the wall-clock check
    label(simulation, systems[0], kind="heartbeat_loss", expected_rule="absence:heartbeat", onset_at=onset)
    EventRawFactory(
        system=systems[0], occurred_at=onset + timedelta(seconds=40), received_at=NOW + timedelta(seconds=9)
    )
    fired(systems[0], "absence:heartbeat", detected_at=NOW)

    assert simulation_report(simulation)["mttd_seconds"]["all"]["p50"] == 30.0


def scenario_events(simulation, scenario, batch, *specs):
    """Events of ``scenario`` in ``batch``: (signal, occurred seconds before NOW, arrived seconds before NOW)."""
    for signal, occurred, arrived in specs:
        EventRawFactory(
            system=scenario.system,
            batch=batch,
            signal=signal,
            scenario_id=scenario.scenario_id,
            occurred_at=NOW - timedelta(seconds=occurred),
            received_at=NOW - timedelta(seconds=arrived),
        )


def test_detection_latency_of_a_drift_runs_from_the_arrival_of_its_deciding_breach(simulation, systems):
    batch = IngestBatchFactory(simulation=simulation)
    drift = label(
        simulation,
        systems[0],
        kind="sustained_drift",
        expected_rule="rate:data_quality",
        severity=Severity.MEDIUM,
        onset_at=NOW - timedelta(seconds=40),
    )
    # breaches at -40, -25, -10 (the third decides: min_breaches 3) and -5 s; each arrives 0.5 s later
    scenario_events(simulation, drift, batch, *[("psi", t, t - 0.5) for t in (40, 25, 10, 5)])
    fired(systems[0], "rate:data_quality", detected_at=NOW - timedelta(seconds=9))

    report = simulation_report(simulation)

    assert report["mttd_seconds"]["medium"]["p50"] == 30.5  # from the arrival of the onset
    assert report["detection_latency_seconds"]["medium"]["p50"] == 0.5  # from the arrival of breach 3


def test_detection_latency_of_a_compound_runs_from_the_arrival_of_its_second_signal(simulation, systems):
    batch = IngestBatchFactory(simulation=simulation)
    compound = label(
        simulation, systems[0], kind="compound", expected_rule="compound", onset_at=NOW - timedelta(seconds=20)
    )
    scenario_events(simulation, compound, batch, ("psi", 20, 20), ("null_rate", 12, 11), ("dp_gap", 3, 3))
    fired(systems[0], "compound", detected_at=NOW - timedelta(seconds=10))

    report = simulation_report(simulation)

    assert report["detection_latency_seconds"]["all"]["p50"] == 1.0
    assert report["mttd_seconds"]["all"]["p50"] == 10.0


def test_without_detections_the_mttd_has_only_an_empty_all_bucket(simulation):
    assert simulation_report(simulation)["mttd_seconds"] == {"all": {"p50": None, "p95": None, "count": 0}}


def test_mttr_covers_resolved_incidents_of_its_alerts_and_is_empty_when_none(simulation, systems):
    assert simulation_report(simulation)["mttr_seconds"] == {}
    alert = fired(systems[0])
    IncidentFactory(system=systems[0], source_alert=alert, opened_at=NOW, resolved_at=NOW + timedelta(minutes=3))
    IncidentFactory(system=systems[0], source_alert=fired(systems[1]), opened_at=NOW)  # still open
    IncidentFactory(opened_at=NOW, resolved_at=NOW + timedelta(minutes=1))  # not from its alerts

    mttr = simulation_report(simulation)["mttr_seconds"]

    assert mttr == {"high": {"p50": 180.0, "p95": 180.0, "count": 1}, "all": {"p50": 180.0, "p95": 180.0, "count": 1}}


# --- counters and throughput ----------------------------------------------------------------------
def test_counters_come_from_its_batches_alerts_incidents_and_reviews(simulation, systems):
    Simulation.objects.filter(pk=simulation.pk).update(counters={"generated": 700, "ingested": 700})
    simulation.refresh_from_db()
    IngestBatchFactory(simulation=simulation, accepted=500, processed_at=NOW, processing_ms=12.0)
    IngestBatchFactory(simulation=simulation, accepted=200)  # not processed yet
    IngestBatchFactory(accepted=999, processed_at=NOW)  # another client's batch
    alert = fired(systems[0])
    fired(systems[1])
    IncidentFactory(system=systems[0], source_alert=alert)
    ReviewItemFactory(system=systems[1], source_alert=fired(systems[2], severity=Severity.MEDIUM))
    ReviewItemFactory(system=systems[1])  # from no alert

    report = simulation_report(simulation)

    assert report["counters"] == {
        "generated": 700,
        "ingested": 700,
        "processed": 500,
        "alerts": 3,
        "incidents": 1,
        "reviews": 1,
    }
    assert report["throughput"]["batches"] == 2
    assert report["throughput"]["unprocessed_batches"] == 1
    assert report["throughput"]["batch_processing_ms_p95"] == 12.0


def test_throughput_is_events_per_second_since_the_start(simulation):
    start = simulation.started_at
    IngestBatchFactory(simulation=simulation, accepted=400, received_at=start + timedelta(seconds=2))
    IngestBatchFactory(
        simulation=simulation,
        accepted=600,
        received_at=start + timedelta(seconds=4),
        processed_at=start + timedelta(seconds=5),
    )

    throughput = simulation_report(simulation)["throughput"]

    assert throughput["events_per_second_ingested"] == 250.0  # 1,000 events in 4 s
    assert throughput["events_per_second_processed"] == 120.0  # 600 events in 5 s


# --- percentiles ----------------------------------------------------------------------------------
def test_percentile_uses_the_nearest_rank():
    values = [5.0, 1.0, 4.0, 2.0, 3.0]

    assert percentile(values, 0.5) == 3.0
    assert percentile(values, 0.95) == 5.0
    assert percentile(values, 0.2) == 1.0
    assert percentile([], 0.5) is None


@given(
    values=st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), min_size=1, max_size=200),
    quantile=st.floats(min_value=0.01, max_value=1.0),
)
def test_a_percentile_is_an_observed_value_with_at_least_that_share_at_or_below_it(values, quantile):
    result = percentile(values, quantile)

    assert result in values
    assert sum(1 for v in values if v <= result) >= quantile * len(values)
    assert sum(1 for v in values if v < result) < quantile * len(values)


def test_latency_by_severity_orders_severities_and_always_has_all():
    summary = latency_by_severity([("low", 4.0), ("critical", 1.0), ("low", 2.0)])

    assert list(summary) == ["critical", "low", "all"]
    assert summary["low"] == {"p50": 2.0, "p95": 4.0, "count": 2}
    assert latency_by_severity([]) == {"all": {"p50": None, "p95": None, "count": 0}}


# --- the platform-wide window ---------------------------------------------------------------------
def window_metrics():
    """The last hour (rows are stamped ``created_at`` by the real clock, alerts detected at NOW)."""
    now = timezone.now()
    return oversight_metrics(since=now - timedelta(hours=1), until=now + timedelta(seconds=1))


def test_window_mttd_is_per_severity_over_alerts_that_fired_in_the_window():
    AlertFactory(severity=Severity.CRITICAL, first_event_at=NOW - timedelta(seconds=10), detected_at=NOW)
    AlertFactory(severity=Severity.HIGH, first_event_at=NOW - timedelta(seconds=30), detected_at=NOW)
    AlertFactory(
        severity=Severity.HIGH, first_event_at=NOW - timedelta(hours=3), detected_at=NOW - timedelta(hours=2)
    )  # before the window
    AlertFactory(status=AlertStatus.PENDING, detected_at=None)

    metrics = window_metrics()

    assert metrics["mttd_seconds"]["critical"] == {"p50": 10.0, "p95": 10.0, "count": 1}
    assert metrics["mttd_seconds"]["high"] == {"p50": 30.0, "p95": 30.0, "count": 1}
    assert metrics["alerts"]["fired"] == 2


def test_window_mttd_of_a_replayed_alert_starts_when_its_first_evidence_arrived():
    event = EventRawFactory(occurred_at=NOW - timedelta(hours=2), received_at=NOW - timedelta(seconds=3))
    AlertFactory(
        severity=Severity.CRITICAL,
        first_event_at=event.occurred_at,
        detected_at=NOW,
        evidence_event_ids=[str(event.event_id)],
    )

    assert window_metrics()["mttd_seconds"]["critical"]["p50"] == 3.0


def test_window_counts_alerts_by_status_and_severity():
    AlertFactory(severity=Severity.HIGH)
    AlertFactory(severity=Severity.HIGH, status=AlertStatus.RESOLVED)
    AlertFactory(severity=Severity.LOW, status=AlertStatus.PENDING, detected_at=None)

    alerts = window_metrics()["alerts"]

    assert alerts["by_status"] == {"firing": 1, "resolved": 1, "pending": 1}
    assert alerts["by_severity"] == {"high": 2, "low": 1}


def test_window_counts_events_received_and_processed_and_the_outbox_lag():
    IngestBatchFactory(accepted=300, received_at=NOW - timedelta(minutes=5), processed_at=NOW - timedelta(minutes=5))
    IngestBatchFactory(accepted=200, received_at=NOW - timedelta(minutes=2))
    IngestBatchFactory(accepted=900, received_at=NOW - timedelta(days=2), processed_at=NOW - timedelta(days=2))

    with time_machine.travel(NOW, tick=False):
        metrics = window_metrics()

    assert metrics["events"] == {"received": 500, "batches": 2, "processed": 300}
    assert metrics["outbox"]["unprocessed_batches"] == 1
    assert metrics["outbox"]["oldest_unprocessed_age_seconds"] == 120.0


def test_window_mtta_and_mttr_of_incidents_opened_in_it():
    IncidentFactory(
        severity=Severity.CRITICAL,
        opened_at=NOW - timedelta(minutes=30),
        acknowledged_at=NOW - timedelta(minutes=28),
        resolved_at=NOW - timedelta(minutes=10),
    )
    IncidentFactory(severity=Severity.HIGH, opened_at=NOW - timedelta(minutes=20))
    IncidentFactory(opened_at=NOW - timedelta(days=3), resolved_at=NOW)  # opened before the window

    incidents = window_metrics()["incidents"]

    assert incidents["opened"] == 2
    assert incidents["mtta_seconds"]["critical"] == {"p50": 120.0, "p95": 120.0, "count": 1}
    assert incidents["mttr_seconds"]["all"] == {"p50": 1200.0, "p95": 1200.0, "count": 1}


def test_window_reports_the_latest_finished_simulations_quality():
    assert window_metrics()["latest_simulation"] is None
    SimulationFactory(
        status=SimulationStatus.FINISHED,
        finished_at=NOW - timedelta(hours=2),
        report={"quality": {"precision": 0.5, "recall": 0.5, "f1": 0.5}},
    )
    latest = SimulationFactory(
        status=SimulationStatus.FINISHED,
        finished_at=NOW - timedelta(hours=1),
        report={"quality": {"precision": 0.97, "recall": 1.0, "f1": 0.9848}, "mttd_seconds": {"all": {"p95": 0.8}}},
    )
    SimulationFactory(status=SimulationStatus.RUNNING)

    summary = window_metrics()["latest_simulation"]

    assert summary["id"] == str(latest.pk)
    assert (summary["precision"], summary["recall"], summary["f1"], summary["mttd_p95_seconds"]) == (
        0.97,
        1.0,
        0.9848,
        0.8,
    )


# --- the quality gate -----------------------------------------------------------------------------
GOOD = {
    "quality": {"precision": 0.97, "recall": 0.99, "missed": []},
    "mttd_seconds": {"all": {"p95": 1.2}},
    "detection_latency_seconds": {"all": {"p95": 0.3}},
}


def test_a_report_meeting_every_mark_passes_the_gate():
    assert quality_gate_failures(GOOD) == []


@pytest.mark.parametrize(
    ("change", "failure"),
    [
        ({"quality": {"precision": 0.94, "recall": 0.99}}, "precision 94.00% < 95.00%"),
        ({"quality": {"precision": 0.97, "recall": 0.9, "missed": ["s:1"]}}, "recall 90.00% < 98.00% (missed: s:1)"),
        ({"mttd_seconds": {"all": {"p95": 2.5}}}, "MTTD p95 2.500 s > 2 s"),
        ({"quality": {"precision": None, "recall": 0.99}}, "precision unknown < 95.00%"),
        ({"mttd_seconds": {"all": {"p95": None}}}, "MTTD p95 unknown > 2 s"),
    ],
)
def test_a_report_missing_a_mark_or_lacking_data_fails_the_gate(change, failure):
    assert quality_gate_failures({**GOOD, **change}) == [failure]
