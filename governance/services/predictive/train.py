"""Training predictor versions and choosing the active one.

``synthetic``: the backtest's procedure on a synthetic history (rolled back), metrics from the held-out
half. ``history``: this installation's matured predictions — their features recomputed at their ``as_of``
from the retained tables, labelled by their outcome — once ``retrain_min_labelled`` exist; as in the backtest,
a prediction made within ``timeframe_hours`` after an onset of its type is no forecast and is left out; the
newest 30 % of ``as_of`` slots are held out, and the lead time is the new version's on them. A new version
is activated when its quality is at least the active one's.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import numpy as np
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from config import registry
from governance.choices import AuditAction, PredictionOutcome, PredictionType, PredictorSource
from governance.models import PredictiveGovernance, PredictorModel
from governance.services.audit import audit_record
from governance.services.predictions import predictor_model_activate
from governance.services.predictive.backtest import backtest_run, lead_times
from governance.services.predictive.features import feature_table, features_for_type
from governance.services.predictive.model import (
    NotLearnable,
    Predictor,
    at_least_as_good,
    forecast_quality,
    predictor_fit,
)
from governance.services.predictive.onsets import onset_times

logger = logging.getLogger(__name__)

SYNTHETIC_SYSTEMS = 40
SYNTHETIC_DAYS = 12
SYNTHETIC_STEP_HOURS = 2
HISTORY_HOLDOUT = 0.3
HISTORY_MAX_SLOTS = 400  # the newest as_of slots recomputed for a retrain (bounded work)


def predictors_train(
    *, source: str = PredictorSource.SYNTHETIC, seed: int = 42, prediction_types: list[str] | None = None,
    systems: int = SYNTHETIC_SYSTEMS, days: int = SYNTHETIC_DAYS, step_hours: int = SYNTHETIC_STEP_HOURS,
) -> list[PredictorModel]:  # fmt: skip
    """Train a new version of each type (all by default) and return the stored rows (see the module
    docstring). Audits ``predictor.trained`` per version and ``predictor.activated`` per activation. A type
    whose samples cannot train a model (``history`` with too few labelled outcomes) is skipped and logged."""
    types = prediction_types or list(PredictionType.values)
    trained: dict[str, tuple[Predictor, dict]] = {}
    if source == PredictorSource.SYNTHETIC:
        report = backtest_run(seed=seed, systems=systems, days=days, step_hours=step_hours)
        for t in types:
            trained[t] = (report.by_type[t].predictor, {**report.by_type[t].metrics, "seed": seed})
    else:
        for t in types:
            try:
                trained[t] = _train_on_history(t, seed=seed)
            except NotLearnable as error:
                logger.info("predictor not retrained prediction_type=%s reason=%s", t, error)
    return [_store(t, predictor, metrics, source=source) for t, (predictor, metrics) in trained.items()]


def predictor_train(*, prediction_type: str, source: str = PredictorSource.SYNTHETIC, seed: int = 42,
                    **sizes) -> PredictorModel | None:  # fmt: skip
    """One type's new version (see :func:`predictors_train`); None when it could not be trained."""
    rows = predictors_train(source=source, seed=seed, prediction_types=[prediction_type], **sizes)
    return rows[0] if rows else None


def labelled_outcomes_count() -> int:
    return PredictiveGovernance.objects.exclude(outcome=PredictionOutcome.PENDING).count()


def _train_on_history(prediction_type: str, *, seed: int) -> tuple[Predictor, dict]:
    settings = registry.get("governance.predictive")
    timeframe = timedelta(hours=settings["timeframe_hours"])
    matured = PredictiveGovernance.objects.filter(prediction_type=prediction_type).exclude(
        outcome=PredictionOutcome.PENDING
    )
    if matured.count() < settings["retrain_min_labelled"]:
        raise NotLearnable(f"{matured.count()} labelled outcomes, {settings['retrain_min_labelled']} needed")
    slots = sorted(set(matured.order_by("-as_of").values_list("as_of", flat=True)[: HISTORY_MAX_SLOTS * 50]))
    slots = slots[-HISTORY_MAX_SLOTS:]
    ids, at, blocks, labels = [], [], [], []
    for as_of in slots:
        rows = dict(matured.filter(as_of=as_of).values_list("system_id", "outcome"))
        table = feature_table(system_ids=list(rows), as_of=as_of)
        blocks.append(table.matrix)
        ids += table.system_ids
        at += [as_of] * len(table.system_ids)
        labels += [int(rows[s] == PredictionOutcome.OCCURRED) for s in table.system_ids]
    matrix, y = np.vstack(blocks), np.array(labels)
    # As in the backtest: a prediction made while the risk was already under way (an onset in the timeframe
    # before it) is no forecast; it neither trains nor measures the model.
    onsets = onset_times(prediction_type=prediction_type, system_ids=set(ids), since=slots[0] - timeframe,
                         until=slots[-1] + timeframe)  # fmt: skip
    eligible = np.array(
        [not any(a - timeframe < t <= a for t in onsets.get(s, ())) for s, a in zip(ids, at, strict=True)], dtype=bool
    )
    cut = slots[int(len(slots) * (1 - HISTORY_HOLDOUT))] if len(slots) > 1 else slots[-1]
    in_train = eligible & np.array([a < cut for a in at], dtype=bool)
    held_out = eligible & ~in_train
    predictor = predictor_fit(prediction_type=prediction_type, feature_names=features_for_type(prediction_type),
                              full=matrix[in_train], labels=y[in_train], seed=seed)  # fmt: skip
    scores = predictor.score(matrix[held_out])
    threshold = settings["alert_thresholds"][prediction_type]
    metrics = forecast_quality(scores=scores, labels=y[held_out], threshold=threshold)
    rows = np.flatnonzero(held_out)
    metrics.update(lead_times(system_ids=[ids[i] for i in rows], as_of=[at[i] for i in rows], scores=scores,
                              onsets=onsets, threshold=threshold, timeframe=timeframe))  # fmt: skip
    metrics["train_samples"] = int(in_train.sum())
    metrics["train_positives"] = int(y[in_train].sum())
    return predictor, metrics


def _store(prediction_type: str, predictor: Predictor, metrics: dict, *, source: str) -> PredictorModel:
    with transaction.atomic():
        PredictorModel.objects.select_for_update().filter(prediction_type=prediction_type).exists()
        version = (PredictorModel.objects.filter(prediction_type=prediction_type).aggregate(v=Max("version"))["v"]
                   or 0) + 1  # fmt: skip
        record = PredictorModel.objects.create(
            prediction_type=prediction_type, version=version, source=source, trained_at=timezone.now(),
            parameters=predictor.parameters(), metrics=metrics,
        )  # fmt: skip
        audit_record(action=AuditAction.PREDICTOR_TRAINED, target=record,
                     data={"prediction_type": prediction_type, "version": version, "source": source,
                           "metrics": metrics})  # fmt: skip
        active = PredictorModel.objects.filter(prediction_type=prediction_type, is_active=True).first()
        if active is None or at_least_as_good(metrics, active.metrics):
            predictor_model_activate(model=record, actor="system:predictive",
                                     reason="trained version at least as good as the active one")  # fmt: skip
    logger.info("predictor trained prediction_type=%s version=%s source=%s active=%s auc=%s",
                prediction_type, version, source, record.is_active, metrics.get("auc"))  # fmt: skip
    return record


def active_predictors() -> dict[str, Predictor]:
    return {
        record.prediction_type: Predictor.from_record(record)
        for record in PredictorModel.objects.filter(is_active=True)
    }
