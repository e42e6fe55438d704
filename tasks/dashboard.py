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
from django.utils import timezone

from tasks.metrics import BUCKET_KEYS
from tasks.models import FunctionCallTotals, FunctionHourSummary, FunctionMetric
from tasks.percentiles import counts_percentile

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

# Start of a row's bucket as epoch seconds // bucket size, per database (the bucket size is a parameter).
_BUCKET_SQL = {
    "postgresql": "FLOOR(EXTRACT(EPOCH FROM measurement_window) / %s)::bigint",
    "sqlite": "CAST(strftime('%%s', measurement_window) AS INTEGER) / %s",
}
# The histogram's bucket counts of each row, summed per group. PostgreSQL reads each row's JSON once
# (jsonb_to_record into typed columns) and returns the sums as one bigint[]; SQLite extracts per key.
_HISTOGRAM_COLUMNS = ", ".join(f'"{key}" bigint' for key in BUCKET_KEYS)
_HISTOGRAM_SUMS = {
    "postgresql": "ARRAY[" + ", ".join(f'COALESCE(SUM(h."{key}"), 0)' for key in BUCKET_KEYS) + "]::bigint[]",
    "sqlite": ", ".join(f"COALESCE(SUM(json_extract(latency_histogram, '$.\"{key}\"')), 0)" for key in BUCKET_KEYS),
}
_FROM = {
    "postgresql": f"{{table}}, LATERAL jsonb_to_record({{table}}.latency_histogram) AS h({_HISTOGRAM_COLUMNS})",
    "sqlite": "{table}",
}


def _grouped_sql(vendor: str, table: str) -> str:
    """Sums per (function, time bucket) over ``[start, end)``. Built only from the constants above and a
    model's table name; the bucket size and the range are parameters."""
    return (
        f"SELECT function_name, {_BUCKET_SQL[vendor]} AS bucket, MAX(kind), "  # noqa: S608
        "CAST(SUM(invocation_count) AS bigint), CAST(SUM(error_count) AS bigint), "
        "CAST(SUM(cold_start_count) AS bigint), SUM(total_latency_ms), MAX(max_latency_ms), "
        f"{_HISTOGRAM_SUMS[vendor]} "
        f"FROM {_FROM[vendor].format(table=table)} "
        "WHERE measurement_window >= %s AND measurement_window < %s GROUP BY 1, 2"
    )


def _grouped_rows(source: type[FunctionCallTotals], step: int, start: datetime, end: datetime) -> list[tuple]:
    """``(name, bucket, kind, invocations, errors, cold_starts, latency_total, latency_max, [bucket counts])``
    per function and time bucket: one query, no ORM row conversion (a 7-day range groups 1,400 rows)."""
    vendor = connection.vendor
    if vendor not in _BUCKET_SQL:
        raise NotImplementedError(f"the function dashboard is not implemented for {vendor}")
    adapt = connection.ops.adapt_datetimefield_value if vendor == "sqlite" else (lambda value: value)
    with connection.cursor() as cursor:
        cursor.execute(_grouped_sql(vendor, source._meta.db_table), [step, adapt(start), adapt(end)])
        rows = cursor.fetchall()
    if vendor == "postgresql":
        return rows
    return [(*row[:8], list(row[8:])) for row in rows]


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

    functions: dict[str, dict] = {}
    grouped = _grouped_rows(source or selected.source, step, start, end)
    for name, bucket, kind, invocations, errors, cold_starts, latency_total, latency_max, counts in grouped:
        entry = functions.get(name)
        if entry is None:
            entry = functions[name] = {
                "name": name,
                "kind": kind,
                "invocations": 0,
                "errors": 0,
                "cold_starts": 0,
                "latency_total": 0.0,
                "max_latency_ms": 0.0,
                "histogram": [0] * len(BUCKET_KEYS),
                "by_bucket": {},
            }
        entry["invocations"] += invocations or 0
        entry["errors"] += errors or 0
        entry["cold_starts"] += cold_starts or 0
        entry["latency_total"] += latency_total or 0.0
        entry["max_latency_ms"] = max(entry["max_latency_ms"], latency_max or 0.0)
        entry["histogram"] = [a + b for a, b in zip(entry["histogram"], counts, strict=True)]
        entry["by_bucket"][int(bucket)] = (invocations or 0, errors or 0, counts)

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
    histogram = entry["histogram"]
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
                "p95_ms": counts_percentile(counts, 0.95),
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
        "p50_ms": counts_percentile(histogram, 0.50),
        "p95_ms": counts_percentile(histogram, 0.95),
        "p99_ms": counts_percentile(histogram, 0.99),
        "buckets": buckets,
    }
