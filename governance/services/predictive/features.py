"""The features of predictive governance: named, explainable numbers per (AI system, as_of).

Every feature reads only rows with a time at or before ``as_of`` (events by ``occurred_at``, evaluation runs
by ``ran_at``, assessments by ``assessed_at``, alerts by ``detected_at``, incidents by ``opened_at``), so a
walk-forward backtest never sees the future. Each family is ONE set-based query for all systems:

* telemetry (``events_raw``): per system and signal, counts, sums, extremes and least-squares sums over
  three sliding windows (6 h ⊂ 24 h ⊂ 7 d) in one grouped scan → level, slope, acceleration, shift from
  the 7-day baseline and the volume ratio;
* evaluation runs: distance of each run to its threshold (positive while passing), its least-squares
  trend over 7 days, failures;
* control assessments: the latest assessment of each control, overdue or ineffective;
* alerts fired, incidents opened (through the oversight and incidents selectors).

Signal values are expressed as *pressure* on their warning level from the config registry
(``oversight.thresholds.<category>``): value ÷ warning for signals alerting above it, warning ÷ value
for those alerting below, so 1.0 is the warning level whatever the unit, and a model trained on one
installation's thresholds carries over to tuned ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

import numpy as np
from django.db.models import Count, Exists, F, Min, OuterRef, Q, Sum, Value
from django.db.models.functions import Abs

from config import registry
from governance.choices import AssessmentStatus, PredictionType
from governance.models import ControlAssessment, EvaluationRun
from governance.sql import HoursFrom
from incidents.selectors import incident_counts
from oversight.selectors import SignalWindowStats, alert_counts, event_history_start, signal_window_stats

SHORT_WINDOW = timedelta(hours=6)
DAY_WINDOW = timedelta(hours=24)
LONG_WINDOW = timedelta(days=7)
INCIDENT_WINDOW = timedelta(days=30)
# Telemetry whose warning breach is a drift (data-quality distribution signals), and the error signals
# behind incidents; both are looked up in the registry's thresholds, so a tuned level moves the features.
DRIFT_SIGNALS = ("psi", "null_rate")
INCIDENT_SIGNALS = ("error_rate", "latency_p95_ms")
MARGIN_FLOOR = 1e-9
NO_RUN_MARGIN = 1.0  # a system without evaluation runs in the window: as far from failing as a healthy one
HORIZON_CAP_HOURS = 72.0  # "not within three days": a flat or falling trend


@dataclass(frozen=True)
class FeatureSpec:
    name: str
    label: str
    types: tuple[str, ...]


def _signal_features(signal: str, types: tuple[str, ...], title: str) -> tuple[FeatureSpec, ...]:
    return (
        FeatureSpec(f"{signal}_level_6h", f"{title}: mean of the last 6 h (× warning level)", types),
        FeatureSpec(f"{signal}_max_24h", f"{title}: highest of the last 24 h (× warning level)", types),
        FeatureSpec(f"{signal}_slope_24h", f"{title}: trend over 24 h (warning levels per day)", types),
        FeatureSpec(f"{signal}_acceleration", f"{title}: trend of the last 6 h minus trend of 24 h", types),
        FeatureSpec(f"{signal}_shift_7d", f"{title}: last 6 h minus the 7-day baseline (× warning level)", types),
        FeatureSpec(
            f"{signal}_hours_to_warning",
            f"{title}: hours until the 24-h trend reaches the warning level (capped at {HORIZON_CAP_HOURS:g})",
            types,
        ),
    )


DRIFT, COMPLIANCE, INCIDENT = (
    PredictionType.DRIFT_RISK.value,
    PredictionType.COMPLIANCE_RISK.value,
    PredictionType.INCIDENT_PROBABILITY.value,
)
FEATURES: tuple[FeatureSpec, ...] = (
    *_signal_features("psi", (DRIFT,), "PSI"),
    *_signal_features("null_rate", (DRIFT,), "Null rate"),
    FeatureSpec("volume_ratio", "Event volume of the last 6 h vs the 7-day hourly average", (DRIFT, INCIDENT)),
    FeatureSpec("eval_margin_min_24h", "Evaluation: smallest distance to a threshold in 24 h (share)", (COMPLIANCE,)),
    FeatureSpec("eval_margin_slope_7d", "Evaluation: trend of the distance to threshold (per day)", (COMPLIANCE,)),
    FeatureSpec("eval_failures_7d", "Evaluation: failed runs in 7 days", (COMPLIANCE,)),
    FeatureSpec("overdue_assessments", "Control assessments past their review date", (COMPLIANCE,)),
    FeatureSpec("ineffective_assessments", "Controls assessed ineffective", (COMPLIANCE,)),
    FeatureSpec("compliance_signal_max_24h", "Compliance signals: highest of 24 h (× warning level)", (COMPLIANCE,)),
    FeatureSpec("error_rate_level_6h", "Error rate: mean of the last 6 h (× warning level)", (INCIDENT,)),
    FeatureSpec("error_rate_slope_24h", "Error rate: trend over 24 h (warning levels per day)", (INCIDENT,)),
    FeatureSpec("error_rate_acceleration", "Error rate: trend of the last 6 h minus trend of 24 h", (INCIDENT,)),
    FeatureSpec(
        "error_rate_hours_to_warning", "Error rate: hours until the 24-h trend reaches the warning level", (INCIDENT,)
    ),
    FeatureSpec("latency_p95_ms_level_6h", "Latency p95: mean of the last 6 h (× warning level)", (INCIDENT,)),
    FeatureSpec("latency_p95_ms_slope_24h", "Latency p95: trend over 24 h (warning levels per day)", (INCIDENT,)),
    FeatureSpec("severe_events_24h", "Critical/high-severity events in 24 h", (INCIDENT,)),
    FeatureSpec("alerts_24h", "Alerts fired in 24 h", (INCIDENT,)),
    FeatureSpec("alerts_7d", "Alerts fired in 7 days", (INCIDENT,)),
    FeatureSpec("incidents_30d", "Incidents opened in 30 days", (INCIDENT,)),
    FeatureSpec("open_incidents", "Incidents open at the time", (INCIDENT,)),
)
FEATURE_NAMES: tuple[str, ...] = tuple(spec.name for spec in FEATURES)
FEATURE_LABELS: dict[str, str] = {spec.name: spec.label for spec in FEATURES}
_INDEX = {name: i for i, name in enumerate(FEATURE_NAMES)}


def features_for_type(prediction_type: str) -> tuple[str, ...]:
    return tuple(spec.name for spec in FEATURES if prediction_type in spec.types)


@dataclass
class FeatureTable:
    """Features of many systems at one ``as_of``: ``matrix[i]`` is the row of ``system_ids[i]`` in
    :data:`FEATURE_NAMES` order; ``history_hours[i]`` the hours since the system's first event (0: none)."""

    as_of: datetime
    system_ids: list[UUID]
    matrix: np.ndarray
    history_hours: np.ndarray

    def columns(self, names: Sequence[str]) -> np.ndarray:
        return self.matrix[:, [_INDEX[name] for name in names]]

    def row(self, system_id: UUID) -> dict[str, float]:
        values = self.matrix[self.system_ids.index(system_id)]
        return dict(zip(FEATURE_NAMES, (float(v) for v in values), strict=True))


def signal_thresholds() -> dict[str, dict]:
    """``{signal: {direction, warning, critical, category}}`` of every signal in the registry."""
    from oversight.rules import CATEGORIES

    result = {}
    for category in CATEGORIES:
        for signal, spec in registry.get(f"oversight.thresholds.{category}").items():
            result[signal] = {**spec, "category": category}
    return result


def _pressure(value: float | None, spec: dict) -> float:
    """The value as a multiple of its warning level (≥ 1 is past it), direction-aware; 0 without a value."""
    if value is None:
        return 0.0
    warning = float(spec["warning"])
    if spec["direction"] == "below":
        return warning / value if value > MARGIN_FLOOR else 10.0
    return value / warning if abs(warning) > MARGIN_FLOOR else float(value > 0)


def _slope(n: float, sx: float, sy: float, sxy: float, sxx: float) -> float:
    """Least-squares slope per unit of x from the regression sums (0 with fewer than 3 points)."""
    denominator = n * sxx - sx * sx
    if n < 3 or abs(denominator) < 1e-12:
        return 0.0
    return (n * sxy - sx * sy) / denominator


def feature_table(
    *,
    system_ids: Iterable[UUID],
    as_of: datetime,
    window_stats: dict[tuple[UUID, str], SignalWindowStats] | None = None,
) -> FeatureTable:
    """The features of ``system_ids`` at ``as_of`` (see the module docstring): six queries in all.
    ``window_stats``: the telemetry statistics at ``as_of`` already computed (the backtest's
    :func:`~oversight.selectors.signal_window_stats_walk`, the same numbers), instead of their query."""
    ids = list(dict.fromkeys(system_ids))
    matrix = np.zeros((len(ids), len(FEATURE_NAMES)), dtype=np.float64)
    matrix[:, [i for name, i in _INDEX.items() if name.endswith("_hours_to_warning")]] = HORIZON_CAP_HOURS
    position = {system_id: i for i, system_id in enumerate(ids)}
    starts = event_history_start(system_ids=ids, until=as_of)
    history = np.array(
        [(as_of - starts[s]).total_seconds() / 3600 if s in starts else 0.0 for s in ids], dtype=np.float64
    )
    if ids:
        _telemetry(matrix, position, as_of=as_of, history=history, stats=window_stats)
        _evaluations(matrix, position, as_of=as_of)
        _assessments(matrix, position, as_of=as_of)
        _alerts_and_incidents(matrix, position, as_of=as_of)
    return FeatureTable(as_of=as_of, system_ids=ids, matrix=matrix, history_hours=history)


def _set(matrix: np.ndarray, row: int, name: str, value: float) -> None:
    matrix[row, _INDEX[name]] = value


def _telemetry(
    matrix: np.ndarray, position: dict[UUID, int], *, as_of: datetime, history: np.ndarray,
    stats: dict[tuple[UUID, str], SignalWindowStats] | None,
) -> None:  # fmt: skip
    thresholds = signal_thresholds()
    if stats is None:
        stats = signal_window_stats(
            system_ids=list(position), until=as_of, short=SHORT_WINDOW, day=DAY_WINDOW, long=LONG_WINDOW
        )
    else:
        stats = {key: s for key, s in stats.items() if key[0] in position}
    volume_short = np.zeros(len(position))
    volume_long = np.zeros(len(position))
    compliance_max = np.zeros(len(position))
    short_h, day_h = SHORT_WINDOW.total_seconds() / 3600, DAY_WINDOW.total_seconds() / 3600
    for (system_id, signal), s in stats.items():
        row = position[system_id]
        volume_short[row] += s.count_short
        volume_long[row] += s.count_long
        spec = thresholds.get(signal)
        if spec is None:
            continue
        if spec["category"] == "compliance" and s.max_day is not None:
            compliance_max[row] = max(compliance_max[row], _pressure(s.max_day, spec))
        if signal not in DRIFT_SIGNALS and signal not in INCIDENT_SIGNALS:
            continue
        sign = -1.0 if spec["direction"] == "below" else 1.0
        unit = max(abs(float(spec["warning"])), MARGIN_FLOOR)
        mean_short = s.sum_short / s.count_short if s.count_short else None
        mean_long = s.sum_long / s.count_long if s.count_long else None
        slope_day = _slope(s.count_day, s.sx_day, s.sum_day, s.sxy_day, s.sxx_day)
        slope_short = _slope(s.count_short, s.sx_short, s.sum_short, s.sxy_short, s.sxx_short)
        extreme = s.min_day if spec["direction"] == "below" else s.max_day
        values = {
            "level_6h": _pressure(mean_short, spec),
            "max_24h": _pressure(extreme, spec),
            "slope_24h": sign * slope_day * day_h / unit,
            "acceleration": sign * (slope_short - slope_day) * day_h / unit,
            "shift_7d": sign * ((mean_short - mean_long) / unit) if mean_short is not None and mean_long else 0.0,
        }
        # The trend extrapolated: how long until the recent level reaches warning (1.0) at the daily slope.
        per_hour = values["slope_24h"] / day_h
        gap = max(0.0, 1.0 - values["level_6h"])
        values["hours_to_warning"] = min(HORIZON_CAP_HOURS, gap / per_hour) if per_hour > 0 else HORIZON_CAP_HOURS
        for suffix, value in values.items():
            name = f"{signal}_{suffix}"
            if name in _INDEX:
                _set(matrix, row, name, value)
    long_h = np.clip(history, short_h, LONG_WINDOW.total_seconds() / 3600)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(volume_long > 0, (volume_short / short_h) / (volume_long / long_h), 0.0)
    matrix[:, _INDEX["volume_ratio"]] = ratio
    matrix[:, _INDEX["compliance_signal_max_24h"]] = compliance_max
    severe_by_row = np.zeros(len(position))
    for (system_id, _signal), s in stats.items():
        severe_by_row[position[system_id]] += s.severe_day
    matrix[:, _INDEX["severe_events_24h"]] = severe_by_row


def _evaluations(matrix: np.ndarray, position: dict[UUID, int], *, as_of: datetime) -> None:
    """Distance to threshold of every evaluation run of 7 days (positive while passing, as a share of the
    threshold) and its least-squares trend per day, per system, in one grouped query."""
    in_day = Q(ran_at__gt=as_of - DAY_WINDOW)
    distance = Abs(F("value") - F("threshold")) / (Abs(F("threshold")) + Value(MARGIN_FLOOR))
    x = HoursFrom("ran_at", as_of) / Value(24.0)
    rows = (
        EvaluationRun.objects.filter(
            system_id__in=list(position), ran_at__gt=as_of - LONG_WINDOW, ran_at__lte=as_of, threshold__isnull=False
        )
        .values("system_id")
        .annotate(
            n=Count("id"),
            failures=Count("id", filter=Q(passed=False)),
            passing_min_day=Min(distance, filter=in_day & Q(passed=True)),
            failing_day=Count("id", filter=in_day & Q(passed=False)),
            passing_min=Min(distance, filter=Q(passed=True)),
            sx=Sum(x),
            sxx=Sum(x * x),
            sy_pass=Sum(distance, filter=Q(passed=True)),
            sy_fail=Sum(distance, filter=Q(passed=False)),
            sxy_pass=Sum(x * distance, filter=Q(passed=True)),
            sxy_fail=Sum(x * distance, filter=Q(passed=False)),
        )
        .order_by()
    )
    matrix[:, _INDEX["eval_margin_min_24h"]] = NO_RUN_MARGIN
    for r in rows:
        row = position[r["system_id"]]
        if r["failing_day"]:
            margin = -1.0  # failing now: the margin is negative whatever its size
        elif r["passing_min_day"] is not None:
            margin = r["passing_min_day"]
        else:
            margin = r["passing_min"] if r["passing_min"] is not None else NO_RUN_MARGIN
        sy = (r["sy_pass"] or 0.0) - (r["sy_fail"] or 0.0)
        sxy = (r["sxy_pass"] or 0.0) - (r["sxy_fail"] or 0.0)
        _set(matrix, row, "eval_margin_min_24h", min(margin, NO_RUN_MARGIN))
        _set(matrix, row, "eval_margin_slope_7d", _slope(r["n"], r["sx"] or 0.0, sy, sxy, r["sxx"] or 0.0))
        _set(matrix, row, "eval_failures_7d", r["failures"])


def _assessments(matrix: np.ndarray, position: dict[UUID, int], *, as_of: datetime) -> None:
    """The latest assessment of each (system, control) up to as_of: overdue (review date passed) or
    ineffective. One query (NOT EXISTS a newer assessment of the same control)."""
    newer = ControlAssessment.objects.filter(
        system_id=OuterRef("system_id"), control=OuterRef("control"),
        assessed_at__gt=OuterRef("assessed_at"), assessed_at__lte=as_of,
    )  # fmt: skip
    rows = (
        ControlAssessment.objects.filter(system_id__in=list(position), assessed_at__lte=as_of)
        .exclude(Exists(newer))
        .values("system_id")
        .annotate(
            overdue=Count("id", filter=Q(next_review_due__lt=as_of.date())),
            ineffective=Count("id", filter=Q(status=AssessmentStatus.INEFFECTIVE)),
        )
        .order_by()
    )
    for r in rows:
        row = position[r["system_id"]]
        _set(matrix, row, "overdue_assessments", r["overdue"])
        _set(matrix, row, "ineffective_assessments", r["ineffective"])


def _alerts_and_incidents(matrix: np.ndarray, position: dict[UUID, int], *, as_of: datetime) -> None:
    for system_id, counts in alert_counts(system_ids=list(position), until=as_of, day=DAY_WINDOW,
                                           long=LONG_WINDOW).items():  # fmt: skip
        _set(matrix, position[system_id], "alerts_24h", counts["day"])
        _set(matrix, position[system_id], "alerts_7d", counts["long"])
    for system_id, counts in incident_counts(system_ids=list(position), until=as_of, recent=LONG_WINDOW,
                                             long=INCIDENT_WINDOW).items():  # fmt: skip
        _set(matrix, position[system_id], "incidents_30d", counts["long"])
        _set(matrix, position[system_id], "open_incidents", counts["open"])
