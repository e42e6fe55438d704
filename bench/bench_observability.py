"""Function-observability overhead benchmark (issue 8, Speed).

Target: the instrumentation costs ≤ 5% of a no-op task's and a trivial endpoint's own latency, measured
with and without it in the same run: single calls timed alternately (ABBA order, so load from other
processes hits both sides alike), the overhead computed from the two medians.

1. Task: a no-op Celery task run through ``Task.apply()`` (the eager path: Celery's tracer, request
   context, result object), once declared like every Vigil task (``VigilTask`` base, function wrapped
   by ``tasks.base.instrument``) and once with the same base and the bare function. The no-op's own
   body costs nanoseconds, so the meaningful denominator is the Celery call path; the overhead % is
   relative to the uninstrumented ``apply()``. The wrapper's absolute cost is also measured on direct
   calls (``task()``), where Celery adds almost nothing.
2. Endpoint: ``GET /healthz`` (no database, no authentication) through the Django test client with
   the full middleware stack and with ``FunctionMetricsMiddleware`` removed.

The instrumented side pays what production pays per call: ``recorder.record`` (the in-memory window aggregate).
Publishing to prometheus-client and writing to the database happen at flush, in a background thread off
the request/task path, disabled here (``FUNCTION_METRICS_FLUSH_SECONDS=0``). The middleware's own cost is
also timed directly (its ``__call__`` around a view that returns at once, vs that view alone).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from celery import shared_task
from django.conf import settings
from django.http import HttpResponse
from django.test import Client, RequestFactory, override_settings
from django.urls import resolve

from bench.harness import interleaved, time_per_call, write_result

ROUNDS = 9
TASK_PAIRS = 20_000
REQUEST_PAIRS = 12_000
DIRECT_CALLS = 50_000
MIDDLEWARE_CALLS = 20_000
TARGET_PERCENT = 5.0
MIDDLEWARE_PATH = "tasks.middleware.FunctionMetricsMiddleware"


def noop() -> None:
    return None


def _tasks():
    from tasks.base import VigilTask, vigil_task

    instrumented = vigil_task(name="bench.noop_instrumented")(noop)
    bare = shared_task(base=VigilTask, name="bench.noop_bare")(noop)
    return instrumented, bare


def _clients() -> tuple[Client, Client]:
    """Two test clients whose handlers loaded their middleware chains once: with and without metrics."""
    with_metrics = Client()
    assert with_metrics.get("/healthz").status_code == 200
    without = [path for path in settings.MIDDLEWARE if path != MIDDLEWARE_PATH]
    with override_settings(MIDDLEWARE=without):
        without_metrics = Client()
        assert without_metrics.get("/healthz").status_code == 200  # the handler keeps this chain
    return with_metrics, without_metrics


def _overhead_percent(instrumented: float, bare: float) -> float:
    return (instrumented - bare) / bare * 100


def alternating(call_with: Callable[[], object], call_without: Callable[[], object], *, pairs: int):
    """Time single calls, alternating the two sides call by call (ABBA order), so load from other
    processes hits both alike; return (median with, median without, overhead % of the medians) in
    seconds. Medians of thousands of single calls ignore the minority a context switch stretched."""
    clock = time.perf_counter
    withs, withouts = [], []
    for index in range(pairs):
        order = ((call_with, withs), (call_without, withouts))
        for call, samples in order if index % 2 else order[::-1]:
            started = clock()
            call()
            samples.append(clock() - started)
    with_, without = statistics.median(withs), statistics.median(withouts)
    return with_, without, _overhead_percent(with_, without)


def _middleware_alone() -> tuple[float, float]:
    """Seconds per call of the metrics middleware around a view that returns at once, and of that view."""
    from tasks.middleware import FunctionMetricsMiddleware

    request = RequestFactory().get("/healthz")
    request.resolver_match = resolve("/healthz")  # as the handler leaves it once the URL is resolved
    response = HttpResponse()

    def view(request):
        return response

    middleware = FunctionMetricsMiddleware(view)
    return interleaved(
        lambda: time_per_call(lambda: middleware(request), calls=MIDDLEWARE_CALLS, repeats=1, warmup=1000),
        lambda: time_per_call(lambda: view(request), calls=MIDDLEWARE_CALLS, repeats=1, warmup=1000),
        rounds=ROUNDS,
    )


def run() -> None:
    from tasks import metrics
    from tasks.base import is_instrumented

    instrumented, bare = _tasks()
    assert is_instrumented(instrumented) and not is_instrumented(bare)
    metrics.recorder.forget_process_state()

    apply_with, apply_without, task_overhead = alternating(instrumented.apply, bare.apply, pairs=TASK_PAIRS)
    call_with, call_without = interleaved(
        lambda: time_per_call(instrumented, calls=DIRECT_CALLS, repeats=1, warmup=1000),
        lambda: time_per_call(bare, calls=DIRECT_CALLS, repeats=1, warmup=1000),
        rounds=ROUNDS,
    )
    with_client, without_client = _clients()
    request_with, request_without, request_overhead = alternating(
        lambda: with_client.get("/healthz"), lambda: without_client.get("/healthz"), pairs=REQUEST_PAIRS
    )
    alone_with, alone_without = _middleware_alone()
    recorded = {aggregate.function_name for aggregate in metrics.recorder.pending()}
    assert {"bench.noop_instrumented", "GET /healthz"} <= recorded
    assert "bench.noop_bare" not in recorded
    metrics.recorder.forget_process_state()

    results = [
        {
            "metric": "task overhead: instrumented vs bare no-op apply(), alternating calls",
            "value": task_overhead,
            "unit": "%",
            "target": f"≤ {TARGET_PERCENT:g} %",
            "ok": task_overhead <= TARGET_PERCENT,
        },
        {"metric": "no-op task apply(), instrumented", "value": apply_with * 1e6, "unit": "µs"},
        {"metric": "no-op task apply(), bare function", "value": apply_without * 1e6, "unit": "µs"},
        {
            "metric": "wrapper cost per direct call (instrumented − bare)",
            "value": (call_with - call_without) * 1e6,
            "unit": "µs",
        },  # fmt: skip
        {"metric": "no-op task direct call, instrumented", "value": call_with * 1e6, "unit": "µs"},
        {"metric": "no-op task direct call, bare function", "value": call_without * 1e6, "unit": "µs"},
        {
            "metric": "endpoint overhead: GET /healthz with vs without the metrics middleware, alternating calls",
            "value": request_overhead,
            "unit": "%",
            "target": f"≤ {TARGET_PERCENT:g} %",
            "ok": request_overhead <= TARGET_PERCENT,
        },
        {"metric": "GET /healthz with the metrics middleware", "value": request_with * 1e6, "unit": "µs"},
        {"metric": "GET /healthz without the metrics middleware", "value": request_without * 1e6, "unit": "µs"},
        {
            "metric": "middleware cost per request (with − without, medians)",
            "value": (request_with - request_without) * 1e6,
            "unit": "µs",
        },  # fmt: skip
        {
            "metric": "middleware alone per call (its __call__ around an instant view − the view)",
            "value": (alone_with - alone_without) * 1e6,
            "unit": "µs",
        },  # fmt: skip
        {
            "metric": "middleware alone as a share of GET /healthz without it",
            "value": _overhead_percent(request_without + alone_with - alone_without, request_without),
            "unit": "%",
        },  # fmt: skip
    ]
    for row in results:
        print(f"  {row['metric']}: {row['value']:.3f} {row['unit']}")
    write_result(
        "observability",
        title="Function observability: instrumentation overhead per task call and per request",
        results=results,
        notes=(
            f"Single calls timed alternately with and without (ABBA order), overhead from the medians. Task: "
            f"{TASK_PAIRS} pairs of eager apply() calls of a no-op task "
            "declared with @vigil_task (VigilTask base, function wrapped by tasks.base.instrument) vs the same "
            "function registered with the same base and no wrapper; the no-op's own latency is Celery's eager call "
            f"path, so the % is relative to it. Direct calls ({ROUNDS} rounds of {DIRECT_CALLS}) show the wrapper's "
            f"absolute cost. Endpoint: {REQUEST_PAIRS} pairs of GET /healthz through the Django test client (full "
            "middleware stack, no database) with and without tasks.middleware.FunctionMetricsMiddleware; the "
            "middleware is also timed alone around an instant view. The instrumented side pays recorder.record "
            "(the in-memory window aggregate); publishing to prometheus-client and the database write happen at "
            "flush, in a background thread, off here."
        ),
    )
