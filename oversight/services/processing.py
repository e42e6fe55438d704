"""The processing engine: one ingested batch in, alerts, incidents and reviews out.

``process_batch`` is the only consumer of the outbox (``IngestBatch.processed_at``). It evaluates a
batch set-based — the batch, the recent window of the same systems, the settings: a handful of
queries whatever the batch size — in one transaction, so a worker killed midway leaves nothing
half-written and the batch is simply processed again (by the redelivered task or the sweeper).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from uuid import UUID

from django.db import connection, transaction
from django.db.models import F, OuterRef, Q, Subquery
from django.utils import timezone

from config import registry
from governance.choices import SEVERITY_RANK, Severity
from governance.models import AISystem
from governance.services.locks import lock_systems
from hitl.services.queue import review_items_open_for_alerts
from incidents.services.intake import incidents_open_for_alerts
from oversight.models import HEARTBEAT_SIGNAL, DetectionRule, EventRaw, IngestBatch, RuleKind, SystemHeartbeat
from oversight.rules import CATEGORIES
from oversight.services import alerts as alert_service
from oversight.services.detection import (
    DetectionSettings,
    EventRow,
    Heartbeat,
    RuleState,
    absence_candidates,
    breach_level,
    evaluate_events,
    heartbeat_silences,
)

logger = logging.getLogger(__name__)

OUTBOX_GRACE = timedelta(seconds=60)
SWEEP_LIMIT = 1000
EVENT_COLUMNS = ("event_id", "system_id", "category", "severity", "signal", "value", "occurred_at")


@dataclass(frozen=True)
class BatchOutcome:
    batch_id: str
    processed: bool  # False: already processed, or claimed by another worker
    events: int = 0
    alerts_fired: int = 0
    alerts_updated: int = 0
    incidents_opened: int = 0
    reviews_created: int = 0
    duration_ms: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


def load_detection_settings() -> DetectionSettings:
    """Rules and their numbers as they are now: the registry (cached, refreshed on change) and the
    rule rows (one query). Read per batch, so a change in the admin applies to the next batch."""
    return DetectionSettings(
        thresholds={category: registry.get(f"oversight.thresholds.{category}") for category in CATEGORIES},
        rate_min_breaches=registry.get("oversight.rate_rule")["min_breaches"],
        rate_window=timedelta(seconds=registry.get("oversight.rate_rule")["window_seconds"]),
        correlation_window=timedelta(seconds=registry.get("oversight.correlation_window_seconds")),
        compound_min_signals=registry.get("oversight.compound_min_signals"),
        absence_window=timedelta(seconds=registry.get("oversight.absence_window_seconds")),
        quiet_period=timedelta(seconds=registry.get("oversight.alert_quiet_period_seconds")),
        rules={
            name: RuleState(enabled=enabled, severity=severity, kind=kind)
            for name, enabled, severity, kind in DetectionRule.objects.values_list(
                "name", "enabled", "severity", "kind"
            )
        },
    )


def process_batch(*, batch_id: str | UUID, now: datetime | None = None) -> BatchOutcome:
    """Evaluate one batch exactly once.

    Claims the batch row with ``SELECT … FOR UPDATE SKIP LOCKED`` where ``processed_at IS NULL``: a
    processed batch, or one another worker is processing, is skipped (idempotent, safe to enqueue
    twice). Takes per-system advisory locks (sorted, so concurrent batches cannot deadlock) before
    touching alerts, so two batches of one system never race on a fingerprint. Everything — alerts,
    incidents, reviews, audit entries, the outbox mark — commits together or not at all.
    """
    started = time.perf_counter()
    now = now or timezone.now()
    with transaction.atomic():
        batch = (
            IngestBatch.objects.select_for_update(skip_locked=True)
            .filter(pk=batch_id, processed_at__isnull=True)
            .first()
        )
        if batch is None:
            return BatchOutcome(batch_id=str(batch_id), processed=False)
        events = _batch_events(batch.id)
        lock_systems({event.system_id for event in events})
        settings = load_detection_settings()
        silences = _event_time_silences(events, settings=settings)
        _record_heartbeats(events, now=now)
        history = _history(events, settings)
        candidates = evaluate_events(batch=events, history=history, settings=settings)
        candidates += absence_candidates(silences, settings=settings)
        routed = _upsert_and_route(candidates, settings=settings, now=now)
        EventRaw.objects.filter(batch_id=batch.id).update(processed_at=now)
        duration_ms = (time.perf_counter() - started) * 1000
        IngestBatch.objects.filter(pk=batch.id).update(
            processed_at=now, processing_ms=duration_ms, alerts_fired=len(routed.fired)
        )
    return BatchOutcome(
        batch_id=str(batch.id),
        processed=True,
        events=len(events),
        alerts_fired=len(routed.fired),
        alerts_updated=routed.updated,
        incidents_opened=routed.incidents,
        reviews_created=routed.reviews,
        duration_ms=round(duration_ms, 3),
    )


@dataclass
class _Routed:
    fired: list
    updated: int
    incidents: int
    reviews: int


def _upsert_and_route(candidates, *, settings: DetectionSettings, now: datetime) -> _Routed:
    """Upsert alerts, then send what started firing (or got worse) where it belongs:
    severity ≥ high or compound → an incident; medium → a human review."""
    if not candidates:
        return _Routed(fired=[], updated=0, incidents=0, reviews=0)
    rules = {rule.name: rule for rule in DetectionRule.objects.filter(name__in={c.rule for c in candidates})}
    outcome = alert_service.upsert_alerts(
        candidates=candidates, rules=rules, now=now, quiet_period=settings.quiet_period
    )
    routed = outcome.fired + outcome.escalated
    systems = AISystem.objects.in_bulk({alert.system_id for alert in routed})
    for alert in routed:
        alert.system = systems[alert.system_id]
    serious = [
        a
        for a in routed
        if a.rule.kind == RuleKind.COMPOUND or SEVERITY_RANK[a.severity] >= SEVERITY_RANK[Severity.HIGH]
    ]
    judgement = [a for a in routed if a not in serious and a.severity == Severity.MEDIUM]
    incidents = incidents_open_for_alerts(alerts=serious, now=now)
    reviews = review_items_open_for_alerts(alerts=judgement, now=now)
    return _Routed(fired=outcome.fired, updated=outcome.updated, incidents=len(incidents), reviews=len(reviews))


def _event_rows(rows, *, in_batch: bool) -> list[EventRow]:
    """``EventRow``s from ``values_list(*EVENT_COLUMNS)`` rows."""
    return [EventRow(str(r[0]), r[1], r[2], r[3], r[4], r[5], r[6], in_batch) for r in rows]


def _batch_events(batch_id) -> list[EventRow]:
    rows = EventRaw.objects.filter(batch_id=batch_id).values_list(*EVENT_COLUMNS)
    return _event_rows(rows, in_batch=True)


def _history(events: list[EventRow], settings: DetectionSettings) -> list[EventRow]:
    """Earlier events of the systems that breach in this batch, inside the window rules' lookback.

    One query. Only systems with a warning-or-worse value here need history (the window rules are
    only evaluated for groups with a breach in the batch)."""
    breaching = {}
    for event in events:
        if breach_level(settings.thresholds.get(event.category, {}).get(event.signal), event.value):
            first = breaching.get(event.system_id)
            breaching[event.system_id] = min(first, event.occurred_at) if first else event.occurred_at
    if not breaching:
        return []
    batch_ids = {event.event_id for event in events}
    since = min(breaching.values()) - settings.lookback
    until = max(event.occurred_at for event in events)
    rows = (
        EventRaw.objects.filter(system_id__in=list(breaching), occurred_at__gte=since, occurred_at__lte=until)
        .exclude(signal=HEARTBEAT_SIGNAL)
        .values_list(*EVENT_COLUMNS)
    )
    return [event for event in _event_rows(rows, in_batch=False) if event.event_id not in batch_ids]


def _record_heartbeats(events: list[EventRow], *, now: datetime) -> None:
    """Keep each system's latest heartbeat (event time and arrival time), never moving backwards.

    One ``INSERT … ON CONFLICT DO UPDATE`` for all systems of the batch; the row takes the later of
    the stored and the new event time, so batches processed out of order cannot rewind it."""
    latest: dict = {}
    for event in events:
        if event.signal == HEARTBEAT_SIGNAL and (
            event.system_id not in latest or event.occurred_at > latest[event.system_id].occurred_at
        ):
            latest[event.system_id] = event
    if not latest:
        return
    table = SystemHeartbeat._meta.db_table
    greatest = "GREATEST" if connection.vendor == "postgresql" else "MAX"  # SQLite's scalar max()
    prep = {name: SystemHeartbeat._meta.get_field(name) for name in ("system", "last_seen_at", "last_event_id")}
    params: list = []
    for system_id in sorted(latest):
        event = latest[system_id]
        params += [
            prep["system"].get_db_prep_value(system_id, connection),
            prep["last_seen_at"].get_db_prep_value(event.occurred_at, connection),
            prep["last_seen_at"].get_db_prep_value(now, connection),
            prep["last_event_id"].get_db_prep_value(UUID(event.event_id), connection),
        ]
    values = ", ".join(["(%s, %s, %s, %s)"] * len(latest))
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} AS t (system_id, last_seen_at, last_received_at, last_event_id) "  # noqa: S608
            f"VALUES {values} ON CONFLICT (system_id) DO UPDATE SET "
            "last_event_id = CASE WHEN excluded.last_seen_at > t.last_seen_at "
            "THEN excluded.last_event_id ELSE t.last_event_id END, "
            f"last_seen_at = {greatest}(t.last_seen_at, excluded.last_seen_at), "
            f"last_received_at = {greatest}(t.last_received_at, excluded.last_received_at)",
            params,
        )


def _event_time_silences(events: list[EventRow], *, settings: DetectionSettings) -> list[tuple[Heartbeat, datetime]]:
    """Heartbeat silences this batch reveals, in event time.

    Judged against the stored heartbeat *events* of the batch's systems (every batch already
    ingested, processed or not), not against the running ``system_heartbeats`` row, so batches
    processed out of order (several workers, a redelivery) never see a silence that is not there.
    A system that keeps sending telemetry but no heartbeat is caught here, so replayed history is
    judged by its own clock; a system gone entirely silent is caught by :func:`check_heartbeats`.
    Deactivated systems, and systems that never sent a heartbeat, are not watched. Two queries."""
    if not events:
        return []
    window = settings.absence_window
    since = min(event.occurred_at for event in events) - window
    until = max(event.occurred_at for event in events)
    system_ids = {event.system_id for event in events}
    beats_before = EventRaw.objects.filter(
        system_id=OuterRef("pk"), signal=HEARTBEAT_SIGNAL, occurred_at__lt=since
    ).order_by("-occurred_at")
    beating = {event.system_id for event in events if event.signal == HEARTBEAT_SIGNAL}
    # Only systems known to send heartbeats (a recorded beat, or one in this batch) are watched.
    monitored = Q(heartbeat__isnull=False) | Q(pk__in=beating)
    systems = AISystem.objects.filter(monitored, pk__in=system_ids, is_active=True).annotate(
        beat_at=Subquery(beats_before.values("occurred_at")[:1]),
        beat_id=Subquery(beats_before.values("event_id")[:1]),
    )
    rows = list(systems.values_list("pk", "beat_at", "beat_id"))
    active = {sid for sid, _, _ in rows}
    previous = {
        sid: Heartbeat(system_id=sid, last_seen_at=beat_at, last_event_id=str(beat_id))
        for sid, beat_at, beat_id in rows
        if beat_at is not None
    }
    beats = _event_rows(
        EventRaw.objects.filter(
            system_id__in=active, signal=HEARTBEAT_SIGNAL, occurred_at__gte=since, occurred_at__lte=until
        ).values_list(*EVENT_COLUMNS),
        in_batch=False,
    )
    watched = set(previous) | {beat.system_id for beat in beats}
    if not watched:
        return []
    telemetry = [event for event in events if event.signal != HEARTBEAT_SIGNAL]
    return heartbeat_silences([*telemetry, *beats], previous=previous, watched=watched, window=window)


def check_heartbeats(*, now: datetime | None = None) -> int:
    """Wall-clock absence check (beat, every minute): active systems whose last heartbeat *arrived*
    longer ago than the absence window. Arrival time, not event time, so replaying old telemetry never
    looks like silence. Returns the number of absence alerts that started firing."""
    now = now or timezone.now()
    settings = load_detection_settings()
    silent = SystemHeartbeat.objects.filter(
        last_received_at__lte=now - settings.absence_window, system__is_active=True
    ).values_list("system_id", "last_received_at", "last_event_id")
    observations = [
        (Heartbeat(system_id=sid, last_seen_at=received, last_event_id=str(event_id)), now)
        for sid, received, event_id in silent
    ]
    if not observations:
        return 0
    with transaction.atomic():
        lock_systems(beat.system_id for beat, _ in observations)
        candidates = absence_candidates(observations, settings=settings)
        return len(_upsert_and_route(candidates, settings=settings, now=now).fired)


# --- the outbox -----------------------------------------------------------------------------------
def enqueue_batches(*, batch_ids: list, reason: str) -> int:
    """Enqueue processing of these unprocessed batches (after commit). Returns how many."""
    from oversight.tasks import process_batch

    ids = list(IngestBatch.objects.filter(pk__in=batch_ids, processed_at__isnull=True).values_list("id", flat=True))
    if not ids:
        return 0
    IngestBatch.objects.filter(pk__in=ids).update(enqueue_count=F("enqueue_count") + 1)
    logger.info("re-enqueueing %d unprocessed batches: %s", len(ids), reason)

    def send() -> None:
        for batch_id in ids:
            process_batch.apply_async(args=[str(batch_id)], expires=300)

    transaction.on_commit(send)
    return len(ids)


def sweep_outbox(*, now: datetime | None = None) -> int:
    """Re-enqueue batches still unprocessed a minute after they arrived (a lost task, a dead worker).

    At most 1,000 per run; each send expires after 5 minutes (the next sweep sends again). Processing
    is idempotent, so a batch whose first task is merely slow is not processed twice."""
    now = now or timezone.now()
    ids = list(
        IngestBatch.objects.filter(processed_at__isnull=True, received_at__lt=now - OUTBOX_GRACE)
        .order_by("received_at")
        .values_list("id", flat=True)[:SWEEP_LIMIT]
    )
    with transaction.atomic():
        return enqueue_batches(batch_ids=ids, reason="outbox sweep") if ids else 0
