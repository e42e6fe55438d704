"""Self-monitoring: the platform's queue health as telemetry of its own AI system, ``vigil-operations``.

Every minute ``tasks.self_monitor`` turns :func:`tasks.health.queue_health` into ``data_quality`` events
through the normal ingest path, so the oversight engine judges them against
``oversight.thresholds.data_quality`` like any other system's signals: a stuck queue, a growing outbox
or a periodic task beat no longer sends becomes an alert (and, when critical, an incident) for the team
owning ``vigil-operations``: ``platform-operations`` ("Platform operations"), created on first use.

Why a system and team of their own: alerts and incidents are scoped to the team of their system, and
incident notifications go to that team. Queue health is an operator's concern, not security's (the
bypass detections stay on ``vigil-platform``, team ``security``), so operators join
``platform-operations`` (``POST /api/v1/users`` with its team id, or the admin) to see these alerts
and be notified; admins see every team and receive the later escalation steps anyway.

Signals (one event each per run):

* ``queue_depth`` — messages waiting in the deepest Celery queue (attributes name it and list all);
  not sent when depths cannot be measured (eager Celery, broker error);
* ``outbox_lag_seconds`` — age of the oldest unprocessed event batch (0 when the outbox is empty);
* ``beat_lag_seconds`` — seconds the worst late periodic task is past its due time (0 when none is late).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from django.utils import timezone

from config import registry
from governance.choices import RiskClass, Severity
from governance.models import AISystem
from tasks.health import QueueHealth, queue_health

CATEGORY = "data_quality"
THRESHOLDS_KEY = "oversight.thresholds.data_quality"
QUEUE_DEPTH, OUTBOX_LAG, BEAT_LAG = "queue_depth", "outbox_lag_seconds", "beat_lag_seconds"
EVENT_NAMESPACE = uuid.UUID("6f1d8a52-3c57-4d6e-9a4f-5b2f0e7c9d31")
OPERATIONS_SYSTEM_NAME = "vigil-operations"
OPERATIONS_TEAM_SLUG = "platform-operations"
OPERATIONS_TEAM_NAME = "Platform operations"


@dataclass(frozen=True)
class SelfMonitorReport:
    sent: int  # events stored by this run
    skipped: int  # events of this minute already stored by an earlier run
    health: QueueHealth


def self_monitor_event_id(*, signal: str, now: datetime) -> uuid.UUID:
    """The deterministic event id of one signal's reading: UUID5 of (signal, UTC minute of ``now``)."""
    minute = now.astimezone(UTC).replace(second=0, microsecond=0)
    return uuid.uuid5(EVENT_NAMESPACE, f"{signal}|{minute.isoformat()}")


def _severity(signal: str, value: float) -> str:
    spec = registry.get(THRESHOLDS_KEY).get(signal)
    if spec is None:
        return Severity.INFO
    if value > spec["critical"]:
        return Severity.HIGH
    if value > spec["warning"]:
        return Severity.MEDIUM
    return Severity.INFO


def _readings(health: QueueHealth) -> list[tuple[str, float, dict]]:
    readings = []
    deepest = health.deepest_queue
    if deepest is not None:
        readings.append(
            (
                QUEUE_DEPTH,
                float(deepest.depth),
                {"queue": deepest.queue, "depths": {q.queue: q.depth for q in health.queues}},
            )
        )
    oldest = health.oldest_unprocessed_batch_at
    readings.append(
        (
            OUTBOX_LAG,
            health.outbox_oldest_batch_age_seconds,
            {"oldest_unprocessed_batch_at": oldest.isoformat() if oldest else None},
        )
    )
    worst = health.worst_late_task
    late = [task.task for task in health.beat if task.late]
    attributes = {"task": worst.task if worst else None, "late_tasks": late}
    if worst is not None:
        attributes["last_run_at"] = worst.last_run_at.isoformat() if worst.last_run_at else None
        attributes["interval_seconds"] = worst.interval_seconds
    readings.append((BEAT_LAG, worst.overdue_seconds if worst else 0.0, attributes))
    return readings


def operations_system_ensure() -> AISystem:
    """The AI system ``vigil-operations`` (system, minimal risk) owned by team ``platform-operations``,
    both created if missing."""
    from governance.services.organization import platform_system_ensure

    return platform_system_ensure(
        name=OPERATIONS_SYSTEM_NAME,
        team_slug=OPERATIONS_TEAM_SLUG,
        team_name=OPERATIONS_TEAM_NAME,
        risk_class=RiskClass.MINIMAL,
        description="The Vigil platform's own operations: queue depth, outbox lag, late periodic tasks.",
    )


def self_monitor_run(*, now: datetime | None = None) -> SelfMonitorReport:
    """Read queue health and ingest it as ``data_quality`` events of ``vigil-operations``.

    Guarantees: idempotent per UTC minute — each signal's event id is derived from (signal, minute), so a
    rerun (retry, duplicate beat tick) in the same minute stores nothing twice and creates no batch when
    nothing is new. Ingest enqueues processing after commit; alerts follow within the processing latency.
    """
    from oversight.models import EventRaw
    from oversight.services.ingest import ingest_events

    now = now or timezone.now()
    health = queue_health(now=now)
    readings = _readings(health)
    ids = {signal: str(self_monitor_event_id(signal=signal, now=now)) for signal, _, _ in readings}
    stored = {
        str(value) for value in EventRaw.objects.filter(event_id__in=ids.values()).values_list("event_id", flat=True)
    }
    new = [reading for reading in readings if ids[reading[0]] not in stored]
    if not new:
        return SelfMonitorReport(sent=0, skipped=len(readings), health=health)
    system = operations_system_ensure()
    items = [
        {
            "event_id": ids[signal],
            "system": str(system.pk),
            "category": CATEGORY,
            "severity": _severity(signal, value),
            "signal": signal,
            "value": value,
            "occurred_at": now.isoformat(),
            "attributes": {"source": "tasks.self_monitor", **attributes},
        }
        for signal, value, attributes in new
    ]
    # submitted_by=None: the platform itself is the internal caller.
    result = ingest_events(items=items, submitted_by=None, now=now)
    return SelfMonitorReport(sent=result.accepted, skipped=len(readings) - result.accepted, health=health)
