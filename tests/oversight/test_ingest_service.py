"""The ingest service: all-or-nothing batches, exactly-once storage per event_id, one audit entry and
one processing task per batch, team-scoped system resolution, the same result on both storage paths."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from governance.choices import AuditAction, Role
from governance.models import AISystem, AuditLog
from oversight.models import EventRaw, IngestBatch, Simulation
from oversight.services import ingest
from oversight.services.ingest import ingest_events
from oversight.validation import MAX_EVENTS_PER_BATCH, EventBatchTooLarge, EventValidationError
from tests.factories import AISystemFactory
from tests.oversight.factories import event_item, event_items

pytestmark = pytest.mark.django_db

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
RECENT = (NOW - timedelta(minutes=1)).isoformat()
AISYSTEM_TABLE = AISystem._meta.db_table


@pytest.fixture
def ingest_account(make_user, team):
    return make_user(Role.INGEST, teams=[team], username="svc-fraud-ingest", is_service_account=True)


@pytest.fixture
def no_processing():
    """Isolate ingest from the processing engine: capture the task sends instead."""
    with mock.patch("oversight.tasks.process_batch.delay") as delay:
        yield delay


def items_for(system, count: int = 3, **overrides) -> list[dict]:
    return event_items(system, count, **{"occurred_at": RECENT, **overrides})


def nothing_written() -> bool:
    return not IngestBatch.objects.exists() and not EventRaw.objects.exists() and not AuditLog.objects.exists()


def stored_rows() -> list[tuple]:
    """Every stored event's client-visible content, in a comparable form."""
    return sorted(
        (
            str(e.event_id),
            str(e.system_id),
            e.category,
            e.severity,
            e.signal,
            e.value,
            e.occurred_at,
            e.received_at,
            e.attributes,
            e.scenario_id,
            e.processed_at,
        )
        for e in EventRaw.objects.all()
    )


# --- Storing a batch -----------------------------------------------------------------------------


def test_a_valid_batch_stores_every_event_once_with_its_batch_and_arrival_time(own_system, ingest_account):
    items = items_for(own_system, 3)

    result = ingest_events(items=items, submitted_by=ingest_account, now=NOW)

    assert (result.accepted, result.duplicates) == (3, 0)
    events = EventRaw.objects.filter(batch_id=result.batch_id)
    assert {str(e.event_id) for e in events} == {i["event_id"] for i in items}
    assert all(e.received_at == NOW and e.processed_at is None and e.system_id == own_system.pk for e in events)


def test_the_batch_row_records_who_sent_it_and_the_counts(own_system, ingest_account):
    result = ingest_events(items=items_for(own_system, 2), submitted_by=ingest_account, now=NOW)

    batch = IngestBatch.objects.get(pk=result.batch_id)
    assert (batch.accepted, batch.duplicates, batch.received_at) == (2, 0, NOW)
    assert batch.submitted_by == ingest_account
    assert batch.processed_at is None


def test_the_clients_values_are_stored_as_sent_with_times_in_utc(own_system, ingest_account):
    item = event_item(
        own_system,
        category="fairness",
        severity="critical",
        signal="dp_gap",
        value=7,
        occurred_at="2025-06-01T13:58:30.250000+02:00",
        attributes={"segment": "age>65", "model": {"version": 3}},
        scenario_id="scn-42",
    )

    ingest_events(items=[item], submitted_by=ingest_account, now=NOW)

    event = EventRaw.objects.get()
    assert (event.category, event.severity, event.signal, event.value) == ("fairness", "critical", "dp_gap", 7.0)
    assert event.occurred_at == datetime(2025, 6, 1, 11, 58, 30, 250000, tzinfo=UTC)
    assert event.attributes == {"segment": "age>65", "model": {"version": 3}}
    assert event.scenario_id == "scn-42"


def test_an_event_without_an_event_id_is_stored_under_a_generated_one(own_system, ingest_account):
    ingest_events(items=items_for(own_system, 2, event_id=None), submitted_by=ingest_account, now=NOW)

    assert EventRaw.objects.values("event_id").distinct().count() == 2


def test_the_system_may_be_named_by_id_or_by_name_in_one_batch(own_system, ingest_account):
    items = [event_item(own_system, occurred_at=RECENT), event_item(str(own_system.pk), occurred_at=RECENT)]

    result = ingest_events(items=items, submitted_by=ingest_account, now=NOW)

    assert result.accepted == 2
    assert set(EventRaw.objects.values_list("system_id", flat=True)) == {own_system.pk}


def test_a_simulation_batch_is_linked_to_its_simulation(own_system):
    simulation = Simulation.objects.create(total=10)

    result = ingest_events(items=items_for(own_system, 2), submitted_by=None, simulation=simulation, now=NOW)

    assert IngestBatch.objects.get(pk=result.batch_id).simulation == simulation


# --- The audit entry -----------------------------------------------------------------------------


def test_each_batch_is_audited_once_with_its_counts(own_system, ingest_account):
    result = ingest_events(items=items_for(own_system, 3), submitted_by=ingest_account, now=NOW)

    entry = AuditLog.objects.get(action=AuditAction.EVENTS_INGESTED)
    assert (entry.object_type, entry.object_id) == ("oversight.ingestbatch", str(result.batch_id))
    assert entry.data == {"accepted": 3, "duplicates": 0, "simulation": None}
    assert (entry.actor, entry.actor_type) == ("svc-fraud-ingest", "service")


def test_an_internal_batch_is_audited_as_the_system_naming_its_simulation(own_system):
    simulation = Simulation.objects.create(total=10)

    ingest_events(items=items_for(own_system, 1), submitted_by=None, simulation=simulation, now=NOW)

    entry = AuditLog.objects.get(action=AuditAction.EVENTS_INGESTED)
    assert (entry.actor, entry.actor_type) == ("system", "system")
    assert entry.data["simulation"] == str(simulation.pk)


# --- Refused batches: nothing written ------------------------------------------------------------

BAD_ITEMS = {
    "unknown system": ({"system": "ghost-model"}, "system", "unknown AI system 'ghost-model'"),
    "unknown category": ({"category": "vibes"}, "category", "unknown category 'vibes'"),
    "unknown severity": ({"severity": "urgent"}, "severity", "unknown severity 'urgent'"),
    "NaN value": ({"value": float("nan")}, "value", "must be a finite number"),
    "infinite value": ({"value": float("inf")}, "value", "must be a finite number"),
    "value as a string": ({"value": "0.5"}, "value", "must be a number"),
    "signal as a number": ({"signal": 3}, "signal", "must be a string"),
    "attributes as a list": ({"attributes": []}, "attributes", "must be an object"),
    "future occurred_at": ({"occurred_at": "2025-06-01T12:05:01Z"}, "occurred_at", "more than 5 minutes in the future"),
    "naive occurred_at": ({"occurred_at": "2025-06-01T11:59:00"}, "occurred_at", "must include a timezone offset"),
    "unknown field": ({"colour": "red"}, "colour", "unknown field"),
}


@pytest.mark.parametrize("case", sorted(BAD_ITEMS))
def test_a_bad_event_rejects_the_whole_batch_naming_the_field_and_writes_nothing(case, own_system, ingest_account):
    overrides, field, message = BAD_ITEMS[case]
    items = [*items_for(own_system, 2), {**event_item(own_system, occurred_at=RECENT), **overrides}]

    with pytest.raises(EventValidationError) as raised:
        ingest_events(items=items, submitted_by=ingest_account, now=NOW)

    assert list(raised.value.errors) == [f"events.2.{field}"]
    assert message in raised.value.errors[f"events.2.{field}"][0]
    assert raised.value.message == "1 of 3 events are invalid; nothing was stored."
    assert nothing_written()


@pytest.mark.parametrize("field", ["system", "category", "severity", "signal", "value", "occurred_at"])
def test_a_missing_required_field_rejects_the_batch(field, own_system, ingest_account):
    item = event_item(own_system, occurred_at=RECENT)
    del item[field]

    with pytest.raises(EventValidationError) as raised:
        ingest_events(items=[item], submitted_by=ingest_account, now=NOW)

    assert raised.value.errors == {f"events.0.{field}": ["this field is required"]}
    assert nothing_written()


def test_a_repeated_event_id_inside_a_batch_rejects_it_naming_the_first(own_system, ingest_account):
    items = items_for(own_system, 3)
    items[2]["event_id"] = items[0]["event_id"]

    with pytest.raises(EventValidationError) as raised:
        ingest_events(items=items, submitted_by=ingest_account, now=NOW)

    assert raised.value.errors == {"events.2.event_id": ["duplicates the event_id of events.0"]}
    assert nothing_written()


def test_more_than_5000_events_are_refused_and_nothing_is_written(own_system, ingest_account):
    items = items_for(own_system, MAX_EVENTS_PER_BATCH + 1)

    with pytest.raises(EventBatchTooLarge):
        ingest_events(items=items, submitted_by=ingest_account, now=NOW)

    assert nothing_written()


def test_an_empty_batch_is_refused(ingest_account):
    with pytest.raises(EventValidationError) as raised:
        ingest_events(items=[], submitted_by=ingest_account, now=NOW)

    assert raised.value.errors == {"events": ["must contain at least one event"]}
    assert nothing_written()


# --- Idempotency ---------------------------------------------------------------------------------


def test_a_resent_batch_is_all_duplicates_and_stores_nothing_new(own_system, ingest_account, no_processing):
    items = items_for(own_system, 4)
    ingest_events(items=items, submitted_by=ingest_account, now=NOW)

    again = ingest_events(items=items, submitted_by=ingest_account, now=NOW + timedelta(seconds=5))

    assert (again.accepted, again.duplicates) == (0, 4)
    assert EventRaw.objects.count() == 4
    assert not EventRaw.objects.filter(batch_id=again.batch_id).exists()


def test_a_batch_with_nothing_new_is_marked_processed_at_once(own_system, ingest_account, no_processing):
    items = items_for(own_system, 2)
    ingest_events(items=items, submitted_by=ingest_account, now=NOW)

    again = ingest_events(items=items, submitted_by=ingest_account, now=NOW + timedelta(seconds=5))

    batch = IngestBatch.objects.get(pk=again.batch_id)
    assert (batch.accepted, batch.duplicates) == (0, 2)
    assert batch.processed_at == NOW + timedelta(seconds=5)


def test_a_partly_resent_batch_counts_new_and_duplicate_events_apart(own_system, ingest_account, no_processing):
    first = items_for(own_system, 5)
    ingest_events(items=first, submitted_by=ingest_account, now=NOW)

    result = ingest_events(items=[*first[3:], *items_for(own_system, 4)], submitted_by=ingest_account, now=NOW)

    assert (result.accepted, result.duplicates) == (4, 2)
    assert EventRaw.objects.count() == 9
    assert EventRaw.objects.filter(batch_id=result.batch_id).count() == 4
    assert AuditLog.objects.filter(object_id=str(result.batch_id)).get().data["duplicates"] == 2


def test_an_event_id_resent_in_another_spelling_is_still_a_duplicate(own_system, ingest_account, no_processing):
    items = items_for(own_system, 1)
    ingest_events(items=items, submitted_by=ingest_account, now=NOW)

    result = ingest_events(
        items=[{**items[0], "event_id": items[0]["event_id"].upper()}], submitted_by=ingest_account, now=NOW
    )

    assert (result.accepted, result.duplicates) == (0, 1)


# --- Team scoping --------------------------------------------------------------------------------


def test_another_teams_system_is_unknown_to_a_team_ingest_account(own_system, foreign_system, ingest_account):
    items = [event_item(own_system, occurred_at=RECENT), event_item(foreign_system, occurred_at=RECENT)]

    with pytest.raises(EventValidationError) as raised:
        ingest_events(items=items, submitted_by=ingest_account, now=NOW)

    assert raised.value.errors == {"events.1.system": ["unknown AI system 'credit-limit-model'"]}
    assert nothing_written()


def test_another_teams_system_named_by_id_is_just_as_unknown(foreign_system, ingest_account):
    with pytest.raises(EventValidationError) as raised:
        ingest_events(items=items_for(str(foreign_system.pk), 1), submitted_by=ingest_account, now=NOW)

    assert raised.value.errors == {"events.0.system": [f"unknown AI system '{foreign_system.pk}'"]}


def test_an_admin_may_send_events_of_every_team(own_system, foreign_system, admin_user, no_processing):
    items = [event_item(own_system, occurred_at=RECENT), event_item(foreign_system, occurred_at=RECENT)]

    assert ingest_events(items=items, submitted_by=admin_user, now=NOW).accepted == 2


def test_an_internal_caller_may_send_events_of_every_system(own_system, foreign_system, no_processing):
    items = [event_item(own_system, occurred_at=RECENT), event_item(foreign_system, occurred_at=RECENT)]

    assert ingest_events(items=items, submitted_by=None, now=NOW).accepted == 2


def test_all_systems_of_a_batch_are_resolved_in_one_query(team, ingest_account, no_processing):
    systems = AISystemFactory.create_batch(8, team=team)
    items = [event_item(system, occurred_at=RECENT) for system in systems]

    with CaptureQueriesContext(connection) as queries:
        ingest_events(items=items, submitted_by=ingest_account, now=NOW)

    lookups = [q["sql"] for q in queries if q["sql"].startswith("SELECT") and AISYSTEM_TABLE in q["sql"]]
    assert len(lookups) == 1


def test_naming_more_systems_costs_no_more_queries(team, ingest_account, no_processing):
    one = AISystemFactory(team=team)
    eight = AISystemFactory.create_batch(8, team=team)
    User = type(ingest_account)

    with CaptureQueriesContext(connection) as naming_one:
        ingest_events(items=items_for(one, 8), submitted_by=User.objects.get(pk=ingest_account.pk), now=NOW)
    with CaptureQueriesContext(connection) as naming_eight:
        items = [event_item(system, occurred_at=RECENT) for system in eight]
        ingest_events(items=items, submitted_by=User.objects.get(pk=ingest_account.pk), now=NOW)

    assert len(naming_eight) == len(naming_one)


# --- Processing is enqueued once per batch -------------------------------------------------------


def test_processing_is_enqueued_once_per_batch_with_its_id_after_commit(
    own_system, ingest_account, no_processing, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        result = ingest_events(items=items_for(own_system, 50), submitted_by=ingest_account, now=NOW)

    assert len(callbacks) == 1
    no_processing.assert_called_once_with(str(result.batch_id))


def test_nothing_is_enqueued_for_a_batch_of_duplicates_only(
    own_system, ingest_account, no_processing, django_capture_on_commit_callbacks
):
    items = items_for(own_system, 2)
    ingest_events(items=items, submitted_by=ingest_account, now=NOW)

    with django_capture_on_commit_callbacks(execute=True):
        ingest_events(items=items, submitted_by=ingest_account, now=NOW)

    no_processing.assert_not_called()


def test_nothing_is_enqueued_for_a_refused_batch(
    own_system, ingest_account, no_processing, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(EventValidationError):
        ingest_events(items=items_for(own_system, 2, value="high"), submitted_by=ingest_account, now=NOW)

    no_processing.assert_not_called()


def test_an_ingested_batch_is_processed_after_commit(own_system, ingest_account, django_capture_on_commit_callbacks):
    """Eager Celery in tests: the real task runs on commit and marks the outbox."""
    with django_capture_on_commit_callbacks(execute=True):
        result = ingest_events(items=items_for(own_system, 3), submitted_by=ingest_account)

    assert IngestBatch.objects.get(pk=result.batch_id).processed_at is not None
    assert not EventRaw.objects.filter(processed_at__isnull=True).exists()


# --- SQLite: the INSERT OR IGNORE path ---------------------------------------------------------------


def raw_stored_columns() -> list[tuple]:
    """Every stored event's columns as the database holds them (the text of the JSON, of the times)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT event_id, system_id, category, severity, signal, value, occurred_at, received_at, attributes, "
            "scenario_id, processed_at FROM events_raw ORDER BY event_id"
        )
        return cursor.fetchall()


@pytest.mark.skipif(connection.vendor != "sqlite", reason="the SQLite insert path")
def test_the_sqlite_insert_and_the_bulk_create_path_store_identical_rows(own_system, monkeypatch, no_processing):
    items = [
        *items_for(own_system, 3, attributes={"ü": ["x", 1.5, None, True], "nested": {"q": 'a\tb\\n"c"'}}),
        *items_for(own_system, 2, scenario_id="scn-7", value=-0.0),
        *items_for(own_system, 2, value=1e308, occurred_at="2025-06-01T13:59:59.999999+02:00"),
    ]
    first = ingest_events(items=items, submitted_by=None, now=NOW)
    inserted, raw_inserted = stored_rows(), raw_stored_columns()
    EventRaw.objects.all().delete()
    monkeypatch.setattr(ingest, "_store_events", ingest._bulk_create_events)

    second = ingest_events(items=items, submitted_by=None, now=NOW)

    assert stored_rows() == inserted
    assert raw_stored_columns() == raw_inserted  # byte for byte: the same adaptation as the ORM's
    assert (first.accepted, first.duplicates) == (second.accepted, second.duplicates) == (7, 0)


@pytest.mark.skipif(connection.vendor != "sqlite", reason="the SQLite insert path")
def test_the_sqlite_insert_path_skips_and_counts_stored_event_ids(own_system, no_processing):
    old, new = items_for(own_system, 3), items_for(own_system, 2)
    ingest_events(items=old, submitted_by=None, now=NOW)

    again = ingest_events(items=[*old[:2], *new], submitted_by=None, now=NOW)

    assert (again.accepted, again.duplicates) == (2, 2)
    assert EventRaw.objects.count() == 5
    assert EventRaw.objects.filter(batch_id=again.batch_id).count() == 2


# --- PostgreSQL: the COPY path ---------------------------------------------------------------------


@pytest.mark.postgres
def test_the_copy_path_and_the_bulk_create_path_store_identical_rows(own_system, monkeypatch, no_processing):
    items = [
        *items_for(own_system, 3, attributes={"ü": ["x", 1.5, None, True], "nested": {"q": 'a\tb\\n"c"'}}),
        *items_for(own_system, 2, scenario_id="scn-7", value=-0.0),
        *items_for(own_system, 2, value=1e308, occurred_at="2025-06-01T13:59:59.999999+02:00"),
    ]
    first = ingest_events(items=items, submitted_by=None, now=NOW)
    copied = stored_rows()
    EventRaw.objects.all().delete()
    monkeypatch.setattr(ingest, "_store_events", ingest._bulk_create_events)

    second = ingest_events(items=items, submitted_by=None, now=NOW)

    assert stored_rows() == copied
    assert (first.accepted, first.duplicates) == (second.accepted, second.duplicates) == (7, 0)


@pytest.mark.postgres
def test_both_paths_count_a_partial_overlap_alike(own_system, monkeypatch, no_processing):
    old, new = items_for(own_system, 3), items_for(own_system, 2)
    ingest_events(items=old, submitted_by=None, now=NOW)
    by_copy = ingest_events(items=[*old[:2], *new], submitted_by=None, now=NOW)
    EventRaw.objects.filter(event_id__in=[i["event_id"] for i in new]).delete()
    monkeypatch.setattr(ingest, "_store_events", ingest._bulk_create_events)

    by_bulk_create = ingest_events(items=[*old[:2], *new], submitted_by=None, now=NOW)

    assert (by_copy.accepted, by_copy.duplicates) == (by_bulk_create.accepted, by_bulk_create.duplicates) == (2, 2)


@pytest.mark.postgres
def test_two_ingests_in_one_transaction_do_not_share_a_staging_table(own_system, no_processing):
    first = ingest_events(items=items_for(own_system, 2), submitted_by=None, now=NOW)
    second = ingest_events(items=items_for(own_system, 3), submitted_by=None, now=NOW)

    assert (first.accepted, second.accepted) == (2, 3)
    assert EventRaw.objects.filter(batch_id=second.batch_id).count() == 3


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_resends_of_one_batch_store_each_event_exactly_once(team, make_user):
    system = AISystemFactory(team=team)
    items = event_items(system, 300, occurred_at=(timezone.now() - timedelta(minutes=1)).isoformat())
    senders = 4
    start = threading.Barrier(senders)
    results, errors = [], []

    def send() -> None:
        try:
            start.wait()
            results.append(ingest_events(items=items, submitted_by=None))
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)
        finally:
            connections.close_all()

    with mock.patch("oversight.tasks.process_batch.delay"):
        threads = [threading.Thread(target=send) for _ in range(senders)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)

    assert errors == []
    assert EventRaw.objects.count() == 300
    assert sum(r.accepted for r in results) == 300
    assert sum(r.duplicates for r in results) == 300 * (senders - 1)
    assert sorted(EventRaw.objects.values_list("event_id", flat=True)) == sorted(
        uuid.UUID(i["event_id"]) for i in items
    )


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_batches_overlapping_in_different_orders_neither_deadlock_nor_double_store(team, monkeypatch):
    """Each batch holds the other's first events last: inserted in client order, they would deadlock."""
    system = AISystemFactory(team=team)
    items = event_items(system, 7500, occurred_at=(timezone.now() - timedelta(minutes=1)).isoformat())
    batches = [items[:5000], list(reversed(items[2500:]))]
    both_storing = threading.Barrier(len(batches))
    store_events = ingest._store_events

    def store_together(*args, **kwargs):
        both_storing.wait()  # both inserts run at the same time
        return store_events(*args, **kwargs)

    monkeypatch.setattr(ingest, "_store_events", store_together)
    results, errors = [], []

    def send(batch) -> None:
        try:
            results.append(ingest_events(items=batch, submitted_by=None))
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)
        finally:
            connections.close_all()

    with mock.patch("oversight.tasks.process_batch.delay"):
        threads = [threading.Thread(target=send, args=(batch,)) for batch in batches]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)

    assert errors == []
    assert EventRaw.objects.count() == 7500
    assert sum(r.accepted for r in results) == 7500
    assert sum(r.duplicates for r in results) == 2500
