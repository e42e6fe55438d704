"""``/api/v1/users``: admins create people with roles and teams; passwords pass Django's validators."""

from __future__ import annotations

import json
import re

import pytest

from governance.choices import AuditAction, Role
from governance.models import AuditLog, User

pytestmark = pytest.mark.django_db

USERS_URL = "/api/v1/users"
STRONG_PASSWORD = "quiet-lantern-orbit-1987"
ISO_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


@pytest.fixture
def admin_client(client_for, admin_user):
    return client_for(admin_user)


def new_user_payload(*teams, **overrides) -> dict:
    return {
        "username": "rita",
        "email": "rita@example.com",
        "password": STRONG_PASSWORD,
        "roles": [Role.REVIEWER, Role.SECURITY],
        "teams": [str(team.pk) for team in teams],
        **overrides,
    }


def assert_validation_error(response, field_prefix: str) -> dict:
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["fields"]
    assert all(name.split(".")[0] == field_prefix for name in error["fields"]), error["fields"]
    assert not User.objects.filter(username="rita").exists()
    assert not AuditLog.objects.filter(action=AuditAction.USER_CREATED).exists()
    return error


def test_an_admin_creates_a_user_with_roles_and_teams(admin_client, team, other_team):
    response = admin_client.post(USERS_URL, new_user_payload(team, other_team))

    assert response.status_code == 201, response.content
    body = response.json()
    stored = User.objects.get(username="rita")
    assert body == {
        "id": str(stored.pk),
        "username": "rita",
        "email": "rita@example.com",
        "roles": [Role.REVIEWER, Role.SECURITY],
        "teams": [str(other_team.pk), str(team.pk)],  # teams are ordered by name
        "is_service_account": False,
        "is_active": True,
        "date_joined": body["date_joined"],
    }
    assert ISO_TIMESTAMP.match(body["date_joined"])


def test_a_created_user_is_stored_with_a_hashed_password_roles_and_teams(admin_client, team):
    admin_client.post(USERS_URL, new_user_payload(team))

    stored = User.objects.get(username="rita")
    assert stored.check_password(STRONG_PASSWORD)
    assert stored.password != STRONG_PASSWORD
    assert stored.role_names == {Role.REVIEWER, Role.SECURITY}
    assert list(stored.teams.all()) == [team]
    assert not stored.is_service_account


def test_the_password_is_never_echoed(admin_client, team):
    response = admin_client.post(USERS_URL, new_user_payload(team))

    assert "password" not in response.json()
    assert STRONG_PASSWORD not in response.content.decode()


def test_creating_a_user_writes_a_user_created_audit_row(admin_client, admin_user, team):
    response = admin_client.post(USERS_URL, new_user_payload(team))

    entry = AuditLog.objects.get(action=AuditAction.USER_CREATED)
    assert (entry.actor, entry.actor_type) == (admin_user.username, "user")
    assert (entry.object_type, entry.object_id) == ("governance.user", response.json()["id"])
    assert entry.data == {"username": "rita", "roles": ["reviewer", "security"], "teams": [str(team.pk)]}
    assert STRONG_PASSWORD not in json.dumps(entry.data)


def test_a_user_can_be_created_without_teams(admin_client):
    response = admin_client.post(USERS_URL, new_user_payload(roles=[Role.VIEWER]))

    assert response.status_code == 201
    assert response.json()["teams"] == []


@pytest.mark.parametrize(
    "weak_password",
    [
        pytest.param("Sh0rt-pw", id="too-short"),
        pytest.param("qwerty123456", id="common"),
        pytest.param("20260302123456", id="numeric"),
        pytest.param("rita@example.com", id="like-the-email"),
    ],
)
def test_a_weak_password_is_400_naming_password(admin_client, team, weak_password):
    response = admin_client.post(USERS_URL, new_user_payload(team, password=weak_password))

    error = assert_validation_error(response, "password")
    assert set(error["fields"]) == {"password"}


def test_an_unknown_role_is_400_naming_roles(admin_client, team):
    response = admin_client.post(USERS_URL, new_user_payload(team, roles=[Role.VIEWER, "overlord"]))

    error = assert_validation_error(response, "roles")
    assert "overlord" in json.dumps(error["fields"])


@pytest.mark.parametrize("service_role", [Role.INGEST, Role.CICD])
def test_service_account_roles_are_refused(admin_client, team, service_role):
    response = admin_client.post(USERS_URL, new_user_payload(team, roles=[service_role]))

    assert_validation_error(response, "roles")


def test_a_user_needs_at_least_one_role(admin_client, team):
    response = admin_client.post(USERS_URL, new_user_payload(team, roles=[]))

    assert_validation_error(response, "roles")


def test_an_unknown_team_is_400_naming_teams(admin_client):
    response = admin_client.post(USERS_URL, new_user_payload(teams=["00000000-0000-0000-0000-000000000001"]))

    assert_validation_error(response, "teams")


def test_a_duplicate_username_is_409(admin_client, make_user, team):
    make_user(Role.VIEWER, username="rita")

    response = admin_client.post(USERS_URL, new_user_payload(team))

    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "conflict"
    assert set(error["fields"]) == {"username"}
    assert User.objects.filter(username="rita").count() == 1
    assert not AuditLog.objects.exists()


@pytest.mark.parametrize("role", [Role.GOVERNANCE_LEAD, Role.SECURITY, Role.REVIEWER, Role.VIEWER])
def test_a_non_admin_cannot_create_users(client_for, make_user, team, role):
    response = client_for(make_user(role, teams=[team])).post(USERS_URL, new_user_payload(team))

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
    assert not User.objects.filter(username="rita").exists()


def test_a_non_admin_cannot_list_users(client_for, lead):
    assert client_for(lead).get(USERS_URL).status_code == 403


def test_an_anonymous_caller_cannot_list_users(anon_client):
    assert anon_client.get(USERS_URL).status_code == 401


def test_an_admin_lists_users_with_their_roles_and_teams(admin_client, admin_user, lead, team):
    response = admin_client.get(USERS_URL, {"ordering": "username"})

    assert response.status_code == 200
    rows = {row["username"]: row for row in response.json()["results"]}
    assert set(rows) == {"ada", "lena"}
    assert rows["lena"]["roles"] == [Role.GOVERNANCE_LEAD]
    assert rows["lena"]["teams"] == [str(team.pk)]
    assert rows["ada"]["roles"] == [Role.ADMIN]
    assert all("password" not in row for row in rows.values())


def test_an_admin_reads_one_user_by_id(admin_client, lead):
    response = admin_client.get(f"{USERS_URL}/{lead.pk}")

    assert response.status_code == 200
    assert response.json()["username"] == "lena"


def test_a_service_account_cannot_be_given_a_human_role(team):
    from django.core.exceptions import ValidationError

    from governance.services.organization import service_account_create, user_set_roles

    account = service_account_create(name="ingest-bot", role=Role.INGEST, teams=[team], actor=None).user

    with pytest.raises(ValidationError) as excinfo:
        user_set_roles(user=account, roles=[Role.INGEST, Role.ADMIN], teams=[team], actor=None)

    assert "admin cannot be given to a service account" in excinfo.value.message_dict["roles"][0]
    account.refresh_from_db()
    assert set(account.groups.values_list("name", flat=True)) == {Role.INGEST}


def test_the_admin_user_form_refuses_a_human_role_for_a_service_account(client, admin_user, team):
    from django.contrib.auth.models import Group
    from django.urls import reverse

    from governance.services.organization import service_account_create

    account = service_account_create(name="ci-bot", role=Role.CICD, teams=[team], actor=None).user
    client.force_login(admin_user)
    url = reverse("admin:governance_user_change", args=[account.pk])
    form = client.get(url).context["adminform"].form
    data = {name: value for name, value in form.initial.items() if value is not None and name != "password"}
    data.update(
        username="ci-bot",
        groups=[Group.objects.get(name=Role.CICD).pk, Group.objects.get(name=Role.ADMIN).pk],
        teams=[team.pk],
        date_joined_0=account.date_joined.strftime("%Y-%m-%d"),
        date_joined_1=account.date_joined.strftime("%H:%M:%S"),
        is_active="on",
    )
    data.pop("date_joined", None)
    data.pop("user_permissions", None)
    data.pop("last_login", None)

    response = client.post(url, data)

    assert response.status_code == 200  # the form comes back with the error
    assert "admin cannot be given to a service account" in response.content.decode()
    assert set(account.groups.values_list("name", flat=True)) == {Role.CICD}
