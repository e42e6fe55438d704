"""Spot checks of automatic decisions: sampling, human verdicts, agreement and the self-disabling monitor."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from hypothesis import given
from hypothesis import strategies as st

from config import registry
from governance.choices import AuditAction, Role
from governance.models import AuditLog
from hitl.models import (
    AutoApprovalPolicy,
    Decision,
    DecisionSource,
    ReviewDecision,
    ReviewItem,
    SpotCheck,
    SpotCheckStatus,
)
from hitl.services.auto_approval import (
    AUTOMATION_BIAS_MONITOR,
    SpotCheckInvalid,
    SpotCheckMissing,
    SpotCheckNotPending,
    SpotCheckPermissionDenied,
    auto_approval_apply,
    automation_bias_check,
    policy_agreement,
    spot_check_record,
    spot_check_sample_point,
    spot_check_sampled,
)
from tests.hitl.factories import AutoApprovalPolicyFactory, ReviewItemFactory, SpotCheckFactory

NOW = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)


def configure(user, key, **changes):
    registry.set(key, {**registry.get(key), **changes}, user=user)


def ids_with_sample_points(*, at_least: float, count: int) -> list[uuid.UUID]:
    """Item ids whose deterministic sample point is ≥ ``at_least`` (never sampled below that rate)."""
    ids = []
    while len(ids) < count:
        candidate = uuid.uuid4()
        if spot_check_sample_point(candidate) >= at_least:
            ids.append(candidate)
    return ids


@pytest.fixture
def reviewer(make_user, team):
    return make_user(Role.REVIEWER, teams=[team], username="rita")


@pytest.fixture
def policy():
    return AutoApprovalPolicyFactory(policy_name="routine-triage", enabled=True)


def verdicts(policy, *, agreed=0, disagreed=0, checked_at=None):
    checked_at = checked_at or NOW - timedelta(days=1)
    for status, count, human in (
        (SpotCheckStatus.AGREED, agreed, ReviewDecision.APPROVE),
        (SpotCheckStatus.DISAGREED, disagreed, ReviewDecision.ESCALATE),
    ):
        SpotCheckFactory.create_batch(
            count, policy=policy, status=status, human_decision=human, checked_at=checked_at, rationale="checked"
        )


# --- sampling --------------------------------------------------------------------------------------


@given(st.uuids(), st.floats(min_value=0, max_value=1), st.floats(min_value=0, max_value=1))
def test_sampling_is_deterministic_and_monotone_in_the_rate(item_id, rate_a, rate_b):
    low, high = sorted((rate_a, rate_b))

    assert spot_check_sampled(item_id, low) == spot_check_sampled(item_id, low)
    if spot_check_sampled(item_id, low):
        assert spot_check_sampled(item_id, high)


@given(st.uuids())
def test_rate_zero_samples_nothing_and_rate_one_samples_everything(item_id):
    assert not spot_check_sampled(item_id, 0)
    assert spot_check_sampled(item_id, 1)
    assert 0 <= spot_check_sample_point(item_id) < 1


@pytest.mark.parametrize("rate", [0.05, 0.2, 0.5])
def test_the_sampled_share_of_many_items_is_close_to_the_rate(rate):
    ids = [uuid.UUID(int=n * 7919 + 12345) for n in range(20_000)]

    share = sum(spot_check_sampled(item_id, rate) for item_id in ids) / len(ids)

    assert abs(share - rate) < 0.01


@pytest.mark.django_db
def test_auto_decided_items_are_sent_to_spot_check_at_the_configured_rate(own_system, policy, admin_user):
    configure(admin_user, "hitl.auto_approval", spot_check_rate=0.3)
    items = [ReviewItemFactory(system=own_system, assisted=True) for _ in range(60)]

    outcome = auto_approval_apply()

    expected = {item.id for item in items if spot_check_sampled(item.id, 0.3)}
    assert expected  # 0.7**60: a 60-item run without a sampled item does not happen
    checks = SpotCheck.objects.all()
    assert {check.item_id for check in checks} == expected
    assert outcome.spot_checks == len(expected)
    assert {(c.policy_id, c.auto_decision, c.status) for c in checks} == {
        (policy.id, ReviewDecision.APPROVE, SpotCheckStatus.PENDING)
    }


@pytest.mark.django_db
def test_rate_zero_sends_nothing_to_spot_check(own_system, policy, admin_user):
    configure(admin_user, "hitl.auto_approval", spot_check_rate=0)
    ReviewItemFactory.create_batch(5, system=own_system, assisted=True)

    outcome = auto_approval_apply()

    assert (outcome.decided, outcome.spot_checks) == (5, 0)
    assert not SpotCheck.objects.exists()


@pytest.mark.django_db
def test_a_policy_that_decided_without_a_sampled_item_still_gets_one_spot_check_per_window(
    own_system, policy, admin_user
):
    configure(admin_user, "hitl.auto_approval", spot_check_rate=0.01)
    first_ids = ids_with_sample_points(at_least=0.01, count=3)
    first = [ReviewItemFactory(id=item_id, system=own_system, assisted=True) for item_id in first_ids]

    outcome = auto_approval_apply()

    [check] = SpotCheck.objects.all()
    assert outcome.spot_checks == 1
    assert check.item_id == min(first_ids, key=spot_check_sample_point)
    assert check.item_id in {item.id for item in first}

    [later_id] = ids_with_sample_points(at_least=0.01, count=1)
    ReviewItemFactory(id=later_id, system=own_system, assisted=True)
    assert auto_approval_apply().spot_checks == 0  # the window already has one for this policy


# --- verdicts --------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_matching_verdict_is_recorded_as_agreed_and_audited_naming_the_policy(own_system, policy, reviewer):
    check = SpotCheckFactory(policy=policy, item=ReviewItemFactory(system=own_system, decided=True))

    recorded = spot_check_record(
        spot_check_id=str(check.id), decision="approve", rationale="drift is seasonal", reviewer=reviewer
    )

    assert recorded.status == SpotCheckStatus.AGREED
    assert (recorded.human_decision, recorded.reviewer, recorded.rationale) == (
        "approve",
        reviewer,
        "drift is seasonal",
    )
    assert recorded.checked_at is not None
    entry = AuditLog.objects.get(action=AuditAction.SPOT_CHECK_RECORDED)
    assert entry.actor == "rita"
    assert entry.object_id == str(check.id)
    assert entry.data["policy"]["name"] == "routine-triage"
    assert (entry.data["verdict"], entry.data["auto_decision"], entry.data["human_decision"]) == (
        "agreed",
        "approve",
        "approve",
    )


@pytest.mark.django_db
def test_a_different_verdict_is_recorded_as_disagreed_and_leaves_the_item_decided(own_system, policy, reviewer):
    item = ReviewItemFactory(system=own_system, decided=True)
    check = SpotCheckFactory(policy=policy, item=item)

    recorded = spot_check_record(spot_check_id=check.id, decision="escalate", rationale="real drift", reviewer=reviewer)

    assert recorded.status == SpotCheckStatus.DISAGREED
    assert ReviewItem.objects.get(pk=item.pk).decision == ReviewDecision.APPROVE


@pytest.mark.django_db
def test_an_overruling_escalation_opens_an_incident_and_is_recorded_as_a_human_decision(own_system, policy, reviewer):
    item = ReviewItemFactory(system=own_system, decided=True)
    check = SpotCheckFactory(policy=policy, item=item)

    recorded = spot_check_record(spot_check_id=check.id, decision="escalate", rationale="real drift", reviewer=reviewer)

    incident = recorded.escalated_incident
    assert incident is not None
    assert (incident.team, incident.fingerprint) == (own_system.team, item.fingerprint)
    human = Decision.objects.get(item=item, source=DecisionSource.HUMAN)
    assert (human.decision, human.actor) == (ReviewDecision.ESCALATE, reviewer)
    assert "overruled policy 'routine-triage'" in human.rationale


@pytest.mark.django_db
def test_an_overruling_rejection_is_recorded_but_opens_no_incident(own_system, policy, reviewer):
    item = ReviewItemFactory(system=own_system, decided=True)
    check = SpotCheckFactory(policy=policy, item=item)

    recorded = spot_check_record(spot_check_id=check.id, decision="reject", rationale="noise", reviewer=reviewer)

    assert recorded.escalated_incident is None
    assert Decision.objects.get(item=item, source=DecisionSource.HUMAN).decision == ReviewDecision.REJECT


@pytest.mark.django_db
def test_an_agreeing_verdict_adds_no_decision(own_system, policy, reviewer):
    item = ReviewItemFactory(system=own_system, decided=True)
    check = SpotCheckFactory(policy=policy, item=item)

    spot_check_record(spot_check_id=check.id, decision="approve", rationale="fine", reviewer=reviewer)

    assert not Decision.objects.filter(item=item).exists()


@pytest.mark.django_db
def test_a_second_verdict_is_refused_and_changes_nothing(own_system, policy, reviewer):
    check = SpotCheckFactory(policy=policy, item=ReviewItemFactory(system=own_system, decided=True))
    spot_check_record(spot_check_id=check.id, decision="approve", rationale="fine", reviewer=reviewer)

    with pytest.raises(SpotCheckNotPending) as raised:
        spot_check_record(spot_check_id=check.id, decision="reject", rationale="changed my mind", reviewer=reviewer)

    assert raised.value.status == SpotCheckStatus.AGREED
    check.refresh_from_db()
    assert (check.status, check.human_decision) == (SpotCheckStatus.AGREED, "approve")
    assert AuditLog.objects.filter(action=AuditAction.SPOT_CHECK_RECORDED).count() == 1


@pytest.mark.django_db
def test_a_reviewer_of_another_team_cannot_give_a_verdict(foreign_system, policy, reviewer):
    check = SpotCheckFactory(policy=policy, item=ReviewItemFactory(system=foreign_system, decided=True))

    with pytest.raises(SpotCheckPermissionDenied):
        spot_check_record(spot_check_id=check.id, decision="approve", rationale="fine", reviewer=reviewer)

    assert SpotCheck.objects.get(pk=check.pk).status == SpotCheckStatus.PENDING


@pytest.mark.django_db
def test_a_viewer_of_the_team_cannot_give_a_verdict(own_system, policy, viewer):
    check = SpotCheckFactory(policy=policy, item=ReviewItemFactory(system=own_system, decided=True))

    with pytest.raises(SpotCheckPermissionDenied):
        spot_check_record(spot_check_id=check.id, decision="approve", rationale="fine", reviewer=viewer)


@pytest.mark.django_db
def test_an_admin_may_give_a_verdict_on_any_team(foreign_system, policy, admin_user):
    check = SpotCheckFactory(policy=policy, item=ReviewItemFactory(system=foreign_system, decided=True))

    recorded = spot_check_record(spot_check_id=check.id, decision="approve", rationale="fine", reviewer=admin_user)

    assert recorded.status == SpotCheckStatus.AGREED


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("decision", "rationale", "field"),
    [("maybe", "fine", "decision"), ("approve", "  ", "rationale")],
)
def test_a_bad_verdict_is_refused_naming_the_field(own_system, policy, reviewer, decision, rationale, field):
    check = SpotCheckFactory(policy=policy, item=ReviewItemFactory(system=own_system, decided=True))

    with pytest.raises(SpotCheckInvalid) as raised:
        spot_check_record(spot_check_id=check.id, decision=decision, rationale=rationale, reviewer=reviewer)

    assert list(raised.value.fields) == [field]


@pytest.mark.django_db
@pytest.mark.parametrize("spot_check_id", ["not-a-uuid", str(uuid.UUID(int=1))])
def test_an_unknown_spot_check_is_reported_missing(reviewer, spot_check_id):
    with pytest.raises(SpotCheckMissing):
        spot_check_record(spot_check_id=spot_check_id, decision="approve", rationale="fine", reviewer=reviewer)


# --- agreement and the automation-bias monitor ----------------------------------------------------


@pytest.mark.django_db
def test_agreement_counts_verdicts_in_the_window_and_every_pending_check(policy):
    verdicts(policy, agreed=3, disagreed=1)
    verdicts(policy, disagreed=5, checked_at=NOW - timedelta(days=31))  # outside the 30-day window
    SpotCheckFactory.create_batch(2, policy=policy)

    agreement = policy_agreement(now=NOW)[policy.id]

    assert (agreement.checked, agreement.agreed, agreement.disagreed, agreement.pending) == (4, 3, 1, 2)
    assert agreement.rate == 0.75
    assert (agreement.window_days, agreement.min_spot_checks, agreement.judged) == (30, 20, False)


@pytest.mark.django_db
def test_a_policy_without_verdicts_has_no_agreement_rate(policy):
    agreement = policy_agreement(policy_ids=[policy.id], now=NOW)[policy.id]

    assert (agreement.checked, agreement.rate, agreement.judged) == (0, None, False)


@pytest.mark.django_db
def test_agreement_is_judged_once_there_are_enough_verdicts(policy, admin_user):
    configure(admin_user, "hitl.automation_bias", min_spot_checks=4)
    verdicts(policy, agreed=4)

    assert policy_agreement(now=NOW)[policy.id].judged is True


@pytest.mark.django_db
def test_a_policy_below_the_agreement_floor_disables_itself_with_an_audit_entry(policy, admin_user):
    configure(admin_user, "hitl.automation_bias", min_spot_checks=10)
    verdicts(policy, agreed=8, disagreed=2)  # 80 % < 90 %

    disabled = automation_bias_check(now=NOW)

    assert [p.id for p in disabled] == [policy.id]
    policy.refresh_from_db()
    assert policy.enabled is False
    assert "80%" in policy.disabled_reason and "90%" in policy.disabled_reason
    assert "8 of 10" in policy.disabled_reason
    entry = AuditLog.objects.get(action=AuditAction.AUTO_APPROVAL_POLICY_DISABLED)
    assert entry.actor == AUTOMATION_BIAS_MONITOR
    assert entry.data["policy"]["name"] == "routine-triage"
    assert entry.data["details"] == {"agreement": 0.8, "agreed": 8, "checked": 10, "floor": 0.9, "window_days": 30}


@pytest.mark.django_db
def test_a_policy_at_the_floor_stays_enabled(policy, admin_user):
    configure(admin_user, "hitl.automation_bias", min_spot_checks=10)
    verdicts(policy, agreed=9, disagreed=1)

    assert automation_bias_check(now=NOW) == []
    assert AutoApprovalPolicy.objects.get(pk=policy.pk).enabled is True


@pytest.mark.django_db
def test_a_policy_with_too_few_verdicts_is_not_judged(policy):
    verdicts(policy, disagreed=19)  # min_spot_checks is 20

    assert automation_bias_check(now=NOW) == []
    assert AutoApprovalPolicy.objects.get(pk=policy.pk).enabled is True


@pytest.mark.django_db
def test_old_disagreements_age_out_of_the_window(policy, admin_user):
    configure(admin_user, "hitl.automation_bias", min_spot_checks=5, window_days=7)
    verdicts(policy, disagreed=5, checked_at=NOW - timedelta(days=8))
    verdicts(policy, agreed=5, checked_at=NOW - timedelta(days=1))

    assert automation_bias_check(now=NOW) == []
    assert policy_agreement(now=NOW)[policy.id].rate == 1.0


@pytest.mark.django_db
def test_the_monitor_leaves_disabled_policies_alone_and_runs_idempotently(policy, admin_user):
    configure(admin_user, "hitl.automation_bias", min_spot_checks=2)
    idle = AutoApprovalPolicyFactory(enabled=False)
    verdicts(policy, disagreed=2)
    verdicts(idle, disagreed=2)

    assert automation_bias_check(now=NOW) == [policy]
    assert automation_bias_check(now=NOW) == []
    assert AuditLog.objects.filter(action=AuditAction.AUTO_APPROVAL_POLICY_DISABLED).count() == 1


@pytest.mark.django_db
def test_the_verdict_that_drops_agreement_below_the_floor_disables_the_policy(own_system, policy, reviewer, admin_user):
    configure(admin_user, "hitl.automation_bias", min_spot_checks=3)
    with time_machine.travel(NOW, tick=False):
        verdicts(policy, agreed=2, checked_at=NOW - timedelta(hours=1))
        check = SpotCheckFactory(policy=policy, item=ReviewItemFactory(system=own_system, decided=True))

        recorded = spot_check_record(
            spot_check_id=check.id, decision="escalate", rationale="this was a real incident", reviewer=reviewer
        )

    assert recorded.policy.enabled is False
    entry = AuditLog.objects.get(action=AuditAction.AUTO_APPROVAL_POLICY_DISABLED)
    assert entry.actor == AUTOMATION_BIAS_MONITOR
    assert entry.data["details"]["checked"] == 3
    assert entry.seq > AuditLog.objects.get(action=AuditAction.SPOT_CHECK_RECORDED).seq


@pytest.mark.django_db
def test_a_self_disabled_policy_decides_nothing_on_the_next_run(own_system, policy, admin_user):
    configure(admin_user, "hitl.automation_bias", min_spot_checks=2)
    verdicts(policy, disagreed=2, checked_at=NOW - timedelta(hours=1))
    with time_machine.travel(NOW, tick=False):
        automation_bias_check()
        item = ReviewItemFactory(system=own_system, assisted=True)

        outcome = auto_approval_apply()

    assert outcome.decided == 0
    assert ReviewItem.objects.get(pk=item.pk).status == "pending"
