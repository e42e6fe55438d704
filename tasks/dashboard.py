"""Read side of function metrics for the admin dashboard: one selector, set-based.

:func:`function_dashboard` runs ONE grouped query for the selected range: rows are summed per
(function, time bucket) in the database, histogram buckets included (one SUM per fixed bucket key), so
the Python side only merges the grouped rows. The 1-hour range reads the per-minute windows
(``function_metrics``); the 24-hour and 7-day ranges read the hour summaries
(``function_metrics_hourly``, ≤ 168 rows per function for 7 days), which the flush keeps equal to the
sum of each hour's windows, so every figure (volumes, error rates, cold starts, percentiles of the
merged histograms) is the same as summing the windows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import connection
from django.db.models import BigIntegerField, F, FloatField, Max, Sum
from django.db.models.expressions import RawSQL
from django.db.models.functions import Coalesce
from django.utils import timezone

from tasks.metrics import BUCKET_KEYS
from tasks.models import FunctionCallTotals, FunctionHourSummary, FunctionMetric
from tasks.percentiles import histogram_percentile

TOP_FUNCTIONS = 50


@dataclass(frozen=True)
class DashboardRange:
    key: str
    label: str
    seconds: int
    bucket_seconds: int
    source: type[FunctionCallTotals]  # windows, or hour summaries (bucket_seconds a multiple of an hour)

    @property
    def buckets(self) -> int:
        return self.seconds // self.bucket_seconds


RANGES: dict[str, DashboardRange] = {
    "1h": DashboardRange("1h", "1 hour", 3600, 60, FunctionMetric),
    "24h": DashboardRange("24h", "24 hours", 86400, 3600, FunctionHourSummary),
    "7d": DashboardRange("7d", "7 days", 7 * 86400, 6 * 3600, FunctionHourSummary),
}
DEFAULT_RANGE = "24h"
SORTS = ("volume", "p95", "error_rate")
DEFAULT_SORT = "volume"

# Start of a row's bucket as epoch seconds // bucket size, per database (the bucket size is an int).
_BUCKET_SQL = {
    "postgresql": "FLOOR(EXTRACT(EPOCH FROM measurement_window) / %s)::bigint",
    "sqlite": "CAST(strftime('%%s', measurement_window) AS INTEGER) / %s",
}


# One histogram bucket's count of a row. Written out because Django's key transforms read digit-only keys
# ("1", "5", ...) as array indexes.
_HISTOGRAM_KEY_SQL = {
    "postgresql": ("COALESCE((latency_histogram ->> %s)::bigint, 0)", lambda key: key),
    "sqlite": ("COALESCE(json_extract(latency_histogram, %s), 0)", lambda key: f'$."{key}"'),
}


def _histogram_sum(key: str):
    sql, param = _HISTOGRAM_KEY_SQL[connection.vendor]
    # The SQL is one of the constants above; the key is a parameter.
    return Coalesce(Sum(RawSQL(sql, (param(key),), output_field=BigIntegerField())), 0)  # noqa: S611


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def function_dashboard(
    *,
    range_key: str,
    sort: str = DEFAULT_SORT,
    now: datetime | None = None,
    source: type[FunctionCallTotals] | None = None,
) -> dict:
    """Per-function figures for the last ``range_key`` (``1h``, ``24h`` or ``7d``), bucketed in time.

    Returns ``{"range", "ranges", "sort", "start", "end", "bucket_starts", "functions"}``; each function
    (the ``TOP_FUNCTIONS`` busiest, then sorted by ``sort``: ``volume`` and ``error_rate`` and ``p95``
    descending) has totals (invocations, errors, error_rate, cold_starts, cold_start_rate, p50/p95/p99,
    avg and max latency) and a ``buckets`` list aligned with ``bucket_starts`` (invocations, errors,
    error_rate, p95 per bucket; None where the function did not run). Buckets are aligned to multiples
    of the bucket size in UTC; the last one holds ``now`` (its hour summary is as fresh as the last
    flush, like its windows). ``source`` overrides the rows read (``FunctionMetric`` for the windows:
    the same figures, slower; used to check the summaries). Read-only; a single grouped query. Raises
    ``ValueError`` for an unknown range or sort.
    """
    if range_key not in RANGES:
        raise ValueError(f"unknown range {range_key!r}; expected one of {', '.join(RANGES)}")
    if sort not in SORTS:
        raise ValueError(f"unknown sort {sort!r}; expected one of {', '.join(SORTS)}")
    selected = RANGES[range_key]
    now = now or timezone.now()
    step = selected.bucket_seconds
    last_bucket = int(now.timestamp()) // step
    first_bucket = last_bucket - selected.buckets + 1
    start = datetime.fromtimestamp(first_bucket * step, tz=UTC)
    end = datetime.fromtimestamp((last_bucket + 1) * step, tz=UTC)

    bucket = RawSQL(_BUCKET_SQL[connection.vendor], (step,), output_field=BigIntegerField())  # noqa: S611
    histogram_sums = {f"h{index}": _histogram_sum(key) for index, key in enumerate(BUCKET_KEYS)}
    rows = (
        (source or selected.source)
        .objects.filter(measurement_window__gte=start, measurement_window__lt=end)
        .annotate(bucket=bucket)
        .values("function_name", "bucket")
        .annotate(
            kind=Max("kind"),
            invocations=Sum("invocation_count"),
            errors=Sum("error_count"),
            cold_starts=Sum("cold_start_count"),
            latency_total=Sum(F("total_latency_ms"), output_field=FloatField()),
            latency_max=Max("max_latency_ms"),
            **histogram_sums,
        )
        .order_by()
    )

    grouped = list(rows)

    functions: dict[str, dict] = {}
    for row in grouped:
        entry = functions.get(row["function_name"])
        if entry is None:
            entry = functions[row["function_name"]] = {
                "name": row["function_name"],
                "kind": row["kind"],
                "invocations": 0,
                "errors": 0,
                "cold_starts": 0,
                "latency_total": 0.0,
                "max_latency_ms": 0.0,
                "histogram": [0] * len(BUCKET_KEYS),
                "by_bucket": {},
            }
        counts = [int(row[f"h{index}"] or 0) for index in range(len(BUCKET_KEYS))]
        entry["invocations"] += row["invocations"] or 0
        entry["errors"] += row["errors"] or 0
        entry["cold_starts"] += row["cold_starts"] or 0
        entry["latency_total"] += row["latency_total"] or 0.0
        entry["max_latency_ms"] = max(entry["max_latency_ms"], row["latency_max"] or 0.0)
        entry["histogram"] = [a + b for a, b in zip(entry["histogram"], counts, strict=True)]
        entry["by_bucket"][int(row["bucket"])] = (row["invocations"] or 0, row["errors"] or 0, counts)

    busiest = sorted(functions.values(), key=lambda item: (-item["invocations"], item["name"]))[:TOP_FUNCTIONS]
    result = [_summarise(entry, first_bucket, selected.buckets) for entry in busiest]
    sort_keys = {
        "volume": lambda item: (-item["invocations"], item["name"]),
        "error_rate": lambda item: (-(item["error_rate"] or 0.0), -item["invocations"], item["name"]),
        "p95": lambda item: (-(item["p95_ms"] or 0.0), item["name"]),
    }
    result.sort(key=sort_keys[sort])
    return {
        "range": selected,
        "ranges": list(RANGES.values()),
        "sort": sort,
        "start": start,
        "end": end,
        "bucket_seconds": step,
        "bucket_starts": [start + timedelta(seconds=step * index) for index in range(selected.buckets)],
        "functions": result,
    }


def _summarise(entry: dict, first_bucket: int, bucket_count: int) -> dict:
    histogram = dict(zip(BUCKET_KEYS, entry["histogram"], strict=True))
    buckets = []
    for index in range(bucket_count):
        found = entry["by_bucket"].get(first_bucket + index)
        if found is None:
            buckets.append({"invocations": 0, "errors": 0, "error_rate": None, "p95_ms": None})
            continue
        invocations, errors, counts = found
        buckets.append(
            {
                "invocations": invocations,
                "errors": errors,
                "error_rate": _ratio(errors, invocations),
                "p95_ms": histogram_percentile(dict(zip(BUCKET_KEYS, counts, strict=True)), 0.95),
            }
        )
    invocations = entry["invocations"]
    return {
        "name": entry["name"],
        "kind": entry["kind"],
        "invocations": invocations,
        "errors": entry["errors"],
        "error_rate": _ratio(entry["errors"], invocations),
        "cold_starts": entry["cold_starts"],
        "cold_start_rate": _ratio(entry["cold_starts"], invocations),
        "avg_latency_ms": entry["latency_total"] / invocations if invocations else None,
        "max_latency_ms": entry["max_latency_ms"],
        "p50_ms": histogram_percentile(histogram, 0.50),
        "p95_ms": histogram_percentile(histogram, 0.95),
        "p99_ms": histogram_percentile(histogram, 0.99),
        "buckets": buckets,
    }
