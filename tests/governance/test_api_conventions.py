"""Conventions every API endpoint shares: the error envelope, cursor pagination, body limits, paths, schema."""

from __future__ import annotations

import json

import pytest
import yaml
from django.core.management import call_command
from django.test import RequestFactory, override_settings

from governance.api.errors import json_server_error
from governance.choices import Role
from governance.models import Team
from tests.factories import AISystemFactory

pytestmark = pytest.mark.django_db

TEAMS_URL = "/api/v1/teams"


def assert_error_envelope(response, status: int, code: str) -> dict:
    """``{"error": {"code", "message", "fields"}}`` and nothing else, served as JSON."""
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = json.loads(response.content)
    assert list(body) == ["error"]
    assert set(body["error"]) == {"code", "message", "fields"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    assert isinstance(body["error"]["fields"], dict)
    return body["error"]


@pytest.fixture
def admin_client(client_for, admin_user):
    return client_for(admin_user)


# --- The error envelope -----------------------------------------------------------------------


def test_a_validation_error_is_400_in_the_envelope_with_fields(admin_client):
    error = assert_error_envelope(admin_client.post(TEAMS_URL, {"email": "not-an-email"}), 400, "validation_error")

    assert set(error["fields"]) == {"name", "email"}
    assert error["message"].startswith("Invalid input: ")


def test_nested_validation_errors_are_flattened_to_dotted_field_paths(admin_client):
    payload = {"username": "rita", "password": "quiet-lantern-orbit-1987", "roles": ["viewer", "overlord"]}

    error = assert_error_envelope(admin_client.post("/api/v1/users", payload), 400, "validation_error")

    assert list(error["fields"]) == ["roles.1"]


def test_a_missing_token_is_401_in_the_envelope(anon_client):
    assert_error_envelope(anon_client.get(TEAMS_URL), 401, "not_authenticated")


def test_a_forbidden_role_is_403_in_the_envelope(client_for, viewer):
    assert_error_envelope(client_for(viewer).post(TEAMS_URL, {"name": "Payments"}), 403, "permission_denied")


def test_an_unknown_object_is_404_in_the_envelope(admin_client):
    assert_error_envelope(admin_client.get(f"{TEAMS_URL}/00000000-0000-0000-0000-000000000001"), 404, "not_found")


def test_an_unsupported_method_is_405_in_the_envelope(admin_client):
    assert_error_envelope(admin_client.delete(TEAMS_URL), 405, "method_not_allowed")


def test_a_unique_violation_is_409_in_the_envelope_naming_the_field(admin_client, team):
    error = assert_error_envelope(admin_client.post(TEAMS_URL, {"name": team.name}), 409, "conflict")

    assert set(error["fields"]) == {"name"}
    assert Team.objects.filter(name=team.name).count() == 1


def test_a_body_over_the_limit_is_413_in_the_envelope_and_nothing_is_written(admin_client):
    with override_settings(API_MAX_BODY_BYTES=64):
        response = admin_client.post(TEAMS_URL, {"name": "Payments", "description": "x" * 64})

    error = assert_error_envelope(response, 413, "request_too_large")
    assert error["fields"] == {"body": ["at most 64 bytes"]}
    assert not Team.objects.filter(name="Payments").exists()


def test_a_body_at_the_limit_is_accepted(admin_client):
    body = json.dumps({"name": "Payments"})

    with override_settings(API_MAX_BODY_BYTES=len(body)):
        response = admin_client.post(TEAMS_URL, body, content_type="application/json")

    assert response.status_code == 201


def test_a_body_over_django_upload_limit_is_also_413_in_the_envelope(admin_client):
    with override_settings(API_MAX_BODY_BYTES=10**9, DATA_UPLOAD_MAX_MEMORY_SIZE=64):
        response = admin_client.post(TEAMS_URL, {"name": "Payments", "description": "x" * 64})

    assert_error_envelope(response, 413, "request_too_large")


def test_a_non_json_body_is_415_in_the_envelope(admin_client):
    response = admin_client.post(TEAMS_URL, "name=Payments", content_type="application/x-www-form-urlencoded")

    assert_error_envelope(response, 415, "unsupported_media_type")
    assert not Team.objects.filter(name="Payments").exists()


def test_malformed_json_is_400_parse_error(admin_client):
    response = admin_client.post(TEAMS_URL, '{"name": "Payments",', content_type="application/json")

    assert_error_envelope(response, 400, "parse_error")


def test_json_nested_too_deeply_to_parse_is_400_parse_error_not_500(admin_client):
    body = "[" * 100_000 + "]" * 100_000

    response = admin_client.post(TEAMS_URL, body, content_type="application/json")

    assert_error_envelope(response, 400, "parse_error")


def test_a_write_that_loses_a_race_on_a_unique_name_is_409_and_writes_nothing(admin_client, monkeypatch):
    from django.db import IntegrityError, transaction

    from governance.services import organization

    def lost_race(**kwargs):
        with transaction.atomic():  # as the real service: its partial write rolls back with the error
            Team.objects.create(name=kwargs["name"], slug="payments-tmp")
            raise IntegrityError('duplicate key value violates unique constraint "governance_team_name_key"')

    monkeypatch.setattr(organization, "team_create", lost_race)

    response = admin_client.post(TEAMS_URL, {"name": "Payments"}, format="json")

    assert_error_envelope(response, 409, "conflict")
    assert not Team.objects.filter(name="Payments").exists()


def test_a_non_numeric_content_length_is_400_parse_error(admin_client):
    response = admin_client.generic("POST", TEAMS_URL, b"{}", content_type="application/json", CONTENT_LENGTH="ten")

    assert_error_envelope(response, 400, "parse_error")


def test_an_unknown_api_path_is_a_json_404_envelope(admin_client):
    error = assert_error_envelope(admin_client.get("/api/v1/xyz"), 404, "not_found")

    assert error["message"] == "No endpoint at /api/v1/xyz."


def test_an_unknown_path_outside_the_api_is_an_html_404(client):
    response = client.get("/no-such-page")

    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


def test_a_server_error_under_the_api_is_a_json_500_envelope():
    response = json_server_error(RequestFactory().get("/api/v1/teams"))

    assert_error_envelope(response, 500, "server_error")


# --- Cursor pagination ------------------------------------------------------------------------


@pytest.fixture
def many_teams(db) -> int:
    """520 teams (more than one maximal page), inserted in one statement; returns the total count."""
    Team.objects.bulk_create(Team(name=f"Team {n:04d}", slug=f"team-{n:04d}") for n in range(520))
    return Team.objects.count()


def test_lists_default_to_50_items_per_page(admin_client, many_teams):
    body = admin_client.get(TEAMS_URL).json()

    assert set(body) == {"next", "previous", "results"}
    assert len(body["results"]) == 50
    assert body["next"]
    assert body["previous"] is None


def test_page_size_is_capped_at_500(admin_client, many_teams):
    body = admin_client.get(TEAMS_URL, {"page_size": 1000}).json()

    assert len(body["results"]) == 500
    assert body["next"]


def test_a_smaller_page_size_is_honoured(admin_client, many_teams):
    assert len(admin_client.get(TEAMS_URL, {"page_size": 7}).json()["results"]) == 7


def test_following_next_walks_every_row_exactly_once(admin_client, many_teams):
    seen: list[str] = []
    url, pages = f"{TEAMS_URL}?page_size=200", 0
    while url:
        body = admin_client.get(url).json()
        seen.extend(row["id"] for row in body["results"])
        url, pages = body["next"], pages + 1

    assert pages == 3
    assert len(seen) == len(set(seen)) == many_teams
    assert set(seen) == {str(pk) for pk in Team.objects.values_list("pk", flat=True)}


def test_the_page_cursor_is_stable_when_rows_are_added_meanwhile(admin_client, many_teams):
    first = admin_client.get(TEAMS_URL, {"page_size": 300}).json()
    Team.objects.create(name="Newcomer", slug="newcomer")

    second = admin_client.get(first["next"]).json()

    first_ids = {row["id"] for row in first["results"]}
    second_ids = {row["id"] for row in second["results"]}
    assert not first_ids & second_ids
    assert len(first_ids | second_ids) == many_teams


def test_pagination_walks_only_the_callers_rows(client_for, make_user, team):
    AISystemFactory.create_batch(3, team=team)
    AISystemFactory.create_batch(4)
    reader = make_user(Role.VIEWER, teams=[team])

    first = client_for(reader).get("/api/v1/systems", {"page_size": 2}).json()
    second = client_for(reader).get(first["next"]).json()

    assert len(first["results"]) == 2
    assert len(second["results"]) == 1
    assert second["next"] is None


# --- Paths ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/v1/teams", "/api/v1/teams/", "/api/v1/kpis", "/api/v1/kpis/"])
def test_list_paths_work_with_and_without_a_trailing_slash(admin_client, path):
    assert admin_client.get(path).status_code == 200


@pytest.mark.parametrize("suffix", ["", "/"])
def test_detail_paths_work_with_and_without_a_trailing_slash(admin_client, team, suffix):
    response = admin_client.get(f"/api/v1/teams/{team.pk}{suffix}")

    assert response.status_code == 200
    assert response.json()["id"] == str(team.pk)


@pytest.mark.parametrize("path", ["/api/v1/teams", "/api/v1/teams/"])
def test_posts_work_with_and_without_a_trailing_slash_without_a_redirect(admin_client, path):
    assert admin_client.post(path, {"name": "Payments"}).status_code == 201


@pytest.mark.parametrize("path", ["/api/v1/auth/token", "/api/v1/auth/token/"])
def test_the_token_endpoint_works_with_and_without_a_trailing_slash(anon_client, viewer, password, path):
    assert anon_client.post(path, {"username": viewer.username, "password": password}).status_code == 200


# --- OpenAPI ----------------------------------------------------------------------------------


def test_the_openapi_schema_generates_and_validates_without_warnings(tmp_path):
    schema_file = tmp_path / "openapi.yaml"

    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(schema_file))

    schema = yaml.safe_load(schema_file.read_text())
    assert schema["info"]["title"] == "Vigil API"
    for path in ("/api/v1/auth/token", "/api/v1/systems", "/api/v1/systems/{id}", "/api/v1/users", "/api/v1/audit"):
        assert path in schema["paths"]


def test_the_schema_is_served(client):
    response = client.get("/api/schema/")

    assert response.status_code == 200
    assert b"/api/v1/systems" in response.content


def test_the_api_docs_render_without_any_cdn(client):
    response = client.get("/api/docs/")

    html = response.content.decode()
    assert response.status_code == 200
    assert "cdn.jsdelivr" not in html
    assert "unpkg.com" not in html
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html
