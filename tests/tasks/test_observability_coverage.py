"""Coverage of function observability: every Celery task and every URL pattern records function metrics.

The same enumeration (``tasks.kpis.observability_coverage``) feeds the KPI "function observability 100%".
"""

from __future__ import annotations

import json
import os
import re
import uuid

import pytest
from celery import shared_task
from django.test import Client
from django.urls import Resolver404, resolve

from config.celery import app
from governance.services.endpoints import iter_endpoints
from tasks import metrics
from tasks.base import vigil_task
from tasks.kpis import MIDDLEWARE_PATH, observability_coverage, project_tasks
from tasks.middleware import normalize_route
from tasks.models import FunctionKind
from tests.tasks.recorded import recorded

_PARAMETER = re.compile(r"\{(\w+)\}")
# Values tried for a route's parameters until the path resolves back to that route: an integer or
# slug, a UUID, an app label (the admin's app index only matches installed apps).
_SAMPLES = ("1", str(uuid.UUID(int=1)), "tasks")


def sample_path(route: str) -> str | None:
    """A concrete path that the URL resolver maps back to ``route`` (None if no sample fits)."""
    for sample in _SAMPLES:
        path = _PARAMETER.sub(lambda match, value=sample: "json" if match.group(1) == "format" else value, route)
        for candidate in (path, path + "/"):
            try:
                match = resolve(candidate)
            except Resolver404:
                continue
            if normalize_route(match.route) == route:
                return candidate
    return None


# --- The enumeration ------------------------------------------------------------------------------


def test_every_registered_celery_task_of_the_project_is_instrumented():
    tasks = project_tasks()

    assert {"tasks.canary", "tasks.function_metrics_rollup", "governance.audit_verify"} <= set(tasks)
    assert not [name for name in tasks if name.startswith("celery.")]
    assert [name for name, task in tasks.items() if not getattr(task.run, "__vigil_instrumented__", False)] == []


def test_the_coverage_counts_every_registered_task_and_every_url_pattern_and_misses_none():
    instrumented, total, missing = observability_coverage()

    assert missing == []
    assert total == len(project_tasks()) + len(list(iter_endpoints()))
    assert instrumented == total


@pytest.mark.django_db
def test_every_url_pattern_records_a_metric_under_its_own_route_when_requested():
    """Requests every URL pattern of the project (admin, API, /metrics and health probes included) as an
    anonymous caller and checks the middleware recorded it under ``GET <route>``."""
    client = Client(raise_request_exception=False)
    unresolvable, unrecorded = [], []
    for endpoint in iter_endpoints():
        path = sample_path(endpoint.route)
        if path is None:
            unresolvable.append(endpoint.route)
            continue
        metrics.recorder.forget_process_state()
        client.get(path)
        names = {aggregate.function_name for aggregate in metrics.recorder.pending()}
        if f"GET {endpoint.route}" not in names:
            unrecorded.append(f"{endpoint.route} (recorded {sorted(names)})")

    assert unresolvable == []
    assert unrecorded == []


def test_the_coverage_names_a_task_declared_without_vigil_task():
    @shared_task(name="tests.plain_uninstrumented")
    def plain() -> None:
        return None

    try:
        instrumented, total, missing = observability_coverage()
        assert missing == ["tests.plain_uninstrumented"]
        assert instrumented == total - 1
    finally:
        del app.tasks["tests.plain_uninstrumented"]


def test_the_coverage_names_every_endpoint_when_the_metrics_middleware_is_removed(settings):
    settings.MIDDLEWARE = [path for path in settings.MIDDLEWARE if path != MIDDLEWARE_PATH]

    _, total, missing = observability_coverage()

    assert set(missing) == {endpoint.route for endpoint in iter_endpoints()}
    assert total - len(missing) == len(project_tasks())


# --- Errors by type and cold starts per process ---------------------------------------------------


class ProbeTimeout(Exception):
    pass


@vigil_task(name="tests.coverage_probe")
def coverage_probe(error: str = "") -> str:
    if error == "timeout":
        raise ProbeTimeout("slow")
    if error == "value":
        raise ValueError("bad")
    return "ok"


def test_task_errors_are_counted_separately_by_exception_type():
    coverage_probe.apply()
    for error, exception in (("timeout", ProbeTimeout), ("timeout", ProbeTimeout), ("value", ValueError)):
        with pytest.raises(exception):
            coverage_probe.apply(kwargs={"error": error})

    probe = recorded("tests.coverage_probe")
    assert probe.invocations == 4
    assert probe.errors == 3
    assert dict(probe.errors_by_type) == {"ProbeTimeout": 2, "ValueError": 1}


def test_a_real_forked_process_counts_its_own_cold_start_and_not_the_parents_calls():
    coverage_probe.apply()
    coverage_probe.apply()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report what this process's recorder holds, never return into pytest
        try:
            os.close(read_end)
            coverage_probe.apply()
            child = recorded("tests.coverage_probe")
            os.write(write_end, json.dumps([child.invocations, child.cold_starts]).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        child_counts = json.loads(pipe.read())
    os.waitpid(pid, 0)

    assert child_counts == [1, 1]
    parent = recorded("tests.coverage_probe")
    assert (parent.invocations, parent.cold_starts) == (2, 1)
    assert parent.kind == FunctionKind.TASK
