"""The Django admin: who may log in, the KPI home page, team scoping, audited writes, the read-only audit log."""

from __future__ import annotations

import pytest
from django.contrib.messages import SUCCESS
from django.urls import reverse

from governance.choices import AuditAction, Role
from governance.models import AISystem, AuditLog, AuditVerification
from governance.services.audit import audit_record
from tests.factories import AISystemFactory

pytestmark = pytest.mark.django_db

LOGIN_URL = reverse("admin:login")
INDEX_URL = reverse("admin:index")
SYSTEMS_CHANGELIST = reverse("admin:governance_aisystem_changelist")
AUDIT_CHANGELIST = reverse("admin:governance_auditlog_changelist")
AUDIT_VERIFY_URL = reverse("admin:governance_auditlog_verify")
NO_ROLE_MESSAGE = "This account has no role that may use the admin."


def log_in(client, username: str, password: str):
    return client.post(LOGIN_URL, {"username": username, "password": password, "next": INDEX_URL})


@pytest.fixture
def reviewer(make_user, team):
    return make_user(Role.REVIEWER, teams=[team], username="rhea")


# --- Logging in -------------------------------------------------------------------------------


def test_a_reviewer_logs_in_and_sees_the_kpi_table_on_the_index(client, reviewer, password):
    response = log_in(client, "rhea", password)

    assert response.status_code == 302
    assert response["Location"] == INDEX_URL
    index = client.get(INDEX_URL)
    assert index.status_code == 200
    assert 'id="vigil-kpis"' in index.content.decode()
    assert "data-kpi=" in index.content.decode()


def test_a_user_without_a_role_cannot_log_in(client, make_user, password):
    make_user(username="norah")

    response = log_in(client, "norah", password)

    assert response.status_code == 200
    assert NO_ROLE_MESSAGE in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_a_staff_flag_alone_does_not_open_the_admin(client, make_user, password):
    make_user(username="stan", is_staff=True)

    response = log_in(client, "stan", password)

    assert response.status_code == 200
    assert "_auth_user_id" not in client.session


def test_a_deactivated_user_with_a_role_cannot_log_in(client, make_user, password):
    make_user(Role.GOVERNANCE_LEAD, username="gone", is_active=False)

    log_in(client, "gone", password)

    assert "_auth_user_id" not in client.session


def test_a_user_without_a_role_with_a_session_is_sent_to_the_login_page(client, make_user):
    client.force_login(make_user(username="norah"))

    response = client.get(INDEX_URL)

    assert response.status_code == 302
    assert response["Location"].startswith(LOGIN_URL)


def test_the_user_admin_is_hidden_from_non_admin_roles(client, lead):
    client.force_login(lead)

    assert client.get(reverse("admin:governance_user_changelist")).status_code == 403


# --- Team scoping -----------------------------------------------------------------------------


def test_the_system_changelist_of_a_lead_lists_only_their_teams_systems(client, lead, own_system, foreign_system):
    client.force_login(lead)

    response = client.get(SYSTEMS_CHANGELIST)

    assert response.status_code == 200
    assert list(response.context["cl"].result_list) == [own_system]


def test_the_system_changelist_of_a_lead_does_not_name_other_teams(client, lead, own_system, foreign_system):
    client.force_login(lead)

    html = client.get(SYSTEMS_CHANGELIST).content.decode()

    assert "credit-limit-model" not in html
    assert "Credit Risk" not in html


def test_the_system_changelist_of_an_admin_lists_every_system(client, admin_user, own_system, foreign_system):
    client.force_login(admin_user)

    response = client.get(SYSTEMS_CHANGELIST)

    assert set(response.context["cl"].result_list) == {own_system, foreign_system}


def test_another_teams_system_cannot_be_opened_by_a_lead(client, lead, foreign_system):
    client.force_login(lead)

    response = client.get(reverse("admin:governance_aisystem_change", args=[foreign_system.pk]))

    assert response.status_code == 302
    assert response["Location"] == INDEX_URL


def test_a_lead_cannot_register_a_system_for_another_team_in_the_admin(client, lead, other_team):
    client.force_login(lead)
    form = {"name": "sneaky-model", "entity_type": "model", "team": str(other_team.pk), "risk_class": "minimal"}

    response = client.post(reverse("admin:governance_aisystem_add"), {**form, "metadata": "{}"})

    assert response.status_code == 200  # the form again, with an error on team
    assert "team" in response.context["adminform"].form.errors
    assert not AISystem.objects.filter(name="sneaky-model").exists()


def test_registering_a_system_in_the_admin_writes_a_system_registered_audit_row(client, lead, team):
    client.force_login(lead)
    form = {"name": "chargeback-classifier", "entity_type": "model", "team": str(team.pk), "risk_class": "high"}

    response = client.post(reverse("admin:governance_aisystem_add"), {**form, "metadata": "{}", "is_active": "on"})

    assert response.status_code == 302
    system = AISystem.objects.get(name="chargeback-classifier")
    entry = AuditLog.objects.get(action=AuditAction.SYSTEM_REGISTERED)
    assert (entry.actor, entry.object_id) == ("lena", str(system.pk))
    assert entry.data["via"] == "admin"
    assert entry.data["changed"]["team"] == {"from": None, "to": str(team.pk)}


# --- Audited writes ---------------------------------------------------------------------------


def test_the_deactivate_action_writes_a_system_updated_row_per_system(client, lead, team):
    systems = AISystemFactory.create_batch(2, team=team)
    client.force_login(lead)

    response = client.post(
        SYSTEMS_CHANGELIST, {"action": "deactivate", "_selected_action": [str(system.pk) for system in systems]}
    )

    assert response.status_code == 302
    assert not AISystem.objects.filter(is_active=True).exists()
    entries = AuditLog.objects.filter(action=AuditAction.SYSTEM_UPDATED)
    assert {entry.object_id for entry in entries} == {str(system.pk) for system in systems}
    assert all(entry.data == {"changes": {"is_active": {"from": True, "to": False}}} for entry in entries)
    assert all(entry.actor == "lena" for entry in entries)


def test_the_deactivate_action_ignores_other_teams_systems(client, lead, own_system, foreign_system):
    client.force_login(lead)

    client.post(
        SYSTEMS_CHANGELIST, {"action": "deactivate", "_selected_action": [str(own_system.pk), str(foreign_system.pk)]}
    )

    foreign_system.refresh_from_db()
    assert foreign_system.is_active
    assert list(AuditLog.objects.values_list("object_id", flat=True)) == [str(own_system.pk)]


def test_the_deactivate_action_is_not_offered_to_a_viewer(client, viewer, own_system):
    client.force_login(viewer)

    changelist = client.get(SYSTEMS_CHANGELIST)
    client.post(SYSTEMS_CHANGELIST, {"action": "deactivate", "_selected_action": [str(own_system.pk)]})

    assert changelist.context["action_form"] is None  # no action at all: both need change permission
    own_system.refresh_from_db()
    assert own_system.is_active
    assert not AuditLog.objects.exists()


def test_editing_a_team_in_the_admin_writes_a_team_updated_row(client, lead, team):
    client.force_login(lead)
    form = {"name": team.name, "slug": team.slug, "description": "Card fraud models.", "email": "fraud@example.com"}

    response = client.post(reverse("admin:governance_team_change", args=[team.pk]), form)

    assert response.status_code == 302
    team.refresh_from_db()
    assert team.description == "Card fraud models."
    entry = AuditLog.objects.get()
    assert (entry.action, entry.actor, entry.object_id) == (AuditAction.TEAM_UPDATED, "lena", str(team.pk))
    assert entry.data == {
        "via": "admin",
        "changed": {
            "description": {"from": "", "to": "Card fraud models."},
            "email": {"from": "", "to": "fraud@example.com"},
        },
    }


def test_only_admins_add_teams_in_the_admin_as_in_the_api(client, lead, admin_user):
    add_url = reverse("admin:governance_team_add")
    client.force_login(lead)
    refused = client.post(add_url, {"name": "Payments", "slug": "payments"})
    client.force_login(admin_user)
    created = client.post(add_url, {"name": "Payments", "slug": "payments"})

    assert refused.status_code == 403
    assert created.status_code == 302
    entry = AuditLog.objects.get()
    assert (entry.action, entry.actor) == (AuditAction.TEAM_CREATED, "ada")


# --- The audit log --------------------------------------------------------------------------


@pytest.fixture
def audit_row(admin_user):
    return audit_record(action=AuditAction.TEAM_UPDATED, actor=admin_user, object_type="governance.team")


@pytest.mark.parametrize(
    ("method", "url_name", "with_pk"),
    [
        ("get", "admin:governance_auditlog_add", False),
        ("post", "admin:governance_auditlog_add", False),
        ("post", "admin:governance_auditlog_change", True),
        ("get", "admin:governance_auditlog_delete", True),
        ("post", "admin:governance_auditlog_delete", True),
    ],
)
def test_the_audit_log_admin_refuses_add_change_and_delete_even_to_admins(
    client, admin_user, audit_row, method, url_name, with_pk
):
    client.force_login(admin_user)
    url = reverse(url_name, args=[audit_row.pk] if with_pk else [])

    response = getattr(client, method)(url, {"actor": "mallory", "post": "yes"})

    assert response.status_code == 403
    audit_row.refresh_from_db()
    assert audit_row.actor == "ada"
    assert AuditLog.objects.count() == 1


def test_the_audit_log_change_page_is_read_only(client, admin_user, audit_row):
    client.force_login(admin_user)

    response = client.get(reverse("admin:governance_auditlog_change", args=[audit_row.pk]))

    assert response.status_code == 200
    assert response.context["has_change_permission"] is False
    assert 'name="_save"' not in response.content.decode()


def test_the_audit_log_changelist_offers_no_bulk_delete(client, admin_user, audit_row):
    client.force_login(admin_user)

    response = client.get(AUDIT_CHANGELIST)

    assert response.status_code == 200
    assert "delete_selected" not in response.content.decode()
    assert 'id="verify-audit-chain"' in response.content.decode()


def test_verify_chain_now_records_a_verification_and_shows_success(client, lead, audit_row):
    client.force_login(lead)

    response = client.post(AUDIT_VERIFY_URL, follow=True)

    assert response.redirect_chain == [(AUDIT_CHANGELIST, 302)]
    verification = AuditVerification.objects.get()
    assert verification.ok
    assert verification.head_seq == audit_row.seq
    messages = list(response.context["messages"])
    assert [message.level for message in messages] == [SUCCESS]
    assert str(messages[0]).startswith("audit chain OK: 1 rows")


def test_verify_chain_now_needs_a_post(client, lead, audit_row):
    client.force_login(lead)

    response = client.get(AUDIT_VERIFY_URL)

    assert response.status_code == 302
    assert not AuditVerification.objects.exists()


def test_verify_chain_now_is_refused_to_roles_that_cannot_see_the_audit_log(client, viewer, audit_row):
    client.force_login(viewer)

    response = client.post(AUDIT_VERIFY_URL)

    assert response.status_code == 302
    assert not AuditVerification.objects.exists()
    assert client.get(AUDIT_CHANGELIST).status_code == 403


def test_the_capability_changelist_shows_each_capabilitys_live_status(client, lead):
    client.force_login(lead)

    page = client.get(reverse("admin:governance_capability_changelist")).content.decode()

    # Every row carries a computed status (human oversight has no decision yet: not enforced).
    assert page.count("not enforced") >= 1
    assert "no human review decision in the last 30 days" in page
