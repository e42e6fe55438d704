"""manage.py seed_backlog: the backlog mix, the decision history, idempotency, and the drain to < 50."""

from __future__ import annotations

from collections import Counter
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from governance.choices import AuditAction, Role
from governance.models import AuditLog
from hitl.models import AssistModel, Decision, DecisionSource, ReviewItem, ReviewStatus, ReviewType
from hitl.services.assist import review_items_assist
from hitl.services.backlog_seed import REVIEWER_USERNAME
from hitl.services.triage import review_items_bulk_decide, review_items_clear_low_risk
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def seed(*args: str) -> str:
    out = StringIO()
    call_command("seed_backlog", *args, stdout=out)
    return out.getvalue()


def test_seeding_creates_a_pending_mix_with_few_high_and_critical_items():
    output = seed("--pending", "546", "--history", "300", "--no-train")

    pending = ReviewItem.objects.filter(status=ReviewStatus.PENDING)
    by_severity = Counter(pending.values_list("severity", flat=True))
    assert pending.count() == 546
    assert (by_severity["critical"], by_severity["high"]) == (8, 30)
    assert by_severity["medium"] > 50 and by_severity["low"] > 50 and by_severity["info"] > 50
    # Every type but proactive risk reviews, which only predictions open.
    assert set(pending.values_list("review_type", flat=True)) == set(ReviewType.values) - {ReviewType.PROACTIVE_RISK}
    assert "pending items created: 546" in output
    assert pending.filter(sla_due_at__lt=timezone.now()).exists()  # a real backlog has overdue items


def test_pending_items_carry_context_like_the_oversight_engine_writes():
    seed("--pending", "60", "--history", "0", "--no-train")

    rate = ReviewItem.objects.filter(rule__startswith="rate:").first()
    assert {"rule", "signal", "category", "breaches", "min_breaches", "warning", "direction"} <= set(rate.context)
    assert rate.fingerprint and len(rate.fingerprint) == 64


def test_the_history_is_decided_by_a_reviewer_over_the_past_weeks():
    seed("--pending", "0", "--history", "300", "--no-train")

    decided = ReviewItem.objects.exclude(status=ReviewStatus.PENDING)
    assert decided.count() == 300
    assert set(decided.values_list("decision_source", flat=True)) == {DecisionSource.HUMAN}
    assert set(decided.values_list("decided_by__username", flat=True)) == {REVIEWER_USERNAME}
    decisions = Decision.objects.all()
    assert decisions.count() == 300
    assert set(decisions.values_list("source", "shadow").distinct()) == {(DecisionSource.HUMAN, False)}
    assert set(decisions.values_list("decision", flat=True)) == {"approve", "reject", "escalate"}
    now = timezone.now()
    oldest = min(decisions.values_list("decided_at", flat=True))
    assert (now - oldest).days >= 30
    assert max(decisions.values_list("decided_at", flat=True)) < now
    reviewer = decided.first().decided_by
    assert reviewer.groups.filter(name=Role.REVIEWER).exists()


def test_every_created_pending_item_is_audited_and_the_history_in_one_summary():
    seed("--pending", "40", "--history", "100", "--no-train")

    assert AuditLog.objects.filter(action=AuditAction.REVIEW_CREATED, actor="system:seed_backlog").count() == 40
    summary = AuditLog.objects.get(action=AuditAction.REVIEW_DECIDED)
    assert summary.data["seeded_history"] == 100


def test_running_it_again_creates_nothing_and_a_larger_count_tops_up():
    seed("--pending", "50", "--history", "120", "--no-train")
    first = set(ReviewItem.objects.values_list("id", flat=True))

    again = seed("--pending", "50", "--history", "120", "--no-train")
    assert set(ReviewItem.objects.values_list("id", flat=True)) == first
    assert "pending items created: 0" in again

    seed("--pending", "70", "--history", "120", "--no-train")
    assert ReviewItem.objects.filter(status=ReviewStatus.PENDING).count() == 70


def test_a_top_up_brings_its_share_of_serious_items_not_only_routine_ones():
    """Serious items are spread over the plan, not front-loaded: after people worked through a seeded
    backlog, topping it up again (a second `make demo` on the same database) gives them serious work too."""
    seed("--pending", "143", "--history", "120", "--no-train")
    admin = UserFactory(username="ops-admin", roles=[Role.ADMIN])
    ids = list(ReviewItem.objects.filter(status=ReviewStatus.PENDING).values_list("id", flat=True))
    review_items_bulk_decide(user=admin, rationale="worked through", ids=ids, decision="approve")

    seed("--pending", "286", "--history", "120", "--no-train")

    added = Counter(ReviewItem.objects.filter(status=ReviewStatus.PENDING).values_list("severity", flat=True))
    assert sum(added.values()) == 143
    assert added["critical"] >= 1 and added["high"] >= 4


def test_the_same_seed_plans_the_same_backlog():
    seed("--pending", "30", "--history", "50", "--seed", "7", "--no-train")
    first = sorted(ReviewItem.objects.values_list("title", "severity", "decision"))
    ReviewItem.objects.all().delete()

    seed("--pending", "30", "--history", "50", "--seed", "7", "--no-train")

    assert sorted(ReviewItem.objects.values_list("title", "severity", "decision")) == first


def test_seeding_trains_the_assist_model_on_the_history_and_not_again_without_new_history():
    output = seed("--pending", "0", "--history", "400")
    assert "assist model: trained v1" in output

    again = seed("--pending", "0", "--history", "400")
    assert "the active model stays" in again
    assert AssistModel.objects.count() == 1


def test_assist_then_an_approve_policy_then_clear_low_risk_bring_the_backlog_below_50():
    seed("--pending", "546", "--history", "1500")
    admin = UserFactory(username="ops-admin", roles=[Role.ADMIN])

    assisted = review_items_assist(limit=1000)
    # What an enabled "approve routine low/medium alert triage at risk ≤ 30" policy decides.
    policy_like = review_items_bulk_decide(
        user=admin,
        rationale="routine triage policy",
        filters={
            "severity": ["low", "medium"],
            "review_type": [ReviewType.ALERT_TRIAGE],
            "suggestion": ["approve"],
            "max_risk_score": 30,
            "min_confidence": 0.9,
        },
        decision="approve",
    )
    cleared = review_items_clear_low_risk(user=admin)

    pending = ReviewItem.objects.filter(status=ReviewStatus.PENDING)
    assert assisted.assisted == 546
    assert pending.count() < 50
    assert pending.filter(severity__in=["critical", "high"]).count() == 38  # every one still waits for a human
    automatic = policy_like.decided + cleared.decided
    assert automatic >= 497
    assert AuditLog.objects.filter(action=AuditAction.REVIEW_DECIDED, actor="ops-admin").count() == automatic
