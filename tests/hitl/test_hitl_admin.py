"""The review queue's admin: the triage changelist (columns, filters, SLA order, backlog panel), the
triage actions with their rationale page, Clear Low Risk, AI Assist, the admin-only auto-approval
switches, and the policy, spot-check, decision and assist-model pages."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse
from django.utils import timezone

from governance.choices import AuditAction, Role, Severity
from governance.models import AuditLog
from hitl.models import (
    AssistResult,
    AutoApprovalPolicy,
    Decision,
    DecisionSource,
    ReviewDecision,
    ReviewItem,
    ReviewStatus,
    SpotCheckStatus,
)
from tests.hitl.factories import (
    AssistResultFactory,
    AutoApprovalPolicyFactory,
    DecisionFactory,
    ReviewItemFactory,
    SpotCheckFactory,
)

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:hitl_reviewitem_changelist"


@pytest.fixture
def reviewer(make_user, team):
    return make_user(Role.REVIEWER, teams=[team], username="rita")


@pytest.fixture
def as_reviewer(client, reviewer):
    client.force_login(reviewer)
    return client


@pytest.fixture
def as_admin(client, admin_user):
    client.force_login(admin_user)
    return client


def changelist(query: str = "") -> str:
    return reverse(CHANGELIST) + query


def run_action(client, action: str, items, **data):
    return client.post(changelist(), {"action": action, "_selected_action": [str(item.pk) for item in items], **data})


def confirm_action(client, action: str, items, rationale: str = "", **data):
    return run_action(client, action, items, post="yes", rationale=rationale, **data)


def message_texts(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def statuses(items) -> set[str]:
    return set(ReviewItem.objects.filter(pk__in=[item.pk for item in items]).values_list("status", flat=True))


def health_cell(response, name: str) -> str:
    content = response.content.decode()
    marker = f'data-health="{name}"'
    start = content.index(">", content.index(marker)) + 1
    return content[start : content.index("<", start)].strip()


# --- The changelist ------------------------------------------------------------------------------


def test_the_changelist_shows_suggestion_confidence_risk_and_an_overdue_marker(as_reviewer, own_system):
    ReviewItemFactory(system=own_system, title="drift on fraud-scorer", assisted=True)
    ReviewItemFactory(system=own_system, title="late one", sla_due_at=timezone.now() - timedelta(hours=1))

    response = as_reviewer.get(changelist())

    content = response.content.decode()
    assert response.status_code == 200
    for column in ("severity_badge", "sla_due", "suggestion", "confidence", "risk", "decision_source", "assignee"):
        assert f"column-{column}" in content
    assert "97%" in content  # the assisted item's confidence, as a percentage
    assert ">12<" in content  # its risk score
    assert content.count('class="sla-overdue"') == 1


def test_the_queue_is_ordered_by_sla_due_time_most_urgent_first(as_reviewer, own_system):
    now = timezone.now()
    later = ReviewItemFactory(system=own_system, sla_due_at=now + timedelta(hours=8))
    overdue = ReviewItemFactory(system=own_system, sla_due_at=now - timedelta(hours=2))
    soon = ReviewItemFactory(system=own_system, sla_due_at=now + timedelta(minutes=30))

    rows = list(as_reviewer.get(changelist()).context["cl"].result_list)

    assert rows == [overdue, soon, later]


def test_the_backlog_panel_counts_the_pending_breached_and_24h_flow_of_the_users_teams(
    as_reviewer, own_system, foreign_system
):
    ReviewItemFactory.create_batch(3, system=own_system)
    ReviewItemFactory(system=own_system, severity=Severity.HIGH, sla_due_at=timezone.now() - timedelta(minutes=5))
    ReviewItemFactory.create_batch(2, system=own_system, decided=True)
    ReviewItemFactory.create_batch(5, system=foreign_system)  # another team's: not counted

    response = as_reviewer.get(changelist())

    assert health_cell(response, "pending") == "4"
    assert health_cell(response, "sla-breached") == "1"
    assert health_cell(response, "inflow") == "6"
    assert health_cell(response, "outflow") == "2"
    assert health_cell(response, "net-flow") == "4"
    assert 'data-severity="high">high 1<' in response.content.decode()
    assert response.content.decode().count('class="bar-inflow"') == 24
    assert response.context["backlog"].health.pending == 4


def test_the_oldest_pending_age_is_humanized(as_reviewer, own_system):
    item = ReviewItemFactory(system=own_system)
    ReviewItem.objects.filter(pk=item.pk).update(created_at=timezone.now() - timedelta(days=2, hours=3))

    response = as_reviewer.get(changelist())

    assert health_cell(response, "oldest-age").replace("\xa0", " ") == "2 days, 3 hours"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("?sla_breached=yes", {"overdue"}),
        ("?sla_breached=no", {"assisted", "plain", "low", "done"}),
        ("?suggestion=none", {"overdue", "plain", "low", "done"}),
        ("?suggestion=approve", {"assisted"}),
        ("?severity__exact=low", {"low"}),
        ("?status__exact=approved", {"done"}),
        ("?decision_source__exact=human", {"done"}),
        ("?q=overdue", {"overdue"}),
    ],
)
def test_the_list_filters_narrow_the_queue(as_reviewer, own_system, query, expected):
    ReviewItemFactory(system=own_system, title="assisted", assisted=True)
    ReviewItemFactory(system=own_system, title="overdue", sla_due_at=timezone.now() - timedelta(hours=1))
    ReviewItemFactory(system=own_system, title="plain")
    ReviewItemFactory(system=own_system, title="low", severity=Severity.LOW)
    ReviewItemFactory(system=own_system, title="done", decided=True, sla_due_at=timezone.now() - timedelta(days=1))

    rows = as_reviewer.get(changelist(query)).context["cl"].result_list

    assert {row.title for row in rows} == expected


def test_the_team_filter_lists_only_the_users_teams_and_narrows_to_one(as_admin, own_system, foreign_system):
    mine = ReviewItemFactory(system=own_system)
    ReviewItemFactory(system=foreign_system)

    rows = as_admin.get(changelist(f"?system__team__id__exact={own_system.team_id}")).context["cl"].result_list

    assert list(rows) == [mine]


def test_a_reviewer_sees_only_their_teams_items(as_reviewer, own_system, foreign_system):
    mine = ReviewItemFactory(system=own_system)
    theirs = ReviewItemFactory(system=foreign_system)

    rows = as_reviewer.get(changelist()).context["cl"].result_list

    assert list(rows) == [mine]
    assert as_reviewer.get(reverse("admin:hitl_reviewitem_change", args=[theirs.pk])).status_code == 302


def test_items_are_never_added_or_deleted_by_hand(as_admin, own_system):
    item = ReviewItemFactory(system=own_system)

    assert as_admin.get(reverse("admin:hitl_reviewitem_add")).status_code == 403
    assert as_admin.get(reverse("admin:hitl_reviewitem_delete", args=[item.pk])).status_code == 403
    assert "delete_selected" not in dict(as_admin.get(changelist()).context["action_form"].fields["action"].choices)


# --- Triage actions ------------------------------------------------------------------------------


def test_the_first_post_of_approve_asks_for_a_rationale_and_decides_nothing(as_reviewer, own_system):
    items = ReviewItemFactory.create_batch(3, system=own_system)

    response = run_action(as_reviewer, "approve_selected", items)

    assert response.status_code == 200
    assert response.templates[0].name == "admin/hitl/reviewitem/decide_confirmation.html"
    content = response.content.decode()
    assert 'name="rationale"' in content
    assert 'name="post" value="yes"' in content
    assert all(item.title in content for item in items)
    assert statuses(items) == {ReviewStatus.PENDING}


def test_approving_with_a_rationale_decides_every_selected_item_and_audits_each(as_reviewer, reviewer, own_system):
    items = ReviewItemFactory.create_batch(3, system=own_system)
    untouched = ReviewItemFactory(system=own_system)

    response = confirm_action(as_reviewer, "approve_selected", items, rationale="known seasonal drift")

    assert response.status_code == 302
    assert statuses(items) == {ReviewStatus.APPROVED}
    assert ReviewItem.objects.get(pk=untouched.pk).status == ReviewStatus.PENDING
    decided = ReviewItem.objects.filter(pk__in=[item.pk for item in items])
    assert {(row.decided_by_id, row.decision_source, row.rationale) for row in decided} == {
        (reviewer.pk, DecisionSource.BULK, "known seasonal drift")
    }
    audits = AuditLog.objects.filter(action=AuditAction.REVIEW_DECIDED)
    assert {entry.object_id for entry in audits} == {str(item.pk) for item in items}
    assert {entry.actor for entry in audits} == {"rita"}
    assert Decision.objects.filter(item__in=items, source=DecisionSource.BULK).count() == 3
    assert message_texts(response) == ["Decided 3 review item(s): 3 approved."]


def test_a_missing_rationale_rerenders_the_page_with_an_error_and_decides_nothing(as_reviewer, own_system):
    items = ReviewItemFactory.create_batch(2, system=own_system)

    response = confirm_action(as_reviewer, "reject_selected", items, rationale="   ")

    assert response.status_code == 200
    assert "A rationale is required" in response.content.decode()
    assert statuses(items) == {ReviewStatus.PENDING}
    assert not AuditLog.objects.filter(action=AuditAction.REVIEW_DECIDED).exists()


def test_a_decided_item_in_the_selection_is_named_and_nothing_is_changed(as_reviewer, own_system):
    pending = ReviewItemFactory.create_batch(2, system=own_system)
    done = ReviewItemFactory(system=own_system, decided=True, title="already handled")

    response = confirm_action(as_reviewer, "reject_selected", [*pending, done], rationale="false positives")

    assert response.status_code == 302
    texts = message_texts(response)
    assert any(text.startswith("already handled:") and "already approved" in text for text in texts)
    assert "Nothing was decided" in texts[-1]
    assert statuses(pending) == {ReviewStatus.PENDING}
    assert ReviewItem.objects.get(pk=done.pk).decision == ReviewDecision.APPROVE
    assert not AuditLog.objects.filter(action=AuditAction.REVIEW_DECIDED).exists()


def test_escalating_selected_items_opens_an_incident(as_reviewer, own_system):
    item = ReviewItemFactory(system=own_system, severity=Severity.HIGH)

    response = confirm_action(as_reviewer, "escalate_selected", [item], rationale="real drift, needs owners")

    item.refresh_from_db()
    assert item.status == ReviewStatus.ESCALATED
    assert item.escalated_incident is not None
    assert message_texts(response) == ["Decided 1 review item(s): 1 escalated into 1 incident(s)."]


def test_apply_suggestions_decides_each_item_by_its_own_suggestion(as_reviewer, own_system):
    approve = ReviewItemFactory(system=own_system, assisted=True)
    reject = ReviewItemFactory(system=own_system, assisted=True, suggested_decision=ReviewDecision.REJECT)

    first = run_action(as_reviewer, "apply_suggestions_selected", [approve, reject])
    assert "take its own AI suggestion" in first.content.decode()
    confirm_action(as_reviewer, "apply_suggestions_selected", [approve, reject], rationale="suggestions checked")

    assert ReviewItem.objects.get(pk=approve.pk).status == ReviewStatus.APPROVED
    assert ReviewItem.objects.get(pk=reject.pk).status == ReviewStatus.REJECTED


def test_apply_suggestions_refuses_a_high_severity_item_and_decides_nothing(as_reviewer, own_system):
    low = ReviewItemFactory(system=own_system, assisted=True, severity=Severity.LOW)
    high = ReviewItemFactory(system=own_system, assisted=True, severity=Severity.HIGH, title="serious one")

    response = confirm_action(as_reviewer, "apply_suggestions_selected", [low, high], rationale="suggestions")

    assert any(text.startswith("serious one:") and "needs a human" in text for text in message_texts(response))
    assert statuses([low, high]) == {ReviewStatus.PENDING}


def test_a_viewer_has_no_triage_actions_and_cannot_post_one(client, viewer, own_system):
    client.force_login(viewer)
    item = ReviewItemFactory(system=own_system)

    page = client.get(changelist())
    confirm_action(client, "approve_selected", [item], rationale="sneaky")

    assert page.status_code == 200
    assert page.context["action_form"] is None or "approve_selected" not in dict(
        page.context["action_form"].fields["action"].choices
    )
    assert b"process-with-ai-assist" not in page.content
    assert ReviewItem.objects.get(pk=item.pk).status == ReviewStatus.PENDING


def test_another_teams_item_cannot_be_slipped_into_a_selection(as_reviewer, own_system, foreign_system):
    theirs = ReviewItemFactory(system=foreign_system)

    response = confirm_action(as_reviewer, "approve_selected", [theirs], rationale="not mine")

    assert ReviewItem.objects.get(pk=theirs.pk).status == ReviewStatus.PENDING
    assert response.status_code == 302  # the scoped queryset is empty: Django reports nothing selected


# --- Clear Low Risk ------------------------------------------------------------------------------


def low_risk_estate(own_system, foreign_system):
    qualifying = ReviewItemFactory.create_batch(3, system=own_system, assisted=True, severity=Severity.LOW)
    stays = [
        ReviewItemFactory(system=own_system, assisted=True, severity=Severity.MEDIUM),  # not low
        ReviewItemFactory(system=own_system, assisted=True, severity=Severity.LOW, risk_score=55.0),  # risky
        ReviewItemFactory(system=own_system, severity=Severity.LOW),  # never assisted
        ReviewItemFactory(system=foreign_system, assisted=True, severity=Severity.LOW),  # another team
    ]
    return qualifying, stays


def test_clear_low_risk_shows_how_many_items_qualify_and_the_thresholds(as_reviewer, own_system, foreign_system):
    qualifying, stays = low_risk_estate(own_system, foreign_system)

    response = as_reviewer.get(reverse("admin:hitl_reviewitem_clear_low_risk"))

    assert response.status_code == 200
    assert response.context["count"] == 3
    content = response.content.decode()
    assert 'data-count="3"' in content
    assert '<span id="confidence-floor">0.9</span>' in content
    assert '<span id="risk-ceiling">30' in content
    assert statuses(qualifying) == {ReviewStatus.PENDING}


def test_confirming_clear_low_risk_approves_only_the_qualifying_items(as_reviewer, own_system, foreign_system):
    qualifying, stays = low_risk_estate(own_system, foreign_system)

    response = as_reviewer.post(reverse("admin:hitl_reviewitem_clear_low_risk"), {"rationale": ""})

    assert response.status_code == 302
    assert statuses(qualifying) == {ReviewStatus.APPROVED}
    assert statuses(stays) == {ReviewStatus.PENDING}
    assert message_texts(response) == ["Clear Low Risk approved 3 low-risk item(s)."]
    rationale = ReviewItem.objects.get(pk=qualifying[0].pk).rationale
    assert rationale.startswith("Clear Low Risk:")
    assert AuditLog.objects.filter(action=AuditAction.REVIEW_DECIDED).count() == 3


def test_a_viewer_cannot_clear_low_risk(client, viewer, own_system, foreign_system):
    client.force_login(viewer)
    qualifying, _ = low_risk_estate(own_system, foreign_system)

    assert client.get(reverse("admin:hitl_reviewitem_clear_low_risk")).status_code == 403
    assert client.post(reverse("admin:hitl_reviewitem_clear_low_risk")).status_code == 403
    assert statuses(qualifying) == {ReviewStatus.PENDING}


# --- Process with AI Assist ----------------------------------------------------------------------


def test_the_ai_assist_button_only_accepts_post(as_reviewer):
    assert as_reviewer.get(reverse("admin:hitl_reviewitem_assist")).status_code == 405


def test_a_viewer_cannot_run_ai_assist(client, viewer):
    client.force_login(viewer)

    assert client.post(reverse("admin:hitl_reviewitem_assist")).status_code == 403


def test_the_ai_assist_button_suggests_for_the_users_unassisted_pending_items(as_reviewer, own_system, foreign_system):
    mine = ReviewItemFactory.create_batch(2, system=own_system)
    already = ReviewItemFactory(system=own_system, assisted=True)
    theirs = ReviewItemFactory(system=foreign_system)

    response = as_reviewer.post(reverse("admin:hitl_reviewitem_assist"))

    assert response.status_code == 302
    assert set(AssistResult.objects.values_list("item_id", flat=True)) == {item.pk for item in mine}
    assert not ReviewItem.objects.filter(pk__in=[item.pk for item in mine], suggested_decision="").exists()
    assert ReviewItem.objects.get(pk=theirs.pk).assisted_at is None
    assert ReviewItem.objects.get(pk=already.pk).assist_results.count() == 0
    assert message_texts(response)[0].startswith("AI Assist suggested a decision for 2 item(s)")


def test_the_ai_assist_action_suggests_for_the_selected_pending_items(as_reviewer, own_system):
    chosen = ReviewItemFactory(system=own_system)
    done = ReviewItemFactory(system=own_system, decided=True)
    ReviewItemFactory(system=own_system)  # not selected

    response = run_action(as_reviewer, "assist_selected", [chosen, done])

    assert set(AssistResult.objects.values_list("item_id", flat=True)) == {chosen.pk}
    assert "1 decided item(s) skipped" in message_texts(response)[0]


# --- The item's page -----------------------------------------------------------------------------


def test_the_item_page_shows_the_latest_suggestion_and_the_decision_history(as_reviewer, own_system):
    item = ReviewItemFactory(system=own_system, assisted=True)
    AssistResultFactory(
        item=item,
        summary="PSI just above warning",
        factors={"severity": {"value": 0.5, "contribution": 17.5}},
        evidence_refs=["alert:abc"],
        sla_recommendation={"hours": 24, "due_at": "2026-01-02T00:00:00Z", "reason": "medium severity"},
    )
    policy = AutoApprovalPolicyFactory(policy_name="routine-drift", shadow_mode=True)
    DecisionFactory(item=item, source=DecisionSource.AUTO_POLICY, policy=policy, shadow=True, rationale="shadow")

    response = as_reviewer.get(reverse("admin:hitl_reviewitem_change", args=[item.pk]))

    content = response.content.decode()
    assert response.status_code == 200
    assert "PSI just above warning" in content
    assert "<code>alert:abc</code>" in content
    assert "medium severity" in content
    assert "17.5" in content
    assert "routine-drift" in content  # the shadow decision in the history inline


def test_saving_the_item_page_changes_only_the_assignee(as_reviewer, reviewer, own_system):
    item = ReviewItemFactory(system=own_system)

    response = as_reviewer.post(
        reverse("admin:hitl_reviewitem_change", args=[item.pk]),
        {
            "assignee": reviewer.pk,
            "status": "approved",
            "rationale": "sneaky",
            "decisions-TOTAL_FORMS": "0",
            "decisions-INITIAL_FORMS": "0",
        },
    )

    item.refresh_from_db()
    assert response.status_code == 302
    assert item.assignee == reviewer
    assert (item.status, item.rationale) == (ReviewStatus.PENDING, "")


def test_only_deciders_of_the_items_team_can_be_assigned(as_admin, make_user, team, other_team, own_system):
    item = ReviewItemFactory(system=own_system)
    teammate = make_user(Role.REVIEWER, teams=[team], username="tom")
    make_user(Role.VIEWER, teams=[team], username="val")
    make_user(Role.REVIEWER, teams=[other_team], username="oscar")

    form = as_admin.get(reverse("admin:hitl_reviewitem_change", args=[item.pk])).context["adminform"].form

    assert list(form.fields["assignee"].queryset) == [teammate]


# --- Admin-only auto-approval switches -----------------------------------------------------------


def test_the_auto_approval_panel_is_shown_to_admins_with_each_policy(as_admin):
    AutoApprovalPolicyFactory(policy_name="routine-drift")

    response = as_admin.get(changelist())

    content = response.content.decode()
    assert 'id="auto-approval-panel"' in content
    assert 'data-policy="routine-drift"' in content
    assert "policy-enable" in content


@pytest.mark.parametrize("role", [Role.REVIEWER, Role.GOVERNANCE_LEAD])
def test_the_auto_approval_panel_is_hidden_from_non_admins(client, make_user, team, role):
    client.force_login(make_user(role, teams=[team]))
    AutoApprovalPolicyFactory(policy_name="routine-drift")

    response = client.get(changelist())

    assert response.status_code == 200
    assert b'id="auto-approval-panel"' not in response.content
    assert b"routine-drift" not in response.content


@pytest.mark.parametrize("role", [Role.REVIEWER, Role.GOVERNANCE_LEAD])
def test_the_toggle_url_is_forbidden_to_non_admins(client, make_user, team, role):
    client.force_login(make_user(role, teams=[team]))
    policy = AutoApprovalPolicyFactory()

    response = client.post(reverse("admin:hitl_reviewitem_policy_toggle", args=[policy.pk]), {"enabled": "1"})

    assert response.status_code == 403
    policy.refresh_from_db()
    assert policy.enabled is False
    assert not AuditLog.objects.filter(action=AuditAction.AUTO_APPROVAL_POLICY_ENABLED).exists()


def test_an_admin_enables_and_disables_a_policy_from_the_panel_with_audit(as_admin):
    policy = AutoApprovalPolicyFactory(policy_name="routine-drift")
    toggle = reverse("admin:hitl_reviewitem_policy_toggle", args=[policy.pk])

    as_admin.post(toggle, {"enabled": "1"})
    policy.refresh_from_db()
    assert policy.enabled is True
    as_admin.post(toggle, {"enabled": "0"})
    policy.refresh_from_db()
    assert policy.enabled is False

    actions = list(AuditLog.objects.filter(object_id=str(policy.pk)).order_by("seq").values_list("action", flat=True))
    assert actions == [AuditAction.AUTO_APPROVAL_POLICY_ENABLED, AuditAction.AUTO_APPROVAL_POLICY_DISABLED]


def test_the_toggle_url_refuses_get(as_admin):
    policy = AutoApprovalPolicyFactory()

    assert as_admin.get(reverse("admin:hitl_reviewitem_policy_toggle", args=[policy.pk])).status_code == 405


# --- Auto-approval policy pages ------------------------------------------------------------------


def policy_form(**overrides):
    data = {
        "policy_name": "routine-drift",
        "team": "",
        "severity_filter": ["low", "medium"],
        "review_type_filter": ["alert_triage"],
        "max_risk_score": "25",
        "auto_action": "approve",
        "description": "Routine PSI drift on limited-risk systems.",
    }
    data.update(overrides)
    return data


def test_a_lead_creates_a_policy_through_the_service_and_it_is_audited(client, lead, team):
    client.force_login(lead)

    response = client.post(reverse("admin:hitl_autoapprovalpolicy_add"), policy_form(team=str(team.pk)))

    assert response.status_code == 302
    policy = AutoApprovalPolicy.objects.get()
    assert (policy.policy_name, policy.enabled, policy.created_by) == ("routine-drift", False, lead)
    assert policy.severity_filter == ["medium", "low"]
    entry = AuditLog.objects.get(action=AuditAction.AUTO_APPROVAL_POLICY_CREATED)
    assert entry.data["policy"]["name"] == "routine-drift"


def test_a_risk_above_100_is_a_form_error_on_max_risk_score(as_admin):
    response = as_admin.post(reverse("admin:hitl_autoapprovalpolicy_add"), policy_form(max_risk_score="101"))

    assert response.status_code == 200
    assert "max_risk_score" in response.context["adminform"].form.errors
    assert not AutoApprovalPolicy.objects.exists()


def test_high_severity_cannot_be_put_in_a_policy(as_admin):
    response = as_admin.post(reverse("admin:hitl_autoapprovalpolicy_add"), policy_form(severity_filter=["high"]))

    assert "severity_filter" in response.context["adminform"].form.errors
    assert not AutoApprovalPolicy.objects.exists()


def test_a_duplicate_policy_name_is_a_form_error(as_admin):
    AutoApprovalPolicyFactory(policy_name="Routine-Drift")

    response = as_admin.post(reverse("admin:hitl_autoapprovalpolicy_add"), policy_form())

    assert "policy_name" in response.context["adminform"].form.errors


def test_editing_a_policy_audits_the_change(as_admin):
    policy = AutoApprovalPolicyFactory(policy_name="routine-drift", max_risk_score=30)

    response = as_admin.post(
        reverse("admin:hitl_autoapprovalpolicy_change", args=[policy.pk]), policy_form(max_risk_score="20")
    )

    assert response.status_code == 302
    policy.refresh_from_db()
    assert policy.max_risk_score == 20
    entry = AuditLog.objects.get(action=AuditAction.AUTO_APPROVAL_POLICY_UPDATED)
    assert entry.data["changed"]["max_risk_score"] == {"from": 30.0, "to": 20.0}


def test_the_policy_list_shows_each_policys_spot_check_agreement(as_admin):
    policy = AutoApprovalPolicyFactory(policy_name="routine-drift")
    for status in (SpotCheckStatus.AGREED, SpotCheckStatus.AGREED, SpotCheckStatus.AGREED, SpotCheckStatus.DISAGREED):
        SpotCheckFactory(policy=policy, status=status, human_decision="approve", checked_at=timezone.now())

    response = as_admin.get(reverse("admin:hitl_autoapprovalpolicy_changelist"))

    assert "75% of 4, below the 20 needed to judge" in response.content.decode()


def test_enable_and_disable_actions_are_offered_only_to_admins(client, lead, admin_user):
    AutoApprovalPolicyFactory()
    url = reverse("admin:hitl_autoapprovalpolicy_changelist")

    client.force_login(lead)
    lead_page = client.get(url)
    client.force_login(admin_user)
    admin_actions = dict(client.get(url).context["action_form"].fields["action"].choices)

    assert lead_page.status_code == 200
    assert lead_page.context["action_form"] is None  # no action at all: no enable, disable or delete
    assert {"enable_selected", "disable_selected"} <= set(admin_actions)


def test_an_admin_enables_selected_policies_with_an_audit_entry_each(as_admin):
    policies = AutoApprovalPolicyFactory.create_batch(2)

    as_admin.post(
        reverse("admin:hitl_autoapprovalpolicy_changelist"),
        {"action": "enable_selected", "_selected_action": [str(policy.pk) for policy in policies]},
    )

    assert AutoApprovalPolicy.objects.filter(enabled=True).count() == 2
    assert AuditLog.objects.filter(action=AuditAction.AUTO_APPROVAL_POLICY_ENABLED).count() == 2


def test_a_lead_cannot_delete_a_policy_and_an_admin_deletes_it_with_audit(client, lead, admin_user, team):
    policy = AutoApprovalPolicyFactory(team=team)
    delete_url = reverse("admin:hitl_autoapprovalpolicy_delete", args=[policy.pk])

    client.force_login(lead)
    assert client.post(delete_url, {"post": "yes"}).status_code == 403
    client.force_login(admin_user)
    client.post(delete_url, {"post": "yes"})

    assert not AutoApprovalPolicy.objects.exists()
    assert AuditLog.objects.filter(action=AuditAction.AUTO_APPROVAL_POLICY_DELETED).count() == 1


# --- Spot checks, decisions, assist models -------------------------------------------------------


def test_a_reviewer_records_their_own_decision_on_a_spot_check(as_reviewer, reviewer, own_system):
    check = SpotCheckFactory(item=ReviewItemFactory(system=own_system, decided=True))
    url = reverse("admin:hitl_spotcheck_changelist")
    selection = {"action": "record_verdicts", "_selected_action": [str(check.pk)]}

    page = as_reviewer.post(url, selection)
    assert f'name="decision_{check.pk}"' in page.content.decode()
    assert "shown after your verdict" in as_reviewer.get(url).content.decode()  # blind second look
    as_reviewer.post(url, {**selection, "post": "yes", f"decision_{check.pk}": "reject", "rationale": "not fine"})

    check.refresh_from_db()
    assert (check.status, check.human_decision, check.reviewer) == (SpotCheckStatus.DISAGREED, "reject", reviewer)
    assert AuditLog.objects.filter(action=AuditAction.SPOT_CHECK_RECORDED).count() == 1


def test_a_spot_check_verdict_needs_a_decision_for_every_item(as_reviewer, own_system):
    check = SpotCheckFactory(item=ReviewItemFactory(system=own_system, decided=True))

    response = as_reviewer.post(
        reverse("admin:hitl_spotcheck_changelist"),
        {"action": "record_verdicts", "_selected_action": [str(check.pk)], "post": "yes", "rationale": "ok"},
    )

    assert "Choose a decision for every item" in response.content.decode()
    check.refresh_from_db()
    assert check.status == SpotCheckStatus.PENDING


def test_the_decision_history_is_read_only_and_filterable(as_reviewer, own_system):
    DecisionFactory(item=ReviewItemFactory(system=own_system, decided=True))
    url = reverse("admin:hitl_decision_changelist")

    response = as_reviewer.get(url + "?source__exact=human&shadow__exact=0")

    assert response.status_code == 200
    assert len(response.context["cl"].result_list) == 1
    assert response.context["has_add_permission"] is False


def test_retraining_without_enough_history_says_why(as_admin):
    response = as_admin.post(reverse("admin:hitl_assistmodel_retrain"))

    assert response.status_code == 302
    assert message_texts(response)[0].startswith("No model trained:")


def test_assist_models_are_for_admins_and_leads_only(client, reviewer, lead):
    client.force_login(reviewer)
    assert client.get(reverse("admin:hitl_assistmodel_changelist")).status_code == 403
    assert client.post(reverse("admin:hitl_assistmodel_retrain")).status_code == 403
    client.force_login(lead)
    assert client.get(reverse("admin:hitl_assistmodel_changelist")).status_code == 200
