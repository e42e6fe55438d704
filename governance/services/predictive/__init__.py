"""Predictive governance: drift, compliance and incident risk of each AI system, predicted from its history
with transparent, calibrated models whose quality Vigil measures itself (docs/architecture.md).

Modules: ``features`` (set-based feature queries), ``onsets`` (what counts as the risk happening),
``history`` (synthetic history with known onsets), ``model`` (fit, score, factors, quality, confidence),
``backtest`` (walk-forward evaluation), ``train`` (versions and activation), ``run`` (the pass, outcomes,
retention).
"""

from governance.services.predictive.backtest import BacktestReport, backtest_run
from governance.services.predictive.features import FEATURE_NAMES, FeatureTable, feature_table
from governance.services.predictive.run import (
    PredictionRunResult,
    as_of_slot,
    predictions_evaluate_outcomes,
    predictions_purge,
    predictions_run,
)
from governance.services.predictive.train import active_predictors, predictor_train, predictors_train

__all__ = [
    "FEATURE_NAMES",
    "BacktestReport",
    "FeatureTable",
    "PredictionRunResult",
    "active_predictors",
    "as_of_slot",
    "backtest_run",
    "feature_table",
    "predictions_evaluate_outcomes",
    "predictions_purge",
    "predictions_run",
    "predictor_train",
    "predictors_train",
]
