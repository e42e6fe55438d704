"""Auto-assist followed by the auto-approval policies: what the beat, the API and the admin run.

The issue asks for policies to be applied "when a new assist result lands"; doing both steps here, in
this order, keeps that promise in one place instead of in every caller.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hitl.services.assist import AssistRunOutcome, review_items_assist
from hitl.services.auto_approval import AutoApprovalOutcome, auto_approval_apply


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
