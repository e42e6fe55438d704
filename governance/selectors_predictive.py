"""Read-side queries of predictive governance: the predictions list, each system's latest forecast per type
(the badges), and predicted-vs-actual (how matured forecasts turned out). Every block of the admin pages
takes a fixed number of queries (one or two, plus the team scoping), whatever the history kept; the API
reads the same functions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, OuterRef, Q, QuerySet, Subquery
from django.utils import timezone

from governance.choices import PredictionOutcome, PredictionType
from governance.models import AISystem, PredictiveGovernance, PredictorModel, User
from governance.selectors import scope_to_teams

# How many factors a badge shows, and how many rows the admin blocks list.
BADGE_FACTORS = 3
HOME_BADGE_SYSTEMS = 25
RECENT_PREDICTIONS = 15
LATEST_MATURED = 10
PANEL_WINDOW_DAYS = 7  # predicted vs actual on the dashboards: the last week's predictions
BAR_WIDTH = 240  # px: the predicted-vs-actual bar per type


def prediction_badge_text(*, prediction_type: str, timeframe_hours: int) -> str:
    """The words a governance lead reads for a forecast above its threshold (one place for the wording)."""
    if prediction_type == PredictionType.DRIFT_RISK:
        return f"Drift likely in {timeframe_hours} h"
    if prediction_type == PredictionType.COMPLIANCE_RISK:
        return "Compliance risk increasing"
    if prediction_type == PredictionType.INCIDENT_PROBABILITY:
        return "Model degradation trend"
    return PredictionType(prediction_type).label


def prediction_list(*, user: User) -> QuerySet[PredictiveGovernance]:
    """Predictions of the user's teams' systems, with the system and model (no per-row lookups)."""
    return scope_to_teams(PredictiveGovernance.objects.select_related("system", "model"), user)


def prediction_ids_latest(*, systems: QuerySet[AISystem]) -> list[Any]:
    """The ids of each of ``systems``' latest prediction of each type (newest ``as_of``; on a tie the newest
    row). One query driven from the systems: per system and type, one probe of the (system,
    prediction_type, -as_of) index, so the cost grows with systems × types, never with the history kept
    (a correlated subquery per prediction row took 2.7 s over 400,000 rows; see bench/results)."""
    columns = {
        f"latest_{kind}": Subquery(
            PredictiveGovernance.objects.filter(system=OuterRef("pk"), prediction_type=kind)
            .order_by("-as_of", "-created_at")
            .values("pk")[:1]
        )
        for kind in PredictionType.values
    }
    rows = systems.order_by().annotate(**columns).values_list(*columns)
    return [pk for row in rows for pk in row if pk is not None]


def predictions_latest(
    queryset: QuerySet[PredictiveGovernance], *, systems: QuerySet[AISystem] | None = None
) -> QuerySet[PredictiveGovernance]:
    """Only the rows of ``queryset`` that are their system's latest prediction of their type (whatever other
    filters ``queryset`` carries). ``systems`` bounds the systems looked at (default: every one); pass the
    caller's scoped systems. Two queries: the latest ids, then the rows."""
    systems = AISystem.objects.all() if systems is None else systems
    return queryset.filter(pk__in=prediction_ids_latest(systems=systems))


@dataclass(frozen=True)
class Factor:
    label: str
    value: Any
    contribution: float | None

    @property
    def display_value(self) -> str:
        if isinstance(self.value, bool) or not isinstance(self.value, int | float):
            return str(self.value)
        return f"{self.value:.3g}"


@dataclass(frozen=True)
class PredictionBadge:
    """A system's latest forecast of one type, above its threshold: what the dashboards show."""

    prediction_id: Any
    system_id: Any
    system_name: str
    prediction_type: str
    text: str
    risk_score: float
    confidence: float
    threshold: float
    timeframe_hours: int
    as_of: Any
    factors: list[Factor]
    review_item_id: Any = None

    @property
    def score_percent(self) -> int:
        return round(self.risk_score * 100)

    @property
    def confidence_percent(self) -> int:
        return round(self.confidence * 100)


def factors_of(raw: Any, limit: int = BADGE_FACTORS) -> list[Factor]:
    """The first ``limit`` factors of a prediction (stored largest contribution first), tolerant of rows
    written without a label or value."""
    factors = []
    for entry in (raw or [])[:limit]:
        if not isinstance(entry, dict):
            continue
        factors.append(
            Factor(
                label=str(entry.get("label") or entry.get("feature") or "?"),
                value=entry.get("value"),
                contribution=entry.get("contribution"),
            )
        )
    return factors


def _badge(row: PredictiveGovernance) -> PredictionBadge:
    return PredictionBadge(
        prediction_id=row.pk,
        system_id=row.system_id,
        system_name=row.system.name,
        prediction_type=row.prediction_type,
        text=prediction_badge_text(prediction_type=row.prediction_type, timeframe_hours=row.predicted_timeframe_hours),
        risk_score=row.risk_score,
        confidence=row.confidence,
        threshold=row.threshold,
        timeframe_hours=row.predicted_timeframe_hours,
        as_of=row.as_of,
        factors=factors_of(row.factors),
        review_item_id=row.review_item_id,
    )


def prediction_badges(*, user: User, system: AISystem | None = None) -> list[PredictionBadge]:
    """Active badges: each system's latest prediction per type when it is above its threshold, highest score
    first (for ``system`` only when given). Two queries (the latest ids, the badges)."""
    queryset = prediction_list(user=user)
    systems = scope_to_teams(AISystem.objects.all(), user)
    if system is not None:
        queryset, systems = queryset.filter(system=system), systems.filter(pk=system.pk)
    rows = predictions_latest(queryset, systems=systems).filter(above_threshold=True)
    return [_badge(row) for row in rows.order_by("-risk_score", "system__name")]


@dataclass(frozen=True)
class SystemBadges:
    system_id: Any
    system_name: str
    badges: list[PredictionBadge]


def prediction_badges_by_system(*, user: User, limit: int = HOME_BADGE_SYSTEMS) -> tuple[list[SystemBadges], int]:
    """The home page's "Predicted risk" block: systems with at least one active badge, the riskiest first,
    at most ``limit`` of them, and how many systems carry a badge in all. Two queries."""
    grouped: dict[Any, SystemBadges] = {}
    for badge in prediction_badges(user=user):
        entry = grouped.setdefault(badge.system_id, SystemBadges(badge.system_id, badge.system_name, []))
        entry.badges.append(badge)
    systems = list(grouped.values())  # insertion order = each system's highest score first
    return systems[:limit], len(systems)


def predictions_recent(*, user: User, system: AISystem, limit: int = RECENT_PREDICTIONS) -> list[PredictiveGovernance]:
    """A system's newest predictions of every type (its admin page). One query."""
    return list(prediction_list(user=user).filter(system=system).order_by("-as_of", "prediction_type")[:limit])


@dataclass
class OutcomeCounts:
    """Predicted (above threshold or not) against what happened, for matured predictions of one type."""

    prediction_type: str
    above_occurred: int = 0
    above_not_occurred: int = 0
    below_occurred: int = 0
    below_not_occurred: int = 0
    pending: int = 0
    label: str = field(init=False)

    def __post_init__(self):
        self.label = PredictionType(self.prediction_type).label

    @property
    def matured(self) -> int:
        return self.above_occurred + self.above_not_occurred + self.below_occurred + self.below_not_occurred

    @property
    def precision(self) -> float | None:
        """Of the predictions above threshold, the share whose risk occurred (None before any matured)."""
        flagged = self.above_occurred + self.above_not_occurred
        return self.above_occurred / flagged if flagged else None

    @property
    def recall(self) -> float | None:
        """Of the risks that occurred, the share that had been predicted above threshold."""
        occurred = self.above_occurred + self.below_occurred
        return self.above_occurred / occurred if occurred else None

    @property
    def precision_text(self) -> str:
        return "—" if self.precision is None else f"{self.precision:.0%}"

    @property
    def recall_text(self) -> str:
        return "—" if self.recall is None else f"{self.recall:.0%}"

    @property
    def bar_segments(self) -> list[dict[str, Any]]:
        """The panel's stacked bar (``BAR_WIDTH`` wide): one segment per outcome cell, in reading order, each
        with its words (the bar repeats the table; it never carries information by colour alone)."""
        cells = [
            ("correct-warning", "correct warnings", self.above_occurred),
            ("false-alarm", "false alarms", self.above_not_occurred),
            ("missed", "missed", self.below_occurred),
            ("quiet", "correctly quiet", self.below_not_occurred),
        ]
        total, x, segments = self.matured, 0.0, []
        for css, words, count in cells:
            if not count:
                continue
            width = BAR_WIDTH * count / total
            segments.append({"css": css, "words": words, "count": count, "x": round(x, 2), "width": round(width, 2)})
            x += width
        return segments

    def as_dict(self) -> dict[str, Any]:
        return {
            "prediction_type": self.prediction_type,
            "matured": self.matured,
            "pending": self.pending,
            "above_threshold_occurred": self.above_occurred,
            "above_threshold_not_occurred": self.above_not_occurred,
            "below_threshold_occurred": self.below_occurred,
            "below_threshold_not_occurred": self.below_not_occurred,
            "precision": self.precision,
            "recall": self.recall,
        }


def prediction_outcome_counts(queryset: QuerySet[PredictiveGovernance]) -> list[OutcomeCounts]:
    """Confusion counts per prediction type over ``queryset`` (every type listed, zeros where none). One
    GROUP BY query."""
    occurred = Q(outcome=PredictionOutcome.OCCURRED)
    not_occurred = Q(outcome=PredictionOutcome.NOT_OCCURRED)
    above = Q(above_threshold=True)
    rows = (
        queryset.order_by()
        .values("prediction_type")
        .annotate(
            above_occurred=Count("pk", filter=above & occurred),
            above_not_occurred=Count("pk", filter=above & not_occurred),
            below_occurred=Count("pk", filter=~above & occurred),
            below_not_occurred=Count("pk", filter=~above & not_occurred),
            pending=Count("pk", filter=Q(outcome=PredictionOutcome.PENDING)),
        )
    )
    by_type = {row.pop("prediction_type"): row for row in rows}
    return [OutcomeCounts(prediction_type=kind, **by_type.get(kind, {})) for kind in PredictionType.values]


@dataclass(frozen=True)
class MaturedPrediction:
    """A prediction whose timeframe has passed, with what it turned out to be."""

    prediction: PredictiveGovernance

    @property
    def occurred(self) -> bool:
        return self.prediction.outcome == PredictionOutcome.OCCURRED

    @property
    def verdict(self) -> str:
        """In words, so the panel never relies on colour: a warning that came true, a false alarm, a miss,
        or a quiet forecast that stayed quiet."""
        if self.prediction.above_threshold:
            return "correct warning" if self.occurred else "false alarm"
        return "missed" if self.occurred else "correctly quiet"

    @property
    def correct(self) -> bool:
        return self.prediction.above_threshold == self.occurred


def predictions_matured_latest(
    queryset: QuerySet[PredictiveGovernance], limit: int = LATEST_MATURED
) -> list[MaturedPrediction]:
    """The newest predictions whose outcome is known (score → outcome). One query."""
    rows = queryset.exclude(outcome=PredictionOutcome.PENDING).select_related("system").order_by("-as_of")[:limit]
    return [MaturedPrediction(row) for row in rows]


def predictor_models_active() -> dict[str, PredictorModel]:
    """The active model of each prediction type (types without one are absent). One query."""
    return {model.prediction_type: model for model in PredictorModel.objects.filter(is_active=True)}


def predictor_quality_problems(*, model: PredictorModel, floor: dict[str, float]) -> list[str]:
    """What keeps ``model`` below ``governance.predictive.quality_floor`` (AUC at least, Brier at most), in
    words with the numbers; empty when it meets the floor."""
    name = f"{model.get_prediction_type_display().lower()} model v{model.version}"
    auc, brier = _metric(model.metrics, "auc"), _metric(model.metrics, "brier")
    problems = []
    if auc is None:
        problems.append(f"{name} has no measured AUC")
    elif auc < floor["auc"]:
        problems.append(f"{name} AUC {auc:.3f} is below the floor {floor['auc']}")
    if brier is None:
        problems.append(f"{name} has no measured Brier score")
    elif brier > floor["brier"]:
        problems.append(f"{name} Brier {brier:.3f} is above the ceiling {floor['brier']}")
    return problems


def _metric(metrics: Any, name: str) -> float | None:
    value = metrics.get(name) if isinstance(metrics, dict) else None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class PredictedVersusActual:
    counts: list[OutcomeCounts]
    latest: list[MaturedPrediction]
    window_days: int = PANEL_WINDOW_DAYS

    @property
    def has_matured(self) -> bool:
        return any(row.matured for row in self.counts)


def predicted_versus_actual(*, user: User, system: AISystem | None = None) -> PredictedVersusActual:
    """The predicted-vs-actual panel: confusion counts per type and the latest matured predictions made
    in the last ``PANEL_WINDOW_DAYS`` days, for the user's teams (or one system). Two queries, bounded
    by the window on the ``as_of`` index (the whole history is ``GET /predictions/quality``)."""
    queryset = prediction_list(user=user).filter(as_of__gte=timezone.now() - timedelta(days=PANEL_WINDOW_DAYS))
    if system is not None:
        queryset = queryset.filter(system=system)
    return PredictedVersusActual(
        counts=prediction_outcome_counts(queryset), latest=predictions_matured_latest(queryset)
    )


def latest_prediction_created_at() -> datetime | None:
    """When the newest prediction row was written (None before the first pass), platform-wide."""
    return PredictiveGovernance.objects.order_by("-created_at").values_list("created_at", flat=True).first()


@dataclass(frozen=True)
class PredictiveDashboard:
    """The admin home page's "Predicted risk" block and predicted-vs-actual panel."""

    systems: list[SystemBadges]
    systems_total: int
    versus_actual: PredictedVersusActual


def predictive_dashboard(*, user: User) -> PredictiveDashboard:
    """Everything the home page shows of predictive governance, for the user's teams. Four queries."""
    systems, total = prediction_badges_by_system(user=user)
    return PredictiveDashboard(systems=systems, systems_total=total, versus_actual=predicted_versus_actual(user=user))


@dataclass(frozen=True)
class SystemPredictions:
    """An AI system's admin page: its badges, its recent predictions and predicted-vs-actual."""

    badges: list[PredictionBadge]
    recent: list[PredictiveGovernance]
    versus_actual: PredictedVersusActual


def system_predictions(*, user: User, system: AISystem) -> SystemPredictions:
    """Four queries, whatever the system's history."""
    return SystemPredictions(
        badges=prediction_badges(user=user, system=system),
        recent=predictions_recent(user=user, system=system),
        versus_actual=predicted_versus_actual(user=user, system=system),
    )
