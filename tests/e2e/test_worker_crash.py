"""A worker SIGKILLed in the middle of a batch loses nothing and duplicates nothing (PostgreSQL + Redis).

The kill lands at a known point: the test holds the advisory lock of one system, so the worker
blocks inside ``process_batch`` after it has claimed the batch and opened its transaction.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import psycopg
import pytest
from django.db import connection
from django.utils import timezone

from incidents.models import Incident
from oversight.models import Alert, AlertStatus, EventRaw, IngestBatch
from oversight.services.processing import sweep_outbox
from oversight.tasks import process_batch
from tests.conftest import subprocess_database_url
from tests.e2e.conftest import routed_to, start_worker, wait_for
from tests.factories import AISystemFactory

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.worker, pytest.mark.xdist_group("worker")]

BATCHES = 4
EVENTS_PER_BATCH = 500


def store_batch(systems, index: int) -> IngestBatch:
    """A batch of mostly-normal telemetry with one critical psi breach on system ``index``."""
    now = timezone.now()
    batch = IngestBatch.objects.create(received_at=now, accepted=EVENTS_PER_BATCH)
    events = [
        EventRaw(
            event_id=uuid.uuid4(),
            system=systems[n % len(systems)],
            category="data_quality",
            severity="info",
            signal="psi",
            value=0.4 if n == index else 0.02,
            occurred_at=now - timedelta(seconds=1),
            received_at=now,
            batch=batch,
        )
        for n in range(EVENTS_PER_BATCH)
    ]
    EventRaw.objects.bulk_create(events)
    return batch


def advisory_key(system) -> int:
    return int.from_bytes(system.id.bytes[:8], "big", signed=True)


def waiting_on_advisory_lock() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND wait_event = 'advisory'"
        )
        return cursor.fetchone()[0]


def other_sessions() -> int:
    """Sessions on the test database besides this one (the killed worker's, until PostgreSQL reaps it)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


def test_a_worker_killed_mid_batch_leaves_every_event_processed_once(transactional_db):
    systems = AISystemFactory.create_batch(BATCHES)
    batches = [store_batch(systems, index) for index in range(BATCHES)]
    blocker = psycopg.connect(subprocess_database_url().replace("postgres://", "postgresql://"), autocommit=True)
    blocker.execute("SELECT pg_advisory_lock(%s)", [advisory_key(systems[0])])

    worker = start_worker(pool="solo")
    try:
        with routed_to(worker.queue):
            for batch in batches:
                process_batch.delay(str(batch.id))
        wait_for(waiting_on_advisory_lock, timeout=30, message=f"worker never reached the batch:\n{worker.log()}")
        worker.kill()
    finally:
        blocker.close()
        worker.stop(timeout=5)
    # Once the lock is free, the killed worker's session wakes, finds its client gone and rolls back.
    wait_for(lambda: not other_sessions(), timeout=30, message="the killed worker's session lingers")

    assert IngestBatch.objects.filter(processed_at__isnull=True).count() == BATCHES  # the kill rolled back
    assert not Alert.objects.exists()

    restarted = start_worker(queue=worker.queue)
    try:
        with routed_to(restarted.queue):
            # The killed delivery stays unacknowledged in Redis until the visibility timeout; the
            # outbox sweep (beat, every minute) re-sends what is more than a minute old.
            assert sweep_outbox(now=timezone.now() + timedelta(seconds=61)) == BATCHES
        wait_for(
            lambda: not IngestBatch.objects.filter(processed_at__isnull=True).exists(),
            timeout=60,
            message=f"batches left unprocessed after the restart:\n{restarted.log()}",
        )
        # A second sweep (as if the original message came back too) changes nothing.
        with routed_to(restarted.queue):
            assert sweep_outbox(now=timezone.now() + timedelta(seconds=61)) == 0
    finally:
        restarted.stop()

    assert not EventRaw.objects.filter(processed_at__isnull=True).exists()
    assert EventRaw.objects.count() == BATCHES * EVENTS_PER_BATCH
    firing = Alert.objects.filter(status=AlertStatus.FIRING)
    # Batch i breached on systems[i % 4] (index i): one alert per system, each with one evidence event.
    assert firing.count() == BATCHES
    assert sorted(firing.values_list("count", flat=True)) == [1] * BATCHES
    assert firing.values("fingerprint").distinct().count() == BATCHES
    assert Incident.objects.count() == BATCHES
