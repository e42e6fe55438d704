"""Retraining the predictors on this installation's own history: a synthetic history with known onsets is
written for existing AI systems, the prediction pass runs at past slots, the outcomes mature, and
``predictors_train(source="history")`` learns from those labelled predictions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from config import registry
from governance.choices import AuditAction, PredictionOutcome, PredictionType, PredictorSource
from governance.models import AuditLog, PredictiveGovernance, PredictorModel
from governance.services.predictive import predictions_evaluate_outcomes, predictions_run, predictors_train
from governance.services.predictive.features import features_for_type
from governance.services.predictive.history import history_generate
from governance.services.predictive.model import Predictor
from governance.services.predictive.onsets import onset_times
from governance.services.predictive.train import _store
from tests.factories import AISystemFactory

pytestmark = pytest.mark.django_db

END = datetime(2026, 6, 1, 0, 0, tzinfo=UTC)  # the history's last moment: outcomes are evaluated here
DAYS = 8
SYSTEMS = 12
SLOT_EVERY = timedelta(hours=4)
FIRST_SLOT = END - timedelta(days=5)  # three days of history behind the first prediction
LAST_SLOT = END - timedelta(hours=12)  # the newest slots are still inside their timeframe at END: pending
# Hand-set weights for the active versions that make the predictions (what matters here is that they score).
ACTIVE_WEIGHTS = {
    PredictionType.DRIFT_RISK: {"psi_level_6h": 2.0, "psi_slope_24h": 1.0},
    PredictionType.COMPLIANCE_RISK: {"eval_margin_min_24h": -2.0},
    PredictionType.INCIDENT_PROBABILITY: {"alerts_7d": 1.0},
}


def _active_model(prediction_type: str, *, auc: float, brier: float) -> PredictorModel:
    names = features_for_type(prediction_type)
    weights = ACTIVE_WEIGHTS[prediction_type]
    predictor = Predictor(
        prediction_type=prediction_type, feature_names=names, mean=np.zeros(len(names)), scale=np.ones(len(names)),
        coefficients=np.array([weights.get(n, 0.0) for n in names]), intercept=-2.0,
    )  # fmt: skip
    return _store(prediction_type, predictor, {"auc": auc, "brier": brier}, source=PredictorSource.SYNTHETIC)


def _lived_history(*, active_auc: float, active_brier: float, admin_user) -> dict[str, PredictorModel]:
    """Active versions with the given quality, a history with onsets for existing systems, the pass at every
    slot from FIRST_SLOT to LAST_SLOT, outcomes evaluated at END, and a retrain threshold the history meets."""
    active = {t: _active_model(t, auc=active_auc, brier=active_brier) for t in PredictionType.values}
    systems = [AISystemFactory(name=f"lived-{i:02d}") for i in range(SYSTEMS)]
    history_generate(seed=67, system_count=SYSTEMS, days=DAYS, end=END, systems=systems)
    as_of = FIRST_SLOT
    while as_of <= LAST_SLOT:
        result = predictions_run(as_of=as_of)
        assert result.predicted == SYSTEMS * len(PredictionType.values), result.insufficient_data
        as_of += SLOT_EVERY
    predictions_evaluate_outcomes(now=END)
    settings = registry.get("governance.predictive")
    registry.set("governance.predictive", {**settings, "retrain_min_labelled": 50}, user=admin_user,
                 reason="retrain on a small history")  # fmt: skip
    return active


def _forecasts(prediction_type: str) -> list[PredictiveGovernance]:
    """The matured predictions made while no onset of their type was under way (in the timeframe before)."""
    matured = list(
        PredictiveGovernance.objects.filter(prediction_type=prediction_type).exclude(outcome=PredictionOutcome.PENDING)
    )
    timeframe = timedelta(hours=registry.get("governance.predictive")["timeframe_hours"])
    onsets = onset_times(prediction_type=prediction_type, system_ids={p.system_id for p in matured},
                         since=END - timedelta(days=DAYS), until=END)  # fmt: skip
    return [p for p in matured if not any(p.as_of - timeframe < t <= p.as_of for t in onsets.get(p.system_id, ()))]


def test_retraining_on_history_stores_a_version_per_type_measured_on_the_newest_slots(admin_user):
    active = _lived_history(active_auc=0.5, active_brier=0.25, admin_user=admin_user)
    for prediction_type in PredictionType.values:  # a history with both outcomes, and the newest still pending
        outcomes = PredictiveGovernance.objects.filter(prediction_type=prediction_type).values_list(
            "outcome", flat=True
        )
        assert set(outcomes) == set(PredictionOutcome.values)
    rows = predictors_train(source=PredictorSource.HISTORY)
    assert sorted(row.prediction_type for row in rows) == sorted(PredictionType.values)
    for row in rows:
        forecasts, metrics = _forecasts(row.prediction_type), row.metrics
        assert (row.source, row.version) == (PredictorSource.HISTORY, active[row.prediction_type].version + 1)
        # Every matured forecast is a sample: the newest slots held out, the older ones trained on.
        slots = sorted({p.as_of for p in forecasts})
        held_out = [p for p in forecasts if p.as_of >= slots[int(len(slots) * 0.7)]]
        assert (metrics["samples"], metrics["train_samples"]) == (len(held_out), len(forecasts) - len(held_out))
        assert metrics["positives"] == sum(p.outcome == PredictionOutcome.OCCURRED for p in held_out) > 0
        assert (
            metrics["train_positives"]
            == sum(p.outcome == PredictionOutcome.OCCURRED for p in forecasts) - (metrics["positives"])
        )
        assert metrics["positives"] < metrics["samples"]
        assert 0.5 < metrics["auc"] <= 1.0 and 0.0 <= metrics["brier"] < 0.25
        assert 0 < metrics["onsets_detected"] <= metrics["onsets"] <= metrics["positives"]
        assert 0 < metrics["mean_lead_time_hours"] <= 24


def test_a_retrained_version_better_than_the_active_one_is_activated_and_audited(admin_user):
    active = _lived_history(active_auc=0.5, active_brier=0.25, admin_user=admin_user)
    rows = predictors_train(source=PredictorSource.HISTORY)
    for row in rows:
        assert row.metrics["auc"] > 0.5
        current = PredictorModel.objects.get(prediction_type=row.prediction_type, is_active=True)
        assert current.pk == row.pk
        assert not PredictorModel.objects.get(pk=active[row.prediction_type].pk).is_active
        actions = set(AuditLog.objects.filter(object_id=str(row.pk)).values_list("action", flat=True))
        assert actions == {AuditAction.PREDICTOR_TRAINED, AuditAction.PREDICTOR_ACTIVATED}


def test_a_retrained_version_worse_than_the_active_one_stays_inactive(admin_user):
    active = _lived_history(active_auc=1.0, active_brier=0.0, admin_user=admin_user)
    rows = predictors_train(source=PredictorSource.HISTORY)
    assert len(rows) == len(PredictionType.values)
    for row in rows:
        assert not row.is_active
        current = PredictorModel.objects.get(prediction_type=row.prediction_type, is_active=True)
        assert current.pk == active[row.prediction_type].pk
        actions = list(AuditLog.objects.filter(object_id=str(row.pk)).values_list("action", flat=True))
        assert actions == [AuditAction.PREDICTOR_TRAINED]


def test_the_retrain_task_returns_each_new_version_and_whether_it_is_active(admin_user):
    from governance.tasks import predict_retrain

    active = _lived_history(active_auc=0.5, active_brier=0.25, admin_user=admin_user)
    result = predict_retrain.delay().get()
    assert result == {t: {"version": active[t].version + 1, "active": True} for t in PredictionType.values}
