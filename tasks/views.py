"""Operational endpoints outside the versioned API: Prometheus scrape and health probes."""

from __future__ import annotations

import hmac
import os

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess

from tasks import metrics
from tasks.collectors import QUEUE_HEALTH_REGISTRY


def _registry() -> CollectorRegistry:
    """Aggregate every process's metrics when PROMETHEUS_MULTIPROC_DIR is set (gunicorn, prefork)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY


@require_GET
def prometheus_metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus text exposition of function metrics (per-function counters and latency histograms) and
    queue-health gauges computed at scrape time (queue depth, outbox age, beat last run and lateness).

    Function metrics reach prometheus-client when a process flushes (every
    ``FUNCTION_METRICS_FLUSH_SECONDS``), not per call; the scraping process publishes its own first."""
    token = settings.METRICS_BEARER_TOKEN
    if token:
        sent = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(sent.encode(), token.encode()):
            return HttpResponse(
                "unauthorized\n", status=401, content_type="text/plain", headers={"WWW-Authenticate": "Bearer"}
            )
    metrics.recorder.publish()  # this process's calls since its last flush; others publish at their flush
    body = generate_latest(_registry()) + generate_latest(QUEUE_HEALTH_REGISTRY)
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: the process answers. No dependencies are touched."""
    return JsonResponse({"status": "ok"})


@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    """Readiness: the database answers and the Celery broker is reachable (unless running eager)."""
    checks: dict[str, str] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"error: {type(exc).__name__}"
    if settings.CELERY_TASK_ALWAYS_EAGER:
        checks["broker"] = "eager (no broker)"
    else:
        from config.celery import app

        try:
            with app.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, timeout=2)
            checks["broker"] = "ok"
        except Exception as exc:
            checks["broker"] = f"error: {type(exc).__name__}"
    ready = all(value == "ok" or value.startswith("eager") for value in checks.values())
    return JsonResponse({"status": "ok" if ready else "unavailable", "checks": checks}, status=200 if ready else 503)
