"""The migration that adds hour summaries fills them from the function metrics already stored."""

from __future__ import annotations

import importlib
from datetime import UTC, datetime, timedelta

import pytest
from django.apps import apps

from tasks.models import FunctionHourSummary, FunctionKind, FunctionMetric

pytestmark = pytest.mark.django_db

HOUR = datetime(2025, 3, 14, 9, 0, tzinfo=UTC)
migration = importlib.import_module("tasks.migrations.0004_function_hour_summaries")


def stored(name: str, window: datetime, seconds: int, *, calls: int, histogram: dict, errors: dict | None = None):
    FunctionMetric.objects.create(
        function_name=name,
        kind=FunctionKind.TASK,
        measurement_window=window,
        window_seconds=seconds,
        invocation_count=calls,
        error_count=sum((errors or {}).values()),
        errors_by_type=errors or {},
        total_latency_ms=calls * 2.0,
        max_latency_ms=float(calls),
        cold_start_count=1,
        latency_histogram=histogram,
        recorded_at=window + timedelta(seconds=seconds),
    )


def test_backfill_sums_minute_windows_and_rolled_hours_per_function_and_hour(monkeypatch):
    monkeypatch.setattr(migration, "BATCH", 1)  # several bulk inserts
    stored("tasks.alpha", HOUR, 3600, calls=10, histogram={"5": 10}, errors={"KeyError": 2})  # already rolled
    stored("tasks.alpha", HOUR + timedelta(hours=1), 60, calls=3, histogram={"5": 1, "50": 2}, errors={"KeyError": 1})
    stored("tasks.alpha", HOUR + timedelta(hours=1, minutes=30), 60, calls=2, histogram={"50": 2})
    stored("tasks.beta", HOUR + timedelta(hours=1, minutes=5), 60, calls=7, histogram={"+Inf": 7})
    FunctionHourSummary.objects.all().delete()

    migration.backfill_hour_summaries(apps, None)

    got = {
        (row.function_name, row.measurement_window): (
            row.invocation_count,
            row.error_count,
            row.cold_start_count,
            row.total_latency_ms,
            row.max_latency_ms,
            row.errors_by_type,
            row.latency_histogram,
        )
        for row in FunctionHourSummary.objects.all()
    }
    assert got == {
        ("tasks.alpha", HOUR): (10, 2, 1, 20.0, 10.0, {"KeyError": 2}, {"5": 10}),
        ("tasks.alpha", HOUR + timedelta(hours=1)): (5, 1, 2, 10.0, 3.0, {"KeyError": 1}, {"5": 1, "50": 4}),
        ("tasks.beta", HOUR + timedelta(hours=1)): (7, 0, 1, 14.0, 7.0, {}, {"+Inf": 7}),
    }
