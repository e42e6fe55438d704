"""Auto-approval policies: validation, who may enable them, audited create/update/enable/disable/delete."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from governance.choices import AuditAction, Role, Severity
from governance.models import AuditLog
from hitl.models import AutoApprovalPolicy, ReviewType
from hitl.services.policies import (
    PolicyNameTaken,
    PolicyPermissionDenied,
    PolicyValidationError,
    auto_approval_policy_create,
    auto_approval_policy_delete,
    auto_approval_policy_set_enabled,
    auto_approval_policy_update,
    auto_approval_policy_validate,
)
from tests.hitl.factories import AutoApprovalPolicyFactory, ReviewItemFactory, SpotCheckFactory

VALID = {
    "policy_name": "routine drift triage",
    "severity_filter": ["low", "medium"],
    "review_type_filter": ["alert_triage"],
    "max_risk_score": 25,
    "auto_action": "approve",
    "description": "PSI drift below warning on minimal-risk systems",
}


def audit_rows(action):
    return list(AuditLog.objects.filter(action=action).order_by("seq"))


# --- validation --------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_valid_policy_data_is_normalized_to_model_values(team):
    cleaned = auto_approval_policy_validate(
        {**VALID, "policy_name": "  padded  ", "severity_filter": ["low", "medium", "low"], "team": str(team.id)}
    )

    assert cleaned["policy_name"] == "padded"
    assert sorted(cleaned["severity_filter"]) == ["low", "medium"]
    assert cleaned["max_risk_score"] == 25.0
    assert cleaned["team"] == team


@pytest.mark.django_db
def test_a_risk_score_of_101_is_refused_naming_max_risk_score():
    with pytest.raises(PolicyValidationError) as raised:
        auto_approval_policy_validate({**VALID, "max_risk_score": 101})

    assert list(raised.value.fields) == ["max_risk_score"]


@pytest.mark.parametrize("value", [-0.1, 100.01, "30", None, True, math.nan, math.inf])
def test_a_risk_score_that_is_not_a_number_from_0_to_100_is_refused(value):
    with pytest.raises(PolicyValidationError) as raised:
        auto_approval_policy_validate({"max_risk_score": value}, partial=True)

    assert list(raised.value.fields) == ["max_risk_score"]


@given(st.floats(min_value=0, max_value=100))
def test_every_risk_score_from_0_to_100_is_accepted(value):
    assert auto_approval_policy_validate({"max_risk_score": value}, partial=True) == {"max_risk_score": value}


@given(st.floats(allow_nan=False).filter(lambda v: not 0 <= v <= 100))
def test_every_risk_score_outside_0_to_100_is_refused(value):
    with pytest.raises(PolicyValidationError) as raised:
        auto_approval_policy_validate({"max_risk_score": value}, partial=True)

    assert "max_risk_score" in raised.value.fields


def test_an_unknown_severity_is_refused_naming_severity_filter():
    with pytest.raises(PolicyValidationError) as raised:
        auto_approval_policy_validate({"severity_filter": ["low", "urgent"]}, partial=True)

    assert list(raised.value.fields) == ["severity_filter"]
    assert "'urgent'" in raised.value.fields["severity_filter"][0]


@pytest.mark.parametrize("severity", [Severity.HIGH, Severity.CRITICAL])
def test_a_policy_may_never_cover_high_or_critical_items(severity):
    with pytest.raises(PolicyValidationError) as raised:
        auto_approval_policy_validate({"severity_filter": ["low", severity]}, partial=True)

    assert "always stay for a human" in raised.value.fields["severity_filter"][0]


@given(st.lists(st.sampled_from(["low", "medium", "info"]), max_size=5))
def test_any_list_of_low_medium_and_info_is_a_valid_severity_filter(severities):
    cleaned = auto_approval_policy_validate({"severity_filter": severities}, partial=True)

    assert sorted(cleaned["severity_filter"]) == sorted(set(severities))


@given(
    st.lists(st.sampled_from(["low", "medium", "info"]), max_size=3),
    st.text(max_size=12).filter(lambda s: s not in ("low", "medium", "info")),
)
def test_any_severity_filter_with_something_else_in_it_is_refused(allowed, other):
    with pytest.raises(PolicyValidationError) as raised:
        auto_approval_policy_validate({"severity_filter": [*allowed, other]}, partial=True)

    assert list(raised.value.fields) == ["severity_filter"]


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"review_type_filter": ["alert_triage", "coffee"]}, "review_type_filter"),
        ({"review_type_filter": "alert_triage"}, "review_type_filter"),
        ({"auto_action": "approve_all"}, "auto_action"),
        ({"shadow_mode": "yes"}, "shadow_mode"),
        ({"enabled": 1}, "enabled"),
        ({"policy_name": "   "}, "policy_name"),
        ({"policy_name": "x" * 121}, "policy_name"),
        ({"requires_audit_log": False}, "requires_audit_log"),
        ({"threshold": 3}, "threshold"),
    ],
)
def test_bad_fields_are_named_in_the_error(data, field):
    with pytest.raises(PolicyValidationError) as raised:
        auto_approval_policy_validate(data, partial=True)

    assert list(raised.value.fields) == [field]


@pytest.mark.django_db
def test_a_new_policy_needs_a_name():
    with pytest.raises(PolicyValidationError) as raised:
        auto_approval_policy_validate({"max_risk_score": 10})

    assert list(raised.value.fields) == ["policy_name"]


@pytest.mark.django_db
def test_an_unknown_team_is_refused_naming_team():
    with pytest.raises(PolicyValidationError) as raised:
        auto_approval_policy_validate({**VALID, "team": "0b7c3a9e-0000-4000-8000-000000000000"})

    assert list(raised.value.fields) == ["team"]


# --- create -------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_creating_a_policy_stores_it_disabled_and_audits_it_by_name(lead):
    policy = auto_approval_policy_create(actor=lead, data=VALID)

    stored = AutoApprovalPolicy.objects.get(pk=policy.pk)
    assert stored.enabled is False
    assert stored.shadow_mode is False
    assert stored.created_by == lead
    assert stored.review_type_filter == [ReviewType.ALERT_TRIAGE]
    [entry] = audit_rows(AuditAction.AUTO_APPROVAL_POLICY_CREATED)
    assert entry.actor == "lena"
    assert entry.data["policy"] == {"id": str(policy.id), "name": "routine drift triage"}
    assert entry.data["settings"]["max_risk_score"] == 25
    assert not audit_rows(AuditAction.AUTO_APPROVAL_POLICY_ENABLED)


@pytest.mark.django_db
def test_a_non_admin_cannot_create_an_enabled_policy_and_nothing_is_written(lead):
    with pytest.raises(PolicyPermissionDenied):
        auto_approval_policy_create(actor=lead, data={**VALID, "enabled": True})

    assert not AutoApprovalPolicy.objects.exists()
    assert not AuditLog.objects.filter(action__startswith="auto_approval_policy.").exists()


@pytest.mark.django_db
def test_an_admin_creating_an_enabled_policy_audits_both_the_creation_and_the_enabling(admin_user):
    policy = auto_approval_policy_create(actor=admin_user, data={**VALID, "enabled": True})

    assert AutoApprovalPolicy.objects.get(pk=policy.pk).enabled is True
    assert len(audit_rows(AuditAction.AUTO_APPROVAL_POLICY_CREATED)) == 1
    [enabled] = audit_rows(AuditAction.AUTO_APPROVAL_POLICY_ENABLED)
    assert enabled.data["policy"]["name"] == "routine drift triage"


@pytest.mark.django_db
def test_a_non_admin_may_create_a_shadow_policy(lead):
    policy = auto_approval_policy_create(actor=lead, data={**VALID, "shadow_mode": True})

    assert policy.mode == "shadow"


@pytest.mark.django_db
def test_a_duplicate_name_in_any_case_is_refused(lead):
    AutoApprovalPolicyFactory(policy_name="Routine Drift Triage")

    with pytest.raises(PolicyNameTaken) as raised:
        auto_approval_policy_create(actor=lead, data=VALID)

    assert list(raised.value.fields) == ["policy_name"]
    assert AutoApprovalPolicy.objects.count() == 1


# --- enable / disable --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_only_admins_enable_a_policy(lead, viewer):
    policy = AutoApprovalPolicyFactory()

    for actor in (lead, viewer, None, "some_script"):
        with pytest.raises(PolicyPermissionDenied):
            auto_approval_policy_set_enabled(policy=policy, enabled=True, actor=actor)

    policy.refresh_from_db()
    assert policy.enabled is False
    assert not audit_rows(AuditAction.AUTO_APPROVAL_POLICY_ENABLED)


@pytest.mark.django_db
def test_enabling_is_audited_once_and_enabling_again_changes_nothing(admin_user):
    policy = AutoApprovalPolicyFactory()

    assert auto_approval_policy_set_enabled(policy=policy, enabled=True, actor=admin_user, reason="pilot") is True
    assert auto_approval_policy_set_enabled(policy=policy, enabled=True, actor=admin_user) is False

    policy.refresh_from_db()
    assert policy.enabled is True
    [entry] = audit_rows(AuditAction.AUTO_APPROVAL_POLICY_ENABLED)
    assert entry.actor == "ada"
    assert entry.data["reason"] == "pilot"
    assert entry.data["policy"]["name"] == policy.policy_name


@pytest.mark.django_db
def test_disabling_stores_why_and_when_and_enabling_clears_it(admin_user):
    policy = AutoApprovalPolicyFactory(enabled=True)

    auto_approval_policy_set_enabled(policy=policy, enabled=False, actor=admin_user, reason="too many misses")
    policy.refresh_from_db()
    assert (policy.enabled, policy.disabled_reason) == (False, "too many misses")
    assert policy.disabled_at is not None
    [entry] = audit_rows(AuditAction.AUTO_APPROVAL_POLICY_DISABLED)
    assert entry.data["reason"] == "too many misses"

    auto_approval_policy_set_enabled(policy=policy, enabled=True, actor=admin_user)
    policy.refresh_from_db()
    assert (policy.enabled, policy.disabled_reason, policy.disabled_at) == (True, "", None)


@pytest.mark.django_db
def test_a_system_component_may_disable_a_policy_but_not_a_non_admin_person(lead):
    policy = AutoApprovalPolicyFactory(enabled=True)

    with pytest.raises(PolicyPermissionDenied):
        auto_approval_policy_set_enabled(policy=policy, enabled=False, actor=lead)
    assert auto_approval_policy_set_enabled(policy=policy, enabled=False, actor="automation_bias_monitor", reason="x")

    [entry] = audit_rows(AuditAction.AUTO_APPROVAL_POLICY_DISABLED)
    assert entry.actor == "automation_bias_monitor"


# --- update --------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_updating_audits_each_changed_field_from_and_to(lead):
    policy = AutoApprovalPolicyFactory(max_risk_score=30)

    auto_approval_policy_update(
        policy=policy, actor=lead, data={"max_risk_score": 20, "severity_filter": ["medium", "low"]}
    )

    policy.refresh_from_db()
    assert policy.max_risk_score == 20
    [entry] = audit_rows(AuditAction.AUTO_APPROVAL_POLICY_UPDATED)
    # The severity filter is the same set in another order: not a change.
    assert entry.data["changed"] == {"max_risk_score": {"from": 30, "to": 20}}
    assert entry.data["policy"]["name"] == policy.policy_name


@pytest.mark.django_db
def test_an_update_that_changes_nothing_writes_no_audit_entry(lead):
    policy = AutoApprovalPolicyFactory(description="same")

    auto_approval_policy_update(policy=policy, actor=lead, data={"description": "same", "max_risk_score": 30})

    assert not audit_rows(AuditAction.AUTO_APPROVAL_POLICY_UPDATED)


@pytest.mark.django_db
def test_a_non_admin_cannot_widen_an_enabled_policy(lead):
    policy = AutoApprovalPolicyFactory(enabled=True, max_risk_score=20)

    with pytest.raises(PolicyPermissionDenied):
        auto_approval_policy_update(policy=policy, actor=lead, data={"max_risk_score": 30})

    policy.refresh_from_db()
    assert policy.max_risk_score == 20
    assert not audit_rows(AuditAction.AUTO_APPROVAL_POLICY_UPDATED)


@pytest.mark.django_db
def test_a_non_admin_cannot_take_an_enabled_policy_out_of_shadow_mode(lead):
    policy = AutoApprovalPolicyFactory(enabled=True, shadow_mode=True)

    with pytest.raises(PolicyPermissionDenied):
        auto_approval_policy_update(policy=policy, actor=lead, data={"shadow_mode": False})

    policy.refresh_from_db()
    assert policy.shadow_mode is True


@pytest.mark.django_db
def test_a_non_admin_may_edit_the_description_of_an_enabled_policy(lead):
    policy = AutoApprovalPolicyFactory(enabled=True)

    auto_approval_policy_update(policy=policy, actor=lead, data={"description": "covers weekly PSI drift"})

    policy.refresh_from_db()
    assert policy.description == "covers weekly PSI drift"


@pytest.mark.django_db
def test_enabling_through_an_update_is_for_admins_only_and_audited_as_enabled(lead, admin_user):
    policy = AutoApprovalPolicyFactory()

    with pytest.raises(PolicyPermissionDenied):
        auto_approval_policy_update(policy=policy, actor=lead, data={"enabled": True, "description": "go"})
    policy.refresh_from_db()
    assert (policy.enabled, policy.description) == (False, "")

    auto_approval_policy_update(policy=policy, actor=admin_user, data={"enabled": True})
    assert AutoApprovalPolicy.objects.get(pk=policy.pk).enabled is True
    assert len(audit_rows(AuditAction.AUTO_APPROVAL_POLICY_ENABLED)) == 1


@pytest.mark.django_db
def test_an_update_to_an_existing_name_is_refused(lead):
    AutoApprovalPolicyFactory(policy_name="taken")
    policy = AutoApprovalPolicyFactory(policy_name="mine")

    with pytest.raises(PolicyNameTaken):
        auto_approval_policy_update(policy=policy, actor=lead, data={"policy_name": "TAKEN"})

    auto_approval_policy_update(policy=policy, actor=lead, data={"policy_name": "mine"})  # its own name is fine
    assert AutoApprovalPolicy.objects.filter(policy_name="mine").exists()


# --- delete --------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_only_admins_delete_a_policy(lead):
    policy = AutoApprovalPolicyFactory()

    with pytest.raises(PolicyPermissionDenied):
        auto_approval_policy_delete(policy=policy, actor=lead)

    assert AutoApprovalPolicy.objects.filter(pk=policy.pk).exists()


@pytest.mark.django_db
def test_deleting_a_policy_audits_its_settings_and_history_and_keeps_its_decisions(admin_user, own_system):
    policy = AutoApprovalPolicyFactory(policy_name="retired")
    item = ReviewItemFactory(system=own_system, decided=True, decided_by_policy=policy)
    SpotCheckFactory(policy=policy, item=item)
    policy_id = policy.id

    auto_approval_policy_delete(policy=policy, actor=admin_user)

    assert not AutoApprovalPolicy.objects.filter(pk=policy_id).exists()
    item.refresh_from_db()
    assert item.decision == "approve"
    assert item.decided_by_policy is None
    [entry] = audit_rows(AuditAction.AUTO_APPROVAL_POLICY_DELETED)
    assert entry.object_id == str(policy_id)
    assert entry.data["policy"]["name"] == "retired"
    assert (entry.data["decided_items"], entry.data["spot_checks"]) == (1, 1)
    assert entry.data["settings"]["severity_filter"] == ["low", "medium"]


@pytest.mark.django_db
def test_a_reviewer_role_is_not_enough_to_enable(make_user, team):
    reviewer = make_user(Role.REVIEWER, teams=[team])
    policy = AutoApprovalPolicyFactory()

    with pytest.raises(PolicyPermissionDenied):
        auto_approval_policy_update(policy=policy, actor=reviewer, data={"enabled": True})
