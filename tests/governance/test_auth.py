"""JWT authentication of the API (people and service accounts) and who may log into the admin."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import jwt
import pytest
import time_machine
from django.conf import settings
from django.contrib.auth.models import Group
from django.urls import reverse

from governance.choices import AuditAction, Role
from governance.models import AuditLog
from governance.services.organization import service_account_create, service_account_rotate

pytestmark = pytest.mark.django_db

TOKEN_URL = "/api/v1/auth/token"
REFRESH_URL = "/api/v1/auth/token/refresh"
REVOKE_URL = "/api/v1/auth/token/revoke"
PROTECTED_URL = "/api/v1/systems"
NOON = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def obtain_tokens(client, username: str, password: str) -> dict:
    response = client.post(TOKEN_URL, {"username": username, "password": password}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def get_with_bearer(client, token: str):
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client.get(PROTECTED_URL)


def claims_of(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def assert_unauthorized(response, code: str = "authentication_failed") -> None:
    assert response.status_code == 401
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert body["error"]["fields"] == {}
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.fixture
def tokens(anon_client, viewer, password) -> dict:
    return obtain_tokens(anon_client, viewer.username, password)


# --- Obtaining and using tokens ---------------------------------------------------------------


def test_valid_credentials_obtain_an_access_and_a_refresh_token(anon_client, viewer, password):
    tokens = obtain_tokens(anon_client, viewer.username, password)

    assert set(tokens) == {"access", "refresh"}
    assert get_with_bearer(anon_client, tokens["access"]).status_code == 200


def test_the_access_token_is_hs256_for_the_vigil_audience_and_lives_15_minutes(tokens, viewer):
    header = jwt.get_unverified_header(tokens["access"])
    claims = jwt.decode(
        tokens["access"], settings.SIMPLE_JWT["SIGNING_KEY"], algorithms=["HS256"], audience="vigil-api", issuer="vigil"
    )

    assert header["alg"] == "HS256"
    assert claims["token_type"] == "access"
    assert claims["user_id"] == str(viewer.pk)
    assert claims["exp"] - claims["iat"] == 15 * 60


def test_tokens_are_not_signed_with_the_django_secret_key(tokens):
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(tokens["access"], settings.SECRET_KEY, algorithms=["HS256"], audience="vigil-api")


def test_a_request_without_a_token_is_rejected_with_401(anon_client, viewer):
    assert_unauthorized(anon_client.get(PROTECTED_URL), code="not_authenticated")


def test_a_malformed_token_is_rejected_with_401(anon_client, viewer):
    assert_unauthorized(get_with_bearer(anon_client, "not-a-jwt"))


def test_an_access_token_is_still_accepted_just_before_15_minutes(anon_client, viewer, password):
    with time_machine.travel(NOON, tick=False) as clock:
        access = obtain_tokens(anon_client, viewer.username, password)["access"]
        clock.shift(timedelta(minutes=14, seconds=59))

        assert get_with_bearer(anon_client, access).status_code == 200


def test_an_expired_access_token_is_rejected_with_401(anon_client, viewer, password):
    with time_machine.travel(NOON, tick=False) as clock:
        access = obtain_tokens(anon_client, viewer.username, password)["access"]
        clock.shift(timedelta(minutes=15, seconds=1))

        response = get_with_bearer(anon_client, access)

    assert_unauthorized(response)


def test_a_token_signed_with_a_wrong_key_is_rejected_with_401(anon_client, tokens):
    forged = jwt.encode(
        claims_of(tokens["access"]), "an-attacker-key-that-is-not-vigils-signing-key", algorithm="HS256"
    )

    assert_unauthorized(get_with_bearer(anon_client, forged))


def test_a_token_with_alg_none_is_rejected_with_401(anon_client, tokens):
    header = b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    payload = b64url(json.dumps(claims_of(tokens["access"])).encode())

    assert_unauthorized(get_with_bearer(anon_client, f"{header}.{payload}."))


def test_a_token_signed_with_another_algorithm_is_rejected_even_with_the_right_key(anon_client, tokens):
    forged = jwt.encode(claims_of(tokens["access"]), settings.SIMPLE_JWT["SIGNING_KEY"], algorithm="HS512")

    assert_unauthorized(get_with_bearer(anon_client, forged))


@pytest.mark.parametrize(("claim", "value"), [("aud", "some-other-api"), ("iss", "someone-else")])
def test_a_token_for_another_audience_or_issuer_is_rejected_with_401(anon_client, tokens, claim, value):
    forged = jwt.encode(
        {**claims_of(tokens["access"]), claim: value}, settings.SIMPLE_JWT["SIGNING_KEY"], algorithm="HS256"
    )

    assert_unauthorized(get_with_bearer(anon_client, forged))


def test_a_refresh_token_used_as_an_access_token_is_rejected_with_401(anon_client, tokens):
    assert_unauthorized(get_with_bearer(anon_client, tokens["refresh"]))


def test_an_access_token_of_a_deactivated_user_is_rejected_with_401(anon_client, tokens, viewer):
    viewer.is_active = False
    viewer.save(update_fields=["is_active"])

    assert_unauthorized(get_with_bearer(anon_client, tokens["access"]))


# --- Credentials ------------------------------------------------------------------------------


def test_a_wrong_password_is_rejected_with_401_in_the_error_envelope(anon_client, viewer):
    response = anon_client.post(TOKEN_URL, {"username": viewer.username, "password": "wrong-password-123"})

    assert response.status_code == 401
    assert response.json() == {
        "error": {
            "code": "no_active_account",
            "message": "No active account found with the given credentials",
            "fields": {},
        }
    }


def test_an_unknown_username_gets_the_same_answer_as_a_wrong_password(anon_client, viewer, password):
    unknown = anon_client.post(TOKEN_URL, {"username": "nobody", "password": password})
    wrong = anon_client.post(TOKEN_URL, {"username": viewer.username, "password": "wrong-password-123"})

    assert unknown.status_code == wrong.status_code == 401
    assert unknown.json() == wrong.json()


def test_an_inactive_user_cannot_obtain_a_token(anon_client, make_user, password):
    make_user(Role.VIEWER, username="gone", is_active=False)

    response = anon_client.post(TOKEN_URL, {"username": "gone", "password": password})

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "no_active_account"


def test_a_token_request_without_a_password_is_a_400_naming_the_field(anon_client, viewer):
    response = anon_client.post(TOKEN_URL, {"username": viewer.username})

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"
    assert set(response.json()["error"]["fields"]) == {"password"}


# --- Refresh and revocation -------------------------------------------------------------------


def test_refreshing_returns_a_new_access_and_a_rotated_refresh_token(anon_client, tokens):
    response = anon_client.post(REFRESH_URL, {"refresh": tokens["refresh"]})

    assert response.status_code == 200
    rotated = response.json()
    assert set(rotated) == {"access", "refresh"}
    assert rotated["refresh"] != tokens["refresh"]
    assert claims_of(rotated["refresh"])["jti"] != claims_of(tokens["refresh"])["jti"]
    assert get_with_bearer(anon_client, rotated["access"]).status_code == 200


def test_a_refresh_token_cannot_be_used_twice_after_rotation(anon_client, tokens):
    assert anon_client.post(REFRESH_URL, {"refresh": tokens["refresh"]}).status_code == 200

    response = anon_client.post(REFRESH_URL, {"refresh": tokens["refresh"]})

    assert_unauthorized(response)


def test_the_rotated_refresh_token_keeps_working(anon_client, tokens):
    rotated = anon_client.post(REFRESH_URL, {"refresh": tokens["refresh"]}).json()

    assert anon_client.post(REFRESH_URL, {"refresh": rotated["refresh"]}).status_code == 200


def test_an_access_token_cannot_be_used_to_refresh(anon_client, tokens):
    assert_unauthorized(anon_client.post(REFRESH_URL, {"refresh": tokens["access"]}))


def test_revoking_a_refresh_token_blacklists_it(anon_client, tokens):
    response = anon_client.post(REVOKE_URL, {"refresh": tokens["refresh"]})

    assert response.status_code == 200
    assert_unauthorized(anon_client.post(REFRESH_URL, {"refresh": tokens["refresh"]}))


def test_an_expired_refresh_token_is_rejected(anon_client, viewer, password):
    with time_machine.travel(NOON, tick=False) as clock:
        refresh = obtain_tokens(anon_client, viewer.username, password)["refresh"]
        clock.shift(settings.SIMPLE_JWT["REFRESH_TOKEN_LIFETIME"] + timedelta(seconds=1))

        response = anon_client.post(REFRESH_URL, {"refresh": refresh})

    assert_unauthorized(response)


# --- Service accounts -------------------------------------------------------------------------


@pytest.fixture
def ingest_account(team, admin_user):
    return service_account_create(name="telemetry-ingest", role=Role.INGEST, teams=[team], actor=admin_user)


def test_a_service_account_obtains_a_token_with_its_secret(anon_client, ingest_account):
    tokens = obtain_tokens(anon_client, "telemetry-ingest", ingest_account.secret)

    assert claims_of(tokens["access"])["user_id"] == str(ingest_account.user.pk)


def test_creating_a_service_account_is_audited_without_its_secret(ingest_account, team):
    entry = AuditLog.objects.get(action=AuditAction.SERVICE_ACCOUNT_CREATED)

    assert entry.object_id == str(ingest_account.user.pk)
    assert entry.data == {"name": "telemetry-ingest", "role": "ingest", "teams": [str(team.pk)]}
    assert ingest_account.secret not in json.dumps(entry.data)
    assert ingest_account.user.is_service_account
    assert ingest_account.user.check_password(ingest_account.secret)


def test_a_rotated_service_account_secret_stops_the_old_one_at_once(anon_client, ingest_account, admin_user):
    rotated = service_account_rotate(user=ingest_account.user, actor=admin_user)

    old = anon_client.post(TOKEN_URL, {"username": "telemetry-ingest", "password": ingest_account.secret})

    assert old.status_code == 401
    assert obtain_tokens(anon_client, "telemetry-ingest", rotated.secret)["access"]


def test_a_service_account_cannot_log_into_the_admin(client, ingest_account):
    response = client.post(
        reverse("admin:login"), {"username": "telemetry-ingest", "password": ingest_account.secret, "next": "/admin/"}
    )

    assert response.status_code == 200  # the login form again, not a redirect into the admin
    assert "This account has no role that may use the admin." in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_a_service_account_with_a_session_still_gets_no_admin_page(client, ingest_account):
    client.force_login(ingest_account.user)

    response = client.get(reverse("admin:index"))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_a_service_account_has_no_admin_permissions_even_with_a_human_role(ingest_account):
    account = ingest_account.user
    account.groups.add(Group.objects.get(name=Role.ADMIN))
    account.__dict__.pop("_role_names", None)

    assert account.get_all_permissions() == set()
    assert not account.is_human_operator
