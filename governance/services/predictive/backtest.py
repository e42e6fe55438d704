"""Walk-forward backtest: synthetic histories with labelled onsets, predictions at every step from data
strictly before it, and the forecast quality a governance lead can hold the numbers to.

At each step ``as_of`` (hourly by default) every system with enough history gets its features at
``as_of`` (nothing later is read). A sample is *eligible* for a prediction type when no onset happened in
the ``timeframe_hours`` before ``as_of`` (predicting a breach that is already under way is not a forecast);
its label is whether an onset happens in ``(as_of, as_of + timeframe]``. The systems are split in two:
the models train on one half and are scored on the other, so no system, and no moment of its history,
is both learned and judged.

Lead time: for each onset of a held-out system with eligible steps before it, the hours between the
first step of the preceding ``timeframe`` at which the score reached the alert threshold and the onset;
the mean is over the onsets detected that way (the detection rate is reported next to it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import numpy as np
from django.utils import timezone

from config import registry
from governance.choices import PredictionType
from governance.services.predictive.features import (
    DAY_WINDOW,
    LONG_WINDOW,
    SHORT_WINDOW,
    feature_table,
    features_for_type,
)
from governance.services.predictive.history import synthetic_history
from governance.services.predictive.model import Predictor, forecast_quality, predictor_fit
from governance.services.predictive.onsets import onset_times
from oversight.selectors import signal_window_stats_walk

WARMUP_HOURS = 48  # steps start once the 7-day features have two days of baseline


@dataclass
class SampleSet:
    system_ids: list[UUID]
    as_of: list[datetime]
    matrix: np.ndarray
    labels: dict[str, np.ndarray]
    eligible: dict[str, np.ndarray]
    onsets: dict[str, dict[UUID, list[datetime]]]

    def subset(self, mask: np.ndarray) -> SampleSet:
        index = np.nonzero(mask)[0]
        return SampleSet(
            system_ids=[self.system_ids[i] for i in index],
            as_of=[self.as_of[i] for i in index],
            matrix=self.matrix[index],
            labels={k: v[index] for k, v in self.labels.items()},
            eligible={k: v[index] for k, v in self.eligible.items()},
            onsets=self.onsets,
        )


def labelled_samples(
    *, system_ids: list[UUID], steps: list[datetime], timeframe: timedelta, min_history_hours: float
) -> SampleSet:
    """Features of every system at every step (one feature pass per step), with labels and eligibility
    per prediction type from the onsets in the tables (:mod:`onsets`)."""
    types = list(PredictionType.values)
    onsets = {
        t: onset_times(
            prediction_type=t, system_ids=system_ids, since=steps[0] - timeframe, until=steps[-1] + timeframe
        )  # fmt: skip
        for t in types
    }
    # The telemetry statistics of every step from one read of the events (the same numbers as the query
    # feature_table runs in production at one as_of); the other families are queried per step.
    walk = signal_window_stats_walk(system_ids=system_ids, untils=steps, short=SHORT_WINDOW, day=DAY_WINDOW,
                                    long=LONG_WINDOW)  # fmt: skip
    rows_ids, rows_at, blocks = [], [], []
    for as_of in steps:
        table = feature_table(system_ids=system_ids, as_of=as_of, window_stats=walk[as_of])
        keep = table.history_hours >= min_history_hours
        blocks.append(table.matrix[keep])
        rows_ids += [s for s, k in zip(table.system_ids, keep, strict=True) if k]
        rows_at += [as_of] * int(keep.sum())
    labels, eligible = {}, {}
    for t in types:
        label = np.zeros(len(rows_ids), dtype=int)
        ok = np.ones(len(rows_ids), dtype=bool)
        for i, (system_id, as_of) in enumerate(zip(rows_ids, rows_at, strict=True)):
            times = onsets[t].get(system_id, ())
            label[i] = any(as_of < at <= as_of + timeframe for at in times)
            ok[i] = not any(as_of - timeframe < at <= as_of for at in times)
        labels[t], eligible[t] = label, ok
    matrix = np.vstack(blocks) if blocks else np.zeros((0, 0))
    return SampleSet(rows_ids, rows_at, matrix, labels, eligible, onsets)


def lead_times(
    *, system_ids: list[UUID], as_of: list[datetime], scores: np.ndarray, onsets: dict[UUID, list[datetime]],
    threshold: float, timeframe: timedelta,
) -> dict[str, Any]:  # fmt: skip
    """Mean lead time of the onsets detected before they happened (see the module docstring): ``scores`` of
    the samples (``system_ids`` × ``as_of``), ``onsets`` the sorted onset times per system. Also used by
    retraining on history (:mod:`train`)."""
    by_system: dict[UUID, list[tuple[datetime, float]]] = {}
    for system_id, moment, score in zip(system_ids, as_of, scores, strict=True):
        by_system.setdefault(system_id, []).append((moment, float(score)))
    leads, onsets_seen = [], 0
    for system_id, steps in by_system.items():
        times = onsets.get(system_id, [])
        episodes = [at for i, at in enumerate(times) if i == 0 or at - times[i - 1] > timeframe]
        for onset in episodes:
            before = sorted((moment, score) for moment, score in steps if onset - timeframe <= moment < onset)
            if not before:
                continue
            onsets_seen += 1
            crossed = [moment for moment, score in before if score >= threshold]
            if crossed:
                leads.append((onset - crossed[0]).total_seconds() / 3600)
    return {
        "mean_lead_time_hours": round(float(np.mean(leads)), 2) if leads else None,
        "median_lead_time_hours": round(float(np.median(leads)), 2) if leads else None,
        "onsets": onsets_seen,
        "onsets_detected": len(leads),
    }


@dataclass
class TypeReport:
    prediction_type: str
    predictor: Predictor
    metrics: dict[str, Any]


@dataclass
class BacktestReport:
    seed: int
    systems: int
    days: int
    step_hours: int
    timeframe_hours: int
    rows_written: dict[str, int]
    train_samples: int
    holdout_samples: int
    by_type: dict[str, TypeReport] = field(default_factory=dict)
    duration_seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed, "systems": self.systems, "days": self.days, "step_hours": self.step_hours,
            "timeframe_hours": self.timeframe_hours, "rows_written": self.rows_written,
            "train_samples": self.train_samples, "holdout_samples": self.holdout_samples,
            "duration_seconds": round(self.duration_seconds, 2),
            "by_type": {t: r.metrics for t, r in self.by_type.items()},
        }  # fmt: skip


def backtest_run(
    *, seed: int = 42, systems: int = 60, days: int = 14, step_hours: int = 1, end: datetime | None = None
) -> BacktestReport:
    """Generate a synthetic history (rolled back at the end: nothing is left in the database), train one
    predictor per type on half the systems and measure it walk-forward on the other half."""
    started = time.perf_counter()
    settings = registry.get("governance.predictive")
    timeframe = timedelta(hours=settings["timeframe_hours"])
    end = end or timezone.now().replace(minute=0, second=0, microsecond=0)
    with synthetic_history(seed=seed, systems=systems, days=days, end=end) as history:
        ids = [system.pk for system in history.systems]
        first = history.start + timedelta(hours=WARMUP_HOURS)
        last_hour = int((end - timeframe - first).total_seconds() // 3600)
        steps = [first + timedelta(hours=h) for h in range(0, last_hour + 1, step_hours)]
        samples = labelled_samples(system_ids=ids, steps=steps, timeframe=timeframe,
                                   min_history_hours=settings["min_history_hours"])  # fmt: skip
        rows_written = dict(history.counts)
    rng = np.random.default_rng(seed)
    train_systems = set(rng.permutation(ids)[: len(ids) // 2].tolist())
    in_train = np.array([s in train_systems for s in samples.system_ids], dtype=bool)
    report = BacktestReport(
        seed=seed, systems=systems, days=days, step_hours=step_hours, timeframe_hours=settings["timeframe_hours"],
        rows_written=rows_written, train_samples=int(in_train.sum()), holdout_samples=int((~in_train).sum()),
    )  # fmt: skip
    for prediction_type in PredictionType.values:
        report.by_type[prediction_type] = evaluate_type(
            samples=samples, in_train=in_train, prediction_type=prediction_type, seed=seed,
            threshold=settings["alert_thresholds"][prediction_type], timeframe=timeframe,
        )  # fmt: skip
    report.duration_seconds = time.perf_counter() - started
    return report


def evaluate_type(
    *, samples: SampleSet, in_train: np.ndarray, prediction_type: str, seed: int, threshold: float,
    timeframe: timedelta,
) -> TypeReport:  # fmt: skip
    """Train on the eligible samples of ``in_train``, score the eligible others; the predictor's metrics."""
    eligible = samples.eligible[prediction_type]
    train, holdout = samples.subset(in_train & eligible), samples.subset(~in_train & eligible)
    predictor = predictor_fit(
        prediction_type=prediction_type, feature_names=features_for_type(prediction_type), full=train.matrix,
        labels=train.labels[prediction_type], seed=seed,
    )  # fmt: skip
    scores = predictor.score(holdout.matrix)
    metrics = forecast_quality(scores=scores, labels=holdout.labels[prediction_type], threshold=threshold)
    metrics.update(lead_times(system_ids=holdout.system_ids, as_of=holdout.as_of, scores=scores,
                              onsets=samples.onsets[prediction_type], threshold=threshold,
                              timeframe=timeframe))  # fmt: skip
    metrics["train_samples"] = int(train.labels[prediction_type].size)
    metrics["train_positives"] = int(train.labels[prediction_type].sum())
    return TypeReport(prediction_type=prediction_type, predictor=predictor, metrics=metrics)
