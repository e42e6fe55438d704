"""The ``policy_circumvention`` detector for reviews: a reviewer approving their own request.

Four eyes are the point of a review: whoever asked for a model change, a policy exception or data
access should not be the one who approves it. Such an approval is not blocked (the decision stands,
as the requirement is to detect it, not to forbid it); it is reported as a governance bypass for the
security team to look at. ``review_items_decide`` calls :func:`review_self_approvals_report` after its
transaction commits, so a decision rolled back is never reported. The detector lives in hitl because
hitl builds on governance, never the other way round; it reports through governance's one door,
``bypass_detection_emit``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from django.db.models import F
from django.utils import timezone

from governance.choices import AuditAction
from governance.models import AuditLog
from governance.selectors import as_uuid
from governance.services.bypass import bypass_detection_emit, detector_settings
from hitl.models import DecisionSource, ReviewDecision, ReviewItem, ReviewType

__all__ = ["DETECTOR", "review_self_approvals_report", "self_approval_source"]

DETECTOR = "policy_circumvention"
# Decisions a person took: a policy has no requester to coincide with.
_HUMAN_SOURCES = (DecisionSource.HUMAN, DecisionSource.BULK)


def self_approval_source(item_id: Any) -> str:
    """What a self-approval detection is about: ``review:<item id>`` (one detection per item)."""
    return f"review:{item_id}"


def review_self_approvals_report(*, decided_entries: Mapping[Any, Any], now: datetime | None = None) -> int:
    """Report every item of ``decided_entries`` (``{item id: id of its review.decided audit entry}``)
    that its own requester approved: one ``policy_circumvention`` detection per item, severity high,
    citing the item's ``review.requested`` and ``review.decided`` entries (the security incident is
    linked to both). Reads the committed rows, so an item another user approved, or one the requester
    rejected or escalated, is not reported whatever the caller passes. Nothing when the detector is
    switched off (``governance.bypass.policy_circumvention.enabled``). Two queries plus one emit per
    self-approval; a detection already recorded is not recorded again. Returns how many are new.
    """
    if not decided_entries or not detector_settings(DETECTOR)["enabled"]:
        return 0
    decided = {as_uuid(item_id): entry_id for item_id, entry_id in decided_entries.items()}
    items = list(
        ReviewItem.objects.select_related("system", "decided_by")
        .filter(
            pk__in=list(decided),
            decision=ReviewDecision.APPROVE,
            decision_source__in=_HUMAN_SOURCES,
            requested_by__isnull=False,
            decided_by=F("requested_by"),
        )
        .order_by("decided_at", "id")
    )
    if not items:
        return 0
    requested = dict(
        AuditLog.objects.filter(
            action=AuditAction.REVIEW_REQUESTED,
            object_type=ReviewItem._meta.label_lower,
            object_id__in=[str(item.pk) for item in items],
        ).values_list("object_id", "id")
    )
    now = now or timezone.now()
    emitted = 0
    for item in items:
        username = item.decided_by.get_username()
        refs = [ref for ref in (requested.get(str(item.pk)), decided[item.pk]) if ref is not None]
        emitted += bypass_detection_emit(
            detector=DETECTOR,
            source=self_approval_source(item.pk),
            summary=(
                f'{username} approved their own {ReviewType(item.review_type).label.lower()} request "{item.title}"'
            ),
            severity="high",
            details={
                "review_item": str(item.pk),
                "review_type": item.review_type,
                "user": username,
                "system": str(item.system_id),
                "system_name": item.system.name,
                "decision": item.decision,
            },
            audit_refs=refs,
            now=now,
        )
    return emitted
