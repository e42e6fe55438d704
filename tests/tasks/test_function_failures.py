"""Recent failures: failed tasks and endpoints leave a function_failures row at flush, bounded, purged."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client
from django.urls import reverse

from tasks import metrics
from tasks.metrics import MAX_FAILURES_PER_FUNCTION
from tasks.models import FunctionFailure, FunctionKind, FunctionMetric
from tasks.services import function_failures_purge
from tasks.tasks import canary

ERROR_URLS = pytest.mark.urls("tests.tasks.urls_for_errors")


@pytest.mark.django_db
def test_a_failing_task_records_its_exception_type_message_and_task_id():
    result = canary.apply(kwargs={"mode": "fail"}, throw=False)

    assert result.failed()
    metrics.flush()
    failure = FunctionFailure.objects.get(function_name="tasks.canary")
    assert failure.kind == FunctionKind.TASK
    assert failure.exception_type == "CanaryFailure"
    assert failure.message == "canary asked to fail"
    assert failure.task_id == result.id
    assert failure.path == ""
    assert failure.process.endswith(f":{os.getpid()}")


@pytest.mark.django_db
def test_a_successful_task_records_no_failure():
    canary.apply()

    metrics.flush()

    assert FunctionMetric.objects.get(function_name="tasks.canary").invocation_count == 1
    assert not FunctionFailure.objects.exists()


@pytest.mark.django_db
@ERROR_URLS
def test_a_failing_endpoint_records_its_exception_and_request_path():
    client = Client(raise_request_exception=False)

    assert client.get("/probe/explode/7?token=secret").status_code == 500

    metrics.flush()
    failure = FunctionFailure.objects.get()
    assert failure.function_name == "GET /probe/explode/{attempt}"
    assert failure.kind == FunctionKind.ENDPOINT
    assert failure.exception_type == "ProbeExplosion"
    assert failure.message == "attempt 7 blew up"
    assert failure.path == "/probe/explode/7"  # no query string: it may carry secrets
    assert failure.task_id == ""


@pytest.mark.django_db
@ERROR_URLS
def test_a_5xx_response_records_a_failure_and_a_4xx_does_not():
    client = Client()

    client.get("/probe/unavailable")
    client.get("/probe/bad-request")

    metrics.flush()
    failure = FunctionFailure.objects.get()
    assert (failure.function_name, failure.exception_type) == ("GET /probe/unavailable", "HTTP503")


@pytest.mark.django_db
def test_messages_are_cut_to_500_characters():
    metrics.record(name="tests.noisy", kind=FunctionKind.TASK, latency_ms=1, error_type="E", error_message="x" * 900)

    metrics.flush()

    assert len(FunctionFailure.objects.get().message) == 500


@pytest.mark.django_db
def test_a_failure_storm_keeps_at_most_the_bound_per_function_per_flush_but_counts_every_error():
    for attempt in range(MAX_FAILURES_PER_FUNCTION * 5):
        metrics.record(
            name="tests.storm", kind=FunctionKind.TASK, latency_ms=1, error_type="Boom", error_message=str(attempt)
        )
    metrics.record(name="tests.other", kind=FunctionKind.TASK, latency_ms=1, error_type="Boom")

    metrics.flush()

    assert FunctionFailure.objects.filter(function_name="tests.storm").count() == MAX_FAILURES_PER_FUNCTION
    assert FunctionFailure.objects.filter(function_name="tests.other").count() == 1
    assert FunctionMetric.objects.get(function_name="tests.storm").error_count == MAX_FAILURES_PER_FUNCTION * 5

    metrics.record(name="tests.storm", kind=FunctionKind.TASK, latency_ms=1, error_type="Boom")
    metrics.flush()
    assert FunctionFailure.objects.filter(function_name="tests.storm").count() == MAX_FAILURES_PER_FUNCTION + 1


@pytest.mark.django_db
def test_purge_deletes_only_failures_older_than_14_days():
    now = datetime(2026, 3, 1, 12, tzinfo=UTC)
    for age_days in (1, 13, 15, 30):
        FunctionFailure.objects.create(
            function_name="tests.old",
            kind=FunctionKind.TASK,
            exception_type="E",
            occurred_at=now - timedelta(days=age_days),
        )

    assert function_failures_purge(now=now) == 2

    remaining = sorted((now - row.occurred_at).days for row in FunctionFailure.objects.all())
    assert remaining == [1, 13]


@pytest.mark.django_db
def test_failures_are_listed_in_the_admin_filtered_by_function(admin_client):
    canary.apply(kwargs={"mode": "fail"}, throw=False)
    metrics.flush()

    response = admin_client.get(reverse("admin:tasks_functionfailure_changelist"), {"function_name": "tasks.canary"})

    assert response.status_code == 200
    assert b"CanaryFailure" in response.content
    assert b"canary asked to fail" in response.content
