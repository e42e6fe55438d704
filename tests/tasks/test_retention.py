"""Retention of function metrics: raw windows rolled up into hourly rows, hourly rows expired."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.admin.sites import site as admin_site
from django.db.models import Max, Sum
from django.urls import reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config import registry
from tasks.metrics import BUCKET_KEYS, WindowAggregate
from tasks.models import FunctionHourSummary, FunctionKind, FunctionMetric
from tasks.percentiles import histogram_percentile
from tasks.retention import RollupResult, function_metrics_rollup
from tasks.schedules import SCHEDULES
from tasks.services import function_metrics_upsert
from tasks.tasks import function_metrics_rollup as rollup_task

pytestmark = pytest.mark.django_db

NOW = datetime(2025, 3, 30, 12, 30, tzinfo=UTC)
# 16 days before NOW: older than the default raw_days (14), well inside hourly_days (400).
OLD_HOUR = datetime(2025, 3, 14, 9, 0, tzinfo=UTC)
FUNCTIONS_URL = "/api/v1/metrics/functions"


def raw_row(name: str, window: datetime, *, kind: str = FunctionKind.TASK, **fields) -> FunctionMetric:
    defaults = {
        "invocation_count": 1,
        "total_latency_ms": 4.0,
        "max_latency_ms": 4.0,
        "latency_histogram": {"5": 1},
        "recorded_at": window + timedelta(seconds=61),
    }
    return FunctionMetric.objects.create(
        function_name=name, kind=kind, measurement_window=window, window_seconds=60, **{**defaults, **fields}
    )


def rows() -> list[tuple[str, datetime, int]]:
    return list(
        FunctionMetric.objects.order_by("function_name", "measurement_window").values_list(
            "function_name", "measurement_window", "window_seconds"
        )
    )


def totals() -> dict:
    return FunctionMetric.objects.aggregate(
        invocations=Sum("invocation_count"),
        errors=Sum("error_count"),
        cold=Sum("cold_start_count"),
        latency=Sum("total_latency_ms"),
        max=Max("max_latency_ms"),
    )


def summed(field: str) -> Counter:
    total: Counter = Counter()
    for value in FunctionMetric.objects.values_list(field, flat=True):
        total.update(value)
    return total


def test_raw_windows_of_an_old_hour_become_one_hourly_row_with_every_figure_merged():
    raw_row(
        "tasks.canary",
        OLD_HOUR,
        invocation_count=10,
        error_count=2,
        cold_start_count=1,
        total_latency_ms=100.0,
        max_latency_ms=40.0,
        errors_by_type={"CanaryFailure": 2},
        latency_histogram={"5": 8, "50": 2},
        recorded_at=OLD_HOUR + timedelta(minutes=1),
    )
    raw_row(
        "tasks.canary",
        OLD_HOUR + timedelta(minutes=37),
        invocation_count=5,
        error_count=3,
        cold_start_count=2,
        total_latency_ms=60.5,
        max_latency_ms=300.0,
        errors_by_type={"CanaryFailure": 1, "ValueError": 2},
        latency_histogram={"5": 1, "500": 4},
        recorded_at=OLD_HOUR + timedelta(minutes=38),
    )

    result = function_metrics_rollup(now=NOW)

    assert result == RollupResult(function_hours_rolled=1, raw_rows_rolled=2, hourly_rows_expired=0)
    hourly = FunctionMetric.objects.get()
    assert hourly.function_name == "tasks.canary"
    assert hourly.kind == FunctionKind.TASK
    assert hourly.measurement_window == OLD_HOUR
    assert hourly.window_seconds == 3600
    assert hourly.invocation_count == 15
    assert hourly.error_count == 5
    assert hourly.cold_start_count == 3
    assert hourly.total_latency_ms == 160.5
    assert hourly.max_latency_ms == 300.0
    assert hourly.errors_by_type == {"CanaryFailure": 3, "ValueError": 2}
    assert hourly.latency_histogram == {"5": 9, "50": 2, "500": 4}
    assert hourly.recorded_at == OLD_HOUR + timedelta(minutes=38)


def test_the_hourly_percentile_is_the_percentile_of_the_merged_histogram():
    raw_row("tasks.canary", OLD_HOUR, latency_histogram={"10": 19}, invocation_count=19)
    raw_row("tasks.canary", OLD_HOUR + timedelta(minutes=1), latency_histogram={"25": 1}, invocation_count=1)

    function_metrics_rollup(now=NOW)

    assert histogram_percentile(FunctionMetric.objects.get().latency_histogram, 0.99) == pytest.approx(22.0)


def test_each_function_and_each_hour_gets_its_own_hourly_row():
    raw_row("tasks.canary", OLD_HOUR)
    raw_row("tasks.canary", OLD_HOUR + timedelta(minutes=59))
    raw_row("tasks.canary", OLD_HOUR + timedelta(hours=1))
    raw_row("GET /healthz", OLD_HOUR + timedelta(minutes=5), kind=FunctionKind.ENDPOINT)

    result = function_metrics_rollup(now=NOW, chunk_size=1)

    assert result.function_hours_rolled == 3
    assert result.raw_rows_rolled == 4
    assert rows() == [
        ("GET /healthz", OLD_HOUR, 3600),
        ("tasks.canary", OLD_HOUR, 3600),
        ("tasks.canary", OLD_HOUR + timedelta(hours=1), 3600),
    ]
    assert FunctionMetric.objects.get(function_name="tasks.canary", measurement_window=OLD_HOUR).invocation_count == 2
    assert FunctionMetric.objects.get(function_name="GET /healthz").kind == FunctionKind.ENDPOINT


def test_windows_younger_than_raw_days_and_the_hour_straddling_the_cutoff_stay_raw():
    cutoff = NOW - timedelta(days=14)  # 2025-03-16 12:30
    raw_row("tasks.canary", cutoff - timedelta(minutes=31))  # 11:59, in the last whole hour before the cutoff
    raw_row("tasks.canary", cutoff - timedelta(minutes=10))  # 12:20, its hour is not over at the cutoff
    raw_row("tasks.canary", NOW - timedelta(days=1))

    function_metrics_rollup(now=NOW)

    assert rows() == [
        ("tasks.canary", datetime(2025, 3, 16, 11, 0, tzinfo=UTC), 3600),
        ("tasks.canary", cutoff - timedelta(minutes=10), 60),
        ("tasks.canary", NOW - timedelta(days=1), 60),
    ]


def test_raw_days_comes_from_the_retention_config():
    registry.set("observability.retention", {"raw_days": 30, "hourly_days": 400}, user=None, reason="test")
    raw_row("tasks.canary", OLD_HOUR)

    assert function_metrics_rollup(now=NOW).raw_rows_rolled == 0
    assert rows() == [("tasks.canary", OLD_HOUR, 60)]


def test_a_second_run_changes_nothing():
    raw_row("tasks.canary", OLD_HOUR, errors_by_type={"ValueError": 1}, error_count=1)
    raw_row("tasks.canary", OLD_HOUR + timedelta(minutes=3))
    function_metrics_rollup(now=NOW)
    before = list(FunctionMetric.objects.values())

    assert function_metrics_rollup(now=NOW) == RollupResult()
    assert list(FunctionMetric.objects.values()) == before


def test_late_raw_rows_of_an_already_rolled_hour_are_added_into_its_hourly_row():
    raw_row("tasks.canary", OLD_HOUR, errors_by_type={"ValueError": 1}, error_count=1, max_latency_ms=9.0)
    function_metrics_rollup(now=NOW)
    raw_row(
        "tasks.canary",
        OLD_HOUR + timedelta(minutes=12),
        errors_by_type={"ValueError": 2, "KeyError": 1},
        error_count=3,
        invocation_count=4,
        max_latency_ms=7.0,
        latency_histogram={"5": 1, "10": 3},
    )

    result = function_metrics_rollup(now=NOW)

    assert result == RollupResult(function_hours_rolled=1, raw_rows_rolled=1, hourly_rows_expired=0)
    hourly = FunctionMetric.objects.get()
    assert hourly.window_seconds == 3600
    assert hourly.invocation_count == 5
    assert hourly.error_count == 4
    assert hourly.errors_by_type == {"ValueError": 3, "KeyError": 1}
    assert hourly.latency_histogram == {"5": 2, "10": 3}
    assert hourly.max_latency_ms == 9.0


def test_hourly_rows_older_than_hourly_days_are_deleted_and_raw_windows_are_not():
    ancient = NOW - timedelta(days=401)
    FunctionMetric.objects.create(
        function_name="tasks.canary",
        kind=FunctionKind.TASK,
        measurement_window=_hour(ancient),
        window_seconds=3600,
        recorded_at=ancient,
    )
    FunctionMetric.objects.create(
        function_name="tasks.canary",
        kind=FunctionKind.TASK,
        measurement_window=_hour(NOW - timedelta(days=399)),
        window_seconds=3600,
        recorded_at=NOW,
    )

    result = function_metrics_rollup(now=NOW, expire_chunk_size=1)

    assert result.hourly_rows_expired == 1
    assert rows() == [("tasks.canary", _hour(NOW - timedelta(days=399)), 3600)]


# --- Hour summaries (function_metrics_hourly) next to the rollup ---------------------------------------


def flushed(name: str, window: datetime, *, calls: int, errors: dict | None = None, histogram: dict) -> None:
    """One window as the recorder's flush writes it: into its window row and its hour summary."""
    errors = errors or {}
    function_metrics_upsert(
        aggregates=[
            WindowAggregate(
                name,
                FunctionKind.TASK,
                window,
                60,
                invocations=calls,
                errors=sum(errors.values()),
                total_latency_ms=calls * 2.5,
                max_latency_ms=float(calls),
                cold_starts=1,
                errors_by_type=Counter(errors),
                buckets=[histogram.get(key, 0) for key in BUCKET_KEYS],
            )
        ]
    )


def figures(row) -> tuple:
    return (
        row.function_name,
        row.measurement_window,
        row.invocation_count,
        row.error_count,
        row.cold_start_count,
        row.total_latency_ms,
        row.max_latency_ms,
        row.errors_by_type,
        row.latency_histogram,
    )


def summaries() -> list[tuple]:
    return [figures(row) for row in FunctionHourSummary.objects.order_by("function_name", "measurement_window")]


def test_the_rollup_leaves_hour_summaries_untouched_and_equal_to_the_rolled_hourly_rows():
    flushed("tasks.canary", OLD_HOUR, calls=4, errors={"ValueError": 1}, histogram={"5": 3, "50": 1})
    flushed("tasks.canary", OLD_HOUR + timedelta(minutes=59), calls=2, histogram={"1000": 2})
    flushed("tasks.canary", OLD_HOUR + timedelta(hours=1), calls=1, histogram={"1": 1})
    flushed("tasks.other", OLD_HOUR + timedelta(minutes=30), calls=8, errors={"KeyError": 8}, histogram={"10": 8})
    before = summaries()

    result = function_metrics_rollup(now=NOW)

    assert result.raw_rows_rolled == 4 and result.hour_summaries_expired == 0
    assert summaries() == before
    hourly = [figures(row) for row in FunctionMetric.objects.order_by("function_name", "measurement_window")]
    assert hourly == before  # one rolled row per hour, figure for figure the summary
    assert before[0][2:5] == (6, 1, 2)  # tasks.canary 09:00: 6 calls, 1 error, 2 cold starts


def test_a_late_window_of_a_rolled_hour_is_counted_once_in_its_summary_and_once_in_its_hourly_row():
    flushed("tasks.canary", OLD_HOUR, calls=4, errors={"ValueError": 1}, histogram={"5": 4})
    function_metrics_rollup(now=NOW)
    flushed("tasks.canary", OLD_HOUR + timedelta(minutes=12), calls=3, errors={"ValueError": 2}, histogram={"50": 3})

    function_metrics_rollup(now=NOW)
    function_metrics_rollup(now=NOW)

    summary, hourly = FunctionHourSummary.objects.get(), FunctionMetric.objects.get()
    assert figures(summary) == figures(hourly)
    assert (summary.invocation_count, summary.error_count, summary.cold_start_count) == (7, 3, 2)
    assert summary.errors_by_type == {"ValueError": 3}
    assert summary.latency_histogram == {"5": 4, "50": 3}


def test_hour_summaries_older_than_hourly_days_are_deleted_with_the_hourly_rows():
    flushed("tasks.canary", _hour(NOW - timedelta(days=401)), calls=1, histogram={"1": 1})
    flushed("tasks.canary", _hour(NOW - timedelta(days=399)), calls=1, histogram={"1": 1})

    result = function_metrics_rollup(now=NOW, expire_chunk_size=1)

    assert result.hour_summaries_expired == 1
    assert result.hourly_rows_expired == 1
    assert list(FunctionHourSummary.objects.values_list("measurement_window", flat=True)) == [
        _hour(NOW - timedelta(days=399))
    ]


def _hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


WINDOW = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["tasks.canary", "tasks.other", "GET /healthz"]),
        "minute": st.integers(min_value=0, max_value=3 * 60 - 1),
        "invocations": st.integers(min_value=0, max_value=1000),
        "errors": st.dictionaries(st.sampled_from(["ValueError", "KeyError", "HTTP500"]), st.integers(1, 50)),
        "cold": st.integers(min_value=0, max_value=5),
        "latency": st.integers(min_value=0, max_value=10**6),
        "max": st.floats(min_value=0, max_value=60000, allow_nan=False),
        "histogram": st.dictionaries(st.sampled_from(BUCKET_KEYS), st.integers(1, 1000)),
    }
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(windows=st.lists(WINDOW, max_size=25, unique_by=lambda w: (w["name"], w["minute"])))
def test_rollup_keeps_every_total_error_type_and_histogram_bucket_exactly(windows):
    FunctionMetric.objects.all().delete()
    start = OLD_HOUR - timedelta(days=1)
    for window in windows:
        raw_row(
            window["name"],
            start + timedelta(minutes=window["minute"]),
            invocation_count=window["invocations"],
            error_count=sum(window["errors"].values()),
            errors_by_type=window["errors"],
            cold_start_count=window["cold"],
            total_latency_ms=float(window["latency"]) / 4,  # quarters add up exactly in binary floats
            max_latency_ms=window["max"],
            latency_histogram=window["histogram"],
        )
    before = (totals(), summed("errors_by_type"), summed("latency_histogram"))

    result = function_metrics_rollup(now=NOW, chunk_size=2)

    assert (totals(), summed("errors_by_type"), summed("latency_histogram")) == before
    assert not FunctionMetric.objects.filter(window_seconds__lt=3600).exists()
    assert result.raw_rows_rolled == len(windows)
    assert FunctionMetric.objects.count() == len({(w["name"], w["minute"] // 60) for w in windows})


def test_the_beat_task_runs_the_rollup():
    raw_row("tasks.canary", datetime(2000, 1, 1, 10, 5, tzinfo=UTC))
    raw_row("tasks.canary", datetime.now(UTC) - timedelta(days=20))

    summary = rollup_task.apply().get()

    assert summary == {
        "function_hours_rolled": 2,
        "raw_rows_rolled": 2,
        "hourly_rows_expired": 1,
        "hour_summaries_expired": 0,
    }
    assert list(FunctionMetric.objects.values_list("window_seconds", flat=True)) == [3600]


def test_the_rollup_is_scheduled_hourly_with_an_expiry():
    [spec] = [spec for spec in SCHEDULES if spec.task == "tasks.function_metrics_rollup"]

    assert spec.every_seconds == 3600
    assert spec.expires_seconds is not None and spec.expires_seconds < spec.every_seconds


def test_the_api_serves_hourly_rows_with_percentiles_from_the_merged_histogram(viewer, client_for):
    raw_row("tasks.canary", OLD_HOUR, invocation_count=19, total_latency_ms=190.0, latency_histogram={"10": 19})
    raw_row(
        "tasks.canary",
        OLD_HOUR + timedelta(minutes=30),
        invocation_count=1,
        error_count=1,
        errors_by_type={"CanaryFailure": 1},
        total_latency_ms=10.0,
        latency_histogram={"25": 1},
    )
    function_metrics_rollup(now=NOW)

    response = client_for(viewer).get(FUNCTIONS_URL, {"function": "tasks.canary"})

    assert response.status_code == 200, response.content
    [item] = response.json()["results"]
    assert item["measurement_window"] == "2025-03-14T09:00:00Z"
    assert item["window_seconds"] == 3600
    assert item["invocation_count"] == 20
    assert item["error_rate"] == 0.05
    assert item["errors_by_type"] == {"CanaryFailure": 1}
    assert item["avg_latency_ms"] == 10.0
    assert item["p99_ms"] == pytest.approx(22.0)


def test_the_admin_lists_and_shows_hourly_rows(client, django_user_model):
    raw_row("tasks.canary", OLD_HOUR, latency_histogram={"10": 3}, invocation_count=3)
    function_metrics_rollup(now=NOW)
    hourly = FunctionMetric.objects.get()
    assert FunctionMetric in admin_site._registry
    client.force_login(django_user_model.objects.create_superuser("root", "root@example.com", "x" * 20))

    changelist = client.get(reverse("admin:tasks_functionmetric_changelist"))
    change = client.get(reverse("admin:tasks_functionmetric_change", args=[hourly.pk]))

    assert changelist.status_code == 200
    assert "tasks.canary" in changelist.content.decode()
    assert change.status_code == 200
