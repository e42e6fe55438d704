"""KPI and capability measured by the worker-infrastructure app (function observability)."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from governance.services.endpoints import iter_endpoints
from governance.services.kpis import (
    ENFORCED,
    NOT_ENFORCED,
    CapabilityStatus,
    Measurement,
    capability_check,
    kpi_provider,
)
from tasks.base import is_instrumented
from tasks.models import FunctionMetric

MIDDLEWARE_PATH = "tasks.middleware.FunctionMetricsMiddleware"
RECENT = timedelta(hours=24)


def project_tasks() -> dict[str, object]:
    """Every Celery task registered by the project (Celery's own ``celery.*`` tasks excluded)."""
    from config.celery import app

    app.loader.import_default_modules()
    return {name: task for name, task in app.tasks.items() if not name.startswith("celery.")}


def observability_coverage() -> tuple[int, int, list[str]]:
    """(instrumented, total, uninstrumented names) over project tasks and URL endpoints."""
    tasks = project_tasks()
    missing = [name for name, task in tasks.items() if not is_instrumented(task)]
    endpoints = [e.route for e in iter_endpoints()]
    if MIDDLEWARE_PATH not in settings.MIDDLEWARE:
        missing.extend(endpoints)
    total = len(tasks) + len(endpoints)
    return total - len(missing), total, missing


@kpi_provider("function_observability")
def function_observability() -> Measurement:
    instrumented, total, missing = observability_coverage()
    share = instrumented / total if total else 0.0
    seen = (
        FunctionMetric.objects.filter(measurement_window__gte=timezone.now() - RECENT)
        .values("function_name")
        .distinct()
        .count()
    )
    detail = f"{seen} functions reported in the last 24 h"
    if missing:
        detail = f"not instrumented: {', '.join(sorted(missing)[:5])}; " + detail
    return Measurement(
        value=round(share * 100, 1), display=f"{share:.0%} ({instrumented}/{total})", met=not missing, detail=detail
    )


@capability_check("observability")
def observability_status() -> CapabilityStatus:
    instrumented, total, missing = observability_coverage()
    if missing:
        return CapabilityStatus(NOT_ENFORCED, f"{len(missing)} of {total} functions not instrumented")
    last = FunctionMetric.objects.order_by("-recorded_at").values_list("recorded_at", flat=True).first()
    if last is None or last < timezone.now() - RECENT:
        return CapabilityStatus(NOT_ENFORCED, "no function metrics flushed in the last 24 h")
    return CapabilityStatus(ENFORCED, f"all {total} tasks and endpoints instrumented; last flush {last:%H:%M} UTC")
