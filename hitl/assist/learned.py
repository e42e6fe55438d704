"""A model of past human decisions: multinomial logistic regression with temperature calibration.

Training (scikit-learn, offline) on the features of :mod:`hitl.assist.features`, in time order:

* the newest ``holdout_fraction`` of decisions is held out and only ever used to measure agreement
  (top suggestion = the human's decision), expected calibration error (ECE, 10 equal-width bins of
  the top confidence) and the reliability table;
* on the rest, out-of-fold logits (five contiguous folds) pick the regularization strength and the
  temperature (one scalar dividing the logits) by log-loss; the weights are then fitted on all of it.

The stored parameters (standardization, coefficients, intercepts, temperature, feature names) are
plain JSON and the stored metrics describe exactly those parameters (the holdout never trains).
Prediction is numpy only and vectorized per chunk: ``softmax((((x − mean) / scale) · Wᵀ + b) / T)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from hitl.assist.features import FEATURE_NAMES, ItemEvidence, feature_matrix

CALIBRATION_FOLDS = 5
MIN_TRAINING_ROWS = 20
MISSING_CLASS_LOGIT = -50.0
REGULARIZATION_GRID = (0.1, 1.0, 10.0)
TEMPERATURE_BOUNDS = (0.05, 20.0)
ECE_BINS = 10
PROBABILITY_FLOOR = 1e-12


class NotLearnable(ValueError):
    """The decisions cannot train a model (too few, or only one kind of decision)."""


class IncompatibleModel(ValueError):
    """A stored model names features this code does not compute (trained by another release)."""


@dataclass(frozen=True)
class TrainingRow:
    evidence: ItemEvidence
    decision: str
    decided_at: datetime


@dataclass(frozen=True)
class ReliabilityBin:
    low: float
    high: float
    count: int
    mean_confidence: float
    accuracy: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "bin_low": self.low,
            "bin_high": self.high,
            "count": self.count,
            "mean_confidence": round(self.mean_confidence, 4),
            "accuracy": round(self.accuracy, 4),
        }


@dataclass(frozen=True)
class Evaluation:
    agreement: float
    ece: float
    reliability: list[ReliabilityBin]
    per_class: dict[str, dict[str, int]]
    samples: int


@dataclass(frozen=True)
class LearnedModel:
    """The JSON parameters of a trained model, ready to predict."""

    classes: tuple[str, ...]
    feature_names: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    coefficients: np.ndarray  # classes × features (softmax form, also for two classes)
    intercepts: np.ndarray
    temperature: float
    regularization: float
    version: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    training_samples: int = 0

    @classmethod
    def from_parameters(
        cls,
        *,
        classes: Sequence[str],
        feature_names: Sequence[str],
        parameters: dict[str, Any],
        version: str = "",
        metrics: dict[str, Any] | None = None,
        training_samples: int = 0,
    ) -> LearnedModel:
        unknown = [name for name in feature_names if name not in FEATURE_NAMES]
        if unknown:
            raise IncompatibleModel(f"model {version} uses features this release does not compute: {unknown[:5]}")
        return cls(
            classes=tuple(classes),
            feature_names=tuple(feature_names),
            mean=np.asarray(parameters["mean"], dtype=np.float64),
            scale=np.asarray(parameters["scale"], dtype=np.float64),
            coefficients=np.asarray(parameters["coefficients"], dtype=np.float64),
            intercepts=np.asarray(parameters["intercepts"], dtype=np.float64),
            temperature=float(parameters["temperature"]),
            regularization=float(parameters.get("regularization", 1.0)),
            version=version,
            metrics=dict(metrics or {}),
            training_samples=training_samples,
        )

    @classmethod
    def from_record(cls, record) -> LearnedModel:
        """From an ``AssistModel`` row."""
        return cls.from_parameters(
            classes=record.classes,
            feature_names=record.feature_names,
            parameters=record.parameters,
            version=f"v{record.version}",
            metrics=record.metrics,
            training_samples=record.training_samples,
        )

    def parameters(self) -> dict[str, Any]:
        return {
            "kind": "multinomial_logistic_regression",
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "coefficients": self.coefficients.tolist(),
            "intercepts": self.intercepts.tolist(),
            "temperature": self.temperature,
            "regularization": self.regularization,
        }

    def _columns(self, full: np.ndarray) -> np.ndarray:
        if self.feature_names == FEATURE_NAMES:
            return full
        index = [FEATURE_NAMES.index(name) for name in self.feature_names]
        return full[:, index]

    def logits(self, full_features: np.ndarray) -> np.ndarray:
        x = (self._columns(full_features) - self.mean) / self.scale
        return x @ self.coefficients.T + self.intercepts

    def predict_proba(self, full_features: np.ndarray) -> np.ndarray:
        """Class probabilities (rows sum to 1) for rows of :data:`FEATURE_NAMES`."""
        return _softmax(self.logits(full_features) / self.temperature)

    def predict(self, evidences: Sequence[ItemEvidence]) -> np.ndarray:
        return self.predict_proba(feature_matrix(evidences))


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _log_loss(proba: np.ndarray, labels: np.ndarray) -> float:
    picked = np.where(labels >= 0, proba[np.arange(len(labels)), np.maximum(labels, 0)], 0.0)
    return float(-np.mean(np.log(np.maximum(picked, PROBABILITY_FLOOR))))


def _fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    from scipy.optimize import minimize_scalar

    low, high = (math.log(b) for b in TEMPERATURE_BOUNDS)
    found = minimize_scalar(
        lambda log_t: _log_loss(_softmax(logits / math.exp(log_t)), labels), bounds=(low, high), method="bounded"
    )
    return float(math.exp(found.x))


def _fit_weights(x: np.ndarray, labels: list[str], regularization: float):
    from sklearn.linear_model import LogisticRegression

    estimator = LogisticRegression(C=regularization, max_iter=2000)
    estimator.fit(x, labels)
    classes = tuple(str(c) for c in estimator.classes_)
    coefficients, intercepts = estimator.coef_, estimator.intercept_
    if len(classes) == 2:  # scikit-learn's binary form: one row for the positive class; softmax needs two
        coefficients = np.vstack([np.zeros_like(coefficients[0]), coefficients[0]])
        intercepts = np.array([0.0, intercepts[0]])
    return classes, coefficients, intercepts


def _out_of_fold_logits(
    x: np.ndarray, labels: list[str], classes: tuple[str, ...], regularization: float
) -> np.ndarray:
    """Logits for every row from a model fitted on the other folds (contiguous blocks in time order).

    A class missing from a fold's training part gets a very low logit, so it is never predicted there.
    """
    logits = np.full((len(labels), len(classes)), MISSING_CLASS_LOGIT)
    folds = np.array_split(np.arange(len(labels)), CALIBRATION_FOLDS)
    for fold in folds:
        rest = np.setdiff1d(np.arange(len(labels)), fold)
        rest_labels = [labels[i] for i in rest]
        if len(set(rest_labels)) < 2:
            continue
        fold_classes, coefficients, intercepts = _fit_weights(x[rest], rest_labels, regularization)
        fold_logits = x[fold] @ coefficients.T + intercepts
        for k, label in enumerate(fold_classes):
            logits[fold, classes.index(label)] = fold_logits[:, k]
    return logits


def fit(
    rows: Sequence[TrainingRow],
    *,
    holdout_fraction: float,
    baseline: Callable[[ItemEvidence], str] | None = None,
) -> tuple[LearnedModel, dict[str, Any]]:
    """Fit on time-ordered ``rows``; return the model and its held-out metrics.

    The newest ``holdout_fraction`` is held out. On the rest, out-of-fold logits (contiguous folds)
    choose the regularization strength and the temperature by log-loss; the weights are then fitted on
    all of it. ``baseline`` (e.g. the rules-only decision) is scored on the same holdout for comparison.
    Raises :class:`NotLearnable` when there is nothing to learn or to measure on.
    """
    rows = sorted(rows, key=lambda r: r.decided_at)
    n = len(rows)
    n_holdout = math.ceil(n * holdout_fraction) if holdout_fraction > 0 else 0
    train, holdout = rows[: n - n_holdout], rows[n - n_holdout :]
    if len(train) < MIN_TRAINING_ROWS or not holdout:
        raise NotLearnable(f"{n} decisions are too few to fit, calibrate and hold out a model")
    labels = [r.decision for r in train]
    classes = tuple(sorted(set(labels)))
    if len(classes) < 2:
        raise NotLearnable(f"every decision to learn from is {labels[0]!r}: nothing to tell apart")

    x_full = feature_matrix([r.evidence for r in train])
    mean = x_full.mean(axis=0)
    scale = x_full.std(axis=0)
    scale[scale == 0] = 1.0
    x = (x_full - mean) / scale
    label_index = np.array([classes.index(label) for label in labels])

    best = None
    for regularization in REGULARIZATION_GRID:
        logits = _out_of_fold_logits(x, labels, classes, regularization)
        temperature = _fit_temperature(logits, label_index)
        loss = _log_loss(_softmax(logits / temperature), label_index)
        if best is None or loss < best[0]:
            best = (loss, regularization, temperature)
    _, regularization, temperature = best
    fitted_classes, coefficients, intercepts = _fit_weights(x, labels, regularization)
    model = LearnedModel(
        classes=fitted_classes,
        feature_names=FEATURE_NAMES,
        mean=mean,
        scale=scale,
        coefficients=coefficients,
        intercepts=intercepts,
        temperature=temperature,
        regularization=regularization,
        training_samples=len(train),
    )
    evaluation = evaluate(model.predict([r.evidence for r in holdout]), fitted_classes, [r.decision for r in holdout])
    metrics = {
        "agreement": round(evaluation.agreement, 4),
        "ece": round(evaluation.ece, 4),
        "reliability": [b.as_dict() for b in evaluation.reliability],
        "per_class": evaluation.per_class,
        "n_train": len(train),
        "n_holdout": len(holdout),
        "temperature": round(temperature, 4),
        "regularization": regularization,
        "holdout_from": holdout[0].decided_at.isoformat(),
        "holdout_to": holdout[-1].decided_at.isoformat(),
    }
    if baseline is not None:
        agreed = sum(baseline(r.evidence) == r.decision for r in holdout)
        metrics["rules_agreement"] = round(agreed / len(holdout), 4)
    return model, metrics


def evaluate(proba: np.ndarray, classes: Sequence[str], decisions: Sequence[str]) -> Evaluation:
    """Agreement, ECE and reliability of predicted ``proba`` against the humans' ``decisions``."""
    top = proba.argmax(axis=1)
    confidence = proba[np.arange(len(top)), top]
    suggested = [classes[i] for i in top]
    correct = np.array([s == d for s, d in zip(suggested, decisions, strict=True)], dtype=np.float64)
    ece, bins = expected_calibration_error(confidence, correct)
    per_class: dict[str, dict[str, int]] = {}
    for label in sorted({*classes, *decisions}):
        per_class[label] = {
            "human": sum(d == label for d in decisions),
            "suggested": sum(s == label for s in suggested),
            "agreed": sum(s == d == label for s, d in zip(suggested, decisions, strict=True)),
        }
    return Evaluation(
        agreement=float(correct.mean()) if len(correct) else 0.0,
        ece=ece,
        reliability=bins,
        per_class=per_class,
        samples=len(decisions),
    )


def expected_calibration_error(
    confidence: np.ndarray, correct: np.ndarray, *, bins: int = ECE_BINS
) -> tuple[float, list[ReliabilityBin]]:
    """Σ over equal-width confidence bins of (share of samples) × |accuracy − mean confidence|.

    Returns the ECE and the non-empty bins (the reliability table). The top bin includes 1.0.
    """
    if len(confidence) == 0:
        return 0.0, []
    index = np.minimum((confidence * bins).astype(int), bins - 1)
    table, ece = [], 0.0
    for b in range(bins):
        members = index == b
        count = int(members.sum())
        if not count:
            continue
        mean_confidence = float(confidence[members].mean())
        accuracy = float(correct[members].mean())
        ece += count / len(confidence) * abs(accuracy - mean_confidence)
        table.append(ReliabilityBin(b / bins, (b + 1) / bins, count, mean_confidence, accuracy))
    return float(ece), table
