"""The prediction pass (every 15 minutes and on demand), prediction outcomes and retention."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.db import transaction
from django.db.models import Case, DateTimeField, ExpressionWrapper, OuterRef, Subquery, Value, When
from django.db.models.functions import Coalesce, Least, NullIf
from django.db.models.lookups import LessThan
from django.utils import timezone

from config import registry
from governance.choices import PredictionOutcome, PredictionType, PredictorSource
from governance.models import AISystem, PredictiveGovernance
from governance.services.predictive.features import feature_table
from governance.services.predictive.model import confidence
from governance.services.predictive.onsets import onset_sources
from governance.signals import predictions_recorded

logger = logging.getLogger(__name__)

SLOT = timedelta(minutes=15)
BOOTSTRAP_SEED = 42


def as_of_slot(moment: datetime) -> datetime:
    """The start of the 15-minute slot holding ``moment``: every pass inside one slot predicts as of the
    same instant, so a second run of the slot finds its rows already there."""
    epoch = int(moment.timestamp())
    return datetime.fromtimestamp(epoch - epoch % int(SLOT.total_seconds()), tz=moment.tzinfo or UTC)


@dataclass
class PredictionRunResult:
    as_of: datetime
    predicted: int = 0
    already_predicted: int = 0
    insufficient_data: list[dict] = field(default_factory=list)
    above_threshold: dict[str, int] = field(default_factory=dict)
    models: dict[str, int] = field(default_factory=dict)  # prediction type → active model version
    duration_seconds: float = 0.0
    enabled: bool = True

    def as_dict(self) -> dict:
        return {
            "as_of": self.as_of.isoformat(), "enabled": self.enabled, "predicted": self.predicted,
            "already_predicted": self.already_predicted, "insufficient_data": self.insufficient_data,
            "above_threshold": self.above_threshold, "models": self.models,
            "duration_seconds": round(self.duration_seconds, 3),
        }  # fmt: skip


def predictions_run(*, as_of: datetime | None = None) -> PredictionRunResult:
    """Predict every risk type for every active AI system as of ``as_of`` (default now), truncated to its
    15-minute slot.

    Guarantees:
    * a system whose first event is less than ``min_history_hours`` before ``as_of`` (or that has none) is
      reported in ``insufficient_data`` with the reason and logged; no row is written for it;
    * idempotent: one row per (system, type, as_of) — a unique constraint, inserts that conflict are
      skipped — so running a slot twice (a retried task, an operator's command) writes nothing new;
    * a type without an active model is bootstrapped first: trained on synthetic history (seed 42);
    * ``predictions_recorded`` is sent after commit with the rows this run inserted.
    """
    started = time.perf_counter()
    settings = registry.get("governance.predictive")
    as_of = as_of_slot(as_of or timezone.now())
    result = PredictionRunResult(as_of=as_of, enabled=settings["enabled"])
    if not settings["enabled"]:
        return result
    from governance.services.predictive.train import active_predictors, predictors_train

    predictors = active_predictors()
    missing = [t for t in PredictionType.values if t not in predictors]
    if missing:
        predictors_train(source=PredictorSource.SYNTHETIC, seed=BOOTSTRAP_SEED, prediction_types=missing)
        predictors = active_predictors()
    systems = list(AISystem.objects.filter(is_active=True).order_by("name").values_list("pk", "name", "entity_type"))
    table = feature_table(system_ids=[pk for pk, _, _ in systems], as_of=as_of)
    min_hours = settings["min_history_hours"]
    kind = {pk: entity_type for pk, _, entity_type in systems}
    for (pk, name, _), hours in zip(systems, table.history_hours, strict=True):
        if hours < min_hours:
            reason = "no events yet" if hours == 0 else f"{hours:.1f} h of events, {min_hours} h needed"
            result.insufficient_data.append({"system_id": str(pk), "system": name, "reason": reason})
    if result.insufficient_data:
        logger.info("predictions insufficient_data=%s as_of=%s systems=%s", len(result.insufficient_data),
                    as_of.isoformat(), ",".join(item["system"] for item in result.insufficient_data))  # fmt: skip
    keep = table.history_hours >= min_hours
    ids = [pk for pk, k in zip(table.system_ids, keep, strict=True) if k]
    matrix, hours = table.matrix[keep], table.history_hours[keep]
    rows: list[PredictiveGovernance] = []
    for prediction_type in PredictionType.values:
        predictor = predictors[prediction_type]
        threshold = float(settings["alert_thresholds"][prediction_type])
        scores = predictor.score(matrix)
        trust = confidence(history_hours=hours, metrics=predictor.metrics)
        result.models[prediction_type] = predictor.version
        for i, system_id in enumerate(ids):
            rows.append(PredictiveGovernance(
                entity_type=kind[system_id], system_id=system_id, prediction_type=prediction_type,
                risk_score=round(float(scores[i]), 4), confidence=float(trust[i]),
                predicted_timeframe_hours=settings["timeframe_hours"], factors=predictor.factors(matrix[i]),
                as_of=as_of, model_id=predictor.record_id, threshold=threshold,
                above_threshold=bool(scores[i] >= threshold),
            ))  # fmt: skip
    with transaction.atomic():
        PredictiveGovernance.objects.bulk_create(rows, batch_size=1000, ignore_conflicts=True)
        inserted_ids = set(
            PredictiveGovernance.objects.filter(pk__in=[row.pk for row in rows]).values_list("pk", flat=True)
        )
        inserted = [row for row in rows if row.pk in inserted_ids]
        if inserted:
            transaction.on_commit(lambda: predictions_recorded.send(sender=PredictiveGovernance,
                                                                    predictions=inserted))  # fmt: skip
    result.predicted = len(inserted)
    result.already_predicted = len(rows) - len(inserted)
    for prediction_type in PredictionType.values:
        result.above_threshold[prediction_type] = sum(
            1 for row in inserted if row.prediction_type == prediction_type and row.above_threshold
        )
    result.duration_seconds = time.perf_counter() - started
    logger.info("predictions as_of=%s predicted=%s already=%s above=%s duration_s=%.2f", as_of.isoformat(),
                result.predicted, result.already_predicted, result.above_threshold,
                result.duration_seconds)  # fmt: skip
    return result


def predictions_evaluate_outcomes(*, now: datetime | None = None) -> dict[str, int]:
    """Set ``outcome`` (occurred / not occurred), ``outcome_at`` (the first onset in the timeframe) and
    ``outcome_evaluated_at`` of every pending prediction whose timeframe has passed: ONE set-based
    UPDATE per (type, timeframe) — onsets as defined in :mod:`onsets`, within ``(as_of, as_of + timeframe]``.
    Idempotent (only pending rows change). Returns ``{prediction type: rows evaluated}``."""
    now = now or timezone.now()
    counts: dict[str, int] = {}
    never = Value(datetime(9999, 1, 1, tzinfo=UTC), output_field=DateTimeField())
    for prediction_type in PredictionType.values:
        pending = PredictiveGovernance.objects.filter(prediction_type=prediction_type,
                                                      outcome=PredictionOutcome.PENDING)  # fmt: skip
        counts[prediction_type] = 0
        for hours in pending.values_list("predicted_timeframe_hours", flat=True).distinct().order_by():
            horizon = timedelta(hours=hours)
            due = pending.filter(predicted_timeframe_hours=hours, as_of__lte=now - horizon)
            firsts = []
            for source in onset_sources(prediction_type):
                field_name = source.time_field
                window = source.queryset.filter(
                    system_id=OuterRef("system_id"),
                    **{f"{field_name}__gt": OuterRef("as_of"),
                       f"{field_name}__lte": ExpressionWrapper(OuterRef("as_of") + horizon,
                                                               output_field=DateTimeField())},
                ).order_by(field_name).values(field_name)[:1]  # fmt: skip
                firsts.append(Coalesce(Subquery(window), never))
            first = firsts[0] if len(firsts) == 1 else Least(*firsts)
            counts[prediction_type] += due.update(
                outcome_at=NullIf(first, never),
                # An UPDATE's right-hand sides read the row as it was: decide from the same expression.
                outcome=Case(
                    When(LessThan(first, never), then=Value(PredictionOutcome.OCCURRED)),
                    default=Value(PredictionOutcome.NOT_OCCURRED),
                ),
                outcome_evaluated_at=now,
            )
    return counts


def predictions_purge(*, now: datetime | None = None) -> int:
    """Delete predictions older than ``retention_days`` (by ``as_of``). Returns the rows deleted."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=registry.get("governance.predictive")["retention_days"])
    deleted, _ = PredictiveGovernance.objects.filter(as_of__lt=cutoff).delete()
    return deleted
