"""Write side of function metrics: the one SQL hot path that adds aggregates into ``function_metrics``."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from django.db import connection, transaction
from django.utils import timezone

from tasks.models import FunctionFailure, FunctionHourSummary, FunctionMetric

if TYPE_CHECKING:
    from tasks.metrics import FailureRecord, WindowAggregate

_NAME_LENGTH = FunctionMetric._meta.get_field("function_name").max_length
HOUR_SECONDS = 3600

_COMMON_COLUMNS = (
    "id, created_at, updated_at, function_name, kind, measurement_window, invocation_count, error_count, "
    "total_latency_ms, max_latency_ms, cold_start_count, errors_by_type, latency_histogram, recorded_at"
)
# The two tables a flush adds into: (table, extra columns). Window rows also store their length.
_WINDOWS = (FunctionMetric._meta.db_table, ("window_seconds",))
_HOURS = (FunctionHourSummary._meta.db_table, ())

# Sum two {name: count} JSON objects key by key, in SQL, so concurrent flushes never lose counts.
_MERGE_COUNTS = {
    "postgresql": (
        "(SELECT coalesce(jsonb_object_agg(key, total), '{{}}'::jsonb) FROM ("
        "SELECT key, sum(value::numeric)::bigint AS total FROM ("
        "SELECT key, value FROM jsonb_each_text({table}.{col}) "
        "UNION ALL SELECT key, value FROM jsonb_each_text(EXCLUDED.{col})) AS parts GROUP BY key) AS merged)"
    ),
    "sqlite": (
        "(SELECT coalesce(json_group_object(key, total), '{{}}') FROM ("
        "SELECT key, sum(value) AS total FROM ("
        "SELECT key, value FROM json_each({table}.{col}) "
        "UNION ALL SELECT key, value FROM json_each(excluded.{col})) GROUP BY key))"
    ),
}
_GREATEST = {"postgresql": "GREATEST", "sqlite": "max"}
_JSON_PARAM = {"postgresql": "%s::jsonb", "sqlite": "%s"}


def _identity(value):
    return value


def _upsert_sql(vendor: str, rows: int, *, table: str, extra_columns: tuple[str, ...]) -> str:
    """The upsert statement for ``rows`` rows of ``table``. Built only from the constants above (no user input)."""
    columns = ", ".join([_COMMON_COLUMNS, *extra_columns])
    placeholder = "(" + ", ".join(["%s"] * 11 + [_JSON_PARAM[vendor]] * 2 + ["%s"] * (1 + len(extra_columns))) + ")"
    add = "{0} = {1}.{0} + EXCLUDED.{0}"
    values = ", ".join([placeholder] * rows)
    return (
        f"INSERT INTO {table} ({columns}) VALUES {values} "  # noqa: S608
        "ON CONFLICT (function_name, measurement_window) DO UPDATE SET "
        + ", ".join(
            add.format(col, table)
            for col in ("invocation_count", "error_count", "total_latency_ms", "cold_start_count")
        )
        + f", max_latency_ms = {_GREATEST[vendor]}({table}.max_latency_ms, EXCLUDED.max_latency_ms)"
        + f", errors_by_type = {_MERGE_COUNTS[vendor].format(table=table, col='errors_by_type')}"
        + f", latency_histogram = {_MERGE_COUNTS[vendor].format(table=table, col='latency_histogram')}"
        + ", recorded_at = EXCLUDED.recorded_at, updated_at = EXCLUDED.updated_at"
    )


def _merged(combined: WindowAggregate, aggregate: WindowAggregate) -> WindowAggregate:
    """``combined`` plus ``aggregate`` as a new aggregate (neither is modified)."""
    merged = combined.copy()
    merged.merge(aggregate)
    return merged


def _one_per_row(aggregates: Iterable[WindowAggregate]) -> list[WindowAggregate]:
    """One aggregate per stored row. Names are cut to the column's length, so two long names can meet
    in one row, and PostgreSQL refuses to upsert a row twice in one statement. The callers' aggregates
    are not modified (a failed flush keeps them as they were)."""
    rows: dict[tuple, WindowAggregate] = {}
    for aggregate in aggregates:
        key = (aggregate.function_name[:_NAME_LENGTH], aggregate.window_start)
        combined = rows.get(key)
        rows[key] = aggregate if combined is None else _merged(combined, aggregate)
    return list(rows.values())


def hour_start(moment: datetime) -> datetime:
    """The start of the UTC hour holding ``moment``."""
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _one_per_hour(aggregates: Iterable[WindowAggregate]) -> list[WindowAggregate]:
    """The window aggregates summed per function and UTC hour (a window counts in the hour it starts in)."""
    hours: dict[tuple, WindowAggregate] = {}
    for aggregate in aggregates:
        key = (aggregate.function_name[:_NAME_LENGTH], hour_start(aggregate.window_start))
        combined = hours.get(key)
        if combined is None:
            combined = hours[key] = aggregate.copy()
            combined.window_start, combined.window_seconds = key[1], HOUR_SECONDS
        else:
            combined.merge(aggregate)
    return list(hours.values())


def _upsert(cursor, vendor: str, aggregates: list[WindowAggregate], *, into: tuple, chunk_size: int) -> None:
    table, extra_columns = into
    now = timezone.now()
    # SQLite stores datetimes as text: pass what Django's own adapter would write.
    adapt = connection.ops.adapt_datetimefield_value if vendor == "sqlite" else _identity
    for start in range(0, len(aggregates), chunk_size):
        chunk = aggregates[start : start + chunk_size]
        params: list = []
        for aggregate in chunk:
            params.extend(
                [
                    uuid.uuid4().hex if vendor == "sqlite" else uuid.uuid4(),
                    adapt(now),
                    adapt(now),
                    aggregate.function_name[:_NAME_LENGTH],
                    aggregate.kind,
                    adapt(aggregate.window_start),
                    aggregate.invocations,
                    aggregate.errors,
                    aggregate.total_latency_ms,
                    aggregate.max_latency_ms,
                    aggregate.cold_starts,
                    json.dumps(dict(aggregate.errors_by_type)),
                    json.dumps(aggregate.histogram),
                    adapt(now),
                ]
            )
            if extra_columns:
                params.append(aggregate.window_seconds)
        cursor.execute(_upsert_sql(vendor, len(chunk), table=table, extra_columns=extra_columns), params)


def function_metrics_upsert(*, aggregates: Iterable[WindowAggregate], chunk_size: int = 500) -> int:
    """Add in-memory aggregates into ``function_metrics`` (one row per function per window) and into
    ``function_metrics_hourly`` (one summary per function per UTC hour), in one transaction.

    Counts, latency totals, error counts by type and histogram buckets are *added* to what is stored
    (max latency takes the maximum), so any number of processes may flush the same window concurrently,
    and a window row and its hour summary always move together. Window rows are written first, then hour
    summaries, each in (function, start) order, so concurrent flushes lock rows in one global order.
    Returns the number of window rows written.
    """
    windows = sorted(_one_per_row(aggregates), key=lambda a: (a.function_name, a.window_start))
    if not windows:
        return 0
    vendor = connection.vendor
    if vendor not in _MERGE_COUNTS:
        raise NotImplementedError(f"function metrics upsert is not implemented for {vendor}")
    hours = sorted(_one_per_hour(windows), key=lambda a: (a.function_name[:_NAME_LENGTH], a.window_start))
    with transaction.atomic(), connection.cursor() as cursor:
        _upsert(cursor, vendor, windows, into=_WINDOWS, chunk_size=chunk_size)
        _upsert(cursor, vendor, hours, into=_HOURS, chunk_size=chunk_size)
    return len(windows)


# How long failure details are kept (the dashboard shows the last 7 days at most).
FUNCTION_FAILURES_RETENTION_DAYS = 14


def function_failures_record(*, failures: Iterable[FailureRecord]) -> int:
    """Insert failure details kept by the recorder, in one bulk insert; returns the rows written.

    Not idempotent (each call inserts); the recorder bounds what it hands over per flush.
    """
    rows = [
        FunctionFailure(
            function_name=failure.function_name[:_NAME_LENGTH],
            kind=failure.kind,
            exception_type=failure.exception_type[:200],
            message=failure.message[:500],
            task_id=failure.task_id[:255],
            path=failure.path[:500],
            occurred_at=failure.occurred_at,
            process=failure.process[:255],
        )
        for failure in failures
    ]
    FunctionFailure.objects.bulk_create(rows, batch_size=500)
    return len(rows)


def function_failures_purge(
    *, older_than_days: int = FUNCTION_FAILURES_RETENTION_DAYS, now: datetime | None = None
) -> int:
    """Delete failure rows that occurred more than ``older_than_days`` ago; returns how many.

    One set-based DELETE on the ``occurred_at`` index; idempotent.
    """
    cutoff = (now or timezone.now()) - timedelta(days=older_than_days)
    deleted, _ = FunctionFailure.objects.filter(occurred_at__lt=cutoff).delete()
    return deleted
