"""Detection metrics computed from data (DESIGN §6): MTTD, MTTA/MTTR, precision and recall.

Every figure is measured from rows — alerts, incidents, batches, scenario labels — with a handful of
set-based queries and the arithmetic in Python; nothing is stored as a constant. Empty inputs give
``None`` (never 0): a precision with no alert, a percentile with no sample is *unknown*.

When the detection clock starts. DESIGN §6 measures MTTD from the onset in event time
(``first_event_at``, a scenario's ``onset_at``). Replayed history (``manage.py generate_events``, a
simulation without a rate) carries event times hours before it reaches Vigil, and measuring from them
would report the age of the data, not how long detection took. So the clock starts when the onset has
both happened and *arrived*: ``max(onset in event time, arrival of the onset event)``. For live
telemetry the onset event arrives moments after it occurred and this is DESIGN's definition; for a
replay it measures the pipeline.

MTTD from the onset includes the time a pattern takes to develop (a drift needs several breaches, a
compound alert a second signal, seconds or minutes apart). Simulation reports therefore also carry
the *detection latency*: from the arrival of the event that completed the rule's condition to the
alert — what the pipeline itself adds, and what the quality gate bounds.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from django.db.models import Count, Max, Min, OuterRef, Q, Subquery, Sum
from django.utils import timezone

from config import registry
from governance.choices import SEVERITY_RANK
from hitl.models import ReviewItem
from incidents.models import Incident
from oversight.models import Alert, EventRaw, IngestBatch, ScenarioLabel, Simulation, SimulationStatus
from oversight.rules import ABSENCE_RULE, COMPOUND_RULE

ALL = "all"
LIST_LIMIT = 20  # missed scenarios / false alerts named in a report
EVIDENCE_LOOKUP_CHUNK = 5000


# --- small arithmetic -----------------------------------------------------------------------------
def percentile(values: Sequence[float], quantile: float) -> float | None:
    """Nearest-rank percentile (``quantile`` in 0..1) of ``values``; None when there are none.

    Nearest rank returns an observed value (no interpolation), which is what an SLO check wants: "95 %
    of detections took at most this long"."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(quantile * len(ordered)))
    return ordered[rank - 1]


def latency_summary(seconds: Sequence[float]) -> dict[str, Any]:
    """``{p50, p95, count}`` of durations in seconds (rounded to ms)."""
    p50, p95 = percentile(seconds, 0.50), percentile(seconds, 0.95)
    return {
        "p50": None if p50 is None else round(p50, 3),
        "p95": None if p95 is None else round(p95, 3),
        "count": len(seconds),
    }


def latency_by_severity(samples: Iterable[tuple[str, float]]) -> dict[str, dict[str, Any]]:
    """``{<severity>: {p50, p95, count}, "all": {...}}`` from ``(severity, seconds)`` pairs; severities
    without a sample are left out, ``all`` is always there."""
    buckets: dict[str, list[float]] = defaultdict(list)
    everything: list[float] = []
    for severity, seconds in samples:
        buckets[severity].append(seconds)
        everything.append(seconds)
    ordered = sorted(buckets, key=lambda s: -SEVERITY_RANK.get(s, -1))
    return {**{severity: latency_summary(buckets[severity]) for severity in ordered}, ALL: latency_summary(everything)}


def ratio(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 4) if denominator else None


def f1_score(precision: float | None, recall: float | None) -> float | None:
    if precision is None or recall is None:
        return None
    if precision + recall == 0:
        return 0.0
    return round(2 * precision * recall / (precision + recall), 4)


def _seconds(later: datetime, earlier: datetime) -> float:
    return (later - earlier).total_seconds()


# --- simulation report ----------------------------------------------------------------------------
def simulation_report(simulation: Simulation) -> dict[str, Any]:
    """The measured outcome of a simulation, from data: counters, MTTD/MTTR per severity, precision /
    recall / F1 overall and per category and severity, throughput.

    Matching: a fired alert (``detected_at`` set) on a system of the simulation is *true* when a
    scenario of the simulation on the same system expects that alert's rule; a scenario with a
    non-empty ``expected_rule`` is *detected* when such an alert exists. Near misses (empty
    ``expected_rule``) are not scenarios to detect, so any alert on their system is a false one.
    MTTD of a detected scenario = its earliest matching alert's ``detected_at`` − the onset (see the
    module docstring for when the clock starts), bucketed by the scenario's severity; its detection
    latency = the same ``detected_at`` − when the scenario became detectable.

    Read-only; about eight queries whatever the size of the run.
    """
    system_ids = simulation.systems.values("pk")
    batches = _batch_figures(simulation)
    alerts = list(
        Alert.objects.filter(system_id__in=system_ids, detected_at__isnull=False)
        .order_by("detected_at")
        .values("id", "rule__name", "system_id", "severity", "category", "detected_at")
    )
    scenarios = list(
        ScenarioLabel.objects.filter(simulation=simulation)
        .annotate(onset_arrival=_onset_arrival())
        .values("scenario_id", "system_id", "category", "severity", "expected_rule", "onset_at", "onset_arrival")
    )
    fired_ids = [alert["id"] for alert in alerts]
    incidents = list(
        Incident.objects.filter(source_alert__system_id__in=system_ids, source_alert__detected_at__isnull=False).values(
            "severity", "opened_at", "resolved_at"
        )
    )
    reviews = ReviewItem.objects.filter(
        source_alert__system_id__in=system_ids, source_alert__detected_at__isnull=False
    ).count()
    quality, detections = match_alerts_to_scenarios(alerts=alerts, scenarios=scenarios)
    mttd = latency_by_severity(
        (scenario["severity"], _seconds(detected_at, _clock_start(scenario, detected_at)))
        for scenario, detected_at in detections
    )
    ready = _detectable_at(simulation, [scenario for scenario, _ in detections])
    latency = latency_by_severity(
        (
            scenario["severity"],
            max(0.0, _seconds(detected_at, ready.get(scenario["scenario_id"]) or _clock_start(scenario, detected_at))),
        )
        for scenario, detected_at in detections
    )
    resolved = [(i["severity"], _seconds(i["resolved_at"], i["opened_at"])) for i in incidents if i["resolved_at"]]
    counters = {
        "generated": int(simulation.counters.get("generated", 0)),
        "ingested": batches["ingested"],
        "processed": batches["processed"],
        "alerts": len(fired_ids),
        "incidents": len(incidents),
        "reviews": reviews,
    }
    return {
        "counters": counters,
        "mttd_seconds": mttd,
        "detection_latency_seconds": latency,
        "mttr_seconds": latency_by_severity(resolved) if resolved else {},
        "quality": quality,
        "throughput": _throughput(simulation, batches),
    }


def _onset_arrival() -> Subquery:
    """Arrival of a scenario's onset event: the first event of its system at or after the onset (in
    event time). Correlated subquery on the ``(system, occurred_at)`` index: one query for all labels."""
    first = EventRaw.objects.filter(system_id=OuterRef("system_id"), occurred_at__gte=OuterRef("onset_at"))
    return Subquery(first.order_by("occurred_at").values("received_at")[:1])


def _detectable_at(simulation: Simulation, scenarios: Sequence[Mapping[str, Any]]) -> dict[str, datetime]:
    """When each scenario became detectable: the arrival of the event that completed its rule's
    condition (the single breach; the ``min_breaches``-th drift event; the event bringing the
    ``compound_min_signals``-th distinct signal). One query over the simulation's scenario events.
    Heartbeat losses are left out: their evidence is a silence (the MTTD clock covers them)."""
    rules = (simulation.report or {}).get("plan", {}).get("rule_settings") or {}
    min_breaches = int(rules.get("min_breaches") or registry.get("oversight.rate_rule")["min_breaches"])
    min_signals = int(rules.get("compound_min_signals") or registry.get("oversight.compound_min_signals"))
    wanted = {s["scenario_id"]: s["expected_rule"] for s in scenarios if s["expected_rule"] != ABSENCE_RULE}
    if not wanted:
        return {}
    events: dict[str, list[tuple]] = defaultdict(list)
    rows = EventRaw.objects.filter(batch__simulation=simulation, scenario_id__isnull=False).values_list(
        "scenario_id", "occurred_at", "received_at", "signal"
    )
    for scenario_id, occurred_at, received_at, signal in rows:
        if scenario_id in wanted:
            events[scenario_id].append((occurred_at, max(occurred_at, received_at), signal))
    ready = {}
    for scenario_id, rule_name in wanted.items():
        ordered = sorted(events.get(scenario_id, []))
        signals: set[str] = set()
        for count, (_, arrived, signal) in enumerate(ordered, start=1):
            signals.add(signal)
            if (
                (rule_name == COMPOUND_RULE and len(signals) >= min_signals)
                or (rule_name.startswith("rate:") and count >= min_breaches)
                or rule_name.startswith("threshold:")
            ):
                ready[scenario_id] = max(arrived for _, arrived, _ in ordered[:count])
                break
    return ready


def _clock_start(scenario: Mapping[str, Any], detected_at: datetime) -> datetime:
    arrival = scenario.get("onset_arrival")
    # A wall-clock absence check can fire before any later event arrives: then the onset is the start.
    if arrival is None or arrival > detected_at:
        return scenario["onset_at"]
    return max(scenario["onset_at"], arrival)


def match_alerts_to_scenarios(
    *, alerts: Sequence[Mapping[str, Any]], scenarios: Sequence[Mapping[str, Any]]
) -> tuple[dict[str, Any], list[tuple[Mapping[str, Any], datetime]]]:
    """Precision / recall of fired ``alerts`` against labelled ``scenarios`` (dicts with the columns
    :func:`simulation_report` reads). Returns the quality block and, per detected scenario, the
    ``detected_at`` of its earliest matching alert (alerts must come ordered by ``detected_at``)."""
    expected = {(s["system_id"], s["expected_rule"]) for s in scenarios if s["expected_rule"]}
    first_detection: dict[tuple, datetime] = {}
    alert_rows = []
    for alert in alerts:
        key = (alert["system_id"], alert["rule__name"])
        is_true = key in expected
        if is_true:
            first_detection.setdefault(key, alert["detected_at"])
        alert_rows.append((alert, is_true))
    labelled = [s for s in scenarios if s["expected_rule"]]
    scenario_rows = [(s, (s["system_id"], s["expected_rule"]) in first_detection) for s in labelled]

    def block(alert_subset, scenario_subset) -> dict[str, Any]:
        true_alerts = sum(1 for _, is_true in alert_subset if is_true)
        detected = sum(1 for _, found in scenario_subset if found)
        precision, recall = ratio(true_alerts, len(alert_subset)), ratio(detected, len(scenario_subset))
        return {
            "precision": precision,
            "recall": recall,
            "f1": f1_score(precision, recall),
            "alerts": len(alert_subset),
            "true_alerts": true_alerts,
            "scenarios": len(scenario_subset),
            "detected": detected,
        }

    def grouped(alert_key: str, scenario_key: str) -> dict[str, dict[str, Any]]:
        alert_groups: dict[str, list] = defaultdict(list)
        scenario_groups: dict[str, list] = defaultdict(list)
        for row in alert_rows:
            alert_groups[row[0][alert_key] or "uncategorized"].append(row)
        for row in scenario_rows:
            scenario_groups[row[0][scenario_key]].append(row)
        return {
            key: block(alert_groups.get(key, []), scenario_groups.get(key, []))
            for key in sorted({*alert_groups, *scenario_groups})
        }

    quality = {
        **block(alert_rows, scenario_rows),
        "by_category": grouped("category", "category"),
        "by_severity": dict(
            sorted(grouped("severity", "severity").items(), key=lambda item: -SEVERITY_RANK.get(item[0], -1))
        ),
        "missed": [s["scenario_id"] for s, found in scenario_rows if not found][:LIST_LIMIT],
        "false_alerts": [str(alert["id"]) for alert, is_true in alert_rows if not is_true][:LIST_LIMIT],
    }
    detections = [(s, first_detection[(s["system_id"], s["expected_rule"])]) for s, found in scenario_rows if found]
    return quality, detections


def _batch_figures(simulation: Simulation) -> dict[str, Any]:
    """Ingest and processing totals of the simulation's batches (batch rows, not the events table)."""
    processed = Q(processed_at__isnull=False)
    figures = IngestBatch.objects.filter(simulation=simulation).aggregate(
        batches=Count("id"),
        ingested=Sum("accepted"),
        processed=Sum("accepted", filter=processed),
        unprocessed_batches=Count("id", filter=~processed),
        first_received=Min("received_at"),
        last_received=Max("received_at"),
        last_processed=Max("processed_at"),
    )
    durations = list(
        IngestBatch.objects.filter(simulation=simulation, processing_ms__isnull=False).values_list(
            "processing_ms", flat=True
        )
    )
    figures["ingested"] = figures["ingested"] or 0
    figures["processed"] = figures["processed"] or 0
    figures["processing_ms"] = durations
    return figures


def _throughput(simulation: Simulation, batches: Mapping[str, Any]) -> dict[str, Any]:
    started = simulation.started_at
    end = simulation.finished_at or timezone.now()

    def per_second(count: int, until: datetime | None) -> float | None:
        if not started or not until or until <= started or not count:
            return None
        return round(count / _seconds(until, started), 1)

    p50, p95 = percentile(batches["processing_ms"], 0.5), percentile(batches["processing_ms"], 0.95)
    return {
        "events_per_second_ingested": per_second(batches["ingested"], batches["last_received"]),
        "events_per_second_processed": per_second(batches["processed"], batches["last_processed"]),
        "duration_seconds": round(_seconds(end, started), 3) if started else None,
        "batches": batches["batches"],
        "unprocessed_batches": batches["unprocessed_batches"],
        "batch_processing_ms_p50": None if p50 is None else round(p50, 1),
        "batch_processing_ms_p95": None if p95 is None else round(p95, 1),
    }


def simulation_progress(simulation: Simulation) -> dict[str, int]:
    """The cheap live counters a progress bar needs (two aggregate queries)."""
    processed = IngestBatch.objects.filter(simulation=simulation, processed_at__isnull=False).aggregate(
        events=Sum("accepted")
    )["events"]
    alerts = Alert.objects.filter(system__in=simulation.systems.values("pk"), detected_at__isnull=False).count()
    return {
        "generated": int(simulation.counters.get("generated", 0)),
        "ingested": int(simulation.counters.get("ingested", 0)),
        "processed": processed or 0,
        "alerts": alerts,
    }


def simulation_timeline(simulation: Simulation, *, max_points: int = 300) -> dict[str, Any]:
    """Events received and alerts detected per time bucket since the simulation started (the admin
    chart). Buckets are 1 s, widened so that there are at most ``max_points`` of them. Batch rows give
    the event counts (not the events table), so this stays cheap for a million events."""
    start = simulation.started_at or simulation.created_at
    received = IngestBatch.objects.filter(simulation=simulation).values_list("received_at", "accepted")
    detected = Alert.objects.filter(system__in=simulation.systems.values("pk"), detected_at__isnull=False).values_list(
        "detected_at", flat=True
    )
    received, detected = list(received), list(detected)
    last = max([start, *(at for at, _ in received), *detected])
    span = max(1, math.ceil(_seconds(last, start)) + 1)
    width = max(1, math.ceil(span / max_points))
    size = math.ceil(span / width)
    events = [0] * size
    alerts = [0] * size
    for at, accepted in received:
        events[min(size - 1, max(0, int(_seconds(at, start) // width)))] += accepted
    for at in detected:
        alerts[min(size - 1, max(0, int(_seconds(at, start) // width)))] += 1
    return {"start": start.isoformat(), "bucket_seconds": width, "events": events, "alerts": alerts}


# --- platform-wide metrics ------------------------------------------------------------------------
def alert_detection_seconds(alerts: Sequence[Mapping[str, Any]]) -> list[tuple[str, float]]:
    """``(severity, MTTD seconds)`` per fired alert (dicts with ``severity``, ``detected_at``,
    ``first_event_at``, ``evidence_event_ids``): from ``max(first_event_at, arrival of the first
    evidence event)`` to ``detected_at``. One indexed lookup per 5,000 alerts for the arrivals."""
    first_ids = {alert["evidence_event_ids"][0] for alert in alerts if alert.get("evidence_event_ids")}
    arrivals: dict[str, datetime] = {}
    ids = sorted(first_ids)
    for offset in range(0, len(ids), EVIDENCE_LOOKUP_CHUNK):
        chunk = ids[offset : offset + EVIDENCE_LOOKUP_CHUNK]
        arrivals.update(
            (str(event_id), received_at)
            for event_id, received_at in EventRaw.objects.filter(event_id__in=chunk).values_list(
                "event_id", "received_at"
            )
        )
    samples = []
    for alert in alerts:
        start = alert["first_event_at"]
        evidence = alert.get("evidence_event_ids") or []
        arrival = arrivals.get(str(evidence[0])) if evidence else None
        if arrival is not None and start < arrival <= alert["detected_at"]:
            start = arrival
        samples.append((alert["severity"], _seconds(alert["detected_at"], start)))
    return samples


def fired_alert_rows(*, since: datetime, until: datetime, severity: str | None = None) -> list[dict[str, Any]]:
    """Alerts that started firing in ``[since, until)`` with the columns MTTD needs (index on
    ``detected_at``)."""
    qs = Alert.objects.filter(detected_at__gte=since, detected_at__lt=until)
    if severity:
        qs = qs.filter(severity=severity)
    return list(qs.values("severity", "detected_at", "first_event_at", "evidence_event_ids"))


def outbox_lag(*, now: datetime | None = None) -> dict[str, Any]:
    """Unprocessed batches and the age of the oldest (the partial index ``event_batches_unprocessed``)."""
    now = now or timezone.now()
    figures = IngestBatch.objects.filter(processed_at__isnull=True).aggregate(
        count=Count("id"), oldest=Min("received_at")
    )
    oldest = figures["oldest"]
    return {
        "unprocessed_batches": figures["count"],
        "oldest_unprocessed_age_seconds": round(_seconds(now, oldest), 3) if oldest else None,
    }


def latest_simulation_quality() -> dict[str, Any] | None:
    """The quality summary of the most recently finished simulation, or None."""
    simulation = (
        Simulation.objects.filter(status=SimulationStatus.FINISHED, finished_at__isnull=False)
        .order_by("-finished_at")
        .only("id", "seed", "total", "rate_per_s", "finished_at", "report")
        .first()
    )
    if simulation is None:
        return None
    quality = simulation.report.get("quality", {})
    mttd_all = simulation.report.get("mttd_seconds", {}).get(ALL, {})
    latency_all = simulation.report.get("detection_latency_seconds", {}).get(ALL, {})
    return {
        "id": str(simulation.id),
        "finished_at": simulation.finished_at.isoformat(),
        "seed": simulation.seed,
        "total": simulation.total,
        "rate_per_s": simulation.rate_per_s,
        "precision": quality.get("precision"),
        "recall": quality.get("recall"),
        "f1": quality.get("f1"),
        "mttd_p95_seconds": mttd_all.get("p95"),
        "detection_latency_p95_seconds": latency_all.get("p95"),
    }


def oversight_metrics(*, since: datetime, until: datetime) -> dict[str, Any]:
    """Detection health over ``[since, until)``: MTTD per severity of alerts that started firing,
    alert counts by status and severity (alerts created in the window), events received and
    processed (from batch rows), the outbox lag now, MTTA/MTTR of incidents opened in the window,
    and the latest finished simulation's quality. Read-only; about ten queries."""
    alerts = fired_alert_rows(since=since, until=until)
    created = Alert.objects.filter(created_at__gte=since, created_at__lt=until)
    by_status = dict(created.values_list("status").annotate(n=Count("id")).order_by())
    by_severity = dict(created.values_list("severity").annotate(n=Count("id")).order_by())
    received = IngestBatch.objects.filter(received_at__gte=since, received_at__lt=until).aggregate(
        events=Sum("accepted"), batches=Count("id")
    )
    processed = IngestBatch.objects.filter(processed_at__gte=since, processed_at__lt=until).aggregate(
        events=Sum("accepted")
    )
    incidents = list(
        Incident.objects.filter(opened_at__gte=since, opened_at__lt=until).values(
            "severity", "opened_at", "acknowledged_at", "resolved_at"
        )
    )
    acknowledged = [
        (i["severity"], _seconds(i["acknowledged_at"], i["opened_at"])) for i in incidents if i["acknowledged_at"]
    ]
    resolved = [(i["severity"], _seconds(i["resolved_at"], i["opened_at"])) for i in incidents if i["resolved_at"]]
    return {
        "since": since.isoformat(),
        "until": until.isoformat(),
        "events": {
            "received": received["events"] or 0,
            "batches": received["batches"],
            "processed": processed["events"] or 0,
        },
        "outbox": outbox_lag(),
        "alerts": {
            "fired": len(alerts),
            "by_status": by_status,
            "by_severity": dict(sorted(by_severity.items(), key=lambda item: -SEVERITY_RANK.get(item[0], -1))),
        },
        "mttd_seconds": latency_by_severity(alert_detection_seconds(alerts)),
        "incidents": {
            "opened": len(incidents),
            "mtta_seconds": latency_by_severity(acknowledged),
            "mttr_seconds": latency_by_severity(resolved),
        },
        "latest_simulation": latest_simulation_quality(),
    }


# --- the quality gate -----------------------------------------------------------------------------
QUALITY_GATE = {"min_precision": 0.95, "min_recall": 0.98, "max_mttd_p95_seconds": 2.0}


def quality_gate_failures(
    report: Mapping[str, Any],
    *,
    min_precision: float = QUALITY_GATE["min_precision"],
    min_recall: float = QUALITY_GATE["min_recall"],
    max_mttd_p95_seconds: float | None = QUALITY_GATE["max_mttd_p95_seconds"],
) -> list[str]:
    """What a simulation report fails of the detection quality gate (empty: it passes).

    Precision and recall against the ground truth, and the p95 MTTD over detected scenarios (DESIGN
    §6: from the scenario's first anomalous event; the generator plants multi-event scenarios as short
    bursts, so this measures the pipeline). An unknown figure (no alert, no scenario, no detection)
    fails: the gate never passes on missing data. ``max_mttd_p95_seconds=None`` skips the MTTD check."""
    quality = report.get("quality") or {}
    failures = []
    precision, recall = quality.get("precision"), quality.get("recall")
    if precision is None or precision < min_precision:
        failures.append(f"precision {_fmt(precision)} < {min_precision:.2%}")
    if recall is None or recall < min_recall:
        missed = ", ".join(quality.get("missed", [])[:5])
        failures.append(f"recall {_fmt(recall)} < {min_recall:.2%}" + (f" (missed: {missed})" if missed else ""))
    if max_mttd_p95_seconds is not None:
        p95 = (report.get("mttd_seconds") or {}).get(ALL, {}).get("p95")
        if p95 is None or p95 > max_mttd_p95_seconds:
            shown = "unknown" if p95 is None else f"{p95:.3f} s"
            failures.append(f"MTTD p95 {shown} > {max_mttd_p95_seconds:g} s")
    return failures


def _fmt(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.2%}"
