"""The policy admin: the changelist, the read-only version page with its findings and diff, the create and
add-version pages (through the services), and the Activate / Deactivate actions."""

from __future__ import annotations

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from governance.choices import AuditAction, Role
from governance.models import AuditLog, Policy, PolicyVersion
from governance.services.policies import policy_create, policy_version_activate, policy_version_create
from tests.governance.policy_documents import KEY, invalid_policy_text, policy_text, rule

pytestmark = pytest.mark.django_db

POLICIES = reverse("admin:governance_policy_changelist")
VERSIONS = reverse("admin:governance_policyversion_changelist")
ADD_POLICY = reverse("admin:governance_policy_add")


def version_url(version: PolicyVersion, query: str = "") -> str:
    return reverse("admin:governance_policyversion_change", args=[version.pk]) + query


def add_version_url(policy: Policy) -> str:
    return reverse("admin:governance_policy_add_version", args=[policy.pk])


def flash(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


@pytest.fixture
def first(admin_user, team):
    return policy_create(text=policy_text(), actor=admin_user)


@pytest.fixture
def policy(first):
    return first.policy


@pytest.fixture
def lead_client(client, lead):
    client.force_login(lead)
    return client


def test_the_changelist_lists_policies_with_their_active_version_and_version_count(lead_client, first, admin_user):
    policy_version_create(policy=first.policy, text=invalid_policy_text(), actor=admin_user)
    policy_version_activate(version=first, actor=admin_user)

    page = lead_client.get(POLICIES + "?active=yes&q=fairness")

    assert page.status_code == 200
    content = page.content.decode()
    assert KEY in content and ">v1</a>" in content
    assert '<td class="field-version_count">2</td>' in content
    assert KEY not in lead_client.get(POLICIES + "?active=no").content.decode().split("result_list")[-1]


def test_the_policy_page_shows_its_versions_read_only(lead_client, policy):
    page = lead_client.get(reverse("admin:governance_policy_change", args=[policy.pk]))

    assert page.status_code == 200
    content = page.content.decode()
    assert "Add version" in content and add_version_url(policy) in content
    assert 'name="versions-0-version"' not in content  # the inline shows, it does not edit


def test_the_version_page_shows_the_findings_and_a_diff_against_the_previous_version(lead_client, policy, admin_user):
    second = policy_version_create(
        policy=policy, text=invalid_policy_text(description="<b>bold</b> claims"), actor=admin_user
    )

    page = lead_client.get(version_url(second))

    assert page.status_code == 200
    content = page.content.decode()
    assert 'id="policy-version-findings"' in content and "VGL010 duplicate-id" in content
    assert "Diff against version 1" in content and 'class="diff"' in content
    assert "Rules added: none" in content
    assert "&lt;b&gt;bold&lt;/b&gt;" in content and "<b>bold</b>" not in content


def test_the_version_page_diffs_against_a_named_version(lead_client, policy, admin_user):
    for value in (0.2, 0.3):
        latest = policy_version_create(policy=policy, text=policy_text(rules=[rule("dp-gap", value=value)]),
                                       actor=admin_user)  # fmt: skip

    named = lead_client.get(version_url(latest, "?against=1")).content.decode()
    missing = lead_client.get(version_url(latest, "?against=8")).content.decode()

    assert "Diff against version 1" in named and "Changed: dp-gap (when)" in named
    assert "There is no version 8 of this policy." in missing


def test_the_first_version_has_nothing_to_compare_with(lead_client, first):
    page = lead_client.get(version_url(first))

    assert page.status_code == 200
    assert "is the first version: nothing to compare with" in page.content.decode()


def test_the_add_version_page_stores_a_version_through_the_service(lead_client, policy, lead):
    form = lead_client.get(add_version_url(policy))
    response = lead_client.post(add_version_url(policy), {"text": invalid_policy_text(), "filename": "p.yaml"})

    assert form.status_code == 200 and "Store the new version" in form.content.decode()
    stored = policy.versions.get(version=2)
    assert response.status_code == 302 and response["Location"] == version_url(stored)
    assert stored.validated is False and stored.created_by == lead
    assert any("NOT validated" in message and "error(s)" in message for message in flash(response))
    assert AuditLog.objects.filter(action=AuditAction.POLICY_VERSION_CREATED, actor="lena").count() == 1


def test_the_add_version_page_shows_why_a_document_is_refused(lead_client, policy):
    response = lead_client.post(add_version_url(policy), {"text": policy_text(key="other")})

    assert response.status_code == 200
    assert "metadata.id: must be &#x27;fairness-guard&#x27;" in response.content.decode()
    assert policy.versions.count() == 1


def test_the_add_page_creates_a_policy(lead_client, team):
    response = lead_client.post(ADD_POLICY, {"text": policy_text(), "filename": ""})

    version = PolicyVersion.objects.get()
    assert response.status_code == 302 and response["Location"] == version_url(version)
    assert version.policy.key == KEY and version.policy.team == team


def test_a_viewer_may_not_add(client, viewer, policy):
    client.force_login(viewer)

    assert client.get(ADD_POLICY).status_code in (403, 404)
    assert client.post(add_version_url(policy), {"text": policy_text(name="x")}).status_code == 404
    assert policy.versions.count() == 1


def test_the_activate_action_refuses_an_unvalidated_version(lead_client, policy, admin_user):
    invalid = policy_version_create(policy=policy, text=invalid_policy_text(), actor=admin_user)

    response = lead_client.post(
        VERSIONS, {"action": "activate_selected", "_selected_action": [invalid.pk]}, follow=True
    )

    assert any("Not activated" in m and "only a validated version can be activated" in m for m in flash(response))
    policy.refresh_from_db()
    assert policy.active_version is None
    assert not AuditLog.objects.filter(action=AuditAction.POLICY_ACTIVATED).exists()


def test_the_activate_and_deactivate_actions_go_through_the_services(lead_client, first, policy):
    activated = lead_client.post(VERSIONS, {"action": "activate_selected", "_selected_action": [first.pk]}, follow=True)
    policy.refresh_from_db()
    active_after_activation = policy.active_version

    lead_client.post(POLICIES, {"action": "deactivate_selected", "_selected_action": [policy.pk]}, follow=True)

    policy.refresh_from_db()
    assert active_after_activation == first and policy.active_version is None
    assert any("is now the active version" in m for m in flash(activated))
    assert list(
        AuditLog.objects.filter(action__startswith="policy.", actor="lena")
        .order_by("seq")
        .values_list("action", flat=True)
    ) == [AuditAction.POLICY_ACTIVATED, AuditAction.POLICY_DEACTIVATED]


def test_the_actions_refuse_a_lead_of_another_team(client, make_user, other_team, first, policy):
    client.force_login(make_user(Role.GOVERNANCE_LEAD, teams=[other_team]))

    response = client.post(VERSIONS, {"action": "activate_selected", "_selected_action": [first.pk]}, follow=True)

    assert any("Not activated" in m and "fraud-ml" in m for m in flash(response))
    policy.refresh_from_db()
    assert policy.active_version is None


def test_the_shadow_replay_action_stores_the_report_and_the_page_shows_it(lead_client, first, policy):
    page = lead_client.get(version_url(first))
    assert "not replayed" in page.content.decode()

    response = lead_client.post(
        VERSIONS, {"action": "shadow_replay_selected", "_selected_action": [first.pk]}, follow=True
    )

    assert any("decisions would change over 30 days" in m for m in flash(response))
    first.refresh_from_db()
    assert first.shadow_report["days"] == 30 and first.shadow_replayed_at is not None
    assert AuditLog.objects.filter(action=AuditAction.POLICY_SHADOW_REPLAYED, actor="lena").exists()
    assert "decisions would change over 30 days" in lead_client.get(version_url(first)).content.decode()


def test_the_shadow_replay_action_refuses_an_unvalidated_version(lead_client, policy, admin_user):
    invalid = policy_version_create(policy=policy, text=invalid_policy_text(), actor=admin_user)

    response = lead_client.post(
        VERSIONS, {"action": "shadow_replay_selected", "_selected_action": [invalid.pk]}, follow=True
    )

    assert any(m.startswith("Not replayed") for m in flash(response))
    assert not AuditLog.objects.filter(action=AuditAction.POLICY_SHADOW_REPLAYED).exists()
