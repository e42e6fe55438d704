"""Exactness on real PostgreSQL: concurrent callers never get more than the limit admitted."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from governance.models import RateLimit
from governance.services.ratelimit import rate_limit_hit

pytestmark = [pytest.mark.postgres]

THREADS, CALLS, LIMIT, WINDOW = 16, 200, 1_000, 86_400


def test_16_threads_of_200_calls_admit_exactly_the_limit(transactional_db):
    barrier = threading.Barrier(THREADS)
    admitted = [0] * THREADS
    errors: list[BaseException] = []

    def client(index: int) -> None:
        try:
            barrier.wait()
            for _ in range(CALLS):
                decision = rate_limit_hit(key="user:exactness", group="default", limit=LIMIT, window_seconds=WINDOW)
                admitted[index] += decision.allowed
        except BaseException as exc:  # surfaced below: a thread must not fail silently
            errors.append(exc)
        finally:
            connection.close()  # each thread has its own connection

    workers = [threading.Thread(target=client, args=(index,)) for index in range(THREADS)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    assert errors == []
    # A day-long window started at most once in the run (a midnight UTC crossing would split it in two).
    rows = list(RateLimit.objects.filter(key="user:exactness").values_list("count", flat=True))
    assert sum(rows) == THREADS * CALLS
    assert sum(admitted) == LIMIT * len(rows)
    if len(rows) == 1:
        assert sum(admitted) == 1_000


def test_the_counter_table_is_unlogged(db):
    """Counters skip the WAL (no fsync per request); see migration governance 0007."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT relpersistence FROM pg_class WHERE relname = 'rate_limits'")
        assert cursor.fetchone() == ("u",)
