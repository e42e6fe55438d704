"""The predictors: one logistic regression per prediction type, Platt-calibrated, scored in numpy.

Training (scikit-learn, offline): features standardized (mean, scale), ``LogisticRegression`` (L2, C = 1)
fitted on the training part; its out-of-fold logits (3 stratified folds) fit a Platt map
``p = σ(a · logit + b)`` that corrects the regression's over- or under-confidence on rare positives.
``PredictorModel.parameters`` holds all of it as plain JSON (no pickle): scoring is
``σ(a · (((x − mean) / scale) · w + c) + b)``, and a factor's contribution is ``a · wᵢ · zᵢ`` (its share of
the calibrated logit), so "why" adds up to the score.

Quality (on data the model never trained on): AUC, Brier score, precision and recall at the alert
threshold (``governance.predictive.alert_thresholds``), and the lead time of detected onsets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from governance.services.predictive.features import FEATURE_LABELS, FEATURE_NAMES

REGULARIZATION = 1.0
CALIBRATION_FOLDS = 3
TOP_FACTORS = 5
SCALE_FLOOR = 1e-9


class NotLearnable(ValueError):
    """The samples cannot train a model (too few, or only one class)."""


class IncompatibleModel(ValueError):
    """A stored model names features this release does not compute."""


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -500, 500)))


@dataclass(frozen=True)
class Predictor:
    prediction_type: str
    feature_names: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    coefficients: np.ndarray
    intercept: float
    calibration_a: float = 1.0
    calibration_b: float = 0.0
    metrics: dict[str, Any] = field(default_factory=dict)
    record_id: Any = None
    version: int = 0

    @classmethod
    def from_parameters(cls, prediction_type: str, parameters: dict[str, Any], **extra) -> Predictor:
        names = tuple(parameters["feature_names"])
        unknown = [name for name in names if name not in FEATURE_NAMES]
        if unknown:
            raise IncompatibleModel(f"model uses features this release does not compute: {unknown[:5]}")
        return cls(
            prediction_type=prediction_type,
            feature_names=names,
            mean=np.asarray(parameters["mean"], dtype=np.float64),
            scale=np.asarray(parameters["scale"], dtype=np.float64),
            coefficients=np.asarray(parameters["coefficients"], dtype=np.float64),
            intercept=float(parameters["intercept"]),
            calibration_a=float(parameters["calibration"]["a"]),
            calibration_b=float(parameters["calibration"]["b"]),
            **extra,
        )

    @classmethod
    def from_record(cls, record) -> Predictor:
        return cls.from_parameters(record.prediction_type, record.parameters, metrics=record.metrics,
                                   record_id=record.pk, version=record.version)  # fmt: skip

    def parameters(self) -> dict[str, Any]:
        return {
            "kind": "logistic_regression",
            "feature_names": list(self.feature_names),
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "coefficients": self.coefficients.tolist(),
            "intercept": self.intercept,
            "calibration": {"method": "platt", "a": self.calibration_a, "b": self.calibration_b},
            "regularization": REGULARIZATION,
        }

    def standardized(self, full: np.ndarray) -> np.ndarray:
        columns = [FEATURE_NAMES.index(name) for name in self.feature_names]
        return (full[:, columns] - self.mean) / self.scale

    def score(self, full: np.ndarray) -> np.ndarray:
        """Calibrated probabilities for rows of :data:`FEATURE_NAMES` (a ``FeatureTable.matrix``)."""
        if full.shape[0] == 0:
            return np.zeros(0)
        logits = self.standardized(full) @ self.coefficients + self.intercept
        return _sigmoid(self.calibration_a * logits + self.calibration_b)

    def factors(self, full_row: np.ndarray, *, top: int = TOP_FACTORS) -> list[dict[str, Any]]:
        """The features pushing this score up the most (``a · wᵢ · zᵢ``, largest first), with their raw
        values; when none pushes up, the ones holding it down the least."""
        z = self.standardized(full_row.reshape(1, -1))[0]
        contributions = self.calibration_a * self.coefficients * z
        order = np.argsort(-contributions)[:top]
        columns = [FEATURE_NAMES.index(name) for name in self.feature_names]
        return [
            {
                "feature": self.feature_names[i],
                "label": FEATURE_LABELS[self.feature_names[i]],
                "value": round(float(full_row[columns[i]]), 4),
                "contribution": round(float(contributions[i]), 4),
            }
            for i in order
        ]


def predictor_fit(*, prediction_type: str, feature_names: tuple[str, ...], full: np.ndarray, labels: np.ndarray,
                  seed: int) -> Predictor:  # fmt: skip
    """Fit standardization, logistic regression and the Platt map (see the module docstring)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    labels = np.asarray(labels, dtype=int)
    positives = int(labels.sum())
    if labels.size < 20 or positives < CALIBRATION_FOLDS or labels.size - positives < CALIBRATION_FOLDS:
        raise NotLearnable(f"{labels.size} samples with {positives} positives cannot train {prediction_type}")
    columns = [FEATURE_NAMES.index(name) for name in feature_names]
    x = full[:, columns]
    mean = x.mean(axis=0)
    scale = np.where(x.std(axis=0) > SCALE_FLOOR, x.std(axis=0), 1.0)
    z = (x - mean) / scale

    def fit(rows: np.ndarray):
        estimator = LogisticRegression(C=REGULARIZATION, max_iter=2000)
        estimator.fit(z[rows], labels[rows])
        return estimator

    out_of_fold = np.zeros(labels.size)
    folds = StratifiedKFold(n_splits=CALIBRATION_FOLDS, shuffle=True, random_state=seed)
    for train, test in folds.split(z, labels):
        estimator = fit(train)
        out_of_fold[test] = estimator.decision_function(z[test])
    platt = LogisticRegression(C=1e6, max_iter=1000).fit(out_of_fold.reshape(-1, 1), labels)
    estimator = fit(np.arange(labels.size))
    return Predictor(
        prediction_type=prediction_type,
        feature_names=tuple(feature_names),
        mean=mean,
        scale=scale,
        coefficients=estimator.coef_[0].astype(np.float64),
        intercept=float(estimator.intercept_[0]),
        calibration_a=float(platt.coef_[0][0]),
        calibration_b=float(platt.intercept_[0]),
    )


def forecast_quality(*, scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, Any]:
    """AUC (None with one class only), Brier score, precision and recall at ``threshold``, counts."""
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels, dtype=int)
    scores = np.asarray(scores, dtype=np.float64)
    alerted = scores >= threshold
    positives = int(labels.sum())
    both = 0 < positives < labels.size
    return {
        "auc": round(float(roc_auc_score(labels, scores)), 4) if both else None,
        "brier": round(float(np.mean((scores - labels) ** 2)), 4) if labels.size else None,
        "precision_at_threshold": round(float(labels[alerted].mean()), 4) if alerted.any() else None,
        "recall_at_threshold": round(float(alerted[labels == 1].mean()), 4) if positives else None,
        "samples": int(labels.size),
        "positives": positives,
        "threshold": threshold,
    }


def confidence(*, history_hours: np.ndarray, metrics: dict[str, Any]) -> np.ndarray:
    """How much the score can be trusted, 0–1: measured model quality × history coverage.

    Quality = max(0, 2·AUC − 1) (the Gini: 0 for a coin toss, 1 for a perfect ranking) × max(0, 1 − Brier / 0.25)
    (0.25 is the Brier score of always answering 0.5). Coverage = √(hours of history / 168): the features'
    longest window is 7 days, so a system seen for a day has a thin baseline (0.38), one seen for a week a
    full one (1).
    """
    auc, brier = metrics.get("auc"), metrics.get("brier")
    quality = 0.0
    if auc is not None and brier is not None:
        quality = max(0.0, 2 * auc - 1) * max(0.0, 1 - brier / 0.25)
    coverage = np.sqrt(np.clip(history_hours / 168.0, 0.0, 1.0))
    return np.round(quality * coverage, 4)


def at_least_as_good(candidate: dict[str, Any], active: dict[str, Any]) -> bool:
    """A new version replaces the active one when its AUC is at least the active one's (ties: Brier)."""
    new_auc, old_auc = candidate.get("auc"), active.get("auc")
    if old_auc is None:
        return True
    if new_auc is None:
        return False
    if not math.isclose(new_auc, old_auc, abs_tol=1e-4):
        return new_auc > old_auc
    # A missing Brier score counts as the worst (1); a perfect one (0.0) is not missing.
    new_brier, old_brier = candidate.get("brier"), active.get("brier")
    return (1.0 if new_brier is None else new_brier) <= (1.0 if old_brier is None else old_brier)
