"""Event ingest: a batch of telemetry in, raw events stored exactly once, processing enqueued once.

The hot path of the platform (``POST /events``, the simulation generator). On PostgreSQL the rows go
through ``COPY`` into a temporary staging table and one ``INSERT … SELECT … ON CONFLICT DO NOTHING``,
so the per-event cost is building one tuple; on SQLite (development, the demo) one ``INSERT OR IGNORE``
through ``executemany`` with the values adapted as the ORM adapts them; elsewhere ``bulk_create``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID, uuid4

from django.db import connection, transaction
from django.utils import timezone

from governance.choices import AuditAction
from governance.models import User
from governance.services.audit import audit_record
from oversight.models import EventRaw, IngestBatch, Simulation
from oversight.selectors import ai_system_ids_by_ref
from oversight.validation import (
    CleanEvent,
    EventValidationError,
    check_batch_size,
    system_refs,
    validate_event_items,
)

# The columns a client supplies, in the order of ``CleanEvent``'s fields (its trailing ``attributes``
# dict is not stored: ``attributes_json`` is).
CLIENT_COLUMNS = (
    "event_id",
    "system_id",
    "category",
    "severity",
    "signal",
    "value",
    "occurred_at",
    "attributes",
    "scenario_id",
)
_ROW_LENGTH = len(CLIENT_COLUMNS)

# Binary COPY (no text parsing on the server): one PostgreSQL type per staged column. The attributes
# travel as JSON text and become jsonb in the final insert.
_STAGING_TYPES = ("uuid", "uuid", "text", "text", "text", "float8", "timestamptz", "text", "text")
_STAGING_DEFINITION = ", ".join(
    f"{column} {pg_type}{' NOT NULL' if column != 'scenario_id' else ''}"
    for column, pg_type in zip(CLIENT_COLUMNS, _STAGING_TYPES, strict=True)
)


@dataclass(frozen=True)
class IngestResult:
    batch_id: UUID
    accepted: int  # new events stored
    duplicates: int  # events whose event_id was already stored (a resend)


def ingest_events(
    *,
    items: list[dict],
    submitted_by: User | None,
    simulation: Simulation | None = None,
    now: datetime | None = None,
) -> IngestResult:
    """Validate and store one batch of events, all or nothing.

    Guarantees:
    * Any invalid item (or more than 5,000 items) → ``EventValidationError`` (``EventBatchTooLarge``)
      and nothing is written: no batch, no events, no audit entry.
    * Systems are resolved in one query; with ``submitted_by`` only systems of that user's teams exist
      (``None``: an internal caller, every system).
    * Idempotent per ``event_id``: an event already stored — by an earlier request or by a concurrent
      one — is counted in ``duplicates`` and never stored twice.
    * One ``IngestBatch`` (``received_at=now``) and one ``events.ingested`` audit entry per call, in the
      same transaction as the events. With ``accepted > 0`` one ``oversight.process_batch`` task is sent
      after commit; a batch with nothing new is marked processed at once and not enqueued.
    """
    now = now or timezone.now()
    check_batch_size(items)
    if not items:
        raise EventValidationError({"events": ["must contain at least one event"]})
    systems = ai_system_ids_by_ref(refs=system_refs(items), user=submitted_by)
    events, errors = validate_event_items(items, systems_by_ref=systems, now=now)
    if errors:
        raise EventValidationError(errors, total=len(items))

    batch_id = uuid4()
    with transaction.atomic():
        # The events reference a batch inserted after them: foreign keys are checked at commit.
        accepted = _store_events(events, batch_id=batch_id, now=now)
        batch = IngestBatch.objects.create(
            id=batch_id,
            received_at=now,
            submitted_by=submitted_by,
            simulation=simulation,
            accepted=accepted,
            duplicates=len(events) - accepted,
            processed_at=None if accepted else now,  # nothing new to evaluate
            enqueue_count=1 if accepted else 0,
        )
        # Last: the audit chain lock is then held only until the commit that follows.
        audit_record(
            action=AuditAction.EVENTS_INGESTED,
            actor=submitted_by,
            target=batch,
            data={
                "accepted": batch.accepted,
                "duplicates": batch.duplicates,
                "simulation": str(simulation.pk) if simulation else None,
            },
        )
        if accepted:
            transaction.on_commit(lambda: _enqueue_processing(batch_id))
    return IngestResult(batch_id=batch_id, accepted=batch.accepted, duplicates=batch.duplicates)


def _enqueue_processing(batch_id: UUID) -> None:
    from oversight.tasks import process_batch  # the task module imports the engine; keep ingest light

    process_batch.delay(str(batch_id))


def _store_events(events: list[CleanEvent], *, batch_id: UUID, now: datetime) -> int:
    """Insert the events not stored yet; returns how many were inserted."""
    if connection.vendor == "postgresql":
        return _copy_events(events, batch_id=batch_id, now=now)
    if connection.vendor == "sqlite":
        return _insert_or_ignore_events(events, batch_id=batch_id, now=now)
    return _bulk_create_events(events, batch_id=batch_id, now=now)


def _copy_events(events: list[CleanEvent], *, batch_id: UUID, now: datetime) -> int:
    """PostgreSQL: ``COPY`` into a staging table, then one set-based insert that skips stored event_ids.

    ``ON CONFLICT (event_id) DO NOTHING`` waits for a concurrent transaction inserting the same
    event_id and then skips it, so concurrent resends never store an event twice; its row count is
    the number accepted. The staging table is per call (named after the new batch) and dropped at
    commit, so two ingests in one transaction never share it.
    """
    staging = f"ingest_staging_{batch_id.hex}"
    columns = ", ".join(CLIENT_COLUMNS)
    selected = columns.replace("attributes", "attributes::jsonb")
    # Identifiers only: the table name is hex digits we generated, the columns are constants.
    create_sql = f"CREATE TEMPORARY TABLE {staging} ({_STAGING_DEFINITION}) ON COMMIT DROP"
    copy_sql = f"COPY {staging} ({columns}) FROM STDIN (FORMAT BINARY)"
    # ORDER BY event_id: concurrent batches with overlapping event_ids take the unique-index locks in
    # the same order, so they wait for each other instead of deadlocking.
    insert_sql = (
        f"INSERT INTO {EventRaw._meta.db_table} ({columns}, received_at, batch_id) "  # noqa: S608
        f"SELECT {selected}, %s, %s FROM {staging} ORDER BY event_id ON CONFLICT (event_id) DO NOTHING"
    )
    row_length = _ROW_LENGTH
    with connection.cursor() as cursor:
        cursor.execute(create_sql)
        with cursor.cursor.copy(copy_sql) as copy:
            copy.set_types(_STAGING_TYPES)
            write_row = copy.write_row
            for event in events:
                write_row(event[:row_length])
        cursor.execute(insert_sql, [now, batch_id])
        return cursor.rowcount


def _insert_or_ignore_events(events: list[CleanEvent], *, batch_id: UUID, now: datetime) -> int:
    """SQLite: one ``INSERT OR IGNORE`` (what ``bulk_create(ignore_conflicts=True)`` sends) run by
    ``executemany``, each value adapted as the ORM adapts it (UUIDs as hex, datetimes as naive UTC text,
    the attributes through the JSON field's encoder) without building a model per event — about ten times
    the ORM's speed. An event_id already stored is skipped; the row count is the number inserted."""
    ops = connection.ops
    adapt_datetime, adapt_json = ops.adapt_datetimefield_value, ops.adapt_json_value
    encoder = EventRaw._meta.get_field("attributes").encoder
    received_at, batch = adapt_datetime(now), batch_id.hex
    columns = (*CLIENT_COLUMNS, "received_at", "batch_id")
    # Identifiers only: the table and columns are constants.
    sql = (
        f"INSERT OR IGNORE INTO {EventRaw._meta.db_table} ({', '.join(columns)}) "  # noqa: S608
        f"VALUES ({', '.join(['%s'] * len(columns))})"
    )
    rows = (
        (event.event_id.hex, event.system_id.hex, event.category, event.severity, event.signal, event.value,
         adapt_datetime(event.occurred_at), adapt_json(event.attributes, encoder), event.scenario_id,
         received_at, batch)
        for event in events
    )  # fmt: skip
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)
        return cursor.rowcount


def _bulk_create_events(events: list[CleanEvent], *, batch_id: UUID, now: datetime) -> int:
    """Any database: ``INSERT … ON CONFLICT DO NOTHING`` (``INSERT OR IGNORE`` on SQLite), then count."""
    EventRaw.objects.bulk_create(
        [
            EventRaw(
                event_id=event.event_id,
                system_id=event.system_id,
                category=event.category,
                severity=event.severity,
                signal=event.signal,
                value=event.value,
                occurred_at=event.occurred_at,
                received_at=now,
                batch_id=batch_id,
                attributes=event.attributes,
                scenario_id=event.scenario_id,
            )
            for event in events
        ],
        ignore_conflicts=True,
        batch_size=1000,
    )
    return EventRaw.objects.filter(batch_id=batch_id).count()


def events_bulk_load(*, events: list[CleanEvent], now: datetime | None = None, chunk_size: int = 100_000) -> int:
    """Store events that are already valid (a synthetic history with known onsets, a benchmark load) the
    way ingest stores them — ``COPY`` on PostgreSQL, ``INSERT OR IGNORE`` on SQLite — in batches of
    ``chunk_size``, each recorded as an ``IngestBatch`` that is already processed: detection does not run
    over them (they are history, not news) and nothing is enqueued. One ``events.ingested`` audit entry per
    batch (data ``historical: true``). Idempotent per ``event_id``. Returns the events stored."""
    now = now or timezone.now()
    stored = 0
    with transaction.atomic():
        for start in range(0, len(events), chunk_size):
            chunk = events[start : start + chunk_size]
            batch_id = uuid4()
            accepted = _store_events(chunk, batch_id=batch_id, now=now)
            batch = IngestBatch.objects.create(
                id=batch_id, received_at=now, accepted=accepted, duplicates=len(chunk) - accepted,
                processed_at=now, enqueue_count=0,
            )  # fmt: skip
            audit_record(
                action=AuditAction.EVENTS_INGESTED,
                target=batch,
                data={"accepted": accepted, "duplicates": len(chunk) - accepted, "historical": True},
            )
            stored += accepted
    return stored
