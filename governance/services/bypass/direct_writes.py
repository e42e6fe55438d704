"""Detector ``direct_write``: writes to governed tables that did not go through Vigil.

PostgreSQL statement triggers log every statement that changes a governed table in ``governed_changes``
(one row per statement, whatever the number of rows) and every transaction that appended audit entries
(or applied a migration) in ``audited_transactions`` (``governance.governed_tables``). Vigil audits
each of its writes to a governed table in the same transaction, so a change whose transaction has no
``audited_transactions`` row was made around Vigil: psql, a script with the database password, another
application. Only the audit-log comparison decides; ``application_name`` (``vigil`` for Vigil's own
connections) is chosen by the client and only makes the detection readable.

Limits: the triggers see writes by anyone who does not disable them; a database owner who drops the
triggers or forges ``audited_transactions`` rows is outside what a database-level log can catch (the
audit chain verification still catches a forged audit entry). On SQLite there are no triggers: the scan
reports nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.db.models import Exists, Min, OuterRef
from django.utils import timezone

from governance.governed_tables import CRITICAL_TABLES
from governance.models import AuditedTransaction, GovernedChange
from governance.services.bypass.core import bypass_detection_emit, detector_settings, hour_start

__all__ = ["JUDGE_CHUNK_SIZE", "PURGE_CHUNK_SIZE", "bypass_scan_direct_writes", "governed_changes_purge"]

DETECTOR = "direct_write"
JUDGE_CHUNK_SIZE = 1000
PURGE_CHUNK_SIZE = 5000
_MAX_ROW_IDS = 20


@dataclass
class _Finding:
    """The unaudited changes of one source within one hour."""

    db_user: str
    client_addr: str | None
    application: str
    tables: set[str] = field(default_factory=set)
    operations: set[str] = field(default_factory=set)
    rows: int = 0
    statements: int = 0
    row_ids: list[str] = field(default_factory=list)
    txids: set[int] = field(default_factory=set)

    @property
    def severity(self) -> str:
        critical = GovernedChange.Operation.DELETE in self.operations or bool(self.tables & CRITICAL_TABLES)
        return "critical" if critical else "high"

    def add(self, change: dict) -> None:
        self.tables.add(change["table_name"])
        self.operations.add(change["operation"])
        self.rows += change["rows"]
        self.statements += 1
        self.txids.add(change["txid"])
        room = _MAX_ROW_IDS - len(self.row_ids)
        self.row_ids.extend(f"{change['table_name']}:{pk}" for pk in (change["row_ids"] or [])[:room])


def _source(change: dict) -> str:
    return f"db:{change['db_user']}@{change['client_addr'] or 'local'}/{change['application_name']}"


def bypass_scan_direct_writes(*, now: datetime | None = None) -> int:
    """Judge the governed changes older than ``grace_seconds`` and report the unaudited ones; returns how
    many new detections were recorded (0 on SQLite, or when the detector is switched off).

    Each chunk of ≤ 1,000 unjudged changes is claimed with ``SELECT … FOR UPDATE SKIP LOCKED`` (two scans
    never judge the same rows), judged by ONE set-based UPDATE (``audited`` = an ``audited_transactions``
    row has the change's txid) and, in the same transaction, the unaudited ones become one
    ``direct_write`` detection per (source, UTC hour of the change), source
    ``db:<db_user>@<client address or 'local'>/<application_name>``. Severity critical when the source
    deleted rows or wrote configuration, roles or auto-approval policies (``CRITICAL_TABLES``), else high.
    If emitting fails the chunk rolls back and the next scan judges it again; a detection already
    recorded for the same source and hour absorbs later changes (they are judged, visible in the admin).

    The grace: ``changed_at`` is the start of the writing transaction, and a transaction's change rows
    and its ``audited_transactions`` row commit together, so a scan never sees one without the other and
    a transaction still open is invisible (a long one shows up late with an old ``changed_at`` and is
    judged then, correctly). Judging is therefore safe at any age; the grace (default 60 s) absorbs clock
    skew between the database (``changed_at``) and the scanning host (``now``), and lets a burst of
    statements from one source be judged and reported together.
    """
    if connection.vendor != "postgresql":
        return 0
    settings = detector_settings(DETECTOR)
    if not settings["enabled"]:
        return 0
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings["grace_seconds"])
    emitted = 0
    while True:
        claimed, chunk_emitted = _judge_chunk(cutoff=cutoff, now=now)
        emitted += chunk_emitted
        if claimed < JUDGE_CHUNK_SIZE:
            return emitted


@transaction.atomic
def _judge_chunk(*, cutoff: datetime, now: datetime) -> tuple[int, int]:
    ids = list(
        GovernedChange.objects.select_for_update(skip_locked=True)
        .filter(judged_at__isnull=True, changed_at__lte=cutoff)
        .order_by("changed_at", "id")
        .values_list("id", flat=True)[:JUDGE_CHUNK_SIZE]
    )
    if not ids:
        return 0, 0
    GovernedChange.objects.filter(pk__in=ids).update(
        audited=Exists(AuditedTransaction.objects.filter(txid=OuterRef("txid"))), judged_at=now
    )
    unaudited = (
        GovernedChange.objects.filter(pk__in=ids, audited=False)
        .order_by("changed_at", "id")
        .values(
            "table_name",
            "operation",
            "rows",
            "row_ids",
            "txid",
            "changed_at",
            "db_user",
            "application_name",
            "client_addr",
        )  # fmt: skip
    )
    findings: dict[tuple[str, datetime], _Finding] = {}
    for change in unaudited:
        key = (_source(change), hour_start(change["changed_at"]))
        if key not in findings:
            findings[key] = _Finding(
                db_user=change["db_user"], client_addr=change["client_addr"], application=change["application_name"]
            )
        findings[key].add(change)
    emitted = sum(
        _emit(source=source, hour=hour, finding=finding, now=now) for (source, hour), finding in findings.items()
    )
    return len(ids), emitted


def _emit(*, source: str, hour: datetime, finding: _Finding, now: datetime) -> bool:
    where = f"{finding.db_user}@{finding.client_addr or 'local'}/{finding.application or '?'}"
    summary = (
        f"{finding.statements} write(s) to governed tables without an audit entry: "
        f"{', '.join(sorted(finding.operations))} on {', '.join(sorted(finding.tables))} "
        f"({finding.rows} rows) by {where}"
    )
    return bypass_detection_emit(
        detector=DETECTOR,
        source=source,
        summary=summary,
        severity=finding.severity,
        details={
            "table": sorted(finding.tables),
            "operation": sorted(finding.operations),
            "rows": finding.rows,
            "row_ids": finding.row_ids,
            "db_user": finding.db_user,
            "application": finding.application,
            "client_addr": finding.client_addr or "local",
            "txid": sorted(finding.txids),
            "count": finding.statements,
            "hour": hour,
        },
        now=now,
        period=hour,
    )


def governed_changes_purge(*, now: datetime | None = None) -> int:
    """Delete judged changes older than ``retention_days`` (by ``changed_at``), in chunks of 5,000, and
    the ``audited_transactions`` rows older than both the retention and the oldest unjudged change (a
    change is always judged against its transaction's row). Unjudged changes are never deleted. Returns
    how many changes were deleted. Idempotent; each chunk is its own short statement."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=detector_settings(DETECTOR)["retention_days"])
    deleted = 0
    while True:
        ids = list(
            GovernedChange.objects.filter(judged_at__isnull=False, changed_at__lt=cutoff).values_list("id", flat=True)[
                :PURGE_CHUNK_SIZE
            ]
        )
        if not ids:
            break
        deleted += GovernedChange.objects.filter(pk__in=ids).delete()[0]
    oldest_unjudged = GovernedChange.objects.filter(judged_at__isnull=True).aggregate(oldest=Min("changed_at"))[
        "oldest"
    ]
    transactions_cutoff = min(cutoff, oldest_unjudged) if oldest_unjudged else cutoff
    while True:
        txids = list(
            AuditedTransaction.objects.filter(recorded_at__lt=transactions_cutoff).values_list("txid", flat=True)[
                :PURGE_CHUNK_SIZE
            ]
        )
        if not txids:
            return deleted
        AuditedTransaction.objects.filter(txid__in=txids).delete()
