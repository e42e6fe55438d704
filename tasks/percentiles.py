"""Percentiles from the fixed latency histogram buckets (the Prometheus ``histogram_quantile`` method)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from tasks.metrics import BUCKET_KEYS, HISTOGRAM_BOUNDS_MS


def histogram_percentile(histogram: Mapping[str, int], quantile: float) -> float | None:
    """Estimate the ``quantile`` (0..1) latency in ms by linear interpolation inside its bucket.

    Returns None for an empty histogram; a quantile that falls in the +Inf bucket returns the largest
    finite bound (the estimate is capped, as Prometheus does).
    """
    return counts_percentile([int(histogram.get(key, 0)) for key in BUCKET_KEYS], quantile)


def counts_percentile(counts: Sequence[int], quantile: float) -> float | None:
    """:func:`histogram_percentile` of bucket counts listed in ``BUCKET_KEYS`` order."""
    total = sum(counts)
    if total == 0:
        return None
    rank = quantile * total
    cumulative = 0
    for index, count in enumerate(counts):
        if cumulative + count >= rank and count:
            if index == len(HISTOGRAM_BOUNDS_MS):
                return float(HISTOGRAM_BOUNDS_MS[-1])
            lower = HISTOGRAM_BOUNDS_MS[index - 1] if index else 0.0
            upper = HISTOGRAM_BOUNDS_MS[index]
            return lower + (upper - lower) * (rank - cumulative) / count
        cumulative += count
    return float(HISTOGRAM_BOUNDS_MS[-1])
