"""Cross-app write serialization (PostgreSQL advisory locks)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from django.db import connection


def lock_systems(system_ids: Iterable) -> None:
    """Serialize writers per AI system for the rest of the current transaction.

    Every writer of a system's alerts, incidents and reviews (the oversight engine, review escalations)
    takes these locks, in sorted order so two writers cannot deadlock. SQLite serializes every write
    transaction already, so this is a no-op there. Must run inside ``transaction.atomic``.
    """
    ids = sorted({system_id for system_id in system_ids if system_id is not None})
    if connection.vendor != "postgresql" or not ids:
        return
    keys = [int.from_bytes(system_id.bytes[:8], "big", signed=True) for system_id in ids]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(t.k) FROM unnest(%s::bigint[]) WITH ORDINALITY AS t(k, n) ORDER BY t.n",
            [keys],
        )


@contextmanager
def single_flight(name: str) -> Iterator[bool]:
    """Run a periodic job at most once at a time across every worker: yields True when this process
    holds the lock (a PostgreSQL session-level advisory lock, released on exit, even across the job's
    own transactions), False when another run holds it. SQLite deployments run one worker, so the
    lock always succeeds there."""
    if connection.vendor != "postgresql":
        yield True
        return
    key = int.from_bytes(hashlib.sha256(f"single_flight:{name}".encode()).digest()[:8], "big", signed=True)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [key])
        acquired = cursor.fetchone()[0]
    try:
        yield acquired
    finally:
        if acquired:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [key])
