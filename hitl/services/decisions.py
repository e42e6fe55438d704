"""Deciding review items: the one write path out of ``pending`` (human, bulk triage and policies).

Every decision is a guarded transition (``UPDATE … WHERE status = 'pending'``) taken under the
per-system locks the oversight engine also takes, recorded as a ``Decision`` row and one
``review.decided`` audit entry per item, in the same transaction. Escalating opens an incident, or
joins the open incident of the item's fingerprint.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from django.db import transaction
from django.utils import timezone

from governance.choices import AuditAction
from governance.selectors import as_uuid
from governance.services.audit import AuditEntry, audit_record_many
from governance.services.locks import lock_systems
from hitl.models import (
    STATUS_FOR_DECISION,
    AutoApprovalPolicy,
    Decision,
    DecisionSource,
    ReviewDecision,
    ReviewItem,
    ReviewStatus,
)
from hitl.services.self_approval import review_self_approvals_report
from incidents.services.intake import incidents_open_or_join_for_reviews

RATIONALE_MAX_LENGTH = 5000


class ReviewNotPending(Exception):
    """Some items are no longer pending (decided by someone else, or never were): nothing was changed."""

    def __init__(self, statuses: Mapping[Any, str]):
        self.statuses = dict(statuses)
        listed = ", ".join(f"{item_id} is {status}" for item_id, status in list(self.statuses.items())[:10])
        super().__init__(f"only pending review items can be decided: {listed}")


class ReviewItemMissing(Exception):
    """Some ids name no review item: nothing was changed."""

    def __init__(self, ids):
        self.ids = list(ids)
        super().__init__(f"no review item {', '.join(map(str, self.ids[:10]))}")


def normalize_decision(value: str) -> ReviewDecision:
    """``approve|reject|escalate`` (the past-tense statuses are accepted too); ValueError otherwise."""
    text = str(value).strip().lower()
    aliases = {"approved": "approve", "rejected": "reject", "escalated": "escalate"}
    text = aliases.get(text, text)
    if text not in ReviewDecision.values:
        raise ValueError(f"{value!r} is not a decision; use one of: {', '.join(ReviewDecision.values)}")
    return ReviewDecision(text)


def clean_rationale(value: str | None) -> str:
    """A decision always says why: blank or missing rationale is a ValueError."""
    text = (value or "").strip()
    if not text:
        raise ValueError("a rationale is required")
    if len(text) > RATIONALE_MAX_LENGTH:
        raise ValueError(f"the rationale is longer than {RATIONALE_MAX_LENGTH} characters")
    return text


@dataclass(frozen=True)
class DecideOutcome:
    decided: int
    by_decision: dict[str, int]
    item_ids: list
    incidents: dict = field(default_factory=dict)  # item id -> incident escalated into


def review_items_decide(
    *,
    decisions: Mapping[Any, str],
    rationale: str,
    actor: Any,
    source: str,
    policy: AutoApprovalPolicy | None = None,
    scores: Mapping[Any, tuple[float | None, float | None]] | None = None,
    now: datetime | None = None,
) -> DecideOutcome:
    """Decide many items at once, all or nothing.

    ``decisions`` maps item id to ``approve|reject|escalate``. Takes the per-system locks, then locks
    the item rows; if any id is unknown (``ReviewItemMissing``) or any item is not pending
    (``ReviewNotPending``) nothing is written. One guarded UPDATE per decision kind, one INSERT of
    ``Decision`` rows, one audit entry per item (naming the policy for automatic decisions).
    ``actor`` is the deciding user, or ``None`` for a policy. ``scores`` optionally records the assist
    (confidence, risk) each decision was based on.

    A person approving an item they requested themselves (``requested_by``) is not refused: the decision
    is taken like any other. Once the transaction commits, each such approval is reported as a
    ``policy_circumvention`` governance bypass (``hitl.services.self_approval``); a rolled-back decision
    reports nothing, and a failing report never undoes the committed decision.
    """
    rationale = clean_rationale(rationale)
    wanted = {as_uuid(item_id): normalize_decision(decision) for item_id, decision in decisions.items()}
    if not wanted:
        return DecideOutcome(decided=0, by_decision={}, item_ids=[])
    now = now or timezone.now()
    scores = {as_uuid(item_id): score for item_id, score in (scores or {}).items()}
    user = actor if getattr(actor, "is_authenticated", False) else None
    audit_actor = actor if user is not None else f"auto_policy:{policy.policy_name}" if policy else actor
    ids = list(wanted)
    with transaction.atomic():
        # Systems first, then rows: the same order as the oversight engine, so the two never deadlock.
        lock_systems(ReviewItem.objects.filter(pk__in=ids).order_by().values_list("system_id", flat=True).distinct())
        locked = ReviewItem.objects.select_for_update().filter(pk__in=ids)
        rows = list(locked.values_list("id", "status", "requested_by_id"))
        statuses = {item_id: status for item_id, status, _ in rows}
        requesters = {item_id: requester for item_id, _, requester in rows}
        missing = [item_id for item_id in ids if item_id not in statuses]
        if missing:
            raise ReviewItemMissing(missing)
        not_pending = {item_id: status for item_id, status in statuses.items() if status != ReviewStatus.PENDING}
        if not_pending:
            raise ReviewNotPending(not_pending)
        by_kind: dict[ReviewDecision, list] = {}
        for item_id, decision in wanted.items():
            by_kind.setdefault(decision, []).append(item_id)
        for decision, group in by_kind.items():
            changed = ReviewItem.objects.filter(pk__in=group, status=ReviewStatus.PENDING).update(
                status=STATUS_FOR_DECISION[decision],
                decision=decision,
                decided_by=user,
                decided_by_policy=policy,
                decided_at=now,
                rationale=rationale,
                decision_source=source,
                updated_at=now,
            )
            if changed != len(group):  # impossible under the row locks; never half-write if it happens
                raise ReviewNotPending(dict.fromkeys(group, "changed concurrently"))
        incidents = {}
        escalated = list(
            ReviewItem.objects.select_related("system").filter(pk__in=by_kind.get(ReviewDecision.ESCALATE, []))
        )
        if escalated:
            incidents = incidents_open_or_join_for_reviews(items=escalated, actor=audit_actor, now=now)
            for item in escalated:
                item.escalated_incident = incidents[item.id]
            ReviewItem.objects.bulk_update(escalated, ["escalated_incident"])
        Decision.objects.bulk_create(
            [
                Decision(
                    item_id=item_id,
                    decision=decision,
                    source=source,
                    policy=policy,
                    actor=user,
                    rationale=rationale,
                    confidence=scores.get(item_id, (None, None))[0],
                    risk_score=scores.get(item_id, (None, None))[1],
                    decided_at=now,
                )
                for item_id, decision in wanted.items()
            ]
        )
        decided_entries = audit_record_many(
            entries=[
                AuditEntry(
                    action=AuditAction.REVIEW_DECIDED,
                    actor=audit_actor,
                    object_type=ReviewItem._meta.label_lower,
                    object_id=str(item_id),
                    data=_audit_data(
                        decision=decision,
                        source=source,
                        rationale=rationale,
                        policy=policy,
                        incident=incidents.get(item_id),
                        score=scores.get(item_id),
                    ),
                )
                for item_id, decision in wanted.items()
            ]
        )
        entry_of = {item_id: entry.pk for item_id, entry in zip(wanted, decided_entries, strict=True)}
        own = {
            item_id: entry_of[item_id]
            for item_id, decision in wanted.items()
            if user is not None and decision == ReviewDecision.APPROVE and requesters[item_id] == user.pk
        }
        if own:
            transaction.on_commit(partial(review_self_approvals_report, decided_entries=own), robust=True)
    return DecideOutcome(
        decided=len(wanted),
        by_decision=dict(Counter(str(decision) for decision in wanted.values())),
        item_ids=ids,
        incidents=incidents,
    )


def review_item_decide(
    *,
    item_id: Any,
    decision: str,
    rationale: str,
    actor: Any,
    source: str = DecisionSource.HUMAN,
    now: datetime | None = None,
) -> ReviewItem:
    """Decide one item (a reviewer in the API or admin). ``ReviewNotPending`` (→ 409) if it was
    already decided, nothing changed; see :func:`review_items_decide` for the guarantees."""
    review_items_decide(decisions={item_id: decision}, rationale=rationale, actor=actor, source=source, now=now)
    return ReviewItem.objects.select_related("system", "decided_by", "escalated_incident").get(pk=as_uuid(item_id))


def _audit_data(*, decision, source, rationale, policy, incident, score) -> dict[str, Any]:
    data: dict[str, Any] = {"decision": str(decision), "source": str(source), "rationale": rationale[:500]}
    if policy is not None:
        data["policy"] = {"id": str(policy.id), "name": policy.policy_name, "shadow": False}
    if incident is not None:
        data["incident"] = str(incident.id)
    if score is not None:
        data["confidence"], data["risk_score"] = score
    return data
