"""Capability 12 (predictive governance) counts as enforced only while predictions are being produced
(the newest is under an hour old) and the active drift-risk model meets the configured quality floor."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from config import registry
from governance.choices import PredictionType
from governance.services.kpis import capability_statuses
from tests.factories import PredictiveGovernanceFactory, PredictorModelFactory

pytestmark = pytest.mark.django_db


def status():
    return capability_statuses()["predictive_governance"]


def test_enforced_with_a_fresh_prediction_and_a_drift_model_above_the_floor():
    PredictorModelFactory(version=3, metrics={"auc": 0.91, "brier": 0.11})
    PredictiveGovernanceFactory()

    result = status()

    assert result.status == "enforced"
    assert "drift risk model v3 AUC 0.910 ≥ 0.85, Brier 0.110 ≤ 0.2" in result.evidence


def test_not_enforced_before_any_prediction():
    PredictorModelFactory()

    result = status()

    assert result.status == "not_enforced"
    assert result.evidence == "no prediction has been made yet"


def test_not_enforced_once_the_newest_prediction_is_older_than_an_hour():
    PredictorModelFactory()
    PredictiveGovernanceFactory()

    with time_machine.travel(timezone.now() + timedelta(minutes=61)):
        result = status()

    assert result.status == "not_enforced"
    assert "the newest prediction is older than 1 h" in result.evidence


def test_still_enforced_59_minutes_after_the_newest_prediction():
    PredictorModelFactory()
    PredictiveGovernanceFactory()

    with time_machine.travel(timezone.now() + timedelta(minutes=59)):
        assert status().status == "enforced"


def test_not_enforced_without_an_active_drift_model():
    PredictorModelFactory(is_active=False)
    PredictorModelFactory(prediction_type=PredictionType.COMPLIANCE_RISK)
    PredictiveGovernanceFactory()

    result = status()

    assert result.status == "not_enforced"
    assert result.evidence == "no active drift risk model"


def test_not_enforced_when_the_auc_is_below_the_floor():
    PredictorModelFactory(version=2, metrics={"auc": 0.8, "brier": 0.1})
    PredictiveGovernanceFactory()

    result = status()

    assert result.status == "not_enforced"
    assert result.evidence == "drift risk model v2 AUC 0.800 is below the floor 0.85"


def test_not_enforced_when_the_brier_score_is_above_the_ceiling():
    PredictorModelFactory(version=2, metrics={"auc": 0.9, "brier": 0.25})
    PredictiveGovernanceFactory()

    result = status()

    assert result.status == "not_enforced"
    assert result.evidence == "drift risk model v2 Brier 0.250 is above the ceiling 0.2"


def test_a_model_without_measured_metrics_is_not_enough():
    PredictorModelFactory(version=1, metrics={})
    PredictiveGovernanceFactory()

    evidence = status().evidence

    assert "has no measured AUC" in evidence and "has no measured Brier score" in evidence


def test_the_floor_is_read_from_config():
    PredictorModelFactory(metrics={"auc": 0.8, "brier": 0.1})
    PredictiveGovernanceFactory()
    config = registry.get("governance.predictive")
    registry.set(
        "governance.predictive", {**config, "quality_floor": {"auc": 0.75, "brier": 0.2}}, user=None, reason="test"
    )

    assert status().status == "enforced"


def test_every_failing_condition_is_named_at_once():
    PredictorModelFactory(metrics={"auc": 0.5, "brier": 0.4})

    evidence = status().evidence

    assert "no prediction has been made yet" in evidence
    assert "AUC 0.500" in evidence and "Brier 0.400" in evidence
