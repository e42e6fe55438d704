"""Auto-assist followed by the auto-approval policies: what the beat, the API and the admin run.

The issue asks for policies to be applied "when a new assist result lands"; doing both steps here, in
this order, keeps that promise in one place instead of in every caller.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from governance.models import User
from hitl.models import AutoApprovalPolicy, ReviewItem
from hitl.selectors import BacklogHealth, backlog_health
from hitl.services.assist import AssistRunOutcome, review_items_assist
from hitl.services.auto_approval import AutoApprovalOutcome, auto_approval_apply
from hitl.services.policies import auto_approval_policy_create, auto_approval_policy_set_enabled
from hitl.services.triage import review_items_clear_low_risk


@dataclass(frozen=True)
class AutomationOutcome:
    assist: AssistRunOutcome
    approval: AutoApprovalOutcome


def review_items_assist_and_apply(
    *,
    item_ids: Sequence | None = None,
    limit: int = 1000,
    actor: Any = None,
    now: datetime | None = None,
) -> AutomationOutcome:
    """Assist the given pending items (or the oldest unassisted ones, up to ``limit``), then apply every
    enabled or shadow auto-approval policy to exactly the items just assisted.

    The two steps commit separately: suggestions are worth keeping even if a policy run fails, and the
    beat's ``hitl.apply_auto_approval`` retries the policies on its next tick.
    """
    assist = review_items_assist(item_ids=item_ids, limit=limit, actor=actor, now=now)
    approval = auto_approval_apply(item_ids=assist.item_ids, now=now)
    return AutomationOutcome(assist=assist, approval=approval)


ROUTINE_POLICY_NAME = "Routine low/medium alert triage"
ROUTINE_POLICY = {
    "policy_name": ROUTINE_POLICY_NAME,
    "severity_filter": ["low", "medium"],
    "review_type_filter": ["alert_triage"],
    "max_risk_score": 30,
    "auto_action": "approve",
    "description": (
        "Approves low and medium alert-triage items the assist engine confidently suggests approving at low "
        "risk: recurring, known-benign signals people approve as a matter of course."
    ),
}


def routine_policy_ensure(*, actor: Any) -> tuple[AutoApprovalPolicy, bool]:
    """The demo's standard approve policy, created disabled if missing (policies start disabled; an
    admin enables them). Returns (policy, created)."""
    existing = AutoApprovalPolicy.objects.filter(policy_name=ROUTINE_POLICY_NAME).first()
    if existing is not None:
        return existing, False
    return auto_approval_policy_create(actor=actor, data=ROUTINE_POLICY), True


@dataclass(frozen=True)
class BacklogTriageReport:
    before: BacklogHealth
    after: BacklogHealth
    assisted: int
    auto_decided: int
    shadow: int
    spot_checks: int
    cleared_low_risk: int
    enabled_policies: list[str]
    high_critical_pending: int


def backlog_triage_run(
    *,
    user: User,
    enable_policies: Sequence[str] = (),
    clear_low_risk: bool = False,
    max_items: int = 100_000,
) -> BacklogTriageReport:
    """The plan's backlog scenario in one call: assist every pending unassisted item (in chunks of
    1,000), enable the named policies (as ``user``: only admins may), apply every enabled policy, then
    optionally "Clear Low Risk" as ``user``. Each step is the same service the beat, the API and the
    admin use, so everything it decides is audited the same way. High and critical items are never
    decided here: policies and Clear Low Risk refuse them."""
    before = backlog_health(queryset=ReviewItem.objects.all())
    assisted = 0
    while assisted < max_items:
        outcome = review_items_assist(limit=1000, actor=user)
        assisted += outcome.assisted
        if outcome.assisted < 1000:
            break
    enabled = []
    for name in enable_policies:
        policy = AutoApprovalPolicy.objects.get(policy_name=name)
        auto_approval_policy_set_enabled(policy=policy, enabled=True, actor=user, reason="backlog triage run")
        enabled.append(name)
    approval = auto_approval_apply()
    cleared = review_items_clear_low_risk(user=user).decided if clear_low_risk else 0
    after = backlog_health(queryset=ReviewItem.objects.all())
    return BacklogTriageReport(
        before=before,
        after=after,
        assisted=assisted,
        auto_decided=approval.decided,
        shadow=approval.shadow,
        spot_checks=approval.spot_checks,
        cleared_low_risk=cleared,
        enabled_policies=enabled,
        high_critical_pending=after.pending_by_severity["high"] + after.pending_by_severity["critical"],
    )
