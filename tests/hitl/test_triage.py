"""Bulk triage: ids or a filter, ≤ 1,000, all or nothing, apply suggestions, Clear Low Risk."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from governance.choices import AuditAction, Role, Severity
from governance.models import AuditLog
from hitl.models import Decision, DecisionSource, ReviewDecision, ReviewItem, ReviewStatus
from hitl.services.triage import MAX_BULK_ITEMS, TriageError, review_items_bulk_decide, review_items_clear_low_risk
from tests.hitl.factories import ReviewItemFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def reviewer(make_user, team):
    return make_user(Role.REVIEWER, teams=[team], username="rita")


def pending_ids():
    return set(ReviewItem.objects.filter(status=ReviewStatus.PENDING).values_list("id", flat=True))


def test_bulk_approve_by_ids_decides_each_item_and_audits_each_one(own_system, reviewer):
    items = ReviewItemFactory.create_batch(4, system=own_system)

    outcome = review_items_bulk_decide(
        user=reviewer, ids=[str(i.id) for i in items], decision="approve", rationale="weekly drift review"
    )

    assert outcome.decided == 4
    assert outcome.by_decision == {"approve": 4}
    assert not pending_ids()
    assert set(ReviewItem.objects.values_list("decision_source", flat=True)) == {DecisionSource.BULK}
    assert AuditLog.objects.filter(action=AuditAction.REVIEW_DECIDED).count() == 4


def test_one_decided_item_in_the_ids_fails_the_whole_request_and_names_it(own_system, reviewer):
    items = ReviewItemFactory.create_batch(3, system=own_system)
    done = ReviewItemFactory(system=own_system, decided=True)
    ids = [str(items[0].id), str(done.id), str(items[1].id)]

    with pytest.raises(TriageError) as raised:
        review_items_bulk_decide(user=reviewer, ids=ids, decision="reject", rationale="noise")

    assert list(raised.value.fields) == ["ids.1"]
    assert "approved" in raised.value.fields["ids.1"][0]
    assert pending_ids() == {i.id for i in items}


def test_items_of_another_team_are_named_as_not_found(own_system, foreign_system, reviewer):
    mine = ReviewItemFactory(system=own_system)
    theirs = ReviewItemFactory(system=foreign_system)

    with pytest.raises(TriageError) as raised:
        review_items_bulk_decide(user=reviewer, ids=[mine.id, theirs.id], decision="approve", rationale="x")

    assert "no review item" in raised.value.fields["ids.1"][0]
    assert mine.id in pending_ids()


def test_more_than_a_thousand_ids_are_refused_as_too_many(reviewer):
    ids = [f"00000000-0000-0000-0000-{n:012d}" for n in range(MAX_BULK_ITEMS + 1)]

    with pytest.raises(TriageError) as raised:
        review_items_bulk_decide(user=reviewer, ids=ids, decision="approve", rationale="x")

    assert raised.value.too_many


def test_a_missing_rationale_and_decision_are_both_named(own_system, reviewer):
    item = ReviewItemFactory(system=own_system)

    with pytest.raises(TriageError) as raised:
        review_items_bulk_decide(user=reviewer, ids=[item.id], decision=None, rationale=" ")

    assert {"rationale", "decision"} <= set(raised.value.fields)


def test_a_filter_selects_only_matching_pending_items_of_the_callers_teams(own_system, foreign_system, reviewer):
    low = ReviewItemFactory.create_batch(2, system=own_system, severity=Severity.LOW)
    medium = ReviewItemFactory(system=own_system, severity=Severity.MEDIUM)
    foreign_low = ReviewItemFactory(system=foreign_system, severity=Severity.LOW)

    outcome = review_items_bulk_decide(
        user=reviewer, filters={"severity": ["low"]}, decision="reject", rationale="known noisy rule"
    )

    assert set(outcome.item_ids) == {i.id for i in low}
    assert pending_ids() == {medium.id, foreign_low.id}


def test_a_filter_with_an_unknown_key_or_value_is_named(reviewer):
    with pytest.raises(TriageError) as raised:
        review_items_bulk_decide(
            user=reviewer, filters={"severity": ["urgent"], "colour": "red"}, decision="approve", rationale="x"
        )

    assert {"filter.severity", "filter.colour"} == set(raised.value.fields)


def test_a_filter_matching_nothing_is_an_error_not_a_silent_success(own_system, reviewer):
    ReviewItemFactory(system=own_system, severity=Severity.MEDIUM)

    with pytest.raises(TriageError, match="matches no pending item"):
        review_items_bulk_decide(user=reviewer, filters={"severity": "low"}, decision="approve", rationale="x")


def test_sla_breached_filter_picks_overdue_items(own_system, reviewer):
    overdue = ReviewItemFactory(system=own_system, sla_due_at=timezone.now() - timedelta(hours=1))
    ReviewItemFactory(system=own_system)

    outcome = review_items_bulk_decide(
        user=reviewer, filters={"sla_breached": True}, decision="escalate", rationale="overdue, escalate"
    )

    assert outcome.item_ids == [overdue.id]


def test_apply_suggestions_takes_each_items_own_suggestion(own_system, reviewer):
    approve = ReviewItemFactory(system=own_system, assisted=True)
    reject = ReviewItemFactory(
        system=own_system, assisted=True, suggested_decision=ReviewDecision.REJECT, severity=Severity.LOW
    )

    outcome = review_items_bulk_decide(
        user=reviewer, ids=[approve.id, reject.id], apply_suggestions=True, rationale="assist agrees with me"
    )

    assert outcome.by_decision == {"approve": 1, "reject": 1}
    assert Decision.objects.get(item=approve).confidence == 0.97


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"severity": Severity.HIGH}, "needs a human"),
        ({"assist_confidence": 0.5}, "below the floor"),
        ({"suggested_decision": "", "assist_confidence": None}, "no auto-assist suggestion"),
    ],
)
def test_apply_suggestions_refuses_items_a_human_must_decide(own_system, reviewer, overrides, reason):
    item = ReviewItemFactory(system=own_system, assisted=True, **overrides)

    with pytest.raises(TriageError) as raised:
        review_items_bulk_decide(user=reviewer, ids=[item.id], apply_suggestions=True, rationale="x")

    assert reason in raised.value.fields["ids.0"][0]
    assert item.id in pending_ids()


def test_apply_suggestions_by_filter_skips_high_severity_and_unconfident_items(own_system, reviewer):
    eligible = ReviewItemFactory(system=own_system, assisted=True)
    high = ReviewItemFactory(system=own_system, assisted=True, severity=Severity.CRITICAL)
    unsure = ReviewItemFactory(system=own_system, assisted=True, assist_confidence=0.6)

    outcome = review_items_bulk_decide(
        user=reviewer, filters={"status": "pending"}, apply_suggestions=True, rationale="suggestions"
    )

    assert outcome.item_ids == [eligible.id]
    assert pending_ids() == {high.id, unsure.id}


def test_a_decision_with_apply_suggestions_is_contradictory(own_system, reviewer):
    item = ReviewItemFactory(system=own_system, assisted=True)

    with pytest.raises(TriageError) as raised:
        review_items_bulk_decide(
            user=reviewer, ids=[item.id], decision="approve", apply_suggestions=True, rationale="x"
        )

    assert "decision" in raised.value.fields


def test_clear_low_risk_approves_only_confident_low_risk_low_severity_items(own_system, reviewer):
    clear = ReviewItemFactory.create_batch(3, system=own_system, assisted=True, severity=Severity.LOW)
    medium = ReviewItemFactory(system=own_system, assisted=True, severity=Severity.MEDIUM)
    risky = ReviewItemFactory(system=own_system, assisted=True, severity=Severity.LOW, risk_score=55)
    reject = ReviewItemFactory(
        system=own_system, assisted=True, severity=Severity.LOW, suggested_decision=ReviewDecision.REJECT
    )
    unassisted = ReviewItemFactory(system=own_system, severity=Severity.LOW)

    outcome = review_items_clear_low_risk(user=reviewer)

    assert set(outcome.item_ids) == {i.id for i in clear}
    assert pending_ids() == {medium.id, risky.id, reject.id, unassisted.id}
    item = ReviewItem.objects.get(pk=clear[0].id)
    assert item.rationale.startswith("Clear Low Risk")
    assert item.decided_by == reviewer


def test_clear_low_risk_with_nothing_to_clear_decides_nothing(own_system, reviewer):
    ReviewItemFactory(system=own_system, severity=Severity.LOW)

    assert review_items_clear_low_risk(user=reviewer).decided == 0
