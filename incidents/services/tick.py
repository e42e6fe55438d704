"""One run of the incident lifecycle engine (``incidents.lifecycle_tick``, beat every minute)."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from datetime import datetime

from django.utils import timezone

from incidents.services.escalation import escalate_due_incidents
from incidents.services.housekeeping import (
    auto_close_stale_incidents,
    follow_ups_process,
    follow_ups_schedule_on_resolve,
    regulatory_deadlines_warn,
)
from incidents.services.notifications import notifications_enqueue_delivery, notifications_pending

logger = logging.getLogger(__name__)

# Deliveries enqueued per tick: the rest stay pending for the next tick (bounded run time).
DELIVERIES_PER_TICK = 1000


@dataclass(frozen=True)
class TickReport:
    escalated: int
    escalation_notifications: int
    follow_ups_scheduled: int
    auto_closed: int
    follow_ups_notified: int
    follow_ups_escalated: int
    regulatory_warnings: int
    deliveries_enqueued: int
    duration_ms: float

    def as_dict(self) -> dict:
        return asdict(self)


def lifecycle_tick(*, now: datetime | None = None, enqueue_delivery: bool = True) -> TickReport:
    """Run the engine once, in order: escalate incidents whose SLA step is due, schedule follow-ups
    set on resolve, auto-close stale low/info incidents, announce due and escalate overdue follow-ups,
    warn about nearing regulatory deadlines, then enqueue delivery of pending notifications (after
    commit). Each step commits its own chunks, so a failure in one leaves the earlier steps' work in
    place. Every step is idempotent and safe with another tick running at the same time (no
    single-flight lock is needed, or wanted: exactly-once comes from the guarded updates)."""
    now = now or timezone.now()
    started = time.perf_counter()
    escalation = escalate_due_incidents(now=now)
    scheduled = follow_ups_schedule_on_resolve(now=now)
    closed = auto_close_stale_incidents(now=now)
    follow_ups = follow_ups_process(now=now)
    warnings = regulatory_deadlines_warn(now=now)
    pending: list = []
    if enqueue_delivery:
        pending = notifications_pending(limit=DELIVERIES_PER_TICK)
        notifications_enqueue_delivery(pending, expires_seconds=300)
    report = TickReport(
        escalated=escalation.escalated,
        escalation_notifications=escalation.notifications,
        follow_ups_scheduled=scheduled,
        auto_closed=closed,
        follow_ups_notified=follow_ups.notified,
        follow_ups_escalated=follow_ups.escalated,
        regulatory_warnings=warnings,
        deliveries_enqueued=len(pending),
        duration_ms=round((time.perf_counter() - started) * 1000, 1),
    )
    logger.info("lifecycle tick: %s", " ".join(f"{key}={value}" for key, value in report.as_dict().items()))
    return report
