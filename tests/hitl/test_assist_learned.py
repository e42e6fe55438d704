"""The learned model: fitting, calibration metrics, JSON parameters, and training it as a service."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from governance.choices import AuditAction
from governance.models import AuditLog
from hitl.assist.default import DefaultProvider
from hitl.assist.features import FEATURE_NAMES, History, ItemEvidence, SignalStrength, feature_matrix
from hitl.assist.learned import (
    IncompatibleModel,
    LearnedModel,
    NotLearnable,
    TrainingRow,
    expected_calibration_error,
    fit,
)
from hitl.models import AssistModel
from hitl.services.assist import assist_model_train
from hitl.services.backlog_seed import backlog_seed

START = datetime(2026, 1, 1, tzinfo=UTC)


def synthetic_rows(n: int, *, seed: int = 3, classes=("approve", "reject", "escalate")) -> list[TrainingRow]:
    """Decisions that follow a simple rule: serious items escalate, data access is refused, the rest approve."""
    rng = random.Random(seed)
    rows = []
    for index in range(n):
        severity = rng.choice(["critical", "high", "medium", "low", "info"])
        review_type = rng.choice(["alert_triage", "data_access"])
        evidence = ItemEvidence(
            severity=severity,
            review_type=review_type,
            risk_class=rng.choice(["high", "limited", "minimal"]),
            rule_kind="rate",
            signal=SignalStrength(rng.random(), ""),
            history=History(),
        )
        if severity in ("critical", "high") and "escalate" in classes:
            decision = "escalate"
        elif review_type == "data_access" and "reject" in classes:
            decision = "reject"
        else:
            decision = "approve"
        rows.append(TrainingRow(evidence, decision, START + timedelta(hours=index)))
    return rows


def test_ece_of_perfectly_calibrated_predictions_is_zero():
    ece, bins = expected_calibration_error(np.array([0.75, 0.75, 0.75, 0.75]), np.array([1.0, 1.0, 1.0, 0.0]))

    assert ece == pytest.approx(0.0)
    assert [(b.low, b.high, b.count) for b in bins] == [(0.7, 0.8, 4)]


def test_ece_weights_each_bins_gap_by_its_share_of_the_samples():
    confidence = np.array([0.95, 0.95, 0.55, 0.55])
    correct = np.array([1.0, 0.0, 1.0, 1.0])

    ece, bins = expected_calibration_error(confidence, correct)

    # bin 0.9–1.0: accuracy 0.5 vs 0.95; bin 0.5–0.6: accuracy 1.0 vs 0.55; each half of the samples.
    assert ece == pytest.approx(0.5 * 0.45 + 0.5 * 0.45)
    assert [(b.count, b.accuracy) for b in bins] == [(2, 1.0), (2, 0.5)]


def test_a_confidence_of_exactly_one_falls_in_the_top_bin():
    _, bins = expected_calibration_error(np.array([1.0]), np.array([1.0]))

    assert (bins[0].low, bins[0].high) == (0.9, 1.0)


def test_fitting_a_learnable_policy_agrees_with_the_held_out_decisions():
    model, metrics = fit(synthetic_rows(600), holdout_fraction=0.2)

    assert metrics["agreement"] >= 0.95
    assert metrics["n_holdout"] == 120
    assert metrics["n_train"] == 480
    assert set(model.classes) == {"approve", "reject", "escalate"}
    assert sum(c["human"] for c in metrics["per_class"].values()) == 120


def test_the_holdout_is_the_newest_decisions():
    rows = synthetic_rows(200)
    shuffled = random.Random(1).sample(rows, len(rows))

    _, metrics = fit(shuffled, holdout_fraction=0.25)

    assert metrics["holdout_from"] == rows[150].decided_at.isoformat()
    assert metrics["holdout_to"] == rows[-1].decided_at.isoformat()


def test_a_model_survives_a_round_trip_through_json_unchanged():
    model, _ = fit(synthetic_rows(300), holdout_fraction=0.2)
    stored = json.loads(json.dumps(model.parameters()))

    loaded = LearnedModel.from_parameters(classes=model.classes, feature_names=model.feature_names, parameters=stored)

    x = feature_matrix([row.evidence for row in synthetic_rows(50, seed=9)])
    np.testing.assert_allclose(loaded.predict_proba(x), model.predict_proba(x))


def test_probabilities_are_a_temperature_scaled_softmax_of_the_standardized_logits():
    model, _ = fit(synthetic_rows(300), holdout_fraction=0.2)
    x = feature_matrix([row.evidence for row in synthetic_rows(5, seed=4)])

    z = ((x - model.mean) / model.scale) @ model.coefficients.T + model.intercepts
    expected = np.exp(z / model.temperature) / np.exp(z / model.temperature).sum(axis=1, keepdims=True)

    np.testing.assert_allclose(model.predict_proba(x), expected)
    np.testing.assert_allclose(model.predict_proba(x).sum(axis=1), 1.0)


def test_two_kinds_of_decision_give_a_two_class_softmax():
    model, metrics = fit(synthetic_rows(300, classes=("approve", "escalate")), holdout_fraction=0.2)

    proba = model.predict_proba(feature_matrix([row.evidence for row in synthetic_rows(20, seed=5)]))

    assert model.classes == ("approve", "escalate")
    assert proba.shape == (20, 2)
    assert metrics["agreement"] >= 0.95


def test_only_one_kind_of_decision_cannot_be_learned():
    with pytest.raises(NotLearnable, match="approve"):
        fit(synthetic_rows(200, classes=("approve",)), holdout_fraction=0.2)


def test_a_model_naming_features_this_release_does_not_compute_is_refused():
    model, _ = fit(synthetic_rows(200), holdout_fraction=0.2)

    with pytest.raises(IncompatibleModel):
        LearnedModel.from_parameters(
            classes=model.classes,
            feature_names=[*model.feature_names[:-1], "sentiment_of_the_moon"],
            parameters=model.parameters(),
        )


def test_a_model_trained_on_a_subset_of_features_reads_its_own_columns():
    model, _ = fit(synthetic_rows(200), holdout_fraction=0.2)
    reordered = list(reversed(FEATURE_NAMES))
    order = [FEATURE_NAMES.index(name) for name in reordered]
    shuffled = replace(
        model,
        feature_names=tuple(reordered),
        mean=model.mean[order],
        scale=model.scale[order],
        coefficients=model.coefficients[:, order],
    )
    x = feature_matrix([row.evidence for row in synthetic_rows(10, seed=6)])

    np.testing.assert_allclose(shuffled.predict_proba(x), model.predict_proba(x))


# --- training as a service -----------------------------------------------------------------------------
@pytest.mark.django_db
def test_training_with_too_few_human_decisions_returns_no_model_and_writes_nothing():
    backlog_seed(pending=0, history=60, seed=1)
    audit_rows = AuditLog.objects.count()

    outcome = assist_model_train()

    assert outcome.model is None
    assert "60 human decisions" in outcome.reason
    assert "at least 100" in outcome.reason
    assert not AssistModel.objects.exists()
    assert AuditLog.objects.count() == audit_rows


@pytest.mark.django_db
def test_training_saves_an_active_model_with_its_held_out_metrics_and_audits_it():
    backlog_seed(pending=0, history=400, seed=2)

    outcome = assist_model_train(actor="cli:test")

    model = outcome.model
    assert model is not None
    assert (model.version, model.active) == (1, True)
    assert model.training_samples == 320
    assert model.holdout_samples == 80
    assert model.feature_names == list(FEATURE_NAMES)
    assert {"agreement", "ece", "reliability", "per_class", "temperature"} <= set(model.metrics)
    assert model.metrics["agreement"] >= 0.85
    entry = AuditLog.objects.get(action=AuditAction.ASSIST_MODEL_TRAINED)
    assert entry.actor == "cli:test"
    assert entry.object_id == str(model.id)
    assert entry.data["agreement"] == model.metrics["agreement"]
    assert entry.data["version"] == 1


@pytest.mark.django_db
def test_retraining_activates_the_new_version_and_retires_the_old_one():
    backlog_seed(pending=0, history=300, seed=3)
    first = assist_model_train().model

    second = assist_model_train().model

    first.refresh_from_db()
    assert second.version == 2
    assert (first.active, second.active) == (False, True)
    assert DefaultProvider().model_version == "v2"


@pytest.mark.django_db
def test_training_ignores_decisions_older_than_the_history_window():
    backlog_seed(pending=0, history=300, seed=4)

    outcome = assist_model_train(now=datetime.now(UTC) + timedelta(days=500))

    assert outcome.model is None
    assert "0 human decisions in the last 365 days" in outcome.reason
