"""Thin Celery tasks of the incident lifecycle engine (queue ``lifecycle``): each calls a service."""

from __future__ import annotations

from incidents.services import escalation, notifications, tick
from tasks.base import vigil_task

# A row that failed inside a batch is tried again alone after this long, then with exponential backoff.
RETRY_FIRST_DELAY_SECONDS = 30


@vigil_task(name="incidents.lifecycle_tick")
def lifecycle_tick() -> dict:
    """Beat (1 min): escalate due incidents, auto-close stale ones, follow-ups, regulatory warnings,
    then enqueue pending notifications. Deliberately not single-flight: two overlapping ticks are
    safe, because every step claims rows with SKIP LOCKED and changes them with guarded updates."""
    return tick.lifecycle_tick().as_dict()


@vigil_task(
    name="incidents.deliver_notification",
    autoretry_for=(notifications.NotificationTransientError,),
    retry_backoff=True,
    retry_backoff_max=600,
    retry_jitter=True,
    max_retries=6,
)
def deliver_notification(notification_id: str) -> str:
    """Send one notification (idempotent: a sent or refused row is never sent again). Retried with
    exponential backoff on network errors, timeouts and 5xx/429 answers; never on a refused target."""
    return notifications.notification_deliver(notification_id=notification_id)


@vigil_task(name="incidents.deliver_notifications")
def deliver_notifications(notification_ids: list[str]) -> dict:
    """Send a batch of notifications (how the tick enqueues them: one message per 100 rows). A row
    that fails transiently continues alone in ``incidents.deliver_notification``, with backoff."""
    batch = notifications.notifications_deliver(notification_ids=notification_ids)
    for notification_id in batch.to_retry:
        deliver_notification.apply_async(args=[notification_id], countdown=RETRY_FIRST_DELAY_SECONDS)
    return {**batch.statuses, "retrying": len(batch.to_retry)}


@vigil_task(name="incidents.escalation_step")
def escalation_step(incident_id: str, token: str) -> bool:
    """On demand or on retry: run the next escalation step of one incident if ``token`` is still its
    escalation token (a stale or duplicate delivery does nothing)."""
    return escalation.incident_escalation_step(incident_id=incident_id, token=token)


@vigil_task(name="incidents.audit_active_escalations")
def audit_active_escalations() -> dict:
    """Beat (5 min): escalate now any open incident whose next step is overdue by more than two
    minutes (a missed tick, a dead worker), then enqueue the notifications that produced. No retry:
    a failing auditor should be seen in the task metrics, and the next run audits again."""
    kicked = escalation.audit_active_escalations()
    if kicked:
        notifications.notifications_enqueue_delivery(notifications.notifications_pending(limit=1000))
    return {"re_kicked": len(kicked), "incident_ids": [str(incident_id) for incident_id in kicked]}
