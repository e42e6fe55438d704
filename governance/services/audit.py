"""The hash-chained audit log: append and verify.

Every state change that matters is recorded by the service that makes it, inside the same database
transaction (Zulip's RealmAuditLog style), so a rolled-back change leaves no audit row and a
committed one always has one.

Chain: ``hash = sha256(prev_hash + canonical_json(row))``. Appends are serialized (a transaction-scoped
advisory lock on PostgreSQL; SQLite serializes writers itself), so ``seq`` is gap-free and every row
names its predecessor's hash. The lock is held until the surrounding transaction commits: keep
auditing transactions short.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from django.db import connection, transaction
from django.db.models import Model
from django.utils import timezone

from governance.choices import ActorType
from governance.models import AuditLog, AuditVerification

logger = logging.getLogger(__name__)

GENESIS_HASH = "0" * 64
# Any constant works; it only has to be the same for every writer of the chain.
_AUDIT_CHAIN_LOCK_ID = 0x7669_6769_6C00  # "vigil\0"


class AuditDataError(ValueError):
    """Audit data that cannot be represented canonically (e.g. NaN)."""


def _normalize(value: Any) -> Any:
    """JSON-native form of ``value`` that survives a round trip through PostgreSQL jsonb unchanged.

    Integral floats become ints (jsonb prints ``1e20`` back as ``100000000000000000000``); NaN and
    infinities are refused because JSON cannot carry them, and NUL characters because jsonb cannot
    (refused on every database, so SQLite in development fails the way PostgreSQL would).
    """
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise AuditDataError("audit data cannot contain NaN or infinity")
        return int(value) if value.is_integer() else value
    if isinstance(value, Decimal):
        return _normalize(float(value))
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Mapping):
        return {_text(str(k)): _normalize(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [_normalize(v) for v in value]
        return sorted(items, key=canonical_json) if isinstance(value, set | frozenset) else items
    raise AuditDataError(f"audit data of type {type(value).__name__} is not JSON-serializable")


def text_storage_problem(text: str) -> str | None:
    """Why PostgreSQL ``jsonb`` (and so the audit chain and the config registry) cannot store ``text``,
    or None: NUL characters and lone surrogates are refused on every database alike."""
    if "\x00" in text:
        return "text cannot contain NUL characters"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "text must be valid Unicode (no lone surrogates)"
    return None


def _text(value: str) -> str:
    if problem := text_storage_problem(value):
        raise AuditDataError(f"audit data: {problem}")
    return value


def canonical_json(value: Any) -> str:
    """Deterministic JSON: sorted keys, no whitespace, UTF-8 kept as is."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def compute_hash(
    *,
    prev_hash: str,
    seq: int,
    at: datetime,
    actor: str,
    actor_type: str,
    action: str,
    object_type: str,
    object_id: str,
    data: Any,
) -> str:
    payload = {
        "seq": seq,
        "at": at.astimezone(UTC).isoformat(timespec="microseconds"),
        "actor": actor,
        "actor_type": actor_type,
        "action": action,
        "object_type": object_type,
        "object_id": object_id,
        "data": _normalize(data),
    }
    try:
        encoded = (prev_hash + canonical_json(payload)).encode()
    except UnicodeEncodeError as exc:  # a lone surrogate: no database can store it either
        raise AuditDataError("audit data must be valid Unicode text (no lone surrogates)") from exc
    return hashlib.sha256(encoded).hexdigest()


def _row_hash(row: AuditLog) -> str:
    return compute_hash(
        prev_hash=row.prev_hash,
        seq=row.seq,
        at=row.at,
        actor=row.actor,
        actor_type=row.actor_type,
        action=row.action,
        object_type=row.object_type,
        object_id=row.object_id,
        data=row.data,
    )


def describe_actor(actor: Any) -> tuple[str, str]:
    """(actor, actor_type) for a user, a service account, or a system component name."""
    if actor is None:
        return "system", ActorType.SYSTEM
    if isinstance(actor, str):
        return actor, ActorType.SYSTEM
    if getattr(actor, "is_authenticated", False):
        kind = ActorType.SERVICE if getattr(actor, "is_service_account", False) else ActorType.USER
        return actor.get_username(), kind
    return "anonymous", ActorType.SYSTEM


@dataclass(frozen=True)
class AuditEntry:
    """One row to append; ``target`` may be a model instance instead of object_type/object_id."""

    action: str
    actor: Any = None
    target: Model | None = None
    object_type: str = ""
    object_id: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)

    def resolved_object(self) -> tuple[str, str]:
        if self.target is not None:
            return self.target._meta.label_lower, str(self.target.pk)
        return self.object_type, str(self.object_id or "")


def _lock_chain() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_AUDIT_CHAIN_LOCK_ID])
    # SQLite: settings use IMMEDIATE transactions, so the write lock is already ours.


def audit_record_many(*, entries: Iterable[AuditEntry]) -> list[AuditLog]:
    """Append entries to the chain, in order, in the caller's transaction (or a new one).

    Guarantees: gap-free ``seq``; each row's ``prev_hash`` is its predecessor's ``hash``; nothing is
    written if any entry's data is not JSON-representable. One INSERT for all entries.
    """
    entries = list(entries)
    if not entries:
        return []
    with transaction.atomic():
        _lock_chain()
        head = AuditLog.objects.order_by("-seq").values_list("seq", "hash").first()
        seq, prev_hash = head if head else (0, GENESIS_HASH)
        at = timezone.now()
        rows = []
        for entry in entries:
            seq += 1
            actor, actor_type = describe_actor(entry.actor)
            object_type, object_id = entry.resolved_object()
            data = _normalize(dict(entry.data))
            row = AuditLog(
                seq=seq,
                at=at,
                actor=actor[:150],
                actor_type=actor_type,
                action=entry.action,
                object_type=object_type,
                object_id=object_id,
                data=data,
                prev_hash=prev_hash,
            )
            row.hash = _row_hash(row)
            prev_hash = row.hash
            rows.append(row)
        _insert_rows(rows)
    return rows


# Above this many rows, PostgreSQL appends with COPY: building one INSERT of thousands of parameters
# costs more in the client than the database spends writing the rows.
_COPY_THRESHOLD = 50
_COPY_COLUMNS = ("id", "seq", "at", "actor", "actor_type", "action", "object_type", "object_id", "data",
                 "prev_hash", "hash")  # fmt: skip


def _insert_rows(rows: list[AuditLog]) -> None:
    if connection.vendor != "postgresql" or len(rows) < _COPY_THRESHOLD:
        AuditLog.objects.bulk_create(rows)
        return
    statement = f"COPY {AuditLog._meta.db_table} ({', '.join(_COPY_COLUMNS)}) FROM STDIN"
    with connection.cursor() as cursor, cursor.cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row(
                (
                    row.id,
                    row.seq,
                    row.at,
                    row.actor,
                    row.actor_type,
                    row.action,
                    row.object_type,
                    row.object_id,
                    json.dumps(row.data, ensure_ascii=False),
                    row.prev_hash,
                    row.hash,
                )
            )


def audit_record(
    *,
    action: str,
    actor: Any = None,
    target: Model | None = None,
    object_type: str = "",
    object_id: str = "",
    data: Mapping[str, Any] | None = None,
) -> AuditLog:
    """Append one audit row (see :func:`audit_record_many`)."""
    entry = AuditEntry(
        action=action,
        actor=actor,
        target=target,
        object_type=object_type,
        object_id=str(object_id or ""),
        data=data or {},
    )
    return audit_record_many(entries=[entry])[0]


@dataclass(frozen=True)
class ChainVerification:
    ok: bool
    checked_rows: int
    head_seq: int | None
    head_hash: str
    broken_seq: int | None = None
    broken_id: str | None = None
    reason: str = ""

    def describe(self) -> str:
        if self.ok:
            return f"audit chain OK: {self.checked_rows} rows, head seq={self.head_seq} hash={self.head_hash[:16]}…"
        return f"audit chain BROKEN at seq={self.broken_seq} (id={self.broken_id}): {self.reason}"


def chain_link_break(
    *, seq: int, prev_hash: str, stored_hash: str, recomputed_hash: str, expected_seq: int, expected_prev_hash: str
) -> str:
    """Why one row does not continue the chain ("" when it does): a sequence gap (rows removed, inserted or
    reordered), a broken prev_hash link, or a stored hash that its content does not produce (altered).
    The one rule for every walk of the chain: the live table and an evidence package's slice."""
    if seq != expected_seq:
        return f"sequence gap: expected seq={expected_seq}, found seq={seq} (rows were removed or inserted out of band)"
    if prev_hash != expected_prev_hash:
        return "prev_hash does not match the hash of the previous row"
    if recomputed_hash != stored_hash:
        return "stored hash does not match the row's content (the row was altered)"
    return ""


def audit_chain_verify(*, chunk_size: int = 5000) -> ChainVerification:
    """Walk the whole chain in seq order and report the first broken row.

    Detects: a changed byte in any hashed column (hash mismatch), a removed or reordered row (seq gap
    or prev_hash mismatch), and a truncated tail (the head recorded by the last good verification is
    gone or different). Reads only; the result is stored by :func:`audit_chain_verify_and_record`.
    """
    expected_seq, prev_hash, checked = 1, GENESIS_HASH, 0
    last_row: AuditLog | None = None
    for row in AuditLog.objects.order_by("seq").iterator(chunk_size=chunk_size):
        reason = chain_link_break(
            seq=row.seq,
            prev_hash=row.prev_hash,
            stored_hash=row.hash,
            recomputed_hash=_row_hash(row),
            expected_seq=expected_seq,
            expected_prev_hash=prev_hash,
        )
        if reason:
            return _broken(row, checked, reason)
        prev_hash, expected_seq, checked, last_row = row.hash, expected_seq + 1, checked + 1, row

    anchored = _check_last_verified_head(last_row, checked)
    if anchored is not None:
        return anchored
    return ChainVerification(
        ok=True,
        checked_rows=checked,
        head_seq=last_row.seq if last_row else None,
        head_hash=last_row.hash if last_row else GENESIS_HASH,
    )


def _check_last_verified_head(last_row: AuditLog | None, checked: int) -> ChainVerification | None:
    """The head recorded by the last good verification must still be there, unchanged.

    Catches a truncated tail (the walk alone sees a shorter but consistent chain) and a rewrite of
    history with recomputed hashes (the old head's hash changes).
    """
    last_good = AuditVerification.objects.filter(ok=True, head_seq__isnull=False).order_by("-created_at").first()
    if last_good is None:
        return None
    if last_row is None or last_row.seq < last_good.head_seq:
        return ChainVerification(
            ok=False,
            checked_rows=checked,
            head_seq=last_row.seq if last_row else None,
            head_hash=last_row.hash if last_row else "",
            broken_seq=last_good.head_seq,
            reason=f"tail truncated: seq={last_good.head_seq} was verified earlier and is now missing",
        )
    anchor = AuditLog.objects.filter(seq=last_good.head_seq).values_list("id", "hash").first()
    if anchor is not None and anchor[1] != last_good.head_hash:
        return ChainVerification(
            ok=False,
            checked_rows=checked,
            head_seq=last_row.seq,
            head_hash=last_row.hash,
            broken_seq=last_good.head_seq,
            broken_id=str(anchor[0]),
            reason=f"history rewritten: seq={last_good.head_seq} no longer has the hash verified on "
            f"{last_good.created_at:%Y-%m-%d %H:%M} UTC",
        )
    return None


def _broken(row: AuditLog, checked: int, reason: str) -> ChainVerification:
    return ChainVerification(
        ok=False,
        checked_rows=checked,
        head_seq=None,
        head_hash="",
        broken_seq=row.seq,
        broken_id=str(row.id),
        reason=reason,
    )


def audit_chain_verify_and_record() -> ChainVerification:
    """Verify the chain, store the outcome as an ``AuditVerification`` and, when broken, log an error
    and append an ``audit.chain_broken`` entry (so the break itself is on the record)."""
    from governance.choices import AuditAction

    started = time.perf_counter()
    result = audit_chain_verify()
    AuditVerification.objects.create(
        ok=result.ok,
        checked_rows=result.checked_rows,
        head_seq=result.head_seq,
        head_hash=result.head_hash,
        broken_seq=result.broken_seq,
        reason=result.reason,
        duration_ms=(time.perf_counter() - started) * 1000,
    )
    if not result.ok:
        logger.error(
            "audit chain verification failed", extra={"broken_seq": result.broken_seq, "reason": result.reason}
        )
        audit_record(
            action=AuditAction.AUDIT_CHAIN_BROKEN,
            actor="system:audit_verify",
            object_type="governance.auditlog",
            object_id=result.broken_id or "",
            data={"broken_seq": result.broken_seq, "reason": result.reason},
        )
    return result
