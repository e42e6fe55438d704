"""Bulk triage: decide up to 1,000 items at once, apply the assist suggestions, "Clear Low Risk".

Each entry point resolves the caller's items (team-scoped), checks every one, and then hands the whole
set to :func:`hitl.services.decisions.review_items_decide`: all or nothing, audited per item.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, NamedTuple, Self

from django.utils import timezone

from config import registry
from governance.choices import Severity
from governance.models import User
from governance.services.errors import InvalidFields
from hitl.models import DecisionSource, ReviewDecision, ReviewStatus
from hitl.selectors import is_uuid, review_items_for_user, review_items_matching
from hitl.services.decisions import DecideOutcome, clean_rationale, normalize_decision, review_items_decide

MAX_BULK_ITEMS = 1000
# "Apply suggestions" never decides for a human what matters: high and critical items always stay.
SUGGESTION_SEVERITIES = (Severity.MEDIUM, Severity.LOW, Severity.INFO)
LOW_RISK_SEVERITIES = (Severity.LOW, Severity.INFO)


class ItemFacts(NamedTuple):
    """What triage needs to know about an item (a values() row: no model instances on the hot path)."""

    id: Any
    status: str
    severity: str
    suggested_decision: str
    assist_confidence: float | None
    risk_score: float | None


def _facts(queryset) -> list[ItemFacts]:
    return [ItemFacts(*row) for row in queryset.order_by().values_list(*ItemFacts._fields)]


class TriageError(InvalidFields):
    """Bad bulk request; ``fields`` names what is wrong (``ids.3``, ``decision``, ``filter.severity``)."""


@dataclass(frozen=True)
class SuggestionGuard:
    """The guard rails of ``hitl.auto_approval`` that applying a suggestion without a human must clear."""

    confidence_floor: float
    max_risk_score: float

    @classmethod
    def from_config(cls) -> Self:
        """Read every field of the (sub)class from ``hitl.auto_approval``."""
        settings = registry.get("hitl.auto_approval")
        return cls(**{f.name: settings[f.name] for f in fields(cls)})

    def why_not(self, item: ItemFacts, *, severities: Sequence[str]) -> str | None:
        """Why ``item``'s suggestion may not be applied without a human, or None when it may."""
        if item.severity not in severities:
            return f"severity {item.severity} needs a human decision"
        if not item.suggested_decision:
            return "has no auto-assist suggestion yet (run auto-assist first)"
        if item.assist_confidence is None or item.assist_confidence < self.confidence_floor:
            return (
                f"suggestion confidence {item.assist_confidence or 0:.2f} is below the floor {self.confidence_floor:g}"
            )
        return None


def review_items_bulk_decide(
    *,
    user: User,
    rationale: str,
    ids: Sequence | None = None,
    filters: dict[str, Any] | None = None,
    decision: str | None = None,
    apply_suggestions: bool = False,
    now: datetime | None = None,
) -> DecideOutcome:
    """``POST /reviews/bulk-decide``: one decision (or each item's own suggestion) for ids or a filter.

    At most 1,000 items. Every named id must be a pending item of the caller's teams, and with
    ``apply_suggestions`` a medium/low/info item whose suggestion clears the confidence floor; a filter
    selects only such items. Any problem raises ``TriageError`` naming it and nothing is written.
    """
    now = now or timezone.now()
    errors: dict[str, list[str]] = {}
    try:
        rationale = clean_rationale(rationale)
    except ValueError as exc:
        errors["rationale"] = [str(exc)]
    if (ids is None) == (filters is None):
        errors["ids"] = ["give either ids or filter (exactly one)"]
    chosen = None
    if apply_suggestions:
        if decision not in (None, ""):
            errors["decision"] = ["leave decision out with apply_suggestions: each item takes its own suggestion"]
    else:
        try:
            chosen = normalize_decision(decision or "")
        except ValueError as exc:
            errors["decision"] = [str(exc) if decision else "a decision is required (approve, reject or escalate)"]
    if errors:
        raise TriageError(errors)
    guard = SuggestionGuard.from_config()
    scoped = review_items_for_user(user=user)
    if ids is not None:
        items = _items_by_ids(scoped, ids, apply_suggestions=apply_suggestions, guard=guard)
    else:
        items = _items_by_filter(scoped, filters or {}, apply_suggestions=apply_suggestions, guard=guard, now=now)
    if apply_suggestions:
        decisions = {item.id: item.suggested_decision for item in items}
    else:
        decisions = {item.id: chosen for item in items}
    scores = {item.id: (item.assist_confidence, item.risk_score) for item in items}
    return review_items_decide(
        decisions=decisions, rationale=rationale, actor=user, source=DecisionSource.BULK, scores=scores, now=now
    )


def _items_by_ids(scoped, ids: Sequence, *, apply_suggestions: bool, guard: SuggestionGuard) -> list[ItemFacts]:
    if not ids:
        raise TriageError({"ids": ["give at least one id"]})
    if len(ids) > MAX_BULK_ITEMS:
        raise TriageError(
            {"ids": [f"{len(ids):,} ids; at most {MAX_BULK_ITEMS:,} per request (split the request)"]}, too_many=True
        )
    valid = [item_id for item_id in ids if is_uuid(str(item_id))]
    found = {str(item.id): item for item in _facts(scoped.filter(pk__in=valid))}
    errors: dict[str, list[str]] = {}
    seen: set[str] = set()
    for index, item_id in enumerate(ids):
        key = str(item_id)
        item = found.get(key)
        if key in seen:
            errors[f"ids.{index}"] = [f"{key} is listed twice"]
        elif item is None:
            errors[f"ids.{index}"] = [f"no review item {key} in your teams"]
        elif item.status != ReviewStatus.PENDING:
            errors[f"ids.{index}"] = [f"{key} is already {item.status}; only pending items can be decided"]
        elif apply_suggestions and (reason := guard.why_not(item, severities=SUGGESTION_SEVERITIES)):
            errors[f"ids.{index}"] = [f"{key} {reason}"]
        seen.add(key)
    if errors:
        raise TriageError(errors)
    return [found[str(item_id)] for item_id in ids]


def _items_by_filter(scoped, filters, *, apply_suggestions: bool, guard: SuggestionGuard, now) -> list[ItemFacts]:
    from hitl.selectors import FilterError

    try:
        matching = review_items_matching(scoped, filters, now=now)
    except FilterError as exc:
        raise TriageError(exc.fields) from exc
    if apply_suggestions:
        matching = matching.filter(
            severity__in=SUGGESTION_SEVERITIES,
            assist_confidence__gte=guard.confidence_floor,
        ).exclude(suggested_decision="")
    items = [
        ItemFacts(*row)
        for row in matching.order_by("sla_due_at", "id").values_list(*ItemFacts._fields)[: MAX_BULK_ITEMS + 1]
    ]
    if len(items) > MAX_BULK_ITEMS:
        total = matching.count()
        raise TriageError({"filter": [f"matches {total:,} items; at most {MAX_BULK_ITEMS:,} per request (narrow it)"]})
    if not items:
        raise TriageError({"filter": ["matches no pending item you may decide"]})
    return items


def low_risk_items(*, user: User, guard: SuggestionGuard | None = None):
    """Pending low/info items the assist engine suggests approving, confidently, at low risk."""
    guard = guard or SuggestionGuard.from_config()
    return review_items_for_user(user=user).filter(
        status=ReviewStatus.PENDING,
        severity__in=LOW_RISK_SEVERITIES,
        suggested_decision=ReviewDecision.APPROVE,
        assist_confidence__gte=guard.confidence_floor,
        risk_score__lte=guard.max_risk_score,
    )


def review_items_clear_low_risk(*, user: User, rationale: str = "", now: datetime | None = None) -> DecideOutcome:
    """ "Clear Low Risk": approve every item :func:`low_risk_items` selects, in chunks of 1,000.

    Each chunk is its own all-or-nothing bulk decision (audited per item, source ``bulk``). Items
    without an assist suggestion are left alone: run auto-assist first.
    """
    guard = SuggestionGuard.from_config()
    rationale = rationale.strip() or (
        f"Clear Low Risk: low-severity item, auto-assist suggests approve with confidence ≥ "
        f"{guard.confidence_floor:g} and risk ≤ {guard.max_risk_score:g}"
    )
    decided, item_ids = 0, []
    while True:
        chunk = list(
            low_risk_items(user=user, guard=guard)
            .order_by("sla_due_at", "id")
            .values_list("id", flat=True)[:MAX_BULK_ITEMS]
        )
        if not chunk:
            break
        outcome = review_items_decide(
            decisions=dict.fromkeys(chunk, ReviewDecision.APPROVE),
            rationale=rationale,
            actor=user,
            source=DecisionSource.BULK,
            now=now,
        )
        decided += outcome.decided
        item_ids.extend(outcome.item_ids)
        if len(chunk) < MAX_BULK_ITEMS:
            break
    return DecideOutcome(decided=decided, by_decision={ReviewDecision.APPROVE.value: decided}, item_ids=item_ids)
