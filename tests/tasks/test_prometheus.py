"""Operational endpoints: the Prometheus scrape (/metrics) and the health probes (/healthz, /readyz)."""

from __future__ import annotations

import uuid

import pytest
from django.db import OperationalError
from prometheus_client.parser import text_string_to_metric_families

from config.celery import app as celery_app
from tasks import metrics, services, views
from tasks.models import FunctionKind, FunctionMetric
from tasks.tasks import CanaryFailure, canary

SCRAPE_TOKEN = "scrape-token-for-tests-0123456789"


def scrape(client, **headers) -> dict[str, list]:
    """GET /metrics and parse it as Prometheus does: ``{sample name: [samples]}``."""
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    samples: dict[str, list] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples


def matching(samples: dict[str, list], name: str, **labels) -> list[float]:
    return [s.value for s in samples.get(name, []) if all(s.labels.get(k) == v for k, v in labels.items())]


def value(samples: dict[str, list], name: str, **labels) -> float:
    found = matching(samples, name, **labels)
    assert len(found) == 1, f"expected one {name} sample with {labels}, found {len(found)}"
    return found[0]


@pytest.fixture
def function_name() -> str:
    """A function name no other test records (the Prometheus registry lives as long as the process)."""
    return f"tests.scraped_{uuid.uuid4().hex[:8]}"


# --- /metrics ------------------------------------------------------------------------------------


def test_metrics_exposes_invocations_errors_and_latency_buckets_of_a_recorded_function(client, function_name):
    for latency_ms, error in [(3.0, None), (30.0, "ValueError"), (30.0, "ValueError"), (700.0, "KeyError")]:
        metrics.record(name=function_name, kind=FunctionKind.TASK, latency_ms=latency_ms, error_type=error)

    samples = scrape(client)

    labels = {"function": function_name, "kind": "task"}
    assert value(samples, "vigil_function_invocations_total", **labels) == 4
    assert value(samples, "vigil_function_errors_total", **labels, exception_type="ValueError") == 2
    assert value(samples, "vigil_function_errors_total", **labels, exception_type="KeyError") == 1
    assert value(samples, "vigil_function_cold_starts_total", **labels) == 1
    assert value(samples, "vigil_function_latency_seconds_bucket", **labels, le="0.0025") == 0
    assert value(samples, "vigil_function_latency_seconds_bucket", **labels, le="0.005") == 1
    assert value(samples, "vigil_function_latency_seconds_bucket", **labels, le="0.05") == 3
    assert value(samples, "vigil_function_latency_seconds_bucket", **labels, le="1.0") == 4
    assert value(samples, "vigil_function_latency_seconds_bucket", **labels, le="+Inf") == 4
    assert value(samples, "vigil_function_latency_seconds_count", **labels) == 4
    assert value(samples, "vigil_function_latency_seconds_sum", **labels) == pytest.approx(0.763)


def test_metrics_buckets_match_the_function_metrics_histogram_bounds(client, function_name):
    metrics.record(name=function_name, kind=FunctionKind.TASK, latency_ms=1.0)

    samples = scrape(client)

    bounds = [
        float(s.labels["le"])
        for s in samples["vigil_function_latency_seconds_bucket"]
        if s.labels["function"] == function_name and s.labels["le"] != "+Inf"
    ]
    assert bounds == [bound / 1000 for bound in metrics.HISTOGRAM_BOUNDS_MS]


@pytest.mark.django_db
def test_a_scrape_before_and_after_the_flush_counts_each_call_once(client, function_name):
    metrics.record(name=function_name, kind=FunctionKind.ENDPOINT, latency_ms=7.0)
    labels = {"function": function_name, "kind": "endpoint"}

    assert value(scrape(client), "vigil_function_invocations_total", **labels) == 1
    metrics.flush()
    assert FunctionMetric.objects.get(function_name=function_name).invocation_count == 1
    metrics.record(name=function_name, kind=FunctionKind.ENDPOINT, latency_ms=7.0)

    samples = scrape(client)
    assert value(samples, "vigil_function_invocations_total", **labels) == 2
    assert value(samples, "vigil_function_latency_seconds_bucket", **labels, le="0.01") == 2
    assert value(samples, "vigil_function_latency_seconds_sum", **labels) == pytest.approx(0.014)


@pytest.mark.django_db
def test_a_call_counts_once_in_metrics_when_its_database_write_is_retried(client, function_name, monkeypatch):
    real_upsert = services.function_metrics_upsert
    attempts = []

    def upsert_failing_once(*, aggregates):
        attempts.append(len(aggregates))
        if len(attempts) == 1:
            raise OperationalError("database is down")
        return real_upsert(aggregates=aggregates)

    monkeypatch.setattr(services, "function_metrics_upsert", upsert_failing_once)
    metrics.record(name=function_name, kind=FunctionKind.TASK, latency_ms=3.0, error_type="ValueError")
    assert metrics.flush() == 0
    metrics.record(name=function_name, kind=FunctionKind.TASK, latency_ms=3.0)
    assert metrics.flush() == 1

    samples = scrape(client)
    labels = {"function": function_name, "kind": "task"}
    assert value(samples, "vigil_function_invocations_total", **labels) == 2
    assert value(samples, "vigil_function_errors_total", **labels, exception_type="ValueError") == 1
    assert value(samples, "vigil_function_cold_starts_total", **labels) == 1
    assert value(samples, "vigil_function_latency_seconds_bucket", **labels, le="0.005") == 2
    assert FunctionMetric.objects.get(function_name=function_name).invocation_count == 2


def test_metrics_counts_a_failing_task_by_exception_type(client):
    errors = {"function": "tasks.canary", "kind": "task", "exception_type": "CanaryFailure"}
    failed_before = sum(matching(scrape(client), "vigil_function_errors_total", **errors))  # earlier tests count too

    with pytest.raises(CanaryFailure):
        canary.delay(mode="fail")

    assert value(scrape(client), "vigil_function_errors_total", **errors) == failed_before + 1


def test_metrics_is_open_when_no_bearer_token_is_configured(client, settings):
    settings.METRICS_BEARER_TOKEN = ""

    assert client.get("/metrics").status_code == 200


def test_metrics_refuses_a_scrape_without_the_configured_token(client, settings):
    settings.METRICS_BEARER_TOKEN = SCRAPE_TOKEN

    response = client.get("/metrics")

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    assert b"vigil_function" not in response.content


def test_metrics_refuses_a_scrape_with_a_wrong_token(client, settings):
    settings.METRICS_BEARER_TOKEN = SCRAPE_TOKEN

    assert client.get("/metrics", headers={"Authorization": "Bearer not-the-token"}).status_code == 401
    assert client.get("/metrics", headers={"Authorization": SCRAPE_TOKEN[:-1]}).status_code == 401


def test_metrics_answers_a_scrape_with_the_configured_token(client, settings, function_name):
    settings.METRICS_BEARER_TOKEN = SCRAPE_TOKEN
    metrics.record(name=function_name, kind=FunctionKind.TASK, latency_ms=1.0)

    samples = scrape(client, Authorization=f"Bearer {SCRAPE_TOKEN}")

    assert value(samples, "vigil_function_invocations_total", function=function_name, kind="task") == 1


def test_metrics_only_answers_get(client):
    assert client.post("/metrics").status_code == 405


# --- Health probes -------------------------------------------------------------------------------


def test_healthz_answers_without_touching_any_dependency(client):  # no django_db: a query would fail
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_is_ready_when_the_database_answers_and_celery_runs_eagerly(client):
    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "broker": "eager (no broker)"}}


class UnreachableDatabase:
    def cursor(self):
        raise OperationalError("could not connect to server")


def test_readyz_is_unavailable_when_the_database_does_not_answer(client, monkeypatch):
    monkeypatch.setattr(views, "connection", UnreachableDatabase())

    response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"
    assert response.json()["checks"]["database"] == "error: OperationalError"


@pytest.mark.django_db
def test_readyz_checks_the_broker_when_celery_is_not_eager(client, settings, monkeypatch):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    connect = celery_app.connection_for_write
    monkeypatch.setattr(celery_app, "connection_for_write", lambda: connect(url="memory://"))

    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "broker": "ok"}


@pytest.mark.django_db
def test_readyz_is_unavailable_when_the_broker_is_unreachable(client, settings, monkeypatch):
    settings.CELERY_TASK_ALWAYS_EAGER = False

    def unreachable_broker():
        raise ConnectionRefusedError("broker down")

    monkeypatch.setattr(celery_app, "connection_for_write", unreachable_broker)

    response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["checks"] == {"database": "ok", "broker": "error: ConnectionRefusedError"}
