"""In-memory aggregation of function metrics, flushed in bulk.

Every instrumented call (a Celery task through ``tasks.base.VigilTask``, an HTTP request through
``tasks.middleware.FunctionMetricsMiddleware``) calls :func:`record`, which only adds to a per-window
aggregate under a lock: no I/O and no prometheus-client call on the hot path. A daemon thread per
process flushes the aggregates every ``FUNCTION_METRICS_FLUSH_SECONDS``: it first *publishes* them to
the prometheus-client metrics (one ``inc`` per counter and histogram bucket per window, not one per
call), then writes them with one upsert per function per window and per function per hour
(``tasks.services.function_metrics_upsert``). A scrape of ``/metrics`` publishes the scraping process's
own pending aggregates first, so its numbers are current; other processes (gunicorn workers, prefork
children, in multiprocess mode) are at most one flush interval behind. Process shutdown (atexit,
Celery's ``worker_process_shutdown``) flushes what is left.

A *cold start* is the first invocation of a function in a process.

Failures also keep a :class:`FailureRecord` (exception type, message, task id or request path) in
memory, at most ``MAX_FAILURES_PER_FUNCTION`` per function per flush, written to ``function_failures``
at the same flush (``tasks.services.function_failures_record``).
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import socket
import threading
import time
import weakref
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable
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
# Past this many buffered rows (the database was unreachable for a long time) new windows are dropped
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


@dataclass(slots=True)
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

    def copy(self) -> WindowAggregate:
        return WindowAggregate(
            self.function_name,
            self.kind,
            self.window_start,
            self.window_seconds,
            self.invocations,
            self.errors,
            self.total_latency_ms,
            self.max_latency_ms,
            self.cold_starts,
            Counter(self.errors_by_type),
            list(self.buckets),
        )

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


def _histogram_add(child: PromHistogram, buckets: list[int], total_seconds: float) -> None:
    """Add a whole window's bucket counts to a labelled prometheus-client histogram at once.

    prometheus-client only offers ``observe(one value)``; its per-bucket value objects are what
    ``observe`` increments, so adding to them gives exactly the samples one ``observe`` per call would
    give (our bucket bounds are the histogram's, see ``PROM_LATENCY``). Works in multiprocess mode too
    (the values are the per-process mmap files).
    """
    child._sum.inc(total_seconds)
    for value, count in zip(child._buckets, buckets, strict=True):
        if count:
            value.inc(count)


def publish_to_prometheus(aggregates: Iterable[WindowAggregate]) -> None:
    """Add aggregates to the prometheus-client counters and histogram (``/metrics``)."""
    for aggregate in aggregates:
        labels = (aggregate.function_name, aggregate.kind)
        PROM_INVOCATIONS.labels(*labels).inc(aggregate.invocations)
        _histogram_add(PROM_LATENCY.labels(*labels), aggregate.buckets, aggregate.total_latency_ms / 1000)
        if aggregate.cold_starts:
            PROM_COLD_STARTS.labels(*labels).inc(aggregate.cold_starts)
        for exception_type, count in aggregate.errors_by_type.items():
            PROM_ERRORS.labels(*labels, exception_type).inc(count)


def _reset_after_fork(reference: weakref.ref) -> None:
    recorder = reference()
    if recorder is not None:
        recorder._reset_for_process()


class FunctionMetricsRecorder:
    """Per-process aggregator. Safe across threads and across fork (state resets in the child).

    Aggregates move through two buffers: ``_pending`` (what :meth:`record` adds to, under ``_lock``)
    and ``_unwritten`` (published to Prometheus, not yet in the database; only touched under
    ``_flush_lock``). Publishing moves pending into unwritten exactly once, so a failed database write
    is retried without counting anything twice in ``/metrics``.
    """

    def __init__(self) -> None:
        self._reset_for_process()
        os.register_at_fork(after_in_child=functools.partial(_reset_after_fork, weakref.ref(self)))

    def _reset_for_process(self) -> None:
        """Fresh state: at creation, and in a forked child (Celery prefork, gunicorn workers). The locks
        are new too: another thread of the parent may have held them at the fork."""
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._pid = os.getpid()
        self._pending: dict[tuple[str, int], WindowAggregate] = {}
        self._unwritten: dict[tuple[str, datetime], WindowAggregate] = {}
        self._seen: set[str] = set()
        self._failures: dict[str, list[FailureRecord]] = {}
        self._process_label = f"{socket.gethostname()}:{self._pid}"
        self._flusher: threading.Thread | None = None
        self._stop = threading.Event()
        self.reload_settings()

    def reload_settings(self) -> None:
        """Read the settings once (the hot path must not go through Django's settings proxy)."""
        self._enabled = settings.FUNCTION_METRICS_ENABLED
        self._window_seconds = settings.FUNCTION_METRICS_WINDOW_SECONDS
        self._flush_seconds = settings.FUNCTION_METRICS_FLUSH_SECONDS
        # The one flag record() checks: a flush thread is due but not started in this process.
        self._flusher_due = self._flush_seconds > 0 and self._flusher is None

    def _ensure_process(self) -> None:
        """Safety net for a fork that bypassed ``os.fork`` hooks, checked off the hot path."""
        if self._pid != os.getpid():
            self._reset_for_process()

    def _start_flusher(self) -> None:
        with self._lock:
            if self._flusher is None and self._flush_seconds > 0:
                self._flusher = threading.Thread(target=self._flush_loop, name="vigil-metrics-flush", daemon=True)
                self._flusher.start()
            self._flusher_due = False

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
        """Count one call. O(1), in memory; never touches the database or prometheus-client.

        A failed call (``error_type`` set) also keeps its details (message, task id or request path)
        for ``function_failures``, up to ``MAX_FAILURES_PER_FUNCTION`` per function until the next flush.
        """
        if not self._enabled:
            return
        if self._flusher_due:
            self._start_flusher()
        window = int(time.time()) // self._window_seconds
        index = bisect_left(HISTOGRAM_BOUNDS_MS, latency_ms)
        with self._lock:
            aggregate = self._pending.get((name, window))
            if aggregate is None:
                aggregate = self._open_window(name, kind, window)
                if aggregate is None:
                    return
            aggregate.invocations += 1
            aggregate.total_latency_ms += latency_ms
            if latency_ms > aggregate.max_latency_ms:
                aggregate.max_latency_ms = latency_ms
            aggregate.buckets[index] += 1
            if error_type:
                self._record_error(aggregate, error_type, error_message, task_id, path)

    def _open_window(self, name: str, kind: str, window: int) -> WindowAggregate | None:
        """A new aggregate for (name, window); called under ``_lock`` once per function per window, so
        the cold-start check and the buffer bound live here, off the per-call path. A function's first
        call in a process always opens a window (nothing is buffered for it yet)."""
        if len(self._pending) + len(self._unwritten) >= MAX_PENDING_ROWS:
            logger.warning("function metrics buffer full; dropping a window", extra={"function": name})
            return None
        seconds = self._window_seconds
        aggregate = WindowAggregate(name, kind, datetime.fromtimestamp(window * seconds, tz=UTC), seconds)
        if name not in self._seen:
            self._seen.add(name)
            aggregate.cold_starts = 1
        self._pending[(name, window)] = aggregate
        return aggregate

    def _record_error(
        self, aggregate: WindowAggregate, error_type: str, error_message: str, task_id: str, path: str
    ) -> None:
        aggregate.errors += 1
        aggregate.errors_by_type[error_type] += 1
        kept = self._failures.setdefault(aggregate.function_name, [])
        if len(kept) < MAX_FAILURES_PER_FUNCTION:
            kept.append(
                FailureRecord(
                    function_name=aggregate.function_name,
                    kind=aggregate.kind,
                    exception_type=error_type,
                    message=error_message[:FAILURE_MESSAGE_LENGTH],
                    occurred_at=datetime.now(tz=UTC),
                    process=self._process_label,
                    task_id=task_id or "",
                    path=path[:FAILURE_MESSAGE_LENGTH],
                )
            )

    def pending(self) -> list[WindowAggregate]:
        """Everything recorded and not yet written to the database, one aggregate per function and window
        (copies; the recorder's own stay untouched)."""
        with self._flush_lock, self._lock:
            merged = {key: aggregate.copy() for key, aggregate in self._unwritten.items()}
            for aggregate in self._pending.values():
                key = (aggregate.function_name, aggregate.window_start)
                if key in merged:
                    merged[key].merge(aggregate)
                else:
                    merged[key] = aggregate.copy()
            return list(merged.values())

    def pending_failures(self) -> list[FailureRecord]:
        with self._lock:
            return [failure for kept in self._failures.values() for failure in kept]

    def publish(self) -> None:
        """Publish what was recorded since the last publish to the prometheus-client metrics (each call
        exactly once), keeping it for the next database write."""
        self._ensure_process()
        with self._flush_lock:
            self._publish_locked()

    def _publish_locked(self) -> None:
        with self._lock:
            batch, self._pending = self._pending, {}
        if not batch:
            return
        publish_to_prometheus(batch.values())
        for aggregate in batch.values():
            key = (aggregate.function_name, aggregate.window_start)
            current = self._unwritten.get(key)
            if current is None:
                self._unwritten[key] = aggregate
            else:
                current.merge(aggregate)

    def flush(self) -> int:
        """Publish, then write everything not yet in the database; returns the number of window rows
        upserted (each also adds into its hour row).

        On a database error the aggregates are kept and retried at the next flush (already published,
        they are not published again); failure details are put back too, within the per-function bound.
        """
        from tasks.services import function_metrics_upsert

        self._ensure_process()
        with self._flush_lock:
            self._publish_locked()
            with self._lock:
                failures, self._failures = self._failures, {}
            if failures:
                self._write_failures(failures)
            if not self._unwritten:
                return 0
            try:
                written = function_metrics_upsert(aggregates=list(self._unwritten.values()))
            except Exception:
                logger.exception("function metrics flush failed; will retry", extra={"rows": len(self._unwritten)})
                return 0
            self._unwritten = {}
            return written

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
        """Drop buffered data and the cold-start memory (tests, and benchmarks between phases)."""
        with self._flush_lock, self._lock:
            self._pending = {}
            self._unwritten = {}
            self._seen = set()
            self._failures = {}


recorder = FunctionMetricsRecorder()


# The module-level entry points are the process's recorder's own methods.
record = recorder.record


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
