"""Function metrics: in-memory recording, the additive upsert, windows, cold starts and task instrumentation."""

from __future__ import annotations

import itertools
import os
import threading
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from celery.exceptions import Ignore, Reject, Retry
from django.db import OperationalError, connection
from hypothesis import given
from hypothesis import strategies as st

from tasks import metrics, services
from tasks.base import vigil_task
from tasks.metrics import BUCKET_KEYS, HISTOGRAM_BOUNDS_MS, FunctionMetricsRecorder, WindowAggregate, bucket_index
from tasks.models import FunctionHourSummary, FunctionKind, FunctionMetric
from tasks.percentiles import histogram_percentile
from tasks.services import function_metrics_upsert
from tasks.tasks import CanaryFailure, canary
from tests.tasks.recorded import recorded

# Mid-window, so a handful of calls never straddles a window boundary by accident.
NOON = datetime(2025, 3, 14, 12, 0, 30, tzinfo=UTC)
NOON_WINDOW = datetime(2025, 3, 14, 12, 0, tzinfo=UTC)

_CONTROL_FLOW = {"Retry": Retry, "Ignore": Ignore, "Reject": Reject}
_retry_attempts: Counter = Counter()


@vigil_task(name="tests.retrying_probe", bind=True, max_retries=3)
def retrying_probe(self, key: str) -> str:
    """Asks to be retried on its first run, succeeds on the second."""
    _retry_attempts[key] += 1
    if _retry_attempts[key] == 1:
        raise self.retry(countdown=0)
    return "done"


@vigil_task(name="tests.control_flow_probe")
def control_flow_probe(exception: str) -> None:
    """Raises one of Celery's control-flow exceptions by name."""
    raise _CONTROL_FLOW[exception]()


@pytest.fixture
def frozen_noon(time_machine):
    time_machine.move_to(NOON, tick=False)
    return time_machine


def record_calls(name: str, latencies, *, kind: str = FunctionKind.TASK, errors=(), target=None) -> None:
    """Record one call per latency; ``errors`` gives the exception type of the first calls (None = success)."""
    record = (target or metrics.recorder).record
    for latency, error in itertools.zip_longest(latencies, errors):
        record(name=name, kind=kind, latency_ms=latency, error_type=error)


def aggregate(name: str, *, window_start=NOON_WINDOW, latencies=(), errors=(), cold_starts=0) -> WindowAggregate:
    """A WindowAggregate as a process would flush it."""
    result = WindowAggregate(name, FunctionKind.TASK, window_start, 60, cold_starts=cold_starts)
    for latency, error in itertools.zip_longest(latencies, errors):
        result.invocations += 1
        result.total_latency_ms += latency
        result.max_latency_ms = max(result.max_latency_ms, latency)
        result.buckets[bucket_index(latency)] += 1
        if error:
            result.errors += 1
            result.errors_by_type[error] += 1
    return result


# --- Recording and flushing ------------------------------------------------------------------------


@pytest.mark.django_db
def test_recording_never_touches_the_database_and_flush_writes_one_row_per_function_and_window(
    frozen_noon, django_assert_num_queries
):
    task_latencies = [0.5] * 60 + [3.0] * 50 + [40.0] * 39 + [70_000.0]
    with django_assert_num_queries(0):
        record_calls("tests.alpha", task_latencies, errors=["ValueError", "ValueError", "KeyError"])
        record_calls("GET /api/v1/teams", [12.5] * 50, kind=FunctionKind.ENDPOINT)

    assert metrics.flush() == 2

    assert FunctionMetric.objects.count() == 2
    task_row = FunctionMetric.objects.get(function_name="tests.alpha")
    assert task_row.kind == FunctionKind.TASK
    assert task_row.measurement_window == NOON_WINDOW
    assert task_row.window_seconds == 60
    assert task_row.invocation_count == 150
    assert task_row.error_count == 3
    assert task_row.errors_by_type == {"ValueError": 2, "KeyError": 1}
    assert task_row.latency_histogram == {"1": 60, "5": 50, "50": 39, "+Inf": 1}
    assert sum(task_row.latency_histogram.values()) == task_row.invocation_count
    assert task_row.total_latency_ms == pytest.approx(30 + 150 + 1560 + 70_000)
    assert task_row.max_latency_ms == 70_000
    assert task_row.cold_start_count == 1
    assert task_row.recorded_at == NOON

    endpoint_row = FunctionMetric.objects.get(function_name="GET /api/v1/teams")
    assert endpoint_row.kind == FunctionKind.ENDPOINT
    assert endpoint_row.invocation_count == 50
    assert endpoint_row.error_count == 0
    assert endpoint_row.errors_by_type == {}
    assert endpoint_row.latency_histogram == {"25": 50}
    assert endpoint_row.total_latency_ms == pytest.approx(625)
    assert endpoint_row.cold_start_count == 1


@pytest.mark.django_db
def test_flush_empties_the_buffer_so_a_second_flush_writes_nothing(frozen_noon, django_assert_num_queries):
    record_calls("tests.alpha", [5.0])
    metrics.flush()

    with django_assert_num_queries(0):
        assert metrics.flush() == 0
    assert metrics.recorder.pending() == []
    assert FunctionMetric.objects.get().invocation_count == 1


def test_a_latency_on_a_bucket_bound_belongs_to_that_bucket():
    assert len(BUCKET_KEYS) == len(HISTOGRAM_BOUNDS_MS) + 1
    assert BUCKET_KEYS[:3] == ("1", "2.5", "5")
    assert BUCKET_KEYS[-2:] == ("60000", "+Inf")
    assert bucket_index(0) == 0
    assert bucket_index(1) == 0
    assert bucket_index(1.0001) == 1
    assert bucket_index(2.5) == 1
    assert bucket_index(60_000) == len(HISTOGRAM_BOUNDS_MS) - 1
    assert BUCKET_KEYS[bucket_index(60_000.1)] == "+Inf"


def test_recording_is_a_no_op_when_function_metrics_are_disabled(settings):
    settings.FUNCTION_METRICS_ENABLED = False

    record_calls("tests.alpha", [5.0, 6.0])

    assert metrics.recorder.pending() == []


def test_a_full_buffer_drops_new_windows_but_keeps_counting_existing_ones(monkeypatch, frozen_noon):
    monkeypatch.setattr(metrics, "MAX_PENDING_ROWS", 2)

    record_calls("tests.alpha", [1.0])
    record_calls("tests.beta", [1.0])
    record_calls("tests.gamma", [1.0])
    record_calls("tests.alpha", [1.0])

    assert {a.function_name: a.invocations for a in metrics.recorder.pending()} == {"tests.alpha": 2, "tests.beta": 1}


def test_no_flush_thread_runs_when_the_flush_interval_is_zero():
    recorder = FunctionMetricsRecorder()  # tests/settings.py: FUNCTION_METRICS_FLUSH_SECONDS = 0

    recorder.record(name="tests.alpha", kind=FunctionKind.TASK, latency_ms=1.0)

    assert recorder._flusher is None


def test_a_positive_flush_interval_starts_one_daemon_flush_thread_on_first_record(settings):
    settings.FUNCTION_METRICS_FLUSH_SECONDS = 3600  # long enough that it never flushes during the test
    recorder = FunctionMetricsRecorder()
    try:
        recorder.record(name="tests.alpha", kind=FunctionKind.TASK, latency_ms=1.0)
        recorder.record(name="tests.alpha", kind=FunctionKind.TASK, latency_ms=1.0)

        flusher = recorder._flusher
        assert flusher is not None and flusher.is_alive()
        assert flusher.daemon
        assert flusher.name == "vigil-metrics-flush"
    finally:
        recorder._stop.set()
    flusher.join(timeout=5)
    assert not flusher.is_alive()


# --- The additive upsert ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_flushes_of_the_same_window_from_two_processes_add_up(frozen_noon):
    first, second = FunctionMetricsRecorder(), FunctionMetricsRecorder()
    record_calls("tests.alpha", [2.0, 30.0, 400.0], errors=[None, "ValueError"], target=first)
    record_calls("tests.alpha", [30.0, 9000.0], errors=["ValueError", "TimeoutError"], target=second)

    first.flush()
    second.flush()

    row = FunctionMetric.objects.get(function_name="tests.alpha")
    assert row.invocation_count == 5
    assert row.error_count == 3
    assert row.errors_by_type == {"ValueError": 2, "TimeoutError": 1}
    assert row.latency_histogram == {"2.5": 1, "50": 2, "500": 1, "10000": 1}
    assert row.total_latency_ms == pytest.approx(2 + 30 + 400 + 30 + 9000)
    assert row.max_latency_ms == 9000
    assert row.cold_start_count == 2  # each process saw its first call


@pytest.mark.django_db
def test_upsert_merges_json_counts_key_by_key_and_keeps_the_larger_max():
    function_metrics_upsert(
        aggregates=[aggregate("tests.alpha", latencies=[700.0, 3.0], errors=["KeyError", "ValueError"], cold_starts=1)]
    )
    function_metrics_upsert(
        aggregates=[aggregate("tests.alpha", latencies=[3.0, 3.0, 80_000.0, 1.0], errors=[None, "ValueError"])]
    )
    function_metrics_upsert(aggregates=[aggregate("tests.alpha", latencies=[90.0], errors=["OSError"])])

    row = FunctionMetric.objects.get()
    assert row.invocation_count == 7
    assert row.error_count == 4
    assert row.errors_by_type == {"KeyError": 1, "ValueError": 2, "OSError": 1}
    assert row.latency_histogram == {"1000": 1, "5": 3, "+Inf": 1, "1": 1, "100": 1}
    assert row.max_latency_ms == 80_000
    assert row.cold_start_count == 1


@pytest.mark.django_db
def test_upsert_adds_each_window_into_its_hour_summary_in_the_same_write():
    first_hour = [NOON_WINDOW + timedelta(minutes=minute) for minute in (0, 1, 59)]
    batch = [
        aggregate("tests.alpha", window_start=start, latencies=[3.0, 700.0], errors=["KeyError"])
        for start in first_hour
    ]
    batch.append(aggregate("tests.alpha", window_start=NOON_WINDOW + timedelta(hours=1), latencies=[1.0]))

    function_metrics_upsert(aggregates=batch)
    function_metrics_upsert(aggregates=batch[:1])

    hours = {row.measurement_window: row for row in FunctionHourSummary.objects.all()}
    assert set(hours) == {NOON_WINDOW, NOON_WINDOW + timedelta(hours=1)}
    noon = hours[NOON_WINDOW]
    assert (noon.invocation_count, noon.error_count) == (8, 4)
    assert noon.errors_by_type == {"KeyError": 4}
    assert noon.latency_histogram == {"5": 4, "1000": 4}
    assert noon.total_latency_ms == pytest.approx(4 * 703.0)
    assert noon.max_latency_ms == 700.0
    assert hours[NOON_WINDOW + timedelta(hours=1)].invocation_count == 1
    windows = FunctionMetric.objects.filter(measurement_window__lt=NOON_WINDOW + timedelta(hours=1))
    assert sum(windows.values_list("invocation_count", flat=True)) == noon.invocation_count


@pytest.mark.django_db
def test_a_failed_write_leaves_neither_the_windows_nor_their_hour_summaries(monkeypatch):
    def failing_hours(cursor, vendor, aggregates, *, into, chunk_size):
        if into == services._HOURS:
            raise OperationalError("disk full")
        return real_upsert(cursor, vendor, aggregates, into=into, chunk_size=chunk_size)

    real_upsert = services._upsert
    monkeypatch.setattr(services, "_upsert", failing_hours)

    with pytest.raises(OperationalError):
        function_metrics_upsert(aggregates=[aggregate("tests.alpha", latencies=[1.0])])

    assert not FunctionMetric.objects.exists()
    assert not FunctionHourSummary.objects.exists()


@pytest.mark.django_db
def test_upsert_of_error_free_windows_keeps_an_empty_errors_object():
    function_metrics_upsert(aggregates=[aggregate("tests.alpha", latencies=[1.0])])
    function_metrics_upsert(aggregates=[aggregate("tests.alpha", latencies=[1.0])])

    row = FunctionMetric.objects.get()
    assert row.errors_by_type == {}
    assert row.latency_histogram == {"1": 2}


@pytest.mark.django_db
def test_upsert_writes_one_row_per_function_and_window_across_chunks():
    later = NOON_WINDOW + timedelta(minutes=1)
    batch = [aggregate(f"tests.f{index}", latencies=[1.0]) for index in range(5)]
    batch += [aggregate(f"tests.f{index}", window_start=later, latencies=[2.0, 2.0]) for index in range(5)]

    assert function_metrics_upsert(aggregates=batch, chunk_size=3) == 10
    function_metrics_upsert(aggregates=batch, chunk_size=4)

    counts = {(row.function_name, row.measurement_window): row.invocation_count for row in FunctionMetric.objects.all()}
    assert counts == {
        **{(f"tests.f{index}", NOON_WINDOW): 2 for index in range(5)},
        **{(f"tests.f{index}", later): 4 for index in range(5)},
    }


@pytest.mark.django_db
def test_names_longer_than_the_column_that_are_cut_alike_share_one_row():
    prefix = "tests." + "x" * 200
    first = aggregate(prefix + "a", latencies=[3.0], errors=["ValueError"])
    second = aggregate(prefix + "b", latencies=[40.0, 40.0])

    function_metrics_upsert(aggregates=[first, second])

    row = FunctionMetric.objects.get()
    assert row.function_name == prefix[:200]
    assert row.invocation_count == 3
    assert row.errors_by_type == {"ValueError": 1}
    assert row.latency_histogram == {"5": 1, "50": 2}
    assert (first.invocations, second.invocations) == (1, 2)  # the caller's aggregates stay as they were


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_flushes_into_the_same_window_lose_no_counts(frozen_noon):
    threads, rounds = 6, 15
    names = ["tests.alpha", "tests.beta", "tests.gamma"]
    barrier = threading.Barrier(threads)
    failures: list[BaseException] = []

    def process(index: int) -> None:
        recorder = FunctionMetricsRecorder()  # one per "process": its own buffer and cold-start memory
        try:
            barrier.wait(timeout=10)
            for _ in range(rounds):
                for name in names[index % 3 :] + names[: index % 3]:  # flush order differs per thread
                    record_calls(
                        name, [3.0, 40.0, 70_000.0], errors=["ValueError", None, "TimeoutError"], target=recorder
                    )
                assert recorder.flush() == len(names)
        except BaseException as exc:
            failures.append(exc)
        finally:
            connection.close()

    workers = [threading.Thread(target=process, args=(index,)) for index in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)

    assert failures == []
    calls = threads * rounds
    for name in names:
        row = FunctionMetric.objects.get(function_name=name, measurement_window=NOON_WINDOW)
        assert row.invocation_count == 3 * calls
        assert row.error_count == 2 * calls
        assert row.errors_by_type == {"ValueError": calls, "TimeoutError": calls}
        assert row.latency_histogram == {"5": calls, "50": calls, "+Inf": calls}
        assert row.total_latency_ms == pytest.approx(70_043.0 * calls)
        assert row.max_latency_ms == 70_000
        assert row.cold_start_count == threads
        summary = FunctionHourSummary.objects.get(function_name=name)
        assert summary.measurement_window == NOON_WINDOW  # 12:00, the window's hour
        assert (summary.invocation_count, summary.error_count) == (3 * calls, 2 * calls)
        assert summary.latency_histogram == row.latency_histogram
        assert summary.errors_by_type == row.errors_by_type
        assert summary.cold_start_count == threads


# --- Windows -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_calls_either_side_of_a_window_boundary_land_in_two_rows(time_machine):
    time_machine.move_to(datetime(2025, 3, 14, 12, 0, 59, 999_000, tzinfo=UTC), tick=False)
    record_calls("tests.alpha", [5.0, 5.0])
    time_machine.move_to(datetime(2025, 3, 14, 12, 1, 0, tzinfo=UTC), tick=False)
    record_calls("tests.alpha", [5.0])

    assert metrics.flush() == 2

    rows = {row.measurement_window: row for row in FunctionMetric.objects.filter(function_name="tests.alpha")}
    assert set(rows) == {NOON_WINDOW, NOON_WINDOW + timedelta(minutes=1)}
    assert rows[NOON_WINDOW].invocation_count == 2
    assert rows[NOON_WINDOW + timedelta(minutes=1)].invocation_count == 1
    assert rows[NOON_WINDOW].cold_start_count == 1
    assert rows[NOON_WINDOW + timedelta(minutes=1)].cold_start_count == 0


@pytest.mark.django_db
def test_the_window_length_comes_from_settings(settings, time_machine):
    settings.FUNCTION_METRICS_WINDOW_SECONDS = 300
    time_machine.move_to(datetime(2025, 3, 14, 12, 7, 42, tzinfo=UTC), tick=False)

    record_calls("tests.alpha", [5.0])
    metrics.flush()

    row = FunctionMetric.objects.get()
    assert row.measurement_window == datetime(2025, 3, 14, 12, 5, tzinfo=UTC)
    assert row.window_seconds == 300


# --- Failed flushes ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_failed_flush_keeps_the_aggregates_and_the_next_flush_writes_them(monkeypatch, frozen_noon, caplog):
    real_upsert = services.function_metrics_upsert
    calls = []

    def upsert_failing_once(*, aggregates):
        calls.append(len(aggregates))
        if len(calls) == 1:
            raise OperationalError("database is down")
        return real_upsert(aggregates=aggregates)

    monkeypatch.setattr(services, "function_metrics_upsert", upsert_failing_once)
    record_calls("tests.alpha", [3.0, 3.0], errors=["ValueError"])

    assert metrics.flush() == 0
    assert "function metrics flush failed" in caplog.text
    assert not FunctionMetric.objects.exists()

    record_calls("tests.alpha", [40.0], errors=["ValueError"])  # same window, recorded while it was down
    assert metrics.flush() == 1

    row = FunctionMetric.objects.get()
    assert row.invocation_count == 3
    assert row.errors_by_type == {"ValueError": 2}
    assert row.latency_histogram == {"5": 2, "50": 1}
    assert row.cold_start_count == 1
    assert calls == [1, 1]


# --- Cold starts ---------------------------------------------------------------------------------


def test_a_cold_start_is_counted_once_per_function_per_process(frozen_noon):
    record_calls("tests.alpha", [1.0, 1.0, 1.0])
    record_calls("tests.beta", [1.0])

    assert recorded("tests.alpha").cold_starts == 1
    assert recorded("tests.beta").cold_starts == 1


@pytest.mark.django_db
def test_a_flush_does_not_make_the_next_call_cold_again(frozen_noon):
    record_calls("tests.alpha", [1.0])
    metrics.flush()

    record_calls("tests.alpha", [1.0])

    assert recorded("tests.alpha").cold_starts == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_process_starts_with_an_empty_buffer_and_counts_its_own_cold_start(frozen_noon):
    record_calls("tests.alpha", [1.0, 1.0])
    read_end, write_end = os.pipe()

    pid = os.fork()
    if pid == 0:  # the child (as a prefork worker): report what its recorder holds, then leave at once
        try:
            record_calls("tests.alpha", [1.0])
            child = recorded("tests.alpha")
            os.write(write_end, f"{child.invocations},{child.cold_starts}".encode())
        finally:
            os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    with os.fdopen(read_end) as reader:
        report = reader.read()

    assert report == "1,1"  # the parent's buffered calls are the parent's to flush
    assert recorded("tests.alpha").invocations == 2


# --- Task instrumentation (VigilTask) --------------------------------------------------------------


def test_an_eager_task_run_records_a_task_metric():
    assert canary.delay().get() == "ok"

    seen = recorded("tasks.canary")
    assert seen.kind == FunctionKind.TASK
    assert seen.invocations == 1
    assert seen.errors == 0
    assert seen.cold_starts == 1
    assert sum(seen.buckets) == 1


def test_a_failing_task_is_counted_as_an_error_by_exception_type():
    with pytest.raises(CanaryFailure):
        canary.delay(mode="fail")
    assert canary.apply(kwargs={"mode": "fail"}, throw=False).failed()

    seen = recorded("tasks.canary")
    assert seen.invocations == 2
    assert seen.errors == 2
    assert seen.errors_by_type == {"CanaryFailure": 2}


def test_calling_a_task_directly_is_instrumented_too():
    assert canary() == "ok"

    assert recorded("tasks.canary").invocations == 1


@pytest.mark.django_db
def test_an_eager_task_run_lands_in_function_metrics_after_a_flush():
    canary.delay()
    canary.apply(kwargs={"mode": "fail"}, throw=False)

    metrics.flush()

    row = FunctionMetric.objects.get(function_name="tasks.canary")
    assert row.kind == FunctionKind.TASK
    assert row.invocation_count == 2
    assert row.errors_by_type == {"CanaryFailure": 1}


def test_a_task_asking_for_a_retry_is_not_counted_as_an_error():
    key = uuid.uuid4().hex

    # throw=False: an eager retry is replayed by apply() instead of propagating (task_eager_propagates)
    assert retrying_probe.apply(args=[key], throw=False).get() == "done"

    seen = recorded("tests.retrying_probe")
    assert _retry_attempts[key] == 2
    assert seen.invocations == 2
    assert seen.errors == 0
    assert seen.errors_by_type == {}


@pytest.mark.parametrize("exception", sorted(_CONTROL_FLOW))
def test_celery_control_flow_exceptions_are_not_errors(exception):
    control_flow_probe.apply(args=[exception], throw=False)

    seen = recorded("tests.control_flow_probe")
    assert seen.invocations == 1
    assert seen.errors == 0


# --- Percentiles from the histogram --------------------------------------------------------------


def test_an_empty_histogram_has_no_percentile():
    assert histogram_percentile({}, 0.95) is None
    assert histogram_percentile({"10": 0, "+Inf": 0}, 0.5) is None


def test_a_percentile_interpolates_linearly_inside_its_bucket():
    histogram = {"10": 4}  # four calls between 5 and 10 ms

    assert histogram_percentile(histogram, 0.0) == 5.0
    assert histogram_percentile(histogram, 0.5) == 7.5
    assert histogram_percentile(histogram, 1.0) == 10.0
    assert histogram_percentile({"1": 2}, 0.5) == 0.5  # the first bucket starts at 0


def test_a_percentile_skips_empty_buckets_and_lands_in_the_right_one():
    histogram = {"10": 19, "25": 1}

    assert histogram_percentile(histogram, 0.95) == 10.0
    assert histogram_percentile(histogram, 0.99) == pytest.approx(22.0)


def test_a_percentile_in_the_overflow_bucket_is_capped_at_the_largest_finite_bound():
    assert histogram_percentile({"+Inf": 3}, 0.5) == HISTOGRAM_BOUNDS_MS[-1]
    assert histogram_percentile({"1": 99, "+Inf": 1}, 0.99) == 1.0
    assert histogram_percentile({"1": 99, "+Inf": 1}, 0.995) == 60_000.0


@given(
    histogram=st.dictionaries(st.sampled_from(BUCKET_KEYS), st.integers(min_value=0, max_value=10**6)),
    quantiles=st.lists(st.floats(min_value=0, max_value=1), min_size=2, max_size=2),
)
def test_percentiles_never_decrease_as_the_quantile_grows(histogram, quantiles):
    low, high = sorted(quantiles)

    lower, upper = histogram_percentile(histogram, low), histogram_percentile(histogram, high)

    if not any(histogram.values()):
        assert lower is None and upper is None
    else:
        assert 0 <= lower <= upper <= HISTOGRAM_BOUNDS_MS[-1]


# --- GET /api/v1/metrics/functions ---------------------------------------------------------------

FUNCTIONS_URL = "/api/v1/metrics/functions"


def metric_row(name: str, *, window=NOON_WINDOW, kind=FunctionKind.TASK, **fields) -> FunctionMetric:
    defaults = {"invocation_count": 1, "latency_histogram": {"5": 1}, "recorded_at": window + timedelta(seconds=60)}
    return FunctionMetric.objects.create(
        function_name=name, kind=kind, measurement_window=window, **{**defaults, **fields}
    )


def listed(response) -> list[tuple[str, str]]:
    assert response.status_code == 200, response.content
    return [(item["function_name"], item["measurement_window"]) for item in response.json()["results"]]


@pytest.mark.django_db
def test_function_metrics_api_answers_a_viewer_with_rates_and_percentiles(viewer, client_for):
    metric_row(
        "tasks.canary",
        invocation_count=20,
        error_count=2,
        errors_by_type={"CanaryFailure": 2},
        total_latency_ms=200.0,
        max_latency_ms=24.0,
        cold_start_count=1,
        latency_histogram={"10": 19, "25": 1},
    )

    response = client_for(viewer).get(FUNCTIONS_URL)

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"next", "previous", "results"}
    [item] = body["results"]
    assert item["function_name"] == "tasks.canary"
    assert item["kind"] == "task"
    assert item["measurement_window"] == "2025-03-14T12:00:00Z"
    assert item["window_seconds"] == 60
    assert item["invocation_count"] == 20
    assert item["error_count"] == 2
    assert item["error_rate"] == 0.1
    assert item["errors_by_type"] == {"CanaryFailure": 2}
    assert item["avg_latency_ms"] == 10.0
    assert item["max_latency_ms"] == 24.0
    assert item["p50_ms"] == pytest.approx(5 + 5 * 10 / 19)
    assert item["p95_ms"] == 10.0
    assert item["p99_ms"] == pytest.approx(22.0)
    assert item["cold_start_count"] == 1
    assert item["latency_histogram"] == {"10": 19, "25": 1}


@pytest.mark.django_db
def test_function_metrics_api_lists_newest_window_first(viewer, client_for):
    metric_row("tasks.canary", window=NOON_WINDOW)
    metric_row("tasks.canary", window=NOON_WINDOW + timedelta(minutes=1))

    assert listed(client_for(viewer).get(FUNCTIONS_URL)) == [
        ("tasks.canary", "2025-03-14T12:01:00Z"),
        ("tasks.canary", "2025-03-14T12:00:00Z"),
    ]


@pytest.mark.django_db
def test_function_metrics_api_filters_by_function_kind_and_time(viewer, client_for):
    metric_row("tasks.canary", window=NOON_WINDOW)
    metric_row("tasks.canary", window=NOON_WINDOW + timedelta(minutes=5))
    metric_row("GET /api/v1/teams", kind=FunctionKind.ENDPOINT, window=NOON_WINDOW + timedelta(minutes=5))
    client = client_for(viewer)

    assert listed(client.get(FUNCTIONS_URL, {"function": "tasks.canary"})) == [
        ("tasks.canary", "2025-03-14T12:05:00Z"),
        ("tasks.canary", "2025-03-14T12:00:00Z"),
    ]
    assert listed(client.get(FUNCTIONS_URL, {"kind": "endpoint"})) == [("GET /api/v1/teams", "2025-03-14T12:05:00Z")]
    assert sorted(listed(client.get(FUNCTIONS_URL, {"since": "2025-03-14T12:05:00Z"}))) == [
        ("GET /api/v1/teams", "2025-03-14T12:05:00Z"),
        ("tasks.canary", "2025-03-14T12:05:00Z"),
    ]
    assert listed(client.get(FUNCTIONS_URL, {"until": "2025-03-14T12:05:00Z"})) == [
        ("tasks.canary", "2025-03-14T12:00:00Z")
    ]
    assert listed(client.get(FUNCTIONS_URL, {"function_contains": "TEAMS"})) == [
        ("GET /api/v1/teams", "2025-03-14T12:05:00Z")
    ]


@pytest.mark.django_db
def test_function_metrics_api_reports_no_percentiles_for_a_window_without_histogram(viewer, client_for):
    metric_row("tasks.canary", invocation_count=0, latency_histogram={})

    [item] = client_for(viewer).get(FUNCTIONS_URL).json()["results"]

    assert item["p50_ms"] is None
    assert item["avg_latency_ms"] is None
    assert item["error_rate"] is None


@pytest.mark.django_db
def test_function_metrics_api_requires_authentication(anon_client):
    metric_row("tasks.canary")

    response = anon_client.get(FUNCTIONS_URL)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


@pytest.mark.django_db
def test_function_metrics_api_refuses_a_user_without_a_role(make_user, client_for):
    response = client_for(make_user()).get(FUNCTIONS_URL)

    assert response.status_code == 403
