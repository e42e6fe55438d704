"""Applying auto-approval policies: filters, guard rails, shadow mode, audit, idempotency, chunking."""

from __future__ import annotations

import threading

import pytest
from django.db import connections

from config import registry
from governance.choices import AuditAction, Severity
from governance.models import AuditLog
from hitl.models import Decision, DecisionSource, ReviewDecision, ReviewItem, ReviewStatus, ReviewType, SpotCheck
from hitl.services import auto_approval
from hitl.services.auto_approval import auto_approval_apply, auto_approval_policy_matches
from tests.factories import AISystemFactory
from tests.hitl.factories import AutoApprovalPolicyFactory, ReviewItemFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def policy():
    """Enabled: approve low/medium alert triage at risk ≤ 30 (config floor 0.9, ceiling 30)."""
    return AutoApprovalPolicyFactory(policy_name="routine-triage", enabled=True)


def configure_guard_rails(user, **changes):
    registry.set("hitl.auto_approval", {**registry.get("hitl.auto_approval"), **changes}, user=user)


@pytest.fixture
def no_spot_checks(admin_user):
    configure_guard_rails(admin_user, spot_check_rate=0)


def assisted(system, **overrides):
    return ReviewItemFactory(system=system, assisted=True, **overrides)


def row_counts():
    return AuditLog.objects.count(), Decision.objects.count(), SpotCheck.objects.count()


def status_of(item):
    item.refresh_from_db()
    return item.status


def test_a_matching_item_is_approved_by_the_policy_with_a_decision_row(own_system, policy):
    item = assisted(own_system)

    outcome = auto_approval_apply()

    item.refresh_from_db()
    assert outcome.decided == 1
    assert outcome.by_policy == {"routine-triage": 1}
    assert item.status == ReviewStatus.APPROVED
    assert item.decision_source == DecisionSource.AUTO_POLICY
    assert item.decided_by_policy == policy
    assert item.decided_by is None
    assert "'routine-triage'" in item.rationale
    decision = Decision.objects.get(item=item)
    assert (decision.source, decision.policy, decision.shadow) == (DecisionSource.AUTO_POLICY, policy, False)
    assert (decision.confidence, decision.risk_score) == (0.97, 12.0)


def test_every_automatic_decision_names_its_policy_in_the_audit_log(own_system, policy):
    items = [assisted(own_system) for _ in range(3)]

    auto_approval_apply()

    entries = AuditLog.objects.filter(action=AuditAction.REVIEW_DECIDED)
    assert {e.object_id for e in entries} == {str(i.id) for i in items}
    for entry in entries:
        assert entry.actor == "auto_policy:routine-triage"
        assert entry.data["policy"]["name"] == "routine-triage"
        assert entry.data["policy"]["id"] == str(policy.id)
        assert entry.data["source"] == "auto_policy"


def test_an_item_outside_the_severity_filter_stays_pending(own_system):
    AutoApprovalPolicyFactory(enabled=True, severity_filter=[Severity.LOW])
    medium = assisted(own_system, severity=Severity.MEDIUM)
    low = assisted(own_system, severity=Severity.LOW)

    auto_approval_apply()

    assert (status_of(medium), status_of(low)) == (ReviewStatus.PENDING, ReviewStatus.APPROVED)


@pytest.mark.parametrize("severity_filter", [[], [Severity.HIGH, Severity.CRITICAL, Severity.MEDIUM]])
def test_high_and_critical_items_are_never_decided_whatever_the_policy_says(own_system, severity_filter):
    # A row written around the validator (e.g. by SQL) still cannot take high or critical items.
    AutoApprovalPolicyFactory(enabled=True, severity_filter=severity_filter, max_risk_score=100)
    high = assisted(own_system, severity=Severity.HIGH, risk_score=5)
    critical = assisted(own_system, severity=Severity.CRITICAL, risk_score=5)
    medium = assisted(own_system, severity=Severity.MEDIUM)

    auto_approval_apply()

    assert status_of(high) == status_of(critical) == ReviewStatus.PENDING
    assert status_of(medium) == ReviewStatus.APPROVED


def test_a_policy_naming_only_high_severity_matches_nothing(own_system):
    policy = AutoApprovalPolicyFactory(enabled=True, severity_filter=[Severity.HIGH])
    assisted(own_system, severity=Severity.HIGH)
    assisted(own_system, severity=Severity.LOW)

    assert auto_approval_apply().decided == 0
    assert not auto_approval_policy_matches(policy=policy).exists()


def test_an_item_of_another_review_type_stays_pending(own_system, policy):
    change = assisted(own_system, review_type=ReviewType.MODEL_CHANGE)

    auto_approval_apply()

    assert status_of(change) == ReviewStatus.PENDING


def test_an_empty_review_type_filter_matches_every_type(own_system):
    AutoApprovalPolicyFactory(enabled=True, review_type_filter=[])
    change = assisted(own_system, review_type=ReviewType.MODEL_CHANGE)

    auto_approval_apply()

    assert status_of(change) == ReviewStatus.APPROVED


def test_a_team_policy_decides_only_its_teams_items(own_system, foreign_system, team):
    AutoApprovalPolicyFactory(enabled=True, team=team)
    mine = assisted(own_system)
    theirs = assisted(foreign_system)

    auto_approval_apply()

    assert (status_of(mine), status_of(theirs)) == (ReviewStatus.APPROVED, ReviewStatus.PENDING)


def test_an_item_riskier_than_the_policy_allows_stays_pending(own_system):
    AutoApprovalPolicyFactory(enabled=True, max_risk_score=10)
    risky = assisted(own_system, risk_score=10.5)
    safe = assisted(own_system, risk_score=10)

    auto_approval_apply()

    assert (status_of(risky), status_of(safe)) == (ReviewStatus.PENDING, ReviewStatus.APPROVED)


def test_the_configured_risk_ceiling_caps_a_looser_policy(own_system):
    AutoApprovalPolicyFactory(enabled=True, max_risk_score=80)  # config ceiling stays 30
    item = assisted(own_system, risk_score=50)

    auto_approval_apply()

    assert status_of(item) == ReviewStatus.PENDING


def test_a_suggestion_below_the_confidence_floor_stays_pending(own_system, policy, admin_user):
    registry.set(
        "hitl.auto_approval", {**registry.get("hitl.auto_approval"), "confidence_floor": 0.95}, user=admin_user
    )
    unsure = assisted(own_system, assist_confidence=0.94)
    sure = assisted(own_system, assist_confidence=0.95)

    auto_approval_apply()

    assert (status_of(unsure), status_of(sure)) == (ReviewStatus.PENDING, ReviewStatus.APPROVED)


def test_an_item_whose_suggestion_differs_from_the_policy_action_stays_pending(own_system, policy):
    reject = assisted(own_system, suggested_decision=ReviewDecision.REJECT)

    auto_approval_apply()

    assert status_of(reject) == ReviewStatus.PENDING


def test_a_reject_policy_rejects_items_suggested_for_rejection(own_system):
    AutoApprovalPolicyFactory(enabled=True, auto_action=ReviewDecision.REJECT)
    noise = assisted(own_system, suggested_decision=ReviewDecision.REJECT)

    auto_approval_apply()

    noise.refresh_from_db()
    assert (noise.status, noise.decision) == (ReviewStatus.REJECTED, ReviewDecision.REJECT)


def test_an_item_without_an_assist_suggestion_stays_pending(own_system, policy):
    bare = ReviewItemFactory(system=own_system)

    assert auto_approval_apply().decided == 0
    assert status_of(bare) == ReviewStatus.PENDING


def test_a_disabled_policy_decides_nothing(own_system):
    AutoApprovalPolicyFactory(enabled=False)
    item = assisted(own_system)

    outcome = auto_approval_apply()

    assert (outcome.decided, outcome.shadow) == (0, 0)
    assert status_of(item) == ReviewStatus.PENDING


def test_the_first_matching_policy_by_name_decides(own_system):
    AutoApprovalPolicyFactory(policy_name="b-second", enabled=True)
    first = AutoApprovalPolicyFactory(policy_name="a-first", enabled=True)
    item = assisted(own_system)

    outcome = auto_approval_apply()

    item.refresh_from_db()
    assert item.decided_by_policy == first
    assert outcome.by_policy == {"a-first": 1}
    assert Decision.objects.filter(item=item).count() == 1


def test_only_the_given_items_are_considered(own_system, policy):
    chosen, other = assisted(own_system), assisted(own_system)

    outcome = auto_approval_apply(item_ids=[str(chosen.id)])

    assert outcome.decided == 1
    assert (status_of(chosen), status_of(other)) == (ReviewStatus.APPROVED, ReviewStatus.PENDING)


def test_an_empty_list_of_items_decides_nothing(own_system, policy):
    item = assisted(own_system)

    assert auto_approval_apply(item_ids=[]).decided == 0
    assert status_of(item) == ReviewStatus.PENDING


def test_running_twice_decides_nothing_new_and_audits_nothing_new(own_system, policy):
    assisted(own_system)
    assisted(own_system)
    first = auto_approval_apply()
    audit_count, decision_count, spot_count = (
        AuditLog.objects.count(),
        Decision.objects.count(),
        SpotCheck.objects.count(),
    )

    second = auto_approval_apply()

    assert first.decided == 2
    assert (second.decided, second.shadow, second.spot_checks) == (0, 0, 0)
    assert (AuditLog.objects.count(), Decision.objects.count(), SpotCheck.objects.count()) == (
        audit_count,
        decision_count,
        spot_count,
    )


def test_a_shadow_policy_records_what_it_would_decide_and_changes_nothing(own_system):
    shadow = AutoApprovalPolicyFactory(policy_name="trial", shadow_mode=True)
    items = [assisted(own_system) for _ in range(3)]
    audit_count = AuditLog.objects.count()

    outcome = auto_approval_apply()

    assert (outcome.decided, outcome.shadow, outcome.spot_checks) == (0, 3, 0)
    assert outcome.by_policy == {"trial": 3}
    assert all(status_of(item) == ReviewStatus.PENDING for item in items)
    rows = Decision.objects.filter(policy=shadow)
    assert rows.count() == 3
    assert {(d.shadow, d.source, d.decision) for d in rows} == {(True, DecisionSource.AUTO_POLICY, "approve")}
    assert not Decision.objects.filter(shadow=False).exists()
    assert AuditLog.objects.count() == audit_count
    assert not SpotCheck.objects.exists()


def test_a_shadow_policy_proposes_each_item_only_once(own_system):
    AutoApprovalPolicyFactory(shadow_mode=True)
    assisted(own_system)

    auto_approval_apply()
    second = auto_approval_apply()

    assert second.shadow == 0
    assert Decision.objects.filter(shadow=True).count() == 1


def test_an_enabled_policy_in_shadow_mode_still_decides_nothing(own_system):
    AutoApprovalPolicyFactory(enabled=True, shadow_mode=True)
    item = assisted(own_system)

    outcome = auto_approval_apply()

    assert (outcome.decided, outcome.shadow) == (0, 1)
    assert status_of(item) == ReviewStatus.PENDING


def test_shadow_policies_see_the_items_a_live_policy_decides_in_the_same_run(own_system):
    live = AutoApprovalPolicyFactory(policy_name="live", enabled=True)
    trial = AutoApprovalPolicyFactory(policy_name="trial", shadow_mode=True, max_risk_score=20)
    item = assisted(own_system)

    outcome = auto_approval_apply()

    item.refresh_from_db()
    assert item.decided_by_policy == live
    assert outcome.by_policy == {"live": 1, "trial": 1}
    assert Decision.objects.get(item=item, shadow=True).policy == trial


def test_shadow_policies_follow_the_same_filters(own_system, foreign_system, team):
    AutoApprovalPolicyFactory(shadow_mode=True, team=team, max_risk_score=15)
    assisted(own_system, risk_score=16)
    assisted(foreign_system)
    assisted(own_system, severity=Severity.HIGH)
    match = assisted(own_system)

    auto_approval_apply()

    assert list(Decision.objects.values_list("item_id", flat=True)) == [match.id]


def test_many_items_are_decided_in_chunks_of_at_most_the_bulk_limit(own_system, policy, monkeypatch, no_spot_checks):
    monkeypatch.setattr(auto_approval, "MAX_BULK_ITEMS", 3)
    chunk_sizes = []
    real_decide = auto_approval.review_items_decide

    def recording_decide(**kwargs):
        chunk_sizes.append(len(kwargs["decisions"]))
        return real_decide(**kwargs)

    monkeypatch.setattr(auto_approval, "review_items_decide", recording_decide)
    systems = [own_system, AISystemFactory(team=own_system.team)]
    for index in range(8):
        assisted(systems[index % 2])

    outcome = auto_approval_apply()

    assert outcome.decided == 8
    assert chunk_sizes == [3, 3, 2]
    assert not ReviewItem.objects.filter(status=ReviewStatus.PENDING).exists()


def test_many_given_ids_are_processed_in_chunks_too(own_system, policy, monkeypatch, no_spot_checks):
    monkeypatch.setattr(auto_approval, "MAX_BULK_ITEMS", 2)
    items = [assisted(own_system) for _ in range(5)]

    outcome = auto_approval_apply(item_ids=[i.id for i in items] + [items[0].id])

    assert outcome.decided == 5


def test_an_item_decided_by_a_human_meanwhile_is_skipped_without_failing_the_chunk(own_system, policy, monkeypatch):
    items = [assisted(own_system) for _ in range(3)]
    real_matches = auto_approval.auto_approval_policy_matches
    calls = []

    def matches_then_a_human_decides(**kwargs):
        calls.append(1)
        if len(calls) == 2:  # after the chunk was read, before it is locked and decided
            ReviewItem.objects.filter(pk=items[0].pk).update(
                status=ReviewStatus.REJECTED, decision="reject", decided_at=items[0].created_at
            )
        return real_matches(**kwargs)

    monkeypatch.setattr(auto_approval, "auto_approval_policy_matches", matches_then_a_human_decides)

    outcome = auto_approval_apply()

    assert outcome.decided == 2
    assert status_of(items[0]) == ReviewStatus.REJECTED
    assert not Decision.objects.filter(item=items[0]).exists()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_runs_decide_each_item_exactly_once(team):
    system = AISystemFactory(team=team)
    AutoApprovalPolicyFactory(policy_name="live", enabled=True)
    AutoApprovalPolicyFactory(policy_name="trial", shadow_mode=True)
    items = [assisted(system) for _ in range(40)]
    runners = 4
    start = threading.Barrier(runners)
    outcomes, errors = [], []

    def run() -> None:
        try:
            start.wait()
            outcomes.append(auto_approval_apply())
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(runners)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert sum(outcome.decided for outcome in outcomes) == len(items)
    assert not ReviewItem.objects.filter(status=ReviewStatus.PENDING).exists()
    assert Decision.objects.filter(shadow=False).count() == len(items)
    assert Decision.objects.filter(shadow=True).count() == len(items)
    assert AuditLog.objects.filter(action=AuditAction.REVIEW_DECIDED).count() == len(items)
