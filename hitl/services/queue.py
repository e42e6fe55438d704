"""Queueing review items (the oversight engine, for alerts that need human judgement) and assigning them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from config import registry
from governance.choices import AuditAction
from governance.services.audit import AuditEntry, audit_record, audit_record_many
from hitl.models import ReviewItem, ReviewStatus, ReviewType
from hitl.selectors import assignable_reviewers


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


class AssigneeNotAllowed(ValueError):
    """The person cannot be assigned this item (not active, not on its team, or no deciding role)."""


def review_item_assign(*, item_id, assignee, actor: Any) -> ReviewItem:
    """Assign (or, with ``assignee=None``, unassign) a review item and audit ``review.assigned``.

    Writes only the assignee column, so it never overwrites a decision taken concurrently; decided
    items can still be reassigned (follow-up questions go to someone). ``AssigneeNotAllowed`` unless the
    assignee is an active human on the item's team with a deciding role. No audit when nothing changes.
    """
    with transaction.atomic():
        item = ReviewItem.objects.select_for_update(of=("self",)).select_related("system").get(pk=item_id)
        if assignee is not None and not assignable_reviewers(item=item).filter(pk=assignee.pk).exists():
            raise AssigneeNotAllowed(
                f"{assignee.get_username()} cannot be assigned: assignees are active reviewers, governance "
                f"leads or admins of the item's team"
            )
        previous = item.assignee_id
        if previous == (assignee.pk if assignee else None):
            return item
        ReviewItem.objects.filter(pk=item.pk).update(assignee=assignee, updated_at=timezone.now())
        audit_record(
            action=AuditAction.REVIEW_ASSIGNED,
            actor=actor,
            target=item,
            data={
                "from": str(previous) if previous else None,
                "to": str(assignee.pk) if assignee else None,
                "to_username": assignee.get_username() if assignee else None,
            },
        )
    item.refresh_from_db()
    return item
