"""Foundation benchmarks: instrumentation overhead, metrics flush, config reads, audit appends.

Each figure is a ratio against a baseline measured in the same run:
* task instrumentation — a no-op task run through ``apply()`` with ``VigilTask`` vs a plain Celery task;
* endpoint instrumentation — ``GET /healthz`` through the full Django stack with and without
  ``FunctionMetricsMiddleware``;
* metrics flush — one upsert of 50 function windows vs a plain ``bulk_create`` of the same rows;
* config read — ``registry.get`` vs a ``copy.deepcopy`` of the same value from a dict;
* audit append — ``audit_record_many`` of 1,000 entries (hash chain, lock) vs ``bulk_create`` of the
  same rows without hashing.
"""

from __future__ import annotations

import copy
import time
import uuid
from datetime import UTC, datetime

from django.db import connection, transaction
from django.test import Client, override_settings
from django.utils import timezone

from bench.harness import interleaved, time_per_call, write_result

OVERHEAD_TARGET = 0.05


def _overhead_rows(subject: str, kind: str, unit: str, plain_s: float, instrumented_s: float) -> list[dict]:
    overhead = (instrumented_s - plain_s) / plain_s
    return [
        {"metric": f"{subject} without instrumentation", "value": plain_s * 1e6, "unit": unit},
        {"metric": f"{subject} with instrumentation", "value": instrumented_s * 1e6, "unit": unit},
        {"metric": f"{kind} instrumentation overhead", "value": overhead * 100, "unit": "%",
         "target": "≤ 5%", "ok": overhead <= OVERHEAD_TARGET},
    ]  # fmt: skip


def _task_overhead() -> list[dict]:
    from celery import Task

    from config.celery import app
    from tasks.base import VigilTask, instrument

    def noop():
        return None

    instrumented = app.task(base=VigilTask, name="bench.noop_instrumented")(instrument(noop, name="bench.noop"))
    plain = app.task(base=Task, name="bench.noop_plain")(noop)
    plain_s, instrumented_s = interleaved(
        lambda: time_per_call(plain.apply, calls=2000, repeats=3),
        lambda: time_per_call(instrumented.apply, calls=2000, repeats=3),
    )
    return _overhead_rows("no-op task via apply()", "task", "µs/call", plain_s, instrumented_s)


def _endpoint_overhead() -> list[dict]:
    from django.conf import settings

    without = [m for m in settings.MIDDLEWARE if m != "tasks.middleware.FunctionMetricsMiddleware"]
    client = Client()

    def measure(middleware):
        with override_settings(MIDDLEWARE=middleware):
            client.get("/healthz")  # rebuild the handler's middleware chain outside the timing
            return time_per_call(lambda: client.get("/healthz"), calls=1000, repeats=3, warmup=50)

    plain_s, instrumented_s = interleaved(lambda: measure(without), lambda: measure(settings.MIDDLEWARE))
    return _overhead_rows("GET /healthz", "endpoint", "µs/request", plain_s, instrumented_s)


def _flush_cost() -> list[dict]:
    from tasks.metrics import WindowAggregate
    from tasks.models import FunctionMetric
    from tasks.services import function_metrics_upsert

    window = datetime(2020, 1, 1, tzinfo=UTC)

    def aggregates():
        rows = []
        for index in range(50):
            aggregate = WindowAggregate(f"bench.fn{index}", "task", window, 60, invocations=100, errors=3,
                                        total_latency_ms=420.0, max_latency_ms=12.0, cold_starts=1)  # fmt: skip
            aggregate.errors_by_type.update({"ValueError": 2, "TimeoutError": 1})
            aggregate.buckets[3] = 60
            aggregate.buckets[5] = 40
            rows.append(aggregate)
        return rows

    def upsert():
        function_metrics_upsert(aggregates=aggregates())

    def bulk_create():
        now = timezone.now()
        with transaction.atomic():
            FunctionMetric.objects.filter(function_name__startswith="bench.bulk").delete()
            FunctionMetric.objects.bulk_create([
                FunctionMetric(function_name=f"bench.bulk{i}", kind="task", measurement_window=window,
                               invocation_count=100, error_count=3, total_latency_ms=420.0, max_latency_ms=12.0,
                               cold_start_count=1, errors_by_type={"ValueError": 2, "TimeoutError": 1},
                               latency_histogram={"10": 60, "50": 40}, recorded_at=now)
                for i in range(50)
            ])  # fmt: skip

    baseline_s, upsert_s = interleaved(
        lambda: time_per_call(bulk_create, calls=20, repeats=3, warmup=3),
        lambda: time_per_call(upsert, calls=20, repeats=3, warmup=3),
    )
    FunctionMetric.objects.filter(function_name__startswith="bench.").delete()
    return [
        {"metric": "flush of 50 function windows (one upsert that adds)", "value": upsert_s * 1000, "unit": "ms"},
        {"metric": "baseline: delete + bulk_create of 50 rows", "value": baseline_s * 1000, "unit": "ms"},
        {"metric": "flush cost vs baseline", "value": upsert_s / baseline_s, "unit": "×"},
    ]


def _config_read() -> list[dict]:
    from config import registry

    key = "oversight.thresholds.data_quality"
    value = registry.get(key)
    plain = {key: value}
    baseline_s = time_per_call(lambda: copy.deepcopy(plain[key]), calls=20000, repeats=5)
    get_s = time_per_call(lambda: registry.get(key), calls=20000, repeats=5)
    registry.invalidate()
    started = time.perf_counter()
    registry.get(key)
    refresh_s = time.perf_counter() - started
    return [
        {"metric": "registry.get (snapshot hit)", "value": get_s * 1e6, "unit": "µs/call"},
        {"metric": "baseline: deepcopy of the value from a dict", "value": baseline_s * 1e6, "unit": "µs/call"},
        {"metric": "registry.get vs baseline", "value": get_s / baseline_s, "unit": "×"},
        {"metric": "version check + reload (at most once per second per process)", "value": refresh_s * 1000,
         "unit": "ms"},
    ]  # fmt: skip


def _audit_append() -> list[dict]:
    from governance.models import AuditLog
    from governance.services.audit import AuditEntry, audit_record, audit_record_many

    entries = [AuditEntry(action="config.updated", actor="system:bench", object_type="bench", object_id=str(i),
                          data={"i": i, "reason": "benchmark", "changes": [{"path": "a.b", "from": 1, "to": 2}]})
               for i in range(1000)]  # fmt: skip

    before = AuditLog.objects.count()

    def chained():
        audit_record_many(entries=entries)

    baseline_table = "bench_audit_baseline"
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TEMP TABLE IF NOT EXISTS {baseline_table} (LIKE audit_log INCLUDING DEFAULTS)")

    def unchained():
        now = timezone.now()
        rows = [(str(uuid.uuid4()), i, now, "system:bench", "system", "config.updated", "bench", str(i),
                 '{"i": 1}', "0" * 64, uuid.uuid4().hex * 2) for i in range(1000)]  # fmt: skip
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.executemany(
                f"INSERT INTO {baseline_table} (id, seq, at, actor, actor_type, action, object_type, object_id, "
                "data, prev_hash, hash) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                rows,
            )

    baseline_s, chained_s = interleaved(
        lambda: time_per_call(unchained, calls=3, repeats=3, warmup=1),
        lambda: time_per_call(chained, calls=3, repeats=3, warmup=1),
    )
    single_s = time_per_call(
        lambda: audit_record(action="config.updated", actor="system:bench", object_type="bench", data={"x": 1}),
        calls=200,
        repeats=3,
        warmup=20,
    )
    appended = AuditLog.objects.count() - before
    return [
        {"metric": "audit_record_many: 1,000 chained entries", "value": 1000 / chained_s, "unit": "rows/s"},
        {"metric": "baseline: executemany INSERT of 1,000 rows (no hashing, no lock)", "value": 1000 / baseline_s,
         "unit": "rows/s"},
        {"metric": "chained append throughput vs baseline", "value": baseline_s / chained_s, "unit": "×"},
        {"metric": "audit_record: one entry in its own transaction", "value": single_s * 1000, "unit": "ms"},
        {"metric": "audit rows written by this benchmark", "value": appended, "unit": "rows"},
    ]  # fmt: skip


def run() -> None:
    results = []
    for part in (_task_overhead, _endpoint_overhead, _flush_cost, _config_read, _audit_append):
        rows = part()
        for row in rows:
            print(f"  {row['metric']}: {row['value']:.3f} {row['unit']}")
        results.extend(rows)
    write_result(
        "foundation",
        title="Foundation: instrumentation overhead, metrics flush, config reads, audit appends",
        results=results,
        notes=(
            "Instrumentation overhead compares the same no-op task (Celery `apply()`) and the same trivial "
            "endpoint (`GET /healthz` through the whole middleware stack) with and without Vigil's wrapper, "
            "interleaved in one run. The audit benchmark appends to the real chain (advisory lock, SHA-256 per "
            "row, one INSERT per batch)."
        ),
    )
