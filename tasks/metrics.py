"""In-memory aggregation of function metrics, flushed in bulk.

Every instrumented call (a Celery task through ``tasks.base.VigilTask``, an HTTP request through
``tasks.middleware.FunctionMetricsMiddleware``) calls :func:`record`, which only updates a dict under a
lock and two prometheus-client metrics: no I/O on the hot path. A daemon thread per process flushes
the aggregates every ``FUNCTION_METRICS_FLUSH_SECONDS`` with one upsert per function per window
(``tasks.services.function_metrics_upsert``); process shutdown (atexit, Celery's
``worker_process_shutdown``) flushes what is left.

A *cold start* is the first invocation of a function in a process.

Failures also keep a :class:`FailureRecord` (exception type, message, task id or request path) in
memory, at most ``MAX_FAILURES_PER_FUNCTION`` per function per flush, written to ``function_failures``
at the same flush (``tasks.services.function_failures_record``).
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import threading
import time
from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.conf import settings
from prometheus_client import Counter as PromCounter
from prometheus_client import Histogram as PromHistogram

logger = logging.getLogger(__name__)

# Upper bounds (ms) of the latency histogram buckets; the last bucket is +Inf. Fixed, so windows from
# every process and every day can be summed and percentiles computed from the sums.
HISTOGRAM_BOUNDS_MS: tuple[float, ...] = (1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000)
BUCKET_KEYS: tuple[str, ...] = (*(f"{bound:g}" for bound in HISTOGRAM_BOUNDS_MS), "+Inf")
# Past this many pending rows (the database was unreachable for a long time) new windows are dropped
# rather than growing without bound; the drop is logged.
MAX_PENDING_ROWS = 50_000
# Failure details kept per function between two flushes; more are counted (errors_by_type) but not kept.
MAX_FAILURES_PER_FUNCTION = 20
FAILURE_MESSAGE_LENGTH = 500

PROM_INVOCATIONS = PromCounter(
    "vigil_function_invocations", "Invocations of instrumented functions.", ["function", "kind"]
)
PROM_ERRORS = PromCounter(
    "vigil_function_errors", "Failed invocations by exception type.", ["function", "kind", "exception_type"]
)
PROM_COLD_STARTS = PromCounter(
    "vigil_function_cold_starts", "First invocations of a function in a process.", ["function", "kind"]
)
PROM_LATENCY = PromHistogram(
    "vigil_function_latency_seconds",
    "Latency of instrumented functions.",
    ["function", "kind"],
    buckets=tuple(bound / 1000 for bound in HISTOGRAM_BOUNDS_MS),
)


def bucket_index(latency_ms: float) -> int:
    """Index of the bucket holding ``latency_ms`` (upper bounds inclusive, like Prometheus ``le``)."""
    return bisect_left(HISTOGRAM_BOUNDS_MS, latency_ms)


@dataclass
class WindowAggregate:
    """What one process saw of one function in one window since its last flush."""

    function_name: str
    kind: str
    window_start: datetime
    window_seconds: int
    invocations: int = 0
    errors: int = 0
    total_latency_ms: float = 0.0
    max_latency_ms: float = 0.0
    cold_starts: int = 0
    errors_by_type: Counter = field(default_factory=Counter)
    buckets: list[int] = field(default_factory=lambda: [0] * len(BUCKET_KEYS))

    def merge(self, other: WindowAggregate) -> None:
        self.invocations += other.invocations
        self.errors += other.errors
        self.total_latency_ms += other.total_latency_ms
        self.max_latency_ms = max(self.max_latency_ms, other.max_latency_ms)
        self.cold_starts += other.cold_starts
        self.errors_by_type.update(other.errors_by_type)
        self.buckets = [a + b for a, b in zip(self.buckets, other.buckets, strict=True)]

    @property
    def histogram(self) -> dict[str, int]:
        return {key: count for key, count in zip(BUCKET_KEYS, self.buckets, strict=True) if count}


@dataclass(frozen=True)
class FailureRecord:
    """One failed call as the dashboard lists it. ``message`` is the exception's str, cut."""

    function_name: str
    kind: str
    exception_type: str
    message: str
    occurred_at: datetime
    process: str
    task_id: str = ""
    path: str = ""


def failure_message(exception: BaseException) -> str:
    """The exception's ``str`` cut to the stored length (never a traceback or local variables)."""
    try:
        text = str(exception)
    except Exception:  # a broken __str__ must not break the caller's error path
        text = ""
    return text[:FAILURE_MESSAGE_LENGTH]


class FunctionMetricsRecorder:
    """Per-process aggregator. Safe across threads and across fork (state resets in the child)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._reset_for_process()

    def _reset_for_process(self) -> None:
        self._pid = os.getpid()
        self._pending: dict[tuple[str, int], WindowAggregate] = {}
        self._seen: set[str] = set()
        self._failures: dict[str, list[FailureRecord]] = {}
        self._process_label = f"{socket.gethostname()}:{self._pid}"
        self._flusher: threading.Thread | None = None
        self._stop = threading.Event()
        self._prometheus: dict[tuple[str, str], tuple] = {}
        self.reload_settings()

    def reload_settings(self) -> None:
        """Read the settings once (the hot path must not go through Django's settings proxy)."""
        self._enabled = settings.FUNCTION_METRICS_ENABLED
        self._window_seconds = settings.FUNCTION_METRICS_WINDOW_SECONDS
        self._flush_seconds = settings.FUNCTION_METRICS_FLUSH_SECONDS

    def _ensure_process(self) -> None:
        if self._pid != os.getpid():  # forked (Celery prefork child, gunicorn worker): start clean
            self._lock = threading.Lock()
            self._flush_lock = threading.Lock()
            self._reset_for_process()
        if self._flusher is None and self._flush_seconds > 0:
            self._flusher = threading.Thread(target=self._flush_loop, name="vigil-metrics-flush", daemon=True)
            self._flusher.start()

    def _prometheus_children(self, name: str, kind: str) -> tuple:
        children = self._prometheus.get((name, kind))
        if children is None:
            children = (PROM_INVOCATIONS.labels(name, kind), PROM_LATENCY.labels(name, kind))
            self._prometheus[(name, kind)] = children
        return children

    def record(
        self,
        *,
        name: str,
        kind: str,
        latency_ms: float,
        error_type: str | None = None,
        error_message: str = "",
        task_id: str = "",
        path: str = "",
    ) -> None:
        """Count one call. O(1), in memory; never touches the database.

        A failed call (``error_type`` set) also keeps its details (message, task id or request path)
        for ``function_failures``, up to ``MAX_FAILURES_PER_FUNCTION`` per function until the next flush.
        """
        if not self._enabled:
            return
        if self._pid != os.getpid() or (self._flusher is None and self._flush_seconds > 0):
            self._ensure_process()
        window_seconds = self._window_seconds
        window = int(time.time()) // window_seconds * window_seconds
        index = bucket_index(latency_ms)
        with self._lock:
            cold = name not in self._seen
            if cold:
                self._seen.add(name)
            aggregate = self._pending.get((name, window))
            if aggregate is None:
                if len(self._pending) >= MAX_PENDING_ROWS:
                    logger.warning("function metrics buffer full; dropping a window", extra={"function": name})
                    return
                window_start = datetime.fromtimestamp(window, tz=UTC)
                aggregate = WindowAggregate(name, kind, window_start, window_seconds)
                self._pending[(name, window)] = aggregate
            aggregate.invocations += 1
            aggregate.total_latency_ms += latency_ms
            aggregate.max_latency_ms = max(aggregate.max_latency_ms, latency_ms)
            aggregate.buckets[index] += 1
            if cold:
                aggregate.cold_starts += 1
            if error_type:
                aggregate.errors += 1
                aggregate.errors_by_type[error_type] += 1
                kept = self._failures.setdefault(name, [])
                if len(kept) < MAX_FAILURES_PER_FUNCTION:
                    kept.append(
                        FailureRecord(
                            function_name=name,
                            kind=kind,
                            exception_type=error_type,
                            message=error_message[:FAILURE_MESSAGE_LENGTH],
                            occurred_at=datetime.now(tz=UTC),
                            process=self._process_label,
                            task_id=task_id or "",
                            path=path[:FAILURE_MESSAGE_LENGTH],
                        )
                    )
        invocations, latency = self._prometheus_children(name, kind)
        invocations.inc()
        latency.observe(latency_ms / 1000)
        if cold:
            PROM_COLD_STARTS.labels(name, kind).inc()
        if error_type:
            PROM_ERRORS.labels(name, kind, error_type).inc()

    def pending(self) -> list[WindowAggregate]:
        with self._lock:
            return list(self._pending.values())

    def pending_failures(self) -> list[FailureRecord]:
        with self._lock:
            return [failure for kept in self._failures.values() for failure in kept]

    def flush(self) -> int:
        """Write everything aggregated so far; returns the number of rows upserted.

        On a database error the aggregates are put back and retried at the next flush; failure
        details are put back too, within the per-function bound.
        """
        from tasks.services import function_metrics_upsert

        if self._pid != os.getpid():
            self._ensure_process()
        with self._flush_lock:
            with self._lock:
                batch, self._pending = self._pending, {}
                failures, self._failures = self._failures, {}
            if failures:
                self._write_failures(failures)
            if not batch:
                return 0
            try:
                function_metrics_upsert(aggregates=list(batch.values()))
            except Exception:
                logger.exception("function metrics flush failed; will retry", extra={"rows": len(batch)})
                with self._lock:
                    for key, aggregate in batch.items():
                        current = self._pending.get(key)
                        if current is None:
                            self._pending[key] = aggregate
                        else:
                            current.merge(aggregate)
                return 0
            return len(batch)

    def _write_failures(self, failures: dict[str, list[FailureRecord]]) -> None:
        from tasks.services import function_failures_record

        try:
            function_failures_record(failures=[failure for kept in failures.values() for failure in kept])
        except Exception:
            logger.exception("function failures flush failed; will retry", extra={"functions": len(failures)})
            with self._lock:
                for name, kept in failures.items():
                    current = self._failures.get(name, [])
                    self._failures[name] = (kept + current)[:MAX_FAILURES_PER_FUNCTION]

    def _flush_loop(self) -> None:
        from django.db import close_old_connections

        interval = self._flush_seconds
        while not self._stop.wait(interval):
            close_old_connections()
            self.flush()

    def forget_process_state(self) -> None:
        """Drop pending data and the cold-start memory (tests, and benchmarks between phases)."""
        with self._lock:
            self._pending = {}
            self._seen = set()
            self._failures = {}


recorder = FunctionMetricsRecorder()


def record(
    *,
    name: str,
    kind: str,
    latency_ms: float,
    error_type: str | None = None,
    error_message: str = "",
    task_id: str = "",
    path: str = "",
) -> None:
    recorder.record(
        name=name,
        kind=kind,
        latency_ms=latency_ms,
        error_type=error_type,
        error_message=error_message,
        task_id=task_id,
        path=path,
    )


def flush() -> int:
    return recorder.flush()


def _flush_quietly(*args, **kwargs) -> None:
    try:
        recorder.flush()
    except Exception:  # never let shutdown crash on metrics
        logger.exception("function metrics flush at shutdown failed")


def _reload_on_setting_change(setting: str, **kwargs) -> None:
    if setting.startswith("FUNCTION_METRICS_"):
        recorder.reload_settings()


def install_process_hooks() -> None:
    """Flush at interpreter exit and when a Celery worker (or prefork child) shuts down; follow
    ``override_settings`` in tests."""
    from celery.signals import worker_process_shutdown, worker_shutdown
    from django.core.signals import setting_changed

    setting_changed.connect(_reload_on_setting_change, weak=False)
    atexit.register(_flush_quietly)
    worker_process_shutdown.connect(_flush_quietly, weak=False)
    worker_shutdown.connect(_flush_quietly, weak=False)
