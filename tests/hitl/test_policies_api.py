"""``/auto-approval-policies``: roles, validation, admin-only enabling, team visibility and agreement."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from governance.choices import AuditAction, Role
from governance.models import AuditLog
from hitl.models import AutoApprovalPolicy, SpotCheckStatus
from tests.hitl.factories import AutoApprovalPolicyFactory, SpotCheckFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/auto-approval-policies"
POLICY_FIELDS = {
    "id",
    "policy_name",
    "team",
    "severity_filter",
    "review_type_filter",
    "max_risk_score",
    "auto_action",
    "enabled",
    "shadow_mode",
    "requires_audit_log",
    "description",
    "mode",
    "disabled_reason",
    "disabled_at",
    "created_by",
    "created_at",
    "updated_at",
    "agreement",
}
BODY = {
    "policy_name": "routine drift",
    "severity_filter": ["low", "medium"],
    "review_type_filter": ["alert_triage"],
    "max_risk_score": 25,
    "auto_action": "approve",
    "description": "PSI drift on minimal-risk systems",
}


@pytest.fixture
def reviewer(make_user, team):
    return make_user(Role.REVIEWER, teams=[team], username="rita")


def error_fields(response) -> dict:
    return response.json()["error"]["fields"]


# --- create -------------------------------------------------------------------------------------------
def test_a_governance_lead_creates_a_disabled_policy_for_their_team(client_for, lead, team):
    response = client_for(lead).post(URL, {**BODY, "team": str(team.id)})

    assert response.status_code == 201
    body = response.json()
    assert set(body) == POLICY_FIELDS
    assert (body["policy_name"], body["team"], body["max_risk_score"]) == ("routine drift", str(team.id), 25.0)
    assert (body["enabled"], body["shadow_mode"], body["mode"]) == (False, False, "disabled")
    assert (body["requires_audit_log"], body["created_by"]) == (True, "lena")
    assert sorted(body["severity_filter"]) == ["low", "medium"]
    assert body["agreement"] == {
        "checked": 0,
        "agreed": 0,
        "disagreed": 0,
        "pending": 0,
        "rate": None,
        "judged": False,
    }
    policy = AutoApprovalPolicy.objects.get()
    assert AuditLog.objects.get(action=AuditAction.AUTO_APPROVAL_POLICY_CREATED).object_id == str(policy.id)


def test_a_shadow_policy_may_be_created_by_a_governance_lead(client_for, lead):
    response = client_for(lead).post(URL, {**BODY, "shadow_mode": True})

    assert response.status_code == 201
    assert response.json()["mode"] == "shadow"


@pytest.mark.parametrize("risk", [-1, 100.5, 101])
def test_a_max_risk_score_outside_0_to_100_is_a_400_naming_it(client_for, lead, risk):
    response = client_for(lead).post(URL, {**BODY, "max_risk_score": risk})

    assert response.status_code == 400
    assert list(error_fields(response)) == ["max_risk_score"]
    assert not AutoApprovalPolicy.objects.exists()


def test_an_unknown_severity_is_a_400_naming_severity_filter(client_for, lead):
    response = client_for(lead).post(URL, {**BODY, "severity_filter": ["low", "severe"]})

    assert response.status_code == 400
    assert list(error_fields(response)) == ["severity_filter"]


def test_a_policy_may_never_cover_high_or_critical_items(client_for, admin_user):
    response = client_for(admin_user).post(URL, {**BODY, "severity_filter": ["medium", "high"]})

    assert response.status_code == 400
    assert "human" in error_fields(response)["severity_filter"][0]


def test_an_unknown_auto_action_is_a_400_naming_it(client_for, lead):
    response = client_for(lead).post(URL, {**BODY, "auto_action": "ignore"})

    assert response.status_code == 400
    assert list(error_fields(response)) == ["auto_action"]


def test_a_missing_policy_name_is_a_400_naming_it(client_for, lead):
    response = client_for(lead).post(URL, {key: value for key, value in BODY.items() if key != "policy_name"})

    assert response.status_code == 400
    assert "policy_name" in error_fields(response)


def test_a_taken_policy_name_is_a_409(client_for, lead):
    AutoApprovalPolicyFactory(policy_name="routine drift")

    response = client_for(lead).post(URL, BODY)

    assert response.status_code == 409
    assert list(error_fields(response)) == ["policy_name"]


def test_a_team_outside_the_callers_teams_is_a_400(client_for, lead, other_team):
    response = client_for(lead).post(URL, {**BODY, "team": str(other_team.id)})

    assert response.status_code == 400
    assert list(error_fields(response)) == ["team"]


def test_a_governance_lead_may_not_create_an_enabled_policy(client_for, lead):
    response = client_for(lead).post(URL, {**BODY, "enabled": True})

    assert response.status_code == 403
    assert not AutoApprovalPolicy.objects.exists()


def test_an_admin_may_create_an_enabled_policy(client_for, admin_user):
    response = client_for(admin_user).post(URL, {**BODY, "enabled": True})

    assert response.status_code == 201
    assert response.json()["mode"] == "enabled"


@pytest.mark.parametrize("role", [Role.REVIEWER, Role.VIEWER, Role.SECURITY])
def test_only_admins_and_governance_leads_create_policies(client_for, make_user, team, role):
    response = client_for(make_user(role, teams=[team])).post(URL, BODY)

    assert response.status_code == 403
    assert not AutoApprovalPolicy.objects.exists()


# --- read ---------------------------------------------------------------------------------------------
def test_reviewers_read_the_policies_of_their_teams_and_the_every_team_ones(client_for, reviewer, team, other_team):
    own = AutoApprovalPolicyFactory(policy_name="a-own", team=team)
    everyone = AutoApprovalPolicyFactory(policy_name="b-everyone", team=None)
    AutoApprovalPolicyFactory(policy_name="c-theirs", team=other_team)

    response = client_for(reviewer).get(URL)

    assert response.status_code == 200
    assert [row["id"] for row in response.json()["results"]] == [str(own.id), str(everyone.id)]


def test_a_policy_of_another_team_is_a_404(client_for, lead, other_team):
    theirs = AutoApprovalPolicyFactory(team=other_team)

    assert client_for(lead).get(f"{URL}/{theirs.id}").status_code == 404
    assert client_for(lead).patch(f"{URL}/{theirs.id}", {"description": "x"}).status_code == 404


@pytest.mark.parametrize("role", [Role.VIEWER, Role.SECURITY])
def test_viewers_and_security_may_not_read_policies(client_for, make_user, team, role):
    AutoApprovalPolicyFactory(team=team)

    assert client_for(make_user(role, teams=[team])).get(URL).status_code == 403


def test_the_list_filters_by_enabled(client_for, admin_user):
    enabled = AutoApprovalPolicyFactory(enabled=True)
    AutoApprovalPolicyFactory(enabled=False)

    response = client_for(admin_user).get(URL, {"enabled": "true"})

    assert [row["id"] for row in response.json()["results"]] == [str(enabled.id)]


def test_agreement_counts_spot_check_verdicts_of_each_policy(client_for, admin_user):
    policy = AutoApprovalPolicyFactory(enabled=True)
    now = timezone.now()
    SpotCheckFactory.create_batch(3, policy=policy, status=SpotCheckStatus.AGREED, checked_at=now)
    SpotCheckFactory(policy=policy, status=SpotCheckStatus.DISAGREED, checked_at=now - timedelta(days=1))
    SpotCheckFactory(policy=policy)
    SpotCheckFactory(policy=AutoApprovalPolicyFactory(), status=SpotCheckStatus.DISAGREED, checked_at=now)

    listed = client_for(admin_user).get(URL, {"enabled": "true"}).json()["results"][0]["agreement"]
    detail = client_for(admin_user).get(f"{URL}/{policy.id}").json()["agreement"]

    expected = {"checked": 4, "agreed": 3, "disagreed": 1, "pending": 1, "rate": 0.75, "judged": False}
    assert listed == detail == expected


# --- update, enable, disable, delete --------------------------------------------------------------------
def test_a_governance_lead_changes_a_disabled_policy(client_for, lead, team):
    policy = AutoApprovalPolicyFactory(team=team, max_risk_score=30)

    response = client_for(lead).patch(f"{URL}/{policy.id}", {"max_risk_score": 20, "description": "tighter"})

    assert response.status_code == 200
    assert (response.json()["max_risk_score"], response.json()["description"]) == (20.0, "tighter")
    policy.refresh_from_db()
    assert policy.max_risk_score == 20
    assert AuditLog.objects.filter(action=AuditAction.AUTO_APPROVAL_POLICY_UPDATED).count() == 1


def test_a_patch_with_an_out_of_range_risk_is_a_400_and_changes_nothing(client_for, lead, team):
    policy = AutoApprovalPolicyFactory(team=team, max_risk_score=30)

    response = client_for(lead).patch(f"{URL}/{policy.id}", {"max_risk_score": 150})

    assert response.status_code == 400
    assert list(error_fields(response)) == ["max_risk_score"]
    policy.refresh_from_db()
    assert policy.max_risk_score == 30


def test_a_governance_lead_may_not_widen_an_enabled_policy(client_for, lead, team):
    policy = AutoApprovalPolicyFactory(team=team, enabled=True, max_risk_score=20)

    response = client_for(lead).patch(f"{URL}/{policy.id}", {"max_risk_score": 60})

    assert response.status_code == 403
    policy.refresh_from_db()
    assert policy.max_risk_score == 20


def test_an_admin_enables_a_policy_and_it_is_audited(client_for, admin_user):
    policy = AutoApprovalPolicyFactory()

    response = client_for(admin_user).post(f"{URL}/{policy.id}/enable", {})

    assert response.status_code == 200
    assert (response.json()["enabled"], response.json()["mode"]) == (True, "enabled")
    policy.refresh_from_db()
    assert policy.enabled
    entry = AuditLog.objects.get(action=AuditAction.AUTO_APPROVAL_POLICY_ENABLED)
    assert entry.data["policy"]["name"] == policy.policy_name


def test_enabling_an_enabled_policy_changes_and_audits_nothing(client_for, admin_user):
    policy = AutoApprovalPolicyFactory(enabled=True)

    response = client_for(admin_user).post(f"{URL}/{policy.id}/enable", {})

    assert response.status_code == 200
    assert not AuditLog.objects.filter(action=AuditAction.AUTO_APPROVAL_POLICY_ENABLED).exists()


@pytest.mark.parametrize("action", ["enable", "disable"])
def test_a_governance_lead_may_not_enable_or_disable(client_for, lead, team, action):
    policy = AutoApprovalPolicyFactory(team=team, enabled=action == "disable")

    response = client_for(lead).post(f"{URL}/{policy.id}/{action}", {})

    assert response.status_code == 403
    policy.refresh_from_db()
    assert policy.enabled is (action == "disable")


def test_a_governance_lead_may_not_enable_through_a_patch(client_for, lead, team):
    policy = AutoApprovalPolicyFactory(team=team)

    response = client_for(lead).patch(f"{URL}/{policy.id}", {"enabled": True})

    assert response.status_code == 403
    policy.refresh_from_db()
    assert not policy.enabled


def test_an_admin_disables_a_policy_with_a_reason(client_for, admin_user):
    policy = AutoApprovalPolicyFactory(enabled=True)

    response = client_for(admin_user).post(f"{URL}/{policy.id}/disable", {"reason": "drift season"})

    assert response.status_code == 200
    body = response.json()
    assert (body["enabled"], body["disabled_reason"]) == (False, "drift season")
    assert body["disabled_at"] is not None
    assert AuditLog.objects.get(action=AuditAction.AUTO_APPROVAL_POLICY_DISABLED).data["reason"] == "drift season"


def test_an_admin_deletes_a_policy(client_for, admin_user):
    policy = AutoApprovalPolicyFactory()

    response = client_for(admin_user).delete(f"{URL}/{policy.id}")

    assert response.status_code == 204
    assert not AutoApprovalPolicy.objects.exists()
    assert AuditLog.objects.filter(action=AuditAction.AUTO_APPROVAL_POLICY_DELETED).count() == 1


def test_a_governance_lead_may_not_delete_a_policy(client_for, lead, team):
    policy = AutoApprovalPolicyFactory(team=team)

    assert client_for(lead).delete(f"{URL}/{policy.id}").status_code == 403
    assert AutoApprovalPolicy.objects.filter(pk=policy.pk).exists()


def test_put_is_not_offered(client_for, admin_user):
    policy = AutoApprovalPolicyFactory()

    assert client_for(admin_user).put(f"{URL}/{policy.id}", BODY).status_code == 405
