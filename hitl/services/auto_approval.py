"""Applying auto-approval policies, shadow mode, spot checks and the automation-bias monitor.

An item is decided without a human only when an enabled policy matches it and the assist suggestion
clears the configured guard rails (``hitl.auto_approval``); high and critical items never are, whatever
a policy says. Every automatic decision goes through :func:`hitl.services.decisions.review_items_decide`
(guarded, audited per item, naming the policy). A configured share of them is sampled for a human
spot check; a policy whose spot-check agreement falls below the floor disables itself.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from config import registry
from governance.choices import AuditAction, Role
from governance.selectors import as_uuid
from governance.services.audit import audit_record
from governance.services.errors import InvalidFields
from governance.services.locks import lock_systems
from hitl.models import (
    AutoApprovalPolicy,
    Decision,
    DecisionSource,
    ReviewDecision,
    ReviewItem,
    ReviewStatus,
    SpotCheck,
    SpotCheckStatus,
)
from hitl.services.decisions import clean_rationale, normalize_decision, review_items_decide
from hitl.services.policies import auto_approval_policy_set_enabled, policy_audit_ref
from hitl.services.triage import MAX_BULK_ITEMS, SUGGESTION_SEVERITIES, SuggestionGuard
from incidents.services.intake import incidents_open_or_join_for_reviews

AUTOMATION_BIAS_MONITOR = "automation_bias_monitor"
# Roles whose verdict on an automatic decision counts (the ones that may decide review items).
SPOT_CHECK_ROLES = (Role.ADMIN, Role.GOVERNANCE_LEAD, Role.REVIEWER)


@dataclass(frozen=True)
class AutoApprovalGuard(SuggestionGuard):
    """The global guard rails every policy is held to (``hitl.auto_approval``), spot-check rate included."""

    spot_check_rate: float

    def risk_ceiling(self, policy: AutoApprovalPolicy) -> float:
        """The configured ceiling is global: a policy may be stricter, never looser."""
        return min(policy.max_risk_score, self.max_risk_score)


@dataclass(frozen=True)
class AutoApprovalOutcome:
    decided: int
    # shadow Decision rows this run submitted (a concurrent run's duplicates are dropped by the constraint)
    shadow: int
    spot_checks: int
    # policy name -> items it decided (live) or would have decided (shadow) in this run
    by_policy: dict[str, int] = field(default_factory=dict)


def auto_approval_policy_matches(
    *, policy: AutoApprovalPolicy, guard: AutoApprovalGuard | None = None
) -> QuerySet[ReviewItem]:
    """Pending items ``policy`` would decide now: one SQL filter, whatever the queue size.

    Matching: severity in the policy's filter (empty: medium, low or info; high and critical never,
    even if a policy row names them), review type in its filter (empty: any), the policy's team (empty:
    any), an assist suggestion equal to the policy's action with confidence ≥ the configured floor and
    risk ≤ the lower of the policy's and the configured ceiling.
    """
    guard = guard or AutoApprovalGuard.from_config()
    allowed = [s for s in (policy.severity_filter or SUGGESTION_SEVERITIES) if s in SUGGESTION_SEVERITIES]
    if not allowed:  # a filter naming only high/critical (written around the validator) matches nothing
        return ReviewItem.objects.none()
    q = Q(
        status=ReviewStatus.PENDING,
        severity__in=allowed,
        suggested_decision=policy.auto_action,
        assist_confidence__gte=guard.confidence_floor,
        risk_score__lte=guard.risk_ceiling(policy),
    )
    if policy.review_type_filter:
        q &= Q(review_type__in=policy.review_type_filter)
    if policy.team_id:
        q &= Q(system__team_id=policy.team_id)
    return ReviewItem.objects.filter(q)


def auto_approval_apply(*, item_ids: Sequence | None = None, now: datetime | None = None) -> AutoApprovalOutcome:
    """Apply every enabled or shadow policy to pending, assisted items: the given ids, or all when None
    (an empty sequence means none).

    Shadow policies run first and only add ``Decision(shadow=True)`` rows (one per policy and item at
    most, existing ones skipped), so they see every candidate. Then enabled, non-shadow policies in
    ``policy_name`` order decide: the first one matching an item decides it, in chunks of ≤ 1,000, each
    chunk one transaction that takes the per-system locks, re-checks the match under row locks, decides
    through ``review_items_decide`` (audit entries name the policy) and creates the chunk's spot checks.
    Idempotent: a second run finds nothing pending that it has not already handled.
    """
    now = now or timezone.now()
    policies = list(AutoApprovalPolicy.objects.filter(Q(enabled=True) | Q(shadow_mode=True)).order_by("policy_name"))
    if item_ids is None:
        scopes = [Q()]
    else:
        ids = list(dict.fromkeys(as_uuid(item_id) for item_id in item_ids))
        scopes = [Q(pk__in=ids[i : i + MAX_BULK_ITEMS]) for i in range(0, len(ids), MAX_BULK_ITEMS)]
    if not policies or not scopes:
        return AutoApprovalOutcome(decided=0, shadow=0, spot_checks=0)
    guard = AutoApprovalGuard.from_config()
    shadow_policies = [p for p in policies if p.shadow_mode]
    live_policies = [p for p in policies if not p.shadow_mode]
    recently_checked = _policies_spot_checked_since(live_policies, now=now)
    by_policy: Counter[str] = Counter()
    decided = shadow = spot_checks = 0
    for scope in scopes:
        for policy in shadow_policies:
            recorded = _record_shadow_decisions(policy=policy, guard=guard, scope=scope, now=now)
            shadow += recorded
            by_policy[policy.policy_name] += recorded
        for policy in live_policies:
            while True:
                chunk = list(
                    auto_approval_policy_matches(policy=policy, guard=guard)
                    .filter(scope)
                    .order_by("sla_due_at", "id")
                    .values_list("id", flat=True)[:MAX_BULK_ITEMS]
                )
                if not chunk:
                    break
                chunk_decided, chunk_checks = _decide_chunk(
                    policy=policy, guard=guard, ids=chunk, now=now, recently_checked=recently_checked
                )
                decided += chunk_decided
                spot_checks += chunk_checks
                by_policy[policy.policy_name] += chunk_decided
                # Fewer than a full chunk: done. Nothing decided: others took them; the next tick retries.
                if len(chunk) < MAX_BULK_ITEMS or chunk_decided == 0:
                    break
    return AutoApprovalOutcome(
        decided=decided, shadow=shadow, spot_checks=spot_checks, by_policy={k: v for k, v in by_policy.items() if v}
    )


def _record_shadow_decisions(*, policy: AutoApprovalPolicy, guard: AutoApprovalGuard, scope: Q, now: datetime) -> int:
    """What ``policy`` would decide, as shadow ``Decision`` rows; items it already proposed are skipped."""
    already = Decision.objects.filter(item=OuterRef("pk"), policy=policy, shadow=True)
    rationale = _rationale(policy, guard, prefix="Shadow mode, nothing changed: ")
    recorded = 0
    while True:
        rows = list(
            auto_approval_policy_matches(policy=policy, guard=guard)
            .filter(scope)
            .filter(~Exists(already))
            .order_by("sla_due_at", "id")
            .values_list("id", "assist_confidence", "risk_score")[:MAX_BULK_ITEMS]
        )
        if not rows:
            return recorded
        # ignore_conflicts: a concurrent run may have proposed the same item (the partial unique constraint).
        Decision.objects.bulk_create(
            [
                Decision(
                    item_id=item_id,
                    decision=policy.auto_action,
                    source=DecisionSource.AUTO_POLICY,
                    policy=policy,
                    rationale=rationale,
                    shadow=True,
                    confidence=confidence,
                    risk_score=risk,
                    decided_at=now,
                )
                for item_id, confidence, risk in rows
            ],
            ignore_conflicts=True,
        )
        recorded += len(rows)
        if len(rows) < MAX_BULK_ITEMS:
            return recorded


def _rationale(policy: AutoApprovalPolicy, guard: AutoApprovalGuard, *, prefix: str = "") -> str:
    return (
        f"{prefix}Auto-approval policy {policy.policy_name!r}: auto-assist suggests {policy.auto_action} "
        f"with confidence ≥ {guard.confidence_floor:g} and risk score ≤ {guard.risk_ceiling(policy):g}"
    )


def _decide_chunk(
    *, policy: AutoApprovalPolicy, guard: AutoApprovalGuard, ids: list, now: datetime, recently_checked: set
) -> tuple[int, int]:
    """Decide one chunk for ``policy`` and sample its spot checks, all in one transaction."""
    with transaction.atomic():
        # Systems first, then rows (the order every writer uses). Re-checking the match under the row
        # locks drops items decided or re-assisted since the chunk was read.
        lock_systems(ReviewItem.objects.filter(pk__in=ids).values_list("system_id", flat=True).distinct())
        locked = auto_approval_policy_matches(policy=policy, guard=guard).filter(pk__in=ids)
        if connection.features.has_select_for_update_of:
            locked = locked.select_for_update(of=("self",))
        scores = {
            item_id: (confidence, risk)
            for item_id, confidence, risk in locked.values_list("id", "assist_confidence", "risk_score")
        }
        if not scores:
            return 0, 0
        outcome = review_items_decide(
            decisions=dict.fromkeys(scores, policy.auto_action),
            rationale=_rationale(policy, guard),
            actor=None,
            source=DecisionSource.AUTO_POLICY,
            policy=policy,
            scores=scores,
            now=now,
        )
        sampled = [item_id for item_id in outcome.item_ids if spot_check_sampled(item_id, guard.spot_check_rate)]
        if not sampled and guard.spot_check_rate > 0 and policy.id not in recently_checked:
            # A policy never runs a whole window unwatched: take the item that sampling would take first.
            sampled = [min(outcome.item_ids, key=spot_check_sample_point)]
        if sampled:
            SpotCheck.objects.bulk_create(
                [SpotCheck(item_id=item_id, policy=policy, auto_decision=policy.auto_action) for item_id in sampled]
            )
            recently_checked.add(policy.id)
    return outcome.decided, len(sampled)


def _policies_spot_checked_since(policies: Iterable[AutoApprovalPolicy], *, now: datetime) -> set:
    """Ids of the policies with a spot check created within the automation-bias window (one query)."""
    window_days = registry.get("hitl.automation_bias")["window_days"]
    return set(
        SpotCheck.objects.filter(
            policy_id__in=[p.id for p in policies], created_at__gte=now - timedelta(days=window_days)
        )
        .values_list("policy_id", flat=True)
        .distinct()
    )


def spot_check_sample_point(item_id: Any) -> float:
    """A stable point in [0, 1) for an item: sha256 of its id, so sampling is the same on every run."""
    digest = hashlib.sha256(str(item_id).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def spot_check_sampled(item_id: Any, rate: float) -> bool:
    """Whether an automatically decided item goes to a human spot check at sampling ``rate`` (0–1)."""
    if rate <= 0:
        return False
    return rate >= 1 or spot_check_sample_point(item_id) < rate


class SpotCheckMissing(LookupError):
    """No spot check with that id (→ 404)."""


class SpotCheckNotPending(Exception):
    """The spot check already has a verdict (→ 409); nothing was changed."""

    def __init__(self, status: str):
        self.status = status
        super().__init__(f"this spot check is already {status}; only pending spot checks take a verdict")


class SpotCheckInvalid(InvalidFields):
    """A bad verdict (→ 400); ``fields`` names ``decision`` or ``rationale``."""


class SpotCheckPermissionDenied(PermissionError):
    """Only an admin, governance lead or reviewer of the item's team gives a spot-check verdict (→ 403)."""


def spot_check_record(*, spot_check_id: Any, decision: str, rationale: str, reviewer: Any) -> SpotCheck:
    """Record a human's verdict on an automatically decided item, then run the automation-bias check
    for its policy.

    ``agreed`` when the human's decision equals the policy's, ``disagreed`` otherwise: the item keeps the
    policy's outcome as history, the human's decision is recorded as a human ``Decision``, and a human
    escalation opens or joins an incident now (see ``_act_on_disagreement``). The reviewer must be a
    person with the admin role, or the governance-lead or reviewer role in the item's team. A guarded
    update (``WHERE status = 'pending'``): a second verdict raises ``SpotCheckNotPending`` and changes
    nothing. Audits ``spot_check.recorded`` naming the policy; the verdict, its audit entry and any
    resulting self-disable commit together.
    """
    errors: dict[str, list[str]] = {}
    try:
        human_decision = normalize_decision(decision)
    except ValueError as exc:
        errors["decision"] = [str(exc)]
    try:
        rationale = clean_rationale(rationale)
    except ValueError as exc:
        errors["rationale"] = [str(exc)]
    if errors:
        raise SpotCheckInvalid(errors)
    try:
        key = as_uuid(spot_check_id)
    except ValueError:
        raise SpotCheckMissing(f"no spot check {spot_check_id}") from None
    check = SpotCheck.objects.select_related("policy", "item__system").filter(pk=key).first()
    if check is None:
        raise SpotCheckMissing(f"no spot check {spot_check_id}")
    _require_may_spot_check(reviewer, team_id=check.item.system.team_id)
    now = timezone.now()
    verdict = SpotCheckStatus.AGREED if human_decision == check.auto_decision else SpotCheckStatus.DISAGREED
    with transaction.atomic():
        if verdict == SpotCheckStatus.DISAGREED and human_decision == ReviewDecision.ESCALATE:
            lock_systems([check.item.system_id])  # before any row lock: the oversight engine's order
        changed = SpotCheck.objects.filter(pk=key, status=SpotCheckStatus.PENDING).update(
            status=verdict,
            human_decision=human_decision,
            reviewer=reviewer,
            rationale=rationale,
            checked_at=now,
            updated_at=now,
        )
        if not changed:
            raise SpotCheckNotPending(SpotCheck.objects.filter(pk=key).values_list("status", flat=True).first())
        audit_record(
            action=AuditAction.SPOT_CHECK_RECORDED,
            actor=reviewer,
            target=check,
            data={
                "policy": policy_audit_ref(check.policy),
                "item": str(check.item_id),
                "auto_decision": check.auto_decision,
                "human_decision": str(human_decision),
                "verdict": str(verdict),
                "rationale": rationale[:500],
            },
        )
        if verdict == SpotCheckStatus.DISAGREED:
            _act_on_disagreement(check=check, human_decision=human_decision, rationale=rationale,
                                 reviewer=reviewer, now=now)  # fmt: skip
        automation_bias_check(policy_ids=[check.policy_id], now=now)
    return SpotCheck.objects.select_related("policy", "item", "reviewer").get(pk=key)


def _act_on_disagreement(*, check: SpotCheck, human_decision: str, rationale: str, reviewer: Any, now) -> None:
    """A human overruled a policy. Their decision is recorded as a human ``Decision`` on the item (the
    assist model learns from it; the item keeps the policy's outcome as history), and when they would
    have escalated, the item is escalated now: an incident is opened or joined and named on the spot
    check, so a wrong automatic approval of something serious still reaches incident response."""
    Decision.objects.create(
        item=check.item,
        decision=human_decision,
        source=DecisionSource.HUMAN,
        actor=reviewer,
        rationale=f"Spot check overruled policy {check.policy.policy_name!r}: {rationale}"[:5000],
        decided_at=now,
    )
    if human_decision != ReviewDecision.ESCALATE:
        return
    incident = incidents_open_or_join_for_reviews(items=[check.item], actor=reviewer, now=now)[check.item_id]
    SpotCheck.objects.filter(pk=check.pk).update(escalated_incident=incident, updated_at=now)


def _require_may_spot_check(reviewer: Any, *, team_id: Any) -> None:
    if (
        not getattr(reviewer, "is_authenticated", False)
        or getattr(reviewer, "is_service_account", False)
        or not reviewer.has_role(*SPOT_CHECK_ROLES)
    ):
        raise SpotCheckPermissionDenied("only admins, governance leads and reviewers give spot-check verdicts")
    if not reviewer.is_admin_role and not reviewer.teams.filter(pk=team_id).exists():
        raise SpotCheckPermissionDenied("spot checks are reviewed by the item's team")


@dataclass(frozen=True)
class PolicyAgreement:
    """How often humans agreed with a policy's automatic decisions over the monitor's window."""

    checked: int
    agreed: int
    disagreed: int
    pending: int
    rate: float | None
    window_days: int
    min_spot_checks: int
    judged: bool  # enough verdicts in the window for the monitor to act on the rate


def policy_agreement(*, policy_ids: Sequence | None = None, now: datetime | None = None) -> dict[Any, PolicyAgreement]:
    """Spot-check agreement per policy (every policy, or ``policy_ids``), in one aggregate query.

    Verdicts count when given within the last ``hitl.automation_bias.window_days`` up to ``now``;
    ``pending`` counts every spot check still awaiting a verdict. ``rate`` is agreed / checked (None
    with no verdicts); ``judged`` once there are ≥ ``min_spot_checks`` verdicts.
    """
    now = now or timezone.now()
    settings = registry.get("hitl.automation_bias")
    window_days, min_spot_checks = settings["window_days"], settings["min_spot_checks"]
    in_window = Q(spot_checks__checked_at__gte=now - timedelta(days=window_days), spot_checks__checked_at__lte=now)
    rows = AutoApprovalPolicy.objects.annotate(
        agreed=Count("spot_checks", filter=in_window & Q(spot_checks__status=SpotCheckStatus.AGREED)),
        disagreed=Count("spot_checks", filter=in_window & Q(spot_checks__status=SpotCheckStatus.DISAGREED)),
        pending=Count("spot_checks", filter=Q(spot_checks__status=SpotCheckStatus.PENDING)),
    ).order_by()
    if policy_ids is not None:
        rows = rows.filter(pk__in=list(policy_ids))
    agreements = {}
    for policy_id, agreed, disagreed, pending in rows.values_list("id", "agreed", "disagreed", "pending"):
        checked = agreed + disagreed
        agreements[policy_id] = PolicyAgreement(
            checked=checked,
            agreed=agreed,
            disagreed=disagreed,
            pending=pending,
            rate=agreed / checked if checked else None,
            window_days=window_days,
            min_spot_checks=min_spot_checks,
            judged=checked >= min_spot_checks,
        )
    return agreements


def automation_bias_check(
    *, policy_ids: Sequence | None = None, now: datetime | None = None
) -> list[AutoApprovalPolicy]:
    """Disable every enabled policy (or those of ``policy_ids``) judged on enough spot checks whose
    agreement is below ``hitl.auto_approval.agreement_floor``; returns the policies it disabled.

    Each disable is :func:`auto_approval_policy_set_enabled` by ``"automation_bias_monitor"``: guarded,
    audited (``auto_approval_policy.disabled``, the reason naming agreement, floor and sample size).
    Idempotent: a policy already disabled is left alone. A policy an admin re-enables is judged on the
    same window, so it stays enabled only once recent verdicts clear the floor.
    """
    now = now or timezone.now()
    floor = registry.get("hitl.auto_approval")["agreement_floor"]
    failing = {
        policy_id: agreement
        for policy_id, agreement in policy_agreement(policy_ids=policy_ids, now=now).items()
        if agreement.judged and agreement.rate is not None and agreement.rate < floor
    }
    disabled = []
    # A handful of policies at most: each is its own guarded, audited switch.
    for policy in AutoApprovalPolicy.objects.filter(pk__in=list(failing), enabled=True).order_by("policy_name"):
        agreement = failing[policy.id]
        reason = (
            f"automation-bias monitor: spot-check agreement {agreement.rate:.0%} "
            f"({agreement.agreed} of {agreement.checked} verdicts in the last {agreement.window_days} days) "
            f"is below the floor {floor:.0%}"
        )
        details = {
            "agreement": agreement.rate,
            "agreed": agreement.agreed,
            "checked": agreement.checked,
            "floor": floor,
            "window_days": agreement.window_days,
        }
        if auto_approval_policy_set_enabled(
            policy=policy, enabled=False, actor=AUTOMATION_BIAS_MONITOR, reason=reason, details=details
        ):
            disabled.append(policy)
    return disabled
