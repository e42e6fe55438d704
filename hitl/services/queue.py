"""Queueing review items (called by the oversight engine for alerts that need human judgement)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from config import registry
from governance.choices import AuditAction
from governance.services.audit import AuditEntry, audit_record_many
from hitl.models import ReviewItem, ReviewStatus, ReviewType


def review_items_open_for_alerts(*, alerts: Sequence, now: datetime) -> list[ReviewItem]:
    """Queue one alert-triage review per alert that has no pending review yet.

    Set-based; idempotent (the partial unique constraint ``review_one_pending_per_alert`` backs the
    check, and the caller's per-system lock serializes writers). SLA from ``hitl.sla_hours``.
    Audits every item queued. Returns the items created.
    """
    if not alerts:
        return []
    pending = set(
        ReviewItem.objects.filter(source_alert__in=list(alerts), status=ReviewStatus.PENDING).values_list(
            "source_alert_id", flat=True
        )
    )
    sla_hours = registry.get("hitl.sla_hours")
    items = [
        ReviewItem(
            review_type=ReviewType.ALERT_TRIAGE,
            title=f"Triage {alert.labels.get('rule')}: {alert.signal or alert.category} on {alert.system.name}"[:300],
            system_id=alert.system_id,
            severity=alert.severity,
            source_alert=alert,
            fingerprint=alert.fingerprint,
            rule=str(alert.labels.get("rule", ""))[:100],
            sla_due_at=now + timedelta(hours=sla_hours[alert.severity]),
            context={
                "rule": alert.labels.get("rule"),
                "signal": alert.signal,
                "category": alert.category,
                "first_event_at": alert.first_event_at.isoformat(),
                "count": alert.count,
                **{k: v for k, v in alert.annotations.items() if isinstance(v, int | float | str | list)},
            },
        )
        for alert in alerts
        if alert.id not in pending
    ]
    ReviewItem.objects.bulk_create(items)
    audit_record_many(
        entries=[
            AuditEntry(
                action=AuditAction.REVIEW_CREATED,
                target=item,
                data={"severity": item.severity, "alert": str(item.source_alert_id), "sla_due_at": item.sla_due_at},
            )
            for item in items
        ]
    )
    return items
