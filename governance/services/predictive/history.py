"""Synthetic history with known onsets: what the predictors are bootstrapped on and backtested against.

Deterministic from a seed (numpy's PCG64): the same seed gives the same systems, values, times and onsets.
Rows are real rows written through the same loaders production data takes (``events_bulk_load`` — COPY on
PostgreSQL —, evaluation runs, control assessments, ``alerts_record_history``, ``incidents_record_history``),
so the features of the backtest are computed by the production queries from the production tables.

Per system, every 30 minutes (± jitter): ``psi``, ``null_rate`` (data quality), ``error_rate``,
``latency_p95_ms`` (model performance); an ``accuracy`` evaluation run every 6 hours; three control
assessments. Healthy noise stays below every warning level (levels read from the config registry), so
the only breaches are the planted onsets:

* drift — PSI creeps up over 12–40 h (an accelerating ramp), sometimes with the null rate and a doubled
  event volume, first crosses its warning level at the onset, holds 3–10 h, recovers;
* compliance — the evaluation metric slides toward its threshold over 24–60 h and the first failing run
  is the onset; overdue control assessments are more likely on those systems;
* incident — error rate (and often latency) rises over 6–24 h, low-severity alerts fire on the way,
  the incident opens at the onset; fragile systems have more incidents and older ones.

Near misses look alike — the same ramps that peak short of the warning level, or an error-rate climb
with alerts that never becomes an incident — and random spikes sit in the noise, so a model has to
earn its AUC from the shape and the level of the trend, not from the mere presence of a ramp.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
from django.db import transaction
from django.utils import timezone

from config import registry
from governance.choices import AssessmentStatus, EntityType, RiskClass
from governance.models import AISystem, ControlAssessment, EvaluationRun, Team
from governance.services.predictive.features import DRIFT_SIGNALS

CADENCE_MINUTES = 30
EVAL_EVERY_HOURS = 6
EVAL_THRESHOLD = 0.85
WARMUP_DAYS = 3  # no onset in the first days: every feature window has a baseline before any scenario
HISTORY_TEAM_SLUG = "predictive-synthetic-history"
HISTORY_ACTOR = "system:predictive-history"
CONTROLS = ("human-oversight", "data-governance", "technical-documentation")


@dataclass
class SyntheticHistory:
    seed: int
    start: datetime
    end: datetime
    systems: list[AISystem]
    onsets: dict[str, dict[uuid.UUID, list[datetime]]] = field(default_factory=dict)  # planned, for reports
    counts: dict[str, int] = field(default_factory=dict)


class _Rollback(Exception):
    pass


@contextmanager
def synthetic_history(*, seed: int, systems: int, days: int, end: datetime) -> Iterator[SyntheticHistory]:
    """Write a synthetic history (see the module docstring) in a transaction that is ROLLED BACK when the
    block ends, so it never mixes with the installation's data (its own team, its own systems)."""
    try:
        with transaction.atomic():
            yield history_generate(seed=seed, system_count=systems, days=days, end=end)
            raise _Rollback
    except _Rollback:
        pass


def history_generate(
    *, seed: int, system_count: int, days: int, end: datetime, systems: list[AISystem] | None = None,
    cutoff: datetime | None = None,
) -> SyntheticHistory:  # fmt: skip
    """Generate and store the history (committed with the caller's transaction; prefer
    :func:`synthetic_history`, which rolls it back). With ``systems`` the history is written for those
    (existing) systems instead of new synthetic ones; with ``cutoff`` nothing after it is written, so
    scenarios planned past it are still unfolding at ``cutoff`` (a demo estate with risks in progress)."""
    from oversight.services.ingest import events_bulk_load

    rng = np.random.default_rng(seed)
    start = end - timedelta(days=days)
    if systems is None:
        team, _ = Team.objects.get_or_create(slug=HISTORY_TEAM_SLUG,
                                             defaults={"name": "Predictive synthetic history"})  # fmt: skip
        systems = AISystem.objects.bulk_create(
            [
                AISystem(
                    name=f"synthetic-{seed}-{i:04d}",
                    entity_type=EntityType.MODEL,
                    team=team,
                    risk_class=RiskClass.LIMITED,
                    description="Synthetic history for predictive governance.",
                )
                for i in range(system_count)
            ]  # fmt: skip
        )
    thresholds = {
        **registry.get("oversight.thresholds.data_quality"),
        **registry.get("oversight.thresholds.model_perf"),
    }
    writer = _Writer(rng=rng, start=start, end=end, thresholds=thresholds)
    history = SyntheticHistory(seed=seed, start=start, end=end, systems=systems)
    for system in systems:
        writer.system(system)
    if cutoff is not None:
        writer.cut(cutoff)
    history.onsets = writer.onsets
    history.counts = {
        "events": events_bulk_load(events=writer.events, now=min(end, cutoff or end)),
        "evaluation_runs": len(EvaluationRun.objects.bulk_create(writer.runs, batch_size=2000)),
        "assessments": len(ControlAssessment.objects.bulk_create(writer.assessments, batch_size=2000)),
    }
    from incidents.services.seed import incidents_record_history
    from oversight.services.alerts import alerts_record_history

    history.counts["alerts"] = alerts_record_history(alerts=writer.alerts)
    history.counts["incidents"] = incidents_record_history(incidents=writer.incidents)
    return history


class _Writer:
    def __init__(self, *, rng: np.random.Generator, start: datetime, end: datetime, thresholds: dict):
        self.rng, self.start, self.end, self.thresholds = rng, start, end, thresholds
        self.hours = (end - start).total_seconds() / 3600
        self.events: list = []
        self.runs: list[EvaluationRun] = []
        self.assessments: list[ControlAssessment] = []
        self.alerts: list[dict] = []
        self.incidents: list[dict] = []
        self.onsets: dict[str, dict] = {"drift_risk": {}, "compliance_risk": {}, "incident_probability": {}}

    def cut(self, cutoff: datetime) -> None:
        """Drop everything after ``cutoff`` (and the onsets that have not happened by then)."""
        self.events = [e for e in self.events if e.occurred_at <= cutoff]
        self.runs = [r for r in self.runs if r.ran_at <= cutoff]
        self.alerts = [a for a in self.alerts if a["detected_at"] <= cutoff]
        for alert in self.alerts:
            alert["resolved_at"] = min(alert["resolved_at"], cutoff)
        self.incidents = [i for i in self.incidents if i["opened_at"] <= cutoff and i["resolved_at"] <= cutoff]
        self.onsets = {t: {s: [at for at in times if at <= cutoff] for s, times in by_system.items()}
                       for t, by_system in self.onsets.items()}  # fmt: skip

    def at(self, hour: float) -> datetime:
        return self.start + timedelta(hours=float(hour))

    def onset_hour(self) -> float:
        return float(self.rng.uniform(WARMUP_DAYS * 24, self.hours - 6))

    def grid(self, extra: tuple[float, float] | None = None) -> np.ndarray:
        step = CADENCE_MINUTES / 60
        base = np.arange(self.rng.uniform(0, step), self.hours, step)
        hours = base + self.rng.uniform(-step / 4, step / 4, base.size)
        if extra is not None:  # a volume shift: a second reading per slot inside the interval
            more = base[(base >= extra[0]) & (base < extra[1])] + step / 2
            hours = np.concatenate([hours, more])
        return np.sort(np.clip(hours, 0.0, self.hours - 1e-3))

    # --- one system ---------------------------------------------------------------------------------
    def system(self, system: AISystem) -> None:
        rng = self.rng
        fragile = rng.random() < 0.3
        drift = self._drift_plan()
        self._telemetry(system, "psi", "data_quality", drift, base=rng.uniform(0.15, 0.45), share=1.0)
        null_share = drift["null_share"]
        self._telemetry(system, "null_rate", "data_quality", drift, base=rng.uniform(0.1, 0.35), share=null_share)
        if drift["onset"] is not None:
            self.onsets["drift_risk"][system.pk] = [self.at(drift["onset"])]
        incident = self._incident_plan(fragile)
        crossings = []
        crossings.append(self._telemetry(system, "error_rate", "model_perf", incident, base=rng.uniform(0.1, 0.4),
                                         share=1.0))  # fmt: skip
        crossings.append(self._telemetry(system, "latency_p95_ms", "model_perf", incident,
                                         base=rng.uniform(0.25, 0.6), share=incident["latency_share"]))  # fmt: skip
        for signal, hour in crossings:
            if hour is not None:
                self.alerts.append({
                    "rule": "rate:model_perf", "system_id": system.pk, "severity": "low", "category": "model_perf",
                    "signal": signal, "first_event_at": self.at(hour), "detected_at": self.at(hour + 0.1),
                    "resolved_at": self.at(hour + 2), "count": 3,
                })  # fmt: skip
        if incident["onset"] is not None:
            self.onsets["incident_probability"][system.pk] = [self.at(incident["onset"])]
            self._incident(system, incident["onset"], "Error rate climbing to an outage")
        if rng.random() < (0.7 if fragile else 0.1):
            self._incident(system, float(rng.uniform(1, WARMUP_DAYS * 24 - 12)), "Earlier outage")
        self._evaluations(system)

    def _incident(self, system: AISystem, hour: float, title: str) -> None:
        self.incidents.append({
            "system": system, "title": f"{title} on {system.name}", "severity": "high",
            "opened_at": self.at(hour), "resolved_at": self.at(hour + float(self.rng.uniform(2, 12))),
        })  # fmt: skip

    def _drift_plan(self) -> dict:
        rng = self.rng
        plan = {"onset": None, "near": None, "null_share": 0.0, "volume": None}
        if rng.random() < 0.45:
            onset, lead = self.onset_hour(), float(rng.uniform(12, 40))
            hold = float(rng.uniform(3, 10))
            plan.update(onset=onset, ramp=(onset - lead, onset), hold=hold, shape=float(rng.uniform(1.0, 2.2)),
                        peak=float(rng.uniform(1.1, 2.0)))  # fmt: skip
            plan["null_share"] = float(rng.uniform(0.5, 0.85)) if rng.random() < 0.5 else 0.0
            if rng.random() < 0.5:
                plan["volume"] = (onset - lead, onset + hold)
        if rng.random() < 0.35:
            peak_at, lead = self.onset_hour(), float(rng.uniform(8, 36))
            plan["near"] = {"ramp": (peak_at - lead, peak_at), "peak": float(rng.uniform(0.5, 0.9)),
                            "shape": float(rng.uniform(1.0, 2.2)), "decay": float(rng.uniform(4, 12))}  # fmt: skip
            if plan["volume"] is None and rng.random() < 0.3:
                plan["volume"] = (peak_at - lead, peak_at)
            if plan["null_share"] == 0.0 and rng.random() < 0.5:
                plan["null_share"] = float(rng.uniform(0.5, 0.85))
        return plan

    def _incident_plan(self, fragile: bool) -> dict:
        rng = self.rng
        plan = {"onset": None, "near": None, "latency_share": 0.0, "volume": None}
        if rng.random() < (0.6 if fragile else 0.25):
            onset, lead = self.onset_hour(), float(rng.uniform(6, 24))
            plan.update(onset=onset, ramp=(onset - lead, onset), hold=float(rng.uniform(2, 6)),
                        shape=float(rng.uniform(1.0, 2.0)), peak=float(rng.uniform(0.8, 1.5)))  # fmt: skip
            plan["latency_share"] = float(rng.uniform(0.8, 1.3)) if rng.random() < 0.6 else 0.0
        if rng.random() < 0.35:
            peak_at, lead = self.onset_hour(), float(rng.uniform(6, 24))
            plan["near"] = {"ramp": (peak_at - lead, peak_at), "peak": float(rng.uniform(0.5, 1.1)),
                            "shape": float(rng.uniform(1.0, 2.0)), "decay": float(rng.uniform(3, 10))}  # fmt: skip
            if plan["latency_share"] == 0.0 and rng.random() < 0.5:
                plan["latency_share"] = float(rng.uniform(0.6, 1.1))
        return plan

    def _telemetry(self, system, signal: str, category: str, plan: dict, *, base: float, share: float):
        """One signal's readings: healthy noise around ``base`` (× warning level) plus the plan's ramps
        scaled by ``share`` (1: the breaching signal itself). Returns (signal, hour of the first reading past
        warning) for alert history, or (signal, None)."""
        rng, spec = self.rng, self.thresholds[signal]
        warning = float(spec["warning"])
        hours = self.grid(plan.get("volume"))
        level = base + rng.normal(0, 0.06 + 0.04 * base, hours.size)
        spikes = rng.random(hours.size) < 0.01
        level[spikes] += rng.uniform(0.3, 0.6, int(spikes.sum()))
        level = np.clip(level, 0.01, 0.88)
        breach_from = None
        if plan.get("onset") is not None and share > 0:
            ramp_start, onset = plan["ramp"]
            peak = plan["peak"] if share == 1.0 else share
            f = np.clip((hours - ramp_start) / (onset - ramp_start), 0, 1) ** plan["shape"]
            top = min(peak, 0.97) if signal in DRIFT_SIGNALS else peak
            ramp = np.where((hours >= ramp_start) & (hours < onset), base + (top - base) * f, 0.0)
            level = np.maximum(level, ramp + rng.normal(0, 0.02, hours.size) * (ramp > 0))
            if share == 1.0 and plan.get("hold"):
                if signal in DRIFT_SIGNALS:
                    level = np.where(hours < onset, np.minimum(level, 0.97), level)
                held = (hours >= onset) & (hours < onset + plan["hold"])
                level[held] = peak * rng.uniform(0.95, 1.1, int(held.sum()))
                level[held] = np.maximum(level[held], 1.03)
                breach_from = onset
        near = plan.get("near")
        if near is not None and share > 0:
            ramp_start, peak_at = near["ramp"]
            peak = near["peak"] * (1.0 if share == 1.0 else share)
            rising = np.clip((hours - ramp_start) / (peak_at - ramp_start), 0, 1) ** near["shape"]
            falling = np.clip(1 - (hours - peak_at) / near["decay"], 0, 1)
            shape = np.where(hours < peak_at, rising, falling) * (
                (hours >= ramp_start) & (hours < peak_at + near["decay"])
            )
            level = np.maximum(level, base + (peak - base) * shape)
            if signal in DRIFT_SIGNALS:
                level = np.where(shape > 0, np.minimum(level, 0.97), level)
        if signal in DRIFT_SIGNALS and breach_from is None:
            level = np.minimum(level, 0.97)  # only a planted onset breaches a drift signal
        values = level * warning if spec["direction"] != "below" else warning / np.maximum(level, 1e-3)
        crossing = None
        past = np.nonzero(level > 1.0)[0]
        if past.size and signal not in DRIFT_SIGNALS:
            crossing = float(hours[past[0]])
        critical = float(spec["critical"])
        # One draw of 16 bytes per event in a single call: the same stream as a call per event.
        ids = self.rng.bytes(16 * hours.size)
        for i, (hour, value, lvl) in enumerate(zip(hours.tolist(), values.tolist(), level.tolist(), strict=True)):
            severity = "info" if lvl <= 1.0 else ("high" if value >= critical else "medium")
            event_id = ids[16 * i : 16 * i + 16]
            self.events.append(_event(system.pk, category, severity, signal, value, self.at(hour), event_id))
        return signal, crossing

    def _evaluations(self, system: AISystem) -> None:
        rng = self.rng
        base = float(rng.uniform(0.9, 0.95))
        times = np.arange(rng.uniform(0, EVAL_EVERY_HOURS), self.hours, EVAL_EVERY_HOURS)
        values = np.clip(base + rng.normal(0, 0.004, times.size), EVAL_THRESHOLD + 0.01, 0.99)
        overdue_risk = 0.2
        if rng.random() < 0.4:
            onset_index = int(np.searchsorted(times, self.onset_hour()))
            onset_index = min(onset_index, times.size - 1)
            onset, lead = times[onset_index], float(rng.uniform(24, 60))
            fail_for = float(rng.uniform(6, 24))
            slide = np.clip((times - (onset - lead)) / lead, 0, 1)
            before = times < onset
            values[before] = np.maximum(values[before] - (base - EVAL_THRESHOLD) * slide[before] * 0.97,
                                        EVAL_THRESHOLD + 0.0015)  # fmt: skip
            failing = (times >= onset) & (times < onset + fail_for)
            values[failing] = EVAL_THRESHOLD - rng.uniform(0.005, 0.03, int(failing.sum()))
            self.onsets["compliance_risk"][system.pk] = [self.at(onset)]
            overdue_risk = 0.6
        if rng.random() < 0.35:
            peak_at, lead = self.onset_hour(), float(rng.uniform(24, 60))
            floor = EVAL_THRESHOLD + float(rng.uniform(0.003, 0.02))
            rising = np.clip((times - (peak_at - lead)) / lead, 0, 1) * (times < peak_at + 18)
            values = np.where(values >= EVAL_THRESHOLD, np.minimum(values, values - (values - floor) * rising), values)
        for hour, value in zip(times, values, strict=True):
            self.runs.append(EvaluationRun(
                system=system, suite="quality", metric="accuracy", value=float(value), threshold=EVAL_THRESHOLD,
                passed=bool(value >= EVAL_THRESHOLD), ran_at=self.at(hour), triggered_by=HISTORY_ACTOR,
            ))  # fmt: skip
        for control in CONTROLS:
            overdue = rng.random() < overdue_risk / len(CONTROLS) * 1.5
            due_hour = float(rng.uniform(0, self.hours)) if overdue else self.hours + 24 * 30
            self.assessments.append(ControlAssessment(
                system=system, control=control, status=(AssessmentStatus.INEFFECTIVE if rng.random() < 0.1
                                                         else AssessmentStatus.EFFECTIVE),
                assessed_at=self.start - timedelta(days=60), next_review_due=self.at(due_hour).date(),
            ))  # fmt: skip


def _event(system_id, category, severity, signal, value, occurred_at, id_bytes: bytes):
    from oversight.validation import CleanEvent

    return CleanEvent(
        event_id=uuid.UUID(bytes=id_bytes, version=4), system_id=system_id, category=category,
        severity=severity, signal=signal, value=value, occurred_at=occurred_at, attributes_json=_EMPTY,
        scenario_id=None, attributes={},
    )  # fmt: skip


_EMPTY = json.dumps({})


@dataclass
class EstateHistoryReport:
    systems: int  # systems that got a history now
    counts: dict[str, int]


def estate_history_seed(*, systems: list[AISystem], days: int = 8, seed: int = 42, ahead_hours: int = 20,
                        now: datetime | None = None) -> EstateHistoryReport:  # fmt: skip
    """Demo only: give ``systems`` ``days`` of synthetic history (COMMITTED) ending at ``now`` with scenarios
    planned ``ahead_hours`` past it, so some risks are still unfolding and the prediction pass has history to
    work on. Systems that already have events that old are skipped, so a re-run adds nothing."""
    from oversight.selectors import event_history_start

    now = now or timezone.now()
    starts = event_history_start(system_ids=[s.pk for s in systems], until=now)
    oldest = now - timedelta(days=days) + timedelta(hours=ahead_hours + 1)
    todo = [s for s in systems if s.pk not in starts or starts[s.pk] > oldest]
    if not todo:
        return EstateHistoryReport(systems=0, counts={})
    with transaction.atomic():
        history = history_generate(
            seed=seed, system_count=len(todo), days=days, systems=todo,
            end=now + timedelta(hours=ahead_hours), cutoff=now,
        )  # fmt: skip
    return EstateHistoryReport(systems=len(todo), counts=dict(history.counts))
