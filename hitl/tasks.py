"""Thin Celery tasks of the review queue (queue ``assist``): each calls a service."""

from __future__ import annotations

from governance.services.locks import single_flight
from hitl.services import assist, auto_approval, automation
from tasks.base import vigil_task

# One beat tick assists at most this many chunks of 1,000; the next tick continues (bounded run time).
MAX_CHUNKS_PER_TICK = 20


@vigil_task(name="hitl.assist_pending")
def assist_pending() -> dict:
    """Beat (1 min): suggest decisions for pending items never assisted, then apply the policies to
    them. Single-flight across workers (two overlapping ticks would assist the same items twice)."""
    with single_flight("hitl.assist_pending") as acquired:
        if not acquired:
            return {"skipped": "another run is in progress"}
        assisted = decided = 0
        for _ in range(MAX_CHUNKS_PER_TICK):
            outcome = automation.review_items_assist_and_apply(limit=1000)
            assisted += outcome.assist.assisted
            decided += outcome.approval.decided
            if outcome.assist.assisted < 1000:
                break
        return {"assisted": assisted, "auto_decided": decided}


@vigil_task(name="hitl.assist_items")
def assist_items(item_ids: list[str]) -> dict:
    """On demand: assist these pending items (≤ 1,000) and apply the policies to them."""
    outcome = automation.review_items_assist_and_apply(item_ids=item_ids, limit=len(item_ids))
    return {"assisted": outcome.assist.assisted, "auto_decided": outcome.approval.decided}


@vigil_task(name="hitl.apply_auto_approval")
def apply_auto_approval() -> dict:
    """Beat (1 min): apply enabled and shadow policies to assisted pending items (idempotent), then
    let the automation-bias monitor disable any policy whose spot-check agreement fell too low."""
    with single_flight("hitl.apply_auto_approval") as acquired:
        if not acquired:
            return {"skipped": "another run is in progress"}
        outcome = auto_approval.auto_approval_apply()
        disabled = auto_approval.automation_bias_check()
        return {"decided": outcome.decided, "shadow": outcome.shadow, "disabled_policies": len(disabled)}


@vigil_task(name="hitl.train_assist_model")
def train_assist_model() -> dict:
    """Beat (daily) and on demand: retrain the assist model on recent human decisions."""
    outcome = assist.assist_model_train(actor="hitl.train_assist_model")
    return {"version": outcome.model.version if outcome.model else None, "reason": outcome.reason}
