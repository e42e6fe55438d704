"""A real `celery worker` process on Redis + PostgreSQL records function metrics for its tasks."""

from __future__ import annotations

import pytest
from django.db.models import Sum

from tasks.models import FunctionMetric
from tasks.tasks import canary
from tests.e2e.conftest import wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.worker, pytest.mark.xdist_group("worker")]


def canary_totals() -> dict:
    return FunctionMetric.objects.filter(function_name="tasks.canary").aggregate(
        invocations=Sum("invocation_count"), errors=Sum("error_count"), cold_starts=Sum("cold_start_count")
    )


def canary_errors_by_type() -> dict[str, int]:
    merged: dict[str, int] = {}
    for errors in FunctionMetric.objects.filter(function_name="tasks.canary").values_list("errors_by_type", flat=True):
        for name, count in errors.items():
            merged[name] = merged.get(name, 0) + count
    return merged


def test_worker_task_lands_in_function_metrics(celery_worker):
    canary.apply_async(kwargs={"mode": "ok"}, queue=celery_worker.queue)

    totals = wait_for(
        lambda: (t := canary_totals())["invocations"] and t,
        timeout=30,
        message=f"no function_metrics row for tasks.canary; worker log:\n{celery_worker.log()}",
    )

    assert totals["invocations"] == 1
    assert totals["errors"] == 0
    assert totals["cold_starts"] == 1
    row = FunctionMetric.objects.get(function_name="tasks.canary")
    assert row.kind == "task"
    assert sum(row.latency_histogram.values()) == 1
    assert row.total_latency_ms > 0


def test_failing_worker_task_counts_errors_by_exception_type(celery_worker):
    canary.apply_async(kwargs={"mode": "ok"}, queue=celery_worker.queue)
    for _ in range(2):
        canary.apply_async(kwargs={"mode": "fail"}, queue=celery_worker.queue)

    totals = wait_for(
        lambda: (t := canary_totals())["invocations"] == 3 and t,
        timeout=30,
        message=f"expected 3 canary invocations, have {canary_totals()}; worker log:\n{celery_worker.log()}",
    )

    assert totals["errors"] == 2
    assert canary_errors_by_type() == {"CanaryFailure": 2}
    assert totals["cold_starts"] == 1  # one worker child process, one first call
