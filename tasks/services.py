"""Write side of function metrics: the one SQL hot path that adds aggregates into ``function_metrics``."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.db import connection, transaction
from django.utils import timezone

from tasks.models import FunctionFailure, FunctionMetric

if TYPE_CHECKING:
    from tasks.metrics import FailureRecord, WindowAggregate

_NAME_LENGTH = FunctionMetric._meta.get_field("function_name").max_length

_COLUMNS = (
    "id, created_at, updated_at, function_name, kind, measurement_window, window_seconds, invocation_count, "
    "error_count, total_latency_ms, max_latency_ms, cold_start_count, errors_by_type, latency_histogram, recorded_at"
)

# Sum two {name: count} JSON objects key by key, in SQL, so concurrent flushes never lose counts.
_MERGE_COUNTS = {
    "postgresql": (
        "(SELECT coalesce(jsonb_object_agg(key, total), '{{}}'::jsonb) FROM ("
        "SELECT key, sum(value::numeric)::bigint AS total FROM ("
        "SELECT key, value FROM jsonb_each_text(function_metrics.{col}) "
        "UNION ALL SELECT key, value FROM jsonb_each_text(EXCLUDED.{col})) AS parts GROUP BY key) AS merged)"
    ),
    "sqlite": (
        "(SELECT coalesce(json_group_object(key, total), '{{}}') FROM ("
        "SELECT key, sum(value) AS total FROM ("
        "SELECT key, value FROM json_each(function_metrics.{col}) "
        "UNION ALL SELECT key, value FROM json_each(excluded.{col})) GROUP BY key))"
    ),
}
_GREATEST = {"postgresql": "GREATEST", "sqlite": "max"}
_JSON_PARAM = {"postgresql": "%s::jsonb", "sqlite": "%s"}


def _identity(value):
    return value


def _upsert_sql(vendor: str, rows: int) -> str:
    """The upsert statement for ``rows`` rows. Built only from the constants above (no user input)."""
    placeholder = "(" + ", ".join(["%s"] * 12 + [_JSON_PARAM[vendor]] * 2 + ["%s"]) + ")"
    add = "{0} = function_metrics.{0} + EXCLUDED.{0}"
    values = ", ".join([placeholder] * rows)
    return (
        f"INSERT INTO function_metrics ({_COLUMNS}) VALUES {values} "  # noqa: S608
        "ON CONFLICT (function_name, measurement_window) DO UPDATE SET "
        + ", ".join(
            add.format(col) for col in ("invocation_count", "error_count", "total_latency_ms", "cold_start_count")
        )
        + f", max_latency_ms = {_GREATEST[vendor]}(function_metrics.max_latency_ms, EXCLUDED.max_latency_ms)"
        + f", errors_by_type = {_MERGE_COUNTS[vendor].format(col='errors_by_type')}"
        + f", latency_histogram = {_MERGE_COUNTS[vendor].format(col='latency_histogram')}"
        + ", recorded_at = EXCLUDED.recorded_at, updated_at = EXCLUDED.updated_at"
    )


def _one_per_row(aggregates: Iterable[WindowAggregate]) -> list[WindowAggregate]:
    """One aggregate per stored row. Names are cut to the column's length, so two long names can meet
    in one row, and PostgreSQL refuses to upsert a row twice in one statement. The callers' aggregates
    are not modified (a failed flush puts them back as they were)."""
    rows: dict[tuple, WindowAggregate] = {}
    for aggregate in aggregates:
        key = (aggregate.function_name[:_NAME_LENGTH], aggregate.window_start)
        combined = rows.get(key)
        if combined is None:
            rows[key] = aggregate
        else:
            merged = dataclasses.replace(
                combined, errors_by_type=Counter(combined.errors_by_type), buckets=list(combined.buckets)
            )
            merged.merge(aggregate)
            rows[key] = merged
    return list(rows.values())


def function_metrics_upsert(*, aggregates: Iterable[WindowAggregate], chunk_size: int = 500) -> int:
    """Add in-memory aggregates into ``function_metrics``: one upsert row per function per window.

    Counts, latency totals, error counts by type and histogram buckets are *added* to what is stored
    (max latency takes the maximum), so any number of processes may flush the same window concurrently.
    Rows are written in (function, window) order so concurrent flushes lock rows in one order.
    """
    aggregates = sorted(_one_per_row(aggregates), key=lambda a: (a.function_name, a.window_start))
    if not aggregates:
        return 0
    vendor = connection.vendor
    if vendor not in _MERGE_COUNTS:
        raise NotImplementedError(f"function metrics upsert is not implemented for {vendor}")
    now = timezone.now()
    # SQLite stores datetimes as text: pass what Django's own adapter would write.
    adapt = connection.ops.adapt_datetimefield_value if vendor == "sqlite" else _identity
    with transaction.atomic(), connection.cursor() as cursor:
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
                        aggregate.window_seconds,
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
            cursor.execute(_upsert_sql(vendor, len(chunk)), params)
    return len(aggregates)


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
