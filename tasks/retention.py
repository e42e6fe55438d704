"""Retention of function metrics: raw windows are rolled up into hourly rows, hourly rows expire.

Configured by ``observability.retention`` (``raw_days``, ``hourly_days``) in the config registry.

The hour summaries (``function_metrics_hourly``, kept by every flush) are a separate read model: the
rollup regroups an hour's rows *inside* ``function_metrics`` (sums unchanged) and never touches a
summary, so nothing is counted twice; summaries only expire, after ``hourly_days`` like hourly rows.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import transaction
from django.db.models import Q
from django.db.models.functions import TruncHour
from django.utils import timezone

from config import registry
from tasks.models import FunctionCallTotals, FunctionHourSummary, FunctionMetric

HOUR_SECONDS = 3600
RETENTION_KEY = "observability.retention"


@dataclass(frozen=True)
class RollupResult:
    """What one rollup run did."""

    function_hours_rolled: int = 0
    raw_rows_rolled: int = 0
    hourly_rows_expired: int = 0
    hour_summaries_expired: int = 0


def _hour_start(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _merge_counts(target: dict, source: dict) -> dict:
    merged = Counter({key: int(value) for key, value in target.items()})
    merged.update({key: int(value) for key, value in source.items()})
    return dict(merged)


def _merge_into(hourly: FunctionMetric, raw: FunctionMetric) -> None:
    hourly.invocation_count += raw.invocation_count
    hourly.error_count += raw.error_count
    hourly.cold_start_count += raw.cold_start_count
    hourly.total_latency_ms += raw.total_latency_ms
    hourly.max_latency_ms = max(hourly.max_latency_ms, raw.max_latency_ms)
    hourly.errors_by_type = _merge_counts(hourly.errors_by_type or {}, raw.errors_by_type or {})
    hourly.latency_histogram = _merge_counts(hourly.latency_histogram or {}, raw.latency_histogram or {})
    if raw.recorded_at > hourly.recorded_at:
        hourly.recorded_at = raw.recorded_at
        hourly.kind = raw.kind


def _raw_windows() -> Q:
    return Q(window_seconds__lt=HOUR_SECONDS)


def _roll_chunk(pairs: list[tuple[str, datetime]]) -> int:
    """Merge the raw rows of ``pairs`` (function name, UTC hour) into their hourly rows, in one transaction.

    Raw rows and existing hourly rows are locked first; raw rows are deleted before hourly rows are
    inserted, because an hourly row may take the place (same window start) of the hour's first raw row.
    Returns the number of raw rows rolled.
    """
    raw_filter = Q()
    for name, hour in pairs:
        raw_filter |= Q(
            function_name=name, measurement_window__gte=hour, measurement_window__lt=hour + timedelta(hours=1)
        )
    names = {name for name, _ in pairs}
    hours = {hour for _, hour in pairs}
    with transaction.atomic():
        raw_rows = list(
            FunctionMetric.objects.select_for_update()
            .filter(raw_filter & _raw_windows())
            .order_by("function_name", "measurement_window")
        )
        hourly_rows = {
            (row.function_name, row.measurement_window): row
            for row in FunctionMetric.objects.select_for_update().filter(
                function_name__in=names, measurement_window__in=hours, window_seconds=HOUR_SECONDS
            )
        }
        grouped: dict[tuple[str, datetime], list[FunctionMetric]] = defaultdict(list)
        for row in raw_rows:
            grouped[(row.function_name, _hour_start(row.measurement_window))].append(row)
        FunctionMetric.objects.filter(pk__in=[row.pk for row in raw_rows]).delete()
        created, updated = [], []
        for (name, hour), rows in grouped.items():
            hourly = hourly_rows.get((name, hour))
            if hourly is None:
                first = rows[0]
                hourly = FunctionMetric(
                    function_name=name,
                    kind=first.kind,
                    measurement_window=hour,
                    window_seconds=HOUR_SECONDS,
                    recorded_at=first.recorded_at,
                    errors_by_type={},
                    latency_histogram={},
                )
                created.append(hourly)
            else:
                updated.append(hourly)
            for row in rows:
                _merge_into(hourly, row)
        FunctionMetric.objects.bulk_create(created)
        FunctionMetric.objects.bulk_update(
            updated,
            [
                "kind",
                "invocation_count",
                "error_count",
                "cold_start_count",
                "total_latency_ms",
                "max_latency_ms",
                "errors_by_type",
                "latency_histogram",
                "recorded_at",
            ],
        )
    return len(raw_rows)


def _expire(model: type[FunctionCallTotals], rows: Q, *, chunk_size: int) -> int:
    """Delete ``rows`` of ``model`` in chunks of ``chunk_size`` (short transactions on a large table)."""
    expired = 0
    while True:
        ids = list(model.objects.filter(rows).values_list("pk", flat=True)[:chunk_size])
        if not ids:
            return expired
        expired += model.objects.filter(pk__in=ids).delete()[0]


def function_metrics_rollup(
    *, now: datetime | None = None, chunk_size: int = 200, expire_chunk_size: int = 5000
) -> RollupResult:
    """Roll raw windows older than ``raw_days`` into hourly rows; delete hourly rows and hour summaries
    older than ``hourly_days``.

    Guarantees:

    * exact: per function and UTC hour, invocations, errors, cold starts, total latency, errors by type
      and histogram buckets are summed and max latency is the maximum, so every total and percentile
      computed over the hour is the same before and after;
    * only whole hours are rolled (those ending before ``now - raw_days``);
    * atomic per chunk of ``chunk_size`` function-hours (raw rows locked, deleted, merged in one
      transaction): a failure leaves each function-hour either rolled or untouched;
    * idempotent: a second run changes nothing; raw rows that arrive later for an already rolled hour
      are added into its hourly row by the next run;
    * hour summaries (``function_metrics_hourly``) are not rolled (the flush already counted each window
      in its summary once) and expire with the hourly rows.
    """
    now = now or timezone.now()
    retention = registry.get(RETENTION_KEY)
    rolled_before = _hour_start(now - timedelta(days=retention["raw_days"]))
    function_hours = raw_rows = 0
    pending = (
        FunctionMetric.objects.filter(_raw_windows(), measurement_window__lt=rolled_before)
        .annotate(hour=TruncHour("measurement_window", tzinfo=UTC))
        .values_list("function_name", "hour")
        .distinct()
        .order_by("hour", "function_name")
    )
    while True:
        pairs = [(name, _hour_start(hour)) for name, hour in pending[:chunk_size]]
        if not pairs:
            break
        rolled = _roll_chunk(pairs)
        if not rolled:  # a concurrent rollup took these rows first; the next run picks up anything left
            break
        function_hours += len(pairs)
        raw_rows += rolled
    expire_before = now - timedelta(days=retention["hourly_days"])
    expired = _expire(
        FunctionMetric,
        Q(window_seconds__gte=HOUR_SECONDS, measurement_window__lt=expire_before),
        chunk_size=expire_chunk_size,
    )
    summaries = _expire(FunctionHourSummary, Q(measurement_window__lt=expire_before), chunk_size=expire_chunk_size)
    return RollupResult(
        function_hours_rolled=function_hours,
        raw_rows_rolled=raw_rows,
        hourly_rows_expired=expired,
        hour_summaries_expired=summaries,
    )
