"""The append-only, hash-chained audit log: appends, tamper detection, the verify command and task."""

from __future__ import annotations

import importlib
import math
import threading
from contextlib import contextmanager
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection, connections, transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from governance.choices import ActorType, AuditAction
from governance.models import AuditLog, AuditVerification, Team
from governance.services import organization
from governance.services.audit import (
    GENESIS_HASH,
    AuditDataError,
    AuditEntry,
    _normalize,
    _row_hash,
    audit_chain_verify,
    audit_chain_verify_and_record,
    audit_record,
    audit_record_many,
    compute_hash,
)
from governance.tasks import audit_verify as audit_verify_task
from tasks.schedules import SCHEDULES

pytestmark = pytest.mark.django_db

_append_only_migration = importlib.import_module("governance.migrations.0003_audit_log_append_only")


@contextmanager
def append_only_trigger_bypassed():
    """What someone with DDL rights can do: switch off the trigger that guards ``audit_log``.

    Yields a cursor for the raw SQL the tamperer runs; the trigger is back in place afterwards.
    """
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
            try:
                yield cursor
            finally:
                cursor.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only")
        else:
            cursor.execute("DROP TRIGGER audit_log_append_only")
            try:
                yield cursor
            finally:
                cursor.execute(_append_only_migration.SQLITE_FORWARD)


def run_audit_verify_command() -> tuple[int | None, str, str]:
    """``manage.py audit_verify`` → (exit code or None when it returned normally, stdout, stderr)."""
    stdout, stderr = StringIO(), StringIO()
    try:
        call_command("audit_verify", stdout=stdout, stderr=stderr)
    except SystemExit as exit_:
        return exit_.code, stdout.getvalue(), stderr.getvalue()
    return None, stdout.getvalue(), stderr.getvalue()


@pytest.fixture
def chain(admin_user) -> list[AuditLog]:
    """Five audit rows written by the organization services, oldest first."""
    team = organization.team_create(name="Fraud ML", actor=admin_user)
    system = organization.ai_system_register(
        name="fraud-scorer", entity_type="model", team=team, risk_class="high", actor=admin_user
    )
    organization.ai_system_update(system=system, actor=admin_user, risk_class="limited")
    organization.ai_system_update(system=system, actor=admin_user, description="Scores card payments.")
    organization.team_create(name="Credit Risk", actor=admin_user)
    return list(AuditLog.objects.order_by("seq"))


# --- Appending --------------------------------------------------------------------------------


def test_service_writes_produce_a_chain_that_verifies(chain):
    result = audit_chain_verify()

    assert result.ok
    assert result.checked_rows == 5
    assert result.head_seq == chain[-1].seq
    assert result.head_hash == chain[-1].hash


def test_each_row_links_to_its_predecessor_with_gap_free_seq(chain):
    assert [row.seq for row in chain] == [1, 2, 3, 4, 5]
    assert chain[0].prev_hash == GENESIS_HASH
    for previous, row in zip(chain, chain[1:], strict=False):
        assert row.prev_hash == previous.hash
    assert all(_row_hash(row) == row.hash for row in chain)


def test_a_row_records_actor_action_object_and_data(admin_user):
    team = organization.team_create(name="Fraud ML", actor=admin_user)

    row = AuditLog.objects.get()
    assert (row.actor, row.actor_type, row.action) == ("ada", ActorType.USER, AuditAction.TEAM_CREATED)
    assert (row.object_type, row.object_id) == ("governance.team", str(team.pk))
    assert row.data == {"name": "Fraud ML", "slug": "fraud-ml"}


def test_audit_record_many_appends_all_entries_in_order_in_one_chain(chain):
    rows = audit_record_many(
        entries=[
            AuditEntry(action=AuditAction.TEAM_UPDATED, actor="system:test", object_type="t", object_id=str(n))
            for n in range(3)
        ]
    )

    assert [row.seq for row in rows] == [6, 7, 8]
    assert rows[0].prev_hash == chain[-1].hash
    assert [row.object_id for row in AuditLog.objects.filter(seq__gt=5).order_by("seq")] == ["0", "1", "2"]
    assert audit_chain_verify().ok


def test_a_large_append_keeps_every_entry_its_data_and_a_valid_chain(chain):
    """Hundreds of entries at once take the COPY path on PostgreSQL; the rows must read back exactly."""
    data = {"ratio": 0.25, "whole": 3.0, "text": "naïve ✓ 'quoted' \\ back\tslash", "nested": {"ids": [1, 2]}}
    audit_record_many(
        entries=[
            AuditEntry(
                action=AuditAction.REVIEW_DECIDED,
                actor="rita",
                object_type="hitl.reviewitem",
                object_id=str(n),
                data={**data, "n": n},
            )
            for n in range(300)
        ]
    )

    rows = list(AuditLog.objects.filter(seq__gt=5).order_by("seq"))
    assert [row.object_id for row in rows] == [str(n) for n in range(300)]
    assert rows[7].data == {"ratio": 0.25, "whole": 3, "text": data["text"], "nested": {"ids": [1, 2]}, "n": 7}
    assert audit_chain_verify().ok


def test_a_rolled_back_change_leaves_no_audit_row(admin_user):
    with pytest.raises(RuntimeError), transaction.atomic():
        organization.team_create(name="Fraud ML", actor=admin_user)
        raise RuntimeError("the surrounding transaction fails after the write")

    assert not Team.objects.exists()
    assert not AuditLog.objects.exists()


def test_nan_in_audit_data_is_refused_and_nothing_is_written(chain):
    with pytest.raises(AuditDataError):
        audit_record(action=AuditAction.TEAM_UPDATED, actor="system:test", data={"score": [1.0, math.nan]})

    assert AuditLog.objects.count() == 5


def test_infinity_in_audit_data_is_refused(chain):
    with pytest.raises(AuditDataError):
        audit_record(action=AuditAction.TEAM_UPDATED, actor="system:test", data={"score": math.inf})

    assert AuditLog.objects.count() == 5


def test_a_nul_character_in_audit_data_is_refused_on_every_database(chain):
    with pytest.raises(AuditDataError, match="NUL"):
        audit_record(action=AuditAction.TEAM_UPDATED, actor="system:test", data={"note": "a\x00b"})
    with pytest.raises(AuditDataError, match="NUL"):
        audit_record(action=AuditAction.TEAM_UPDATED, actor="system:test", data={"nested": {"\x00": 1}})

    assert AuditLog.objects.count() == 5


def test_a_lone_surrogate_in_audit_data_is_refused(chain):
    with pytest.raises(AuditDataError, match="surrogate"):
        audit_record(action=AuditAction.TEAM_UPDATED, actor="system:test", data={"note": "\ud800"})

    assert AuditLog.objects.count() == 5


# Any text a database can store (the two tests above cover NUL and lone surrogates).
json_text = st.text(alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=20)
json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | json_text
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(json_text, children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.dictionaries(json_text, json_values, max_size=5))
def test_arbitrary_json_data_survives_the_database_round_trip_and_verifies(data):
    written = audit_record(action=AuditAction.CONFIG_UPDATED, actor="system:hypothesis", data=data)

    stored = AuditLog.objects.get(pk=written.pk)
    assert stored.data == _normalize(data)
    assert _row_hash(stored) == stored.hash == written.hash
    assert audit_chain_verify().ok


# --- Tampering --------------------------------------------------------------------------------


def test_update_of_an_audit_row_through_the_orm_is_refused_by_the_database(chain):
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditLog.objects.filter(seq=2).update(actor="mallory")

    assert AuditLog.objects.get(seq=2).actor == "ada"


def test_update_of_an_audit_row_through_raw_sql_is_refused_by_the_database(chain):
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE audit_log SET actor = %s WHERE seq = %s", ["mallory", 2])

    assert AuditLog.objects.get(seq=2).actor == "ada"


def test_saving_a_changed_audit_row_is_refused_by_the_database(chain):
    row = AuditLog.objects.get(seq=2)
    row.action = AuditAction.TEAM_UPDATED

    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        row.save()

    assert AuditLog.objects.get(seq=2).action == AuditAction.SYSTEM_REGISTERED


@pytest.mark.postgres
def test_delete_of_an_audit_row_is_refused_on_postgresql(chain):
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditLog.objects.filter(seq=2).delete()

    assert AuditLog.objects.filter(seq=2).exists()


def test_an_intact_chain_makes_audit_verify_exit_0_and_report_the_head(chain):
    code, stdout, _ = run_audit_verify_command()

    assert code is None
    assert "audit chain OK: 5 rows, head seq=5" in stdout


@pytest.mark.parametrize(
    ("column", "old", "new"),
    [
        ("actor", "ada", "adb"),
        ("action", "system.updated", "system.updatee"),
        ("object_type", "governance.aisystem", "governance.aisystex"),
        ("data", "limited", "limitee"),
    ],
)
def test_altering_one_stored_byte_makes_audit_verify_exit_1_naming_the_row(chain, column, old, new):
    target = chain[2]  # seq=3: the first system.updated row
    with append_only_trigger_bypassed() as cursor:
        cursor.execute(f"SELECT {column} FROM audit_log WHERE seq = %s", [3])
        stored = cursor.fetchone()[0]
        assert stored.count(old) == 1
        cursor.execute(f"UPDATE audit_log SET {column} = %s WHERE seq = %s", [stored.replace(old, new), 3])

    code, _, stderr = run_audit_verify_command()

    assert code == 1
    assert f"audit chain BROKEN at seq=3 (id={target.id})" in stderr
    assert "the row was altered" in stderr


def test_altering_a_timestamp_by_one_microsecond_is_detected(chain):
    target = chain[1]
    with append_only_trigger_bypassed():
        AuditLog.objects.filter(seq=2).update(at=target.at.replace(microsecond=(target.at.microsecond + 1) % 10**6))

    result = audit_chain_verify()

    assert not result.ok
    assert result.broken_seq == 2


def test_deleting_a_middle_row_is_reported_as_a_sequence_gap(chain):
    with append_only_trigger_bypassed() as cursor:
        cursor.execute("DELETE FROM audit_log WHERE seq = %s", [3])

    code, _, stderr = run_audit_verify_command()

    assert code == 1
    assert "BROKEN at seq=4" in stderr
    assert "sequence gap: expected seq=3, found seq=4" in stderr


def test_relinking_rows_around_a_deleted_one_is_detected_by_the_hash(chain):
    """Renumbering after a delete still breaks: seq and prev_hash are part of each row's hash."""
    with append_only_trigger_bypassed() as cursor:
        cursor.execute("DELETE FROM audit_log WHERE seq = %s", [3])
        cursor.execute("UPDATE audit_log SET prev_hash = %s WHERE seq = %s", [chain[1].hash, 4])
        for seq in (4, 5):  # one row at a time: seq is unique
            cursor.execute("UPDATE audit_log SET seq = %s WHERE seq = %s", [seq - 1, seq])

    result = audit_chain_verify()

    assert not result.ok
    assert result.broken_seq == 3
    assert "altered" in result.reason


def test_appending_after_a_good_verification_keeps_the_chain_valid(chain, admin_user):
    assert audit_chain_verify_and_record().ok
    organization.team_create(name="Payments", actor=admin_user)

    result = audit_chain_verify()

    assert result.ok
    assert result.head_seq == 6


def test_a_truncated_tail_is_detected_through_the_last_verification_anchor(chain):
    assert audit_chain_verify_and_record().ok  # anchors head seq=5
    with append_only_trigger_bypassed() as cursor:
        cursor.execute("DELETE FROM audit_log WHERE seq >= %s", [4])

    code, _, stderr = run_audit_verify_command()

    assert code == 1
    assert "BROKEN at seq=5" in stderr
    assert "tail truncated: seq=5 was verified earlier and is now missing" in stderr


def test_a_rewritten_head_with_a_recomputed_hash_is_detected_through_the_anchor(chain):
    assert audit_chain_verify_and_record().ok
    head = chain[-1]
    forged_data = {"name": "Credit Risk (forged)", "slug": "credit-risk"}
    forged_hash = compute_hash(
        prev_hash=head.prev_hash,
        seq=head.seq,
        at=head.at,
        actor=head.actor,
        actor_type=head.actor_type,
        action=head.action,
        object_type=head.object_type,
        object_id=head.object_id,
        data=forged_data,
    )
    with append_only_trigger_bypassed():
        AuditLog.objects.filter(pk=head.pk).update(data=forged_data, hash=forged_hash)

    result = audit_chain_verify()

    assert not result.ok
    assert result.broken_seq == 5
    assert result.broken_id == str(head.pk)
    assert result.reason.startswith("history rewritten: seq=5")


def test_history_rewritten_from_the_first_row_with_all_hashes_recomputed_is_detected(chain):
    assert audit_chain_verify_and_record().ok
    prev_hash = GENESIS_HASH
    with append_only_trigger_bypassed():
        for row in AuditLog.objects.order_by("seq"):
            data = {**row.data, "name": "Shadow ML"} if row.seq == 1 else row.data
            new_hash = compute_hash(
                prev_hash=prev_hash,
                seq=row.seq,
                at=row.at,
                actor=row.actor,
                actor_type=row.actor_type,
                action=row.action,
                object_type=row.object_type,
                object_id=row.object_id,
                data=data,
            )
            AuditLog.objects.filter(pk=row.pk).update(data=data, prev_hash=prev_hash, hash=new_hash)
            prev_hash = new_hash

    result = audit_chain_verify()

    assert not result.ok
    assert result.broken_seq == 5
    assert "history rewritten" in result.reason


# --- Scheduled verification -------------------------------------------------------------------


def test_audit_verify_is_scheduled_hourly():
    spec = next(spec for spec in SCHEDULES if spec.task == "governance.audit_verify")

    assert spec.every_seconds == 3600
    assert spec.enabled


def test_the_audit_verify_task_records_an_audit_verification(chain):
    assert audit_verify_task.delay().get() is True

    verification = AuditVerification.objects.get()
    assert verification.ok
    assert (verification.checked_rows, verification.head_seq) == (5, 5)
    assert verification.head_hash == chain[-1].hash
    assert verification.broken_seq is None
    assert verification.duration_ms >= 0


def test_a_failed_verification_is_recorded_and_appends_an_audit_chain_broken_entry(chain):
    tampered = chain[1]
    with append_only_trigger_bypassed() as cursor:
        cursor.execute("UPDATE audit_log SET actor = %s WHERE seq = %s", ["mallory", 2])

    assert audit_verify_task.delay().get() is False

    verification = AuditVerification.objects.get()
    assert not verification.ok
    assert verification.broken_seq == 2
    assert "altered" in verification.reason
    entry = AuditLog.objects.order_by("-seq").first()
    assert entry.seq == 6
    assert entry.action == AuditAction.AUDIT_CHAIN_BROKEN
    assert (entry.actor, entry.object_type, entry.object_id) == (
        "system:audit_verify",
        "governance.auditlog",
        str(tampered.pk),
    )
    assert entry.data["broken_seq"] == 2
    assert entry.prev_hash == chain[-1].hash


def test_a_failed_verification_does_not_become_the_anchor(chain):
    assert audit_chain_verify_and_record().ok
    with append_only_trigger_bypassed() as cursor:
        cursor.execute("DELETE FROM audit_log WHERE seq = %s", [5])
    assert not audit_chain_verify_and_record().ok

    result = audit_chain_verify()

    assert not result.ok
    assert result.broken_seq == 5


# --- Concurrency (PostgreSQL) -----------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_appends_from_many_threads_stay_gap_free_and_verify():
    writers, appends_per_writer = 8, 12
    start = threading.Barrier(writers)
    errors: list[BaseException] = []

    def append(writer: int) -> None:
        try:
            start.wait()
            for n in range(appends_per_writer):
                if n % 4 == 3:
                    audit_record_many(
                        entries=[
                            AuditEntry(action=AuditAction.TEAM_UPDATED, actor=f"writer-{writer}", data={"n": n, "k": k})
                            for k in range(2)
                        ]
                    )
                else:
                    audit_record(action=AuditAction.TEAM_UPDATED, actor=f"writer-{writer}", data={"n": n})
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=append, args=(writer,)) for writer in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    expected_rows = writers * (appends_per_writer + appends_per_writer // 4)
    assert list(AuditLog.objects.order_by("seq").values_list("seq", flat=True)) == list(range(1, expected_rows + 1))
    result = audit_chain_verify()
    assert result.ok
    assert result.checked_rows == expected_rows
