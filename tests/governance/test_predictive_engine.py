"""Predictive governance engine: features from hand-built histories, the pass (insufficient data,
idempotency, factors, the signal), outcomes, retention, training and activation, the task and commands."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from io import StringIO

import numpy as np
import pytest
from django.core.management import call_command

from config import registry
from governance.choices import AuditAction, PredictionOutcome, PredictionType, PredictorSource
from governance.models import AuditLog, PredictiveGovernance, PredictorModel
from governance.services.predictive import (
    as_of_slot,
    feature_table,
    predictions_evaluate_outcomes,
    predictions_purge,
    predictions_run,
)
from governance.services.predictive.features import FEATURE_NAMES, features_for_type
from governance.services.predictive.model import Predictor, confidence, forecast_quality
from governance.services.predictive.train import _store
from governance.signals import predictions_recorded
from oversight.services.ingest import events_bulk_load
from oversight.validation import CleanEvent
from tests.factories import AISystemFactory, ControlAssessmentFactory, EvaluationRunFactory

pytestmark = pytest.mark.django_db

AS_OF = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def _events(system, signal, points, category="data_quality"):
    """``points``: (hours before AS_OF, value)."""
    return [
        CleanEvent(
            uuid.uuid4(), system.pk, category, "info", signal, float(value), AS_OF - timedelta(hours=h), "{}", None, {}
        )  # fmt: skip
        for h, value in points
    ]


def _load(*batches):
    events_bulk_load(events=[event for batch in batches for event in batch], now=AS_OF)


def _model(prediction_type: str, weights: dict[str, float], *, auc=0.9, brier=0.05) -> PredictorModel:
    """A stored, active predictor with chosen weights (standardization off: mean 0, scale 1)."""
    names = features_for_type(prediction_type)
    predictor = Predictor(
        prediction_type=prediction_type, feature_names=names, mean=np.zeros(len(names)), scale=np.ones(len(names)),
        coefficients=np.array([weights.get(n, 0.0) for n in names]), intercept=-2.0,
    )  # fmt: skip
    return _store(prediction_type, predictor, {"auc": auc, "brier": brier}, source=PredictorSource.SYNTHETIC)


@pytest.fixture
def models():
    return {
        PredictionType.DRIFT_RISK: _model(PredictionType.DRIFT_RISK, {"psi_level_6h": 3.0, "psi_slope_24h": 1.0}),
        PredictionType.COMPLIANCE_RISK: _model(PredictionType.COMPLIANCE_RISK, {"eval_failures_7d": 1.0}),
        PredictionType.INCIDENT_PROBABILITY: _model(PredictionType.INCIDENT_PROBABILITY, {"alerts_7d": 1.0}),
    }


# --- features ------------------------------------------------------------------------------------------
def test_psi_features_are_level_slope_and_acceleration_in_warning_levels():
    system = AISystemFactory()
    # Hourly PSI rising 0.001 per hour over 48 h, ending at 0.08 (warning 0.1).
    _load(_events(system, "psi", [(h, 0.08 - 0.001 * h) for h in range(48)]))
    row = feature_table(system_ids=[system.pk], as_of=AS_OF).row(system.pk)
    assert row["psi_slope_24h"] == pytest.approx(0.001 * 24 / 0.1)  # 0.24 warning levels per day
    assert row["psi_acceleration"] == pytest.approx(0.0, abs=1e-6)  # a straight line does not accelerate
    # Mean of the readings 0..5 h before as_of (the 6-hour window excludes the one exactly 6 h before).
    assert row["psi_level_6h"] == pytest.approx(np.mean([0.08 - 0.001 * h for h in range(6)]) / 0.1)
    assert row["psi_max_24h"] == pytest.approx(0.8)
    assert row["psi_shift_7d"] > 0


def test_features_ignore_everything_after_as_of():
    system = AISystemFactory()
    _load(_events(system, "psi", [(h, 0.02) for h in range(1, 30)]), _events(system, "psi", [(-2, 0.5)]))
    row = feature_table(system_ids=[system.pk], as_of=AS_OF).row(system.pk)
    assert row["psi_max_24h"] == pytest.approx(0.2)


def test_acceleration_is_the_recent_trend_minus_the_daily_one():
    system = AISystemFactory()
    flat_then_rising = [(h, 0.02) for h in range(6, 24)] + [(h, 0.02 + 0.01 * (6 - h)) for h in range(6)]
    _load(_events(system, "psi", flat_then_rising))
    row = feature_table(system_ids=[system.pk], as_of=AS_OF).row(system.pk)
    assert row["psi_acceleration"] > 1.0


def test_evaluation_margin_assessments_and_volume_features():
    system = AISystemFactory()
    EvaluationRunFactory(system=system, value=0.93, threshold=0.9, ran_at=AS_OF - timedelta(hours=2))
    EvaluationRunFactory(system=system, value=0.85, threshold=0.9, passed=False, ran_at=AS_OF - timedelta(days=3))
    ControlAssessmentFactory(system=system, control="a", assessed_at=AS_OF - timedelta(days=90),
                             next_review_due=(AS_OF - timedelta(days=1)).date())  # fmt: skip
    ControlAssessmentFactory(system=system, control="b", assessed_at=AS_OF - timedelta(days=90),
                             next_review_due=(AS_OF - timedelta(days=1)).date())  # fmt: skip
    # ... control b was assessed again since: only its newest assessment counts.
    ControlAssessmentFactory(system=system, control="b", assessed_at=AS_OF - timedelta(days=2),
                             next_review_due=(AS_OF + timedelta(days=30)).date())  # fmt: skip
    # Two events an hour for a week, four an hour in the last 6 h: volume ratio about 2.
    _load(_events(system, "error_rate", [(h / 2, 0.001) for h in range(12, 336)] + [(h / 4, 0.001) for h in range(24)],
                  category="model_perf"))  # fmt: skip
    row = feature_table(system_ids=[system.pk], as_of=AS_OF).row(system.pk)
    assert row["eval_margin_min_24h"] == pytest.approx(0.03 / 0.9, rel=1e-4)
    assert row["eval_failures_7d"] == 1
    assert row["overdue_assessments"] == 1
    assert row["volume_ratio"] == pytest.approx(2.0, rel=0.05)


# --- the pass -------------------------------------------------------------------------------------------
def test_systems_with_too_little_history_are_reported_and_get_no_prediction(models):
    seasoned, fresh, _silent = (
        AISystemFactory(name="seasoned"),
        AISystemFactory(name="fresh"),
        AISystemFactory(name="silent"),
    )
    _load(
        _events(seasoned, "psi", [(h, 0.02) for h in range(30)]), _events(fresh, "psi", [(h, 0.02) for h in range(3)])
    )
    result = predictions_run(as_of=AS_OF)
    reasons = {item["system"]: item["reason"] for item in result.insufficient_data}
    assert reasons["silent"] == "no events yet"
    assert reasons["fresh"].startswith("2.0 h of events, 24 h needed")
    assert "seasoned" not in reasons
    assert set(PredictiveGovernance.objects.values_list("system__name", flat=True)) == {"seasoned"}
    assert result.predicted == 3


def test_running_a_slot_twice_writes_nothing_new(models):
    system = AISystemFactory()
    _load(_events(system, "psi", [(h, 0.05) for h in range(30)]))
    first = predictions_run(as_of=AS_OF)
    second = predictions_run(as_of=AS_OF + timedelta(minutes=7))  # same 15-minute slot
    assert (first.predicted, second.predicted, second.already_predicted) == (3, 0, 3)
    assert PredictiveGovernance.objects.count() == 3
    assert as_of_slot(AS_OF + timedelta(minutes=7)) == AS_OF


def test_prediction_scores_with_the_active_model_and_names_its_factors(models):
    rising, calm = AISystemFactory(name="rising"), AISystemFactory(name="calm")
    _load(
        _events(rising, "psi", [(h, 0.09 - 0.002 * h) for h in range(30)]),
        _events(calm, "psi", [(h, 0.01) for h in range(30)]),
    )
    predictions_run(as_of=AS_OF)
    drift = {p.system.name: p for p in PredictiveGovernance.objects.filter(prediction_type=PredictionType.DRIFT_RISK)}
    assert drift["rising"].risk_score > drift["calm"].risk_score
    assert drift["rising"].above_threshold and not drift["calm"].above_threshold
    assert drift["rising"].model_id == models[PredictionType.DRIFT_RISK].pk
    top = drift["rising"].factors[0]
    assert top["feature"] == "psi_level_6h"
    assert top["label"].startswith("PSI: mean of the last 6 h")
    assert top["value"] == pytest.approx(np.mean([0.09 - 0.002 * h for h in range(6)]) / 0.1, rel=1e-3)
    contributions = [f["contribution"] for f in drift["rising"].factors]
    assert contributions == sorted(contributions, reverse=True)
    assert 0 < drift["rising"].confidence < 1


def test_predictions_recorded_is_sent_after_commit_with_the_new_rows(models, django_capture_on_commit_callbacks):
    system = AISystemFactory()
    _load(_events(system, "psi", [(h, 0.05) for h in range(30)]))
    received = []

    def receiver(sender, predictions, **kwargs):
        received.append(predictions)

    predictions_recorded.connect(receiver)
    try:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            predictions_run(as_of=AS_OF)
        assert received == []  # nothing before the commit
        for callback in callbacks:
            callback()
        with django_capture_on_commit_callbacks(execute=True):
            predictions_run(as_of=AS_OF)  # a re-run inserts nothing and sends nothing
    finally:
        predictions_recorded.disconnect(receiver)
    assert len(received) == 1
    assert {p.prediction_type for p in received[0]} == set(PredictionType.values)


def test_disabled_config_skips_the_pass(models, admin_user):
    value = registry.get("governance.predictive")
    registry.set("governance.predictive", {**value, "enabled": False}, user=admin_user, reason="test")
    system = AISystemFactory()
    _load(_events(system, "psi", [(h, 0.05) for h in range(30)]))
    result = predictions_run(as_of=AS_OF)
    assert not result.enabled and PredictiveGovernance.objects.count() == 0


# --- outcomes and retention ------------------------------------------------------------------------------
def test_outcomes_are_what_happened_within_the_timeframe(models):
    drifted, quiet, late = AISystemFactory(name="drifted"), AISystemFactory(name="quiet"), AISystemFactory(name="late")
    history = [(h, 0.02) for h in range(24, 50)]
    _load(_events(drifted, "psi", history), _events(quiet, "psi", history), _events(late, "psi", history))
    predictions_run(as_of=AS_OF - timedelta(hours=24))
    # Drifted breaches PSI's warning level (0.1) 3 h after the prediction; late only after 30 h.
    _load(_events(drifted, "psi", [(21, 0.15), (20, 0.2)]), _events(late, "psi", [(-6, 0.3)]))
    counts = predictions_evaluate_outcomes(now=AS_OF)
    assert counts[PredictionType.DRIFT_RISK] == 3
    drift = {p.system.name: p for p in PredictiveGovernance.objects.filter(prediction_type=PredictionType.DRIFT_RISK)}
    assert drift["drifted"].outcome == PredictionOutcome.OCCURRED
    assert drift["drifted"].outcome_at == AS_OF - timedelta(hours=21)
    assert drift["quiet"].outcome == drift["late"].outcome == PredictionOutcome.NOT_OCCURRED
    assert drift["quiet"].outcome_at is None and drift["quiet"].outcome_evaluated_at == AS_OF
    assert predictions_evaluate_outcomes(now=AS_OF + timedelta(hours=1)) == dict.fromkeys(PredictionType.values, 0)


def test_outcomes_wait_until_the_timeframe_has_passed(models):
    system = AISystemFactory()
    _load(_events(system, "psi", [(h, 0.02) for h in range(24, 50)]))
    predictions_run(as_of=AS_OF - timedelta(hours=24))
    predictions_evaluate_outcomes(now=AS_OF - timedelta(hours=1))
    assert set(PredictiveGovernance.objects.values_list("outcome", flat=True)) == {PredictionOutcome.PENDING}


def test_compliance_outcome_is_a_failed_evaluation_run(models):
    system = AISystemFactory()
    _load(_events(system, "psi", [(h, 0.02) for h in range(24, 50)]))
    predictions_run(as_of=AS_OF - timedelta(hours=24))
    EvaluationRunFactory(system=system, value=0.8, threshold=0.9, passed=False, ran_at=AS_OF - timedelta(hours=5))
    predictions_evaluate_outcomes(now=AS_OF)
    compliance = PredictiveGovernance.objects.get(prediction_type=PredictionType.COMPLIANCE_RISK)
    assert (compliance.outcome, compliance.outcome_at) == (PredictionOutcome.OCCURRED, AS_OF - timedelta(hours=5))


def test_purge_deletes_predictions_past_retention(models):
    system = AISystemFactory()
    _load(_events(system, "psi", [(h, 0.02) for h in range(24, 50)]))
    predictions_run(as_of=AS_OF - timedelta(hours=24))
    assert predictions_purge(now=AS_OF + timedelta(days=89)) == 0
    assert predictions_purge(now=AS_OF + timedelta(days=91)) == 3
    assert PredictiveGovernance.objects.count() == 0


# --- models -----------------------------------------------------------------------------------------------
def test_a_new_version_is_activated_only_when_at_least_as_good(models):
    drift = models[PredictionType.DRIFT_RISK]
    worse = _model(PredictionType.DRIFT_RISK, {"psi_level_6h": 1.0}, auc=0.8)
    better = _model(PredictionType.DRIFT_RISK, {"psi_level_6h": 1.0}, auc=0.95)
    active = PredictorModel.objects.get(prediction_type=PredictionType.DRIFT_RISK, is_active=True)
    assert (drift.version, worse.version, better.version, active.pk) == (1, 2, 3, better.pk)
    assert not worse.is_active
    actions = list(AuditLog.objects.filter(object_id=str(better.pk)).values_list("action", flat=True))
    assert sorted(actions) == sorted([AuditAction.PREDICTOR_TRAINED, AuditAction.PREDICTOR_ACTIVATED])


def test_history_retraining_waits_for_enough_labelled_outcomes(models):
    from governance.services.predictive import predictors_train

    assert predictors_train(source=PredictorSource.HISTORY) == []
    assert PredictorModel.objects.count() == 3


def test_parameters_round_trip_without_pickles(models):
    record = models[PredictionType.DRIFT_RISK]
    predictor = Predictor.from_record(PredictorModel.objects.get(pk=record.pk))
    full = np.zeros((1, len(FEATURE_NAMES)))
    assert predictor.score(full)[0] == pytest.approx(1 / (1 + np.exp(2.0)))


def test_forecast_quality_and_confidence():
    quality = forecast_quality(scores=np.array([0.9, 0.8, 0.3, 0.1]), labels=np.array([1, 0, 1, 0]), threshold=0.5)
    assert quality["auc"] == pytest.approx(0.75)
    assert quality["brier"] == pytest.approx((0.01 + 0.64 + 0.49 + 0.01) / 4, abs=1e-4)
    assert quality["precision_at_threshold"] == 0.5
    trust = confidence(history_hours=np.array([0.0, 42.0, 168.0, 500.0]), metrics={"auc": 0.9, "brier": 0.05})
    assert trust[0] == 0 and trust[1] == pytest.approx(0.8 * 0.8 * 0.5, abs=1e-4)
    assert trust[2] == trust[3] == pytest.approx(0.64)


# --- task, schedule and command -----------------------------------------------------------------------------
def test_predict_task_runs_on_the_predict_queue_every_15_minutes():
    from config.celery import app
    from tasks.schedules import SCHEDULES

    assert app.amqp.router.route({}, "governance.predict")["queue"].name == "predict"
    spec = next(s for s in SCHEDULES if s.task == "governance.predict")
    assert (spec.queue, spec.every_seconds) == ("predict", 900)


def test_predict_task_predicts_evaluates_and_purges(models):
    from governance.tasks import predict

    system = AISystemFactory()
    _load(_events(system, "psi", [(h, 0.02) for h in range(-2, 48)]))
    result = predict.delay().get()
    assert result["predicted"] == 3 and set(result) >= {"outcomes", "purged", "insufficient_data"}


def test_predict_command_prints_the_summary_with_insufficient_data(models):
    seasoned, fresh = AISystemFactory(name="seasoned"), AISystemFactory(name="fresh")
    _load(_events(seasoned, "psi", [(h, 0.02) for h in range(30)]), _events(fresh, "psi", [(1, 0.02)]))
    out = StringIO()
    call_command("predict", "--as-of", AS_OF.isoformat(), stdout=out)
    text = out.getvalue()
    assert "3 new" in text
    assert "insufficient data (1 systems, no prediction)" in text and "fresh: 1.0 h of events" in text
