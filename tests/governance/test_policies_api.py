"""/api/v1/policies and /api/v1/policies/{id}/versions: create, version, activate, roll back, deactivate, diff;
roles and team rules for writers; the lint and schema routes next to them."""

from __future__ import annotations

import json

import pytest

from governance.choices import AuditAction, Role
from governance.models import AuditLog, Policy, PolicyVersion
from governance.services.policies import policy_create, policy_version_activate, policy_version_create
from governance.services.policy_lint import MAX_DOCUMENT_BYTES
from tests.governance.policy_documents import KEY, invalid_policy_text, policy_document, policy_text, rule

pytestmark = pytest.mark.django_db

URL = "/api/v1/policies"


def versions_url(ref: str) -> str:
    return f"{URL}/{ref}/versions"


@pytest.fixture
def api(client_for, lead):
    return client_for(lead)


@pytest.fixture
def policy(admin_user, team):
    return policy_create(text=policy_text(), actor=admin_user).policy


@pytest.fixture
def invalid_version(policy, admin_user):
    return policy_version_create(policy=policy, text=invalid_policy_text(), actor=admin_user)


# --- creating -------------------------------------------------------------------------------------------------
def test_a_raw_yaml_body_creates_a_policy_with_version_1(api, team, lead):
    response = api.generic("POST", URL, policy_text().encode(), content_type="application/yaml")

    assert response.status_code == 201
    body = response.json()
    policy = Policy.objects.get()
    assert body["id"] == str(policy.pk)
    assert (body["key"], body["name"], body["team"], body["team_slug"]) == (
        KEY,
        "Fairness guard",
        str(team.pk),
        "fraud-ml",
    )
    assert body["active_version"] is None and body["versions"] == 1 and body["created_by"] == "lena"
    latest = body["latest_version"]
    assert (latest["version"], latest["content_format"], latest["validated"], latest["is_active"]) == (
        1,
        "yaml",
        True,
        False,
    )
    assert latest["lint_counts"]["error"] == 0 and latest["created_by"] == "lena"
    assert PolicyVersion.objects.get().content == policy_text()


def test_json_text_and_a_json_document_create_policies(api, team):
    from_text = api.post(URL, {"text": json.dumps(policy_document(key="a-text")), "filename": "a.json"}, format="json")
    from_document = api.post(URL, {"document": policy_document(key="a-document")}, format="json")

    assert from_text.status_code == from_document.status_code == 201
    assert from_text.json()["latest_version"]["content_format"] == "json"
    assert from_document.json()["latest_version"]["content_format"] == "json"
    assert PolicyVersion.objects.get(policy__key="a-document").document == policy_document(key="a-document")


def test_an_unusable_document_is_a_400_naming_the_field(api, team):
    no_id = api.post(URL, {"document": {"apiVersion": "vigil/v1", "metadata": {"name": "x"}}}, format="json")
    unknown_team = api.post(URL, {"text": policy_text(owner_team="ghosts")}, format="json")
    unparsable = api.post(URL, {"text": "metadata: [oops"}, format="json")

    assert no_id.status_code == unknown_team.status_code == unparsable.status_code == 400
    assert "metadata.id" in no_id.json()["error"]["fields"]
    assert "ghosts" in unknown_team.json()["error"]["fields"]["metadata.owner_team"][0]
    assert "invalid YAML" in unparsable.json()["error"]["fields"]["text"][0]
    assert not Policy.objects.exists()


def test_an_existing_key_is_a_409(api, policy):
    response = api.post(URL, {"text": policy_text(name="Again")}, format="json")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "conflict"
    assert "metadata.id" in response.json()["error"]["fields"]


def test_a_body_over_1_mb_is_a_413(api, policy):
    text = policy_text() + "#" * MAX_DOCUMENT_BYTES

    created = api.generic("POST", URL, text.encode(), content_type="application/yaml")
    versioned = api.post(versions_url(KEY), {"text": text}, format="json")

    assert created.status_code == versioned.status_code == 413
    assert policy.versions.count() == 1


# --- reading --------------------------------------------------------------------------------------------------
def test_a_policy_is_found_by_id_or_key(client_for, viewer, policy):
    api = client_for(viewer)

    by_id, by_key = api.get(f"{URL}/{policy.pk}"), api.get(f"{URL}/{KEY}")

    assert by_id.status_code == by_key.status_code == 200
    assert by_id.json() == by_key.json()
    assert api.get(f"{URL}/no-such-policy").status_code == 404


def test_the_list_filters_by_key_team_activity_and_search(client_for, viewer, admin_user, policy, other_team):
    platform = policy_create(text=policy_text(key="platform-wide", name="Platform", owner_team=None), actor=admin_user)
    policy_version_activate(version=platform, actor=admin_user)
    api = client_for(viewer)

    def keys(query: str) -> list[str]:
        response = api.get(f"{URL}?{query}")
        assert response.status_code == 200
        return [item["key"] for item in response.json()["results"]]

    assert keys("") == [KEY, "platform-wide"]
    assert keys(f"key={KEY}") == [KEY]
    assert keys("team=fraud-ml") == keys(f"team={policy.team_id}") == [KEY]
    assert keys(f"team={other_team.slug}") == []
    assert keys("active=true") == ["platform-wide"] and keys("active=false") == [KEY]
    assert keys("search=platf") == ["platform-wide"]


def test_versions_list_newest_first_and_a_version_shows_its_content(client_for, viewer, policy, invalid_version):
    api = client_for(viewer)

    listed = api.get(versions_url(KEY))
    detail = api.get(f"{versions_url(KEY)}/2")

    assert [v["version"] for v in listed.json()["results"]] == [2, 1]
    assert "content" not in listed.json()["results"][0]
    assert [v["version"] for v in api.get(versions_url(KEY) + "?validated=false").json()["results"]] == [2]
    body = detail.json()
    assert detail.status_code == 200
    assert body["content"] == invalid_policy_text() and body["document"]["metadata"]["id"] == KEY
    assert body["validated"] is False and body["shadow_report"] is None
    assert "duplicate-id" in {f["name"] for f in body["validation_errors"]}
    assert api.get(f"{versions_url(KEY)}/9").status_code == 404
    assert api.get(f"{versions_url('nothing')}/1").status_code == 404


def test_the_lint_and_schema_routes_are_not_swallowed_by_the_policies_routes(client_for, viewer, admin_user, team):
    api = client_for(viewer)

    schema = api.get(f"{URL}/schema")
    lint = api.post(f"{URL}/lint", {"text": policy_text()}, format="json")
    get_lint = api.get(f"{URL}/lint")

    assert schema.status_code == 200 and schema.json()["title"]
    assert "$schema" in schema.json()
    assert lint.status_code == 200 and lint.json()["ok"] is True
    assert get_lint.status_code == 405


# --- versions -------------------------------------------------------------------------------------------------
def test_posting_a_version_stores_it_whatever_the_verdict(api, policy):
    valid = api.post(versions_url(KEY), {"text": policy_text(rules=[rule("dp-gap", value=0.2)])}, format="json")
    invalid = api.generic(
        "POST", versions_url(str(policy.pk)), invalid_policy_text().encode(), content_type="text/yaml"
    )

    assert valid.status_code == invalid.status_code == 201
    assert (valid.json()["version"], valid.json()["validated"]) == (2, True)
    body = invalid.json()
    assert (body["version"], body["validated"], body["policy"]) == (3, False, str(policy.pk))
    assert body["lint_counts"]["error"] == sum(f["level"] == "error" for f in body["validation_errors"]) >= 1
    assert set(body) == {
        "id", "policy", "version", "content_format", "content_sha256", "validated", "validation_errors",
        "lint_counts", "created_by", "created_at", "activated_at", "activated_by", "is_active", "shadow_replayed_at",
    }  # fmt: skip


def test_a_version_of_another_policy_id_is_a_400_and_identical_content_a_409(api, policy):
    other_id = api.post(versions_url(KEY), {"text": policy_text(key="something-else")}, format="json")
    same = api.post(versions_url(KEY), {"text": policy_text()}, format="json")

    assert other_id.status_code == 400 and "metadata.id" in other_id.json()["error"]["fields"]
    assert same.status_code == 409 and "identical to version 1" in same.json()["error"]["message"]
    assert policy.versions.count() == 1


# --- activation -----------------------------------------------------------------------------------------------
def test_activation_of_an_unvalidated_version_is_refused(api, policy, invalid_version):
    audited = AuditLog.objects.count()

    response = api.post(f"{versions_url(KEY)}/2/activate", {"reason": "try"}, format="json")

    assert response.status_code == 409
    error = response.json()["error"]
    errors = invalid_version.lint_counts["error"]
    assert error["code"] == "policy_version_not_validated"
    assert f"has {errors} lint error(s)" in error["message"]
    assert f"has {errors} lint error(s)" in error["fields"]["version"][0]
    policy.refresh_from_db()
    assert policy.active_version is None
    assert PolicyVersion.objects.get(pk=invalid_version.pk).activated_at is None
    assert AuditLog.objects.count() == audited


def test_activation_rollback_and_deactivation_through_the_api(api, policy):
    api.post(versions_url(KEY), {"text": policy_text(rules=[rule("dp-gap", value=0.2)])}, format="json")

    activated = api.post(f"{versions_url(KEY)}/2/activate", {"reason": "approved"}, format="json")
    rolled_back = api.post(f"{versions_url(KEY)}/1/activate", {}, format="json")
    deactivated = api.post(f"{URL}/{KEY}/deactivate", {"reason": "retired"}, format="json")

    assert activated.status_code == rolled_back.status_code == deactivated.status_code == 200
    assert activated.json()["active_version"]["version"] == 2 and activated.json()["active_version"]["is_active"]
    assert activated.json()["active_version"]["activated_by"] == "lena"
    assert rolled_back.json()["active_version"]["version"] == 1
    assert deactivated.json()["active_version"] is None
    entries = AuditLog.objects.filter(
        action__in=[AuditAction.POLICY_ACTIVATED, AuditAction.POLICY_DEACTIVATED]
    ).order_by("seq")
    assert [(e.action, e.data.get("version"), e.data["previous_version"], e.data["reason"]) for e in entries] == [
        (AuditAction.POLICY_ACTIVATED, 2, None, "approved"),
        (AuditAction.POLICY_ACTIVATED, 1, 2, ""),
        (AuditAction.POLICY_DEACTIVATED, None, 1, "retired"),
    ]
    assert all(e.actor == "lena" for e in entries)


# --- diff -----------------------------------------------------------------------------------------------------
def test_the_diff_defaults_to_the_previous_version(client_for, viewer, policy, admin_user):
    policy_version_create(policy=policy, text=policy_text(rules=[rule("dp-gap", value=0.2)]), actor=admin_user)
    policy_version_create(
        policy=policy, text=policy_text(rules=[rule("dp-gap"), rule("x", signal="x")]), actor=admin_user
    )
    api = client_for(viewer)

    default = api.get(f"{versions_url(KEY)}/3/diff")
    against_1 = api.get(f"{versions_url(KEY)}/3/diff?against=1")

    assert default.status_code == against_1.status_code == 200
    assert (default.json()["against"], default.json()["rules"]["changed"]) == (2, [{"id": "dp-gap", "keys": ["when"]}])
    assert against_1.json()["rules"] == {"added": ["x"], "removed": [], "changed": [], "order_changed": False}
    assert "+++ fairness-guard v3" in against_1.json()["text"]


def test_a_diff_without_a_version_to_compare_with_is_a_400(client_for, viewer, policy):
    api = client_for(viewer)

    first = api.get(f"{versions_url(KEY)}/1/diff")
    unknown = api.get(f"{versions_url(KEY)}/1/diff?against=7")

    assert first.status_code == unknown.status_code == 400
    assert "against" in first.json()["error"]["fields"] and "against" in unknown.json()["error"]["fields"]


# --- roles ----------------------------------------------------------------------------------------------------
def test_every_person_and_the_cicd_account_read_but_do_not_write(client_for, make_user, viewer, policy):
    cicd = make_user(Role.CICD, username="pipeline", is_service_account=True)
    reviewer = make_user(Role.REVIEWER)

    for reader in (viewer, cicd, reviewer):
        api = client_for(reader)
        assert api.get(URL).status_code == 200
        assert api.get(f"{versions_url(KEY)}/1").status_code == 200
        assert api.post(versions_url(KEY), {"text": policy_text(name="x")}, format="json").status_code == 403
        assert api.post(f"{versions_url(KEY)}/1/activate", {}, format="json").status_code == 403
        assert api.post(f"{URL}/{KEY}/deactivate", {}, format="json").status_code == 403
    assert policy.versions.count() == 1 and not Policy.objects.filter(active_version__isnull=False).exists()


def test_the_ingest_account_and_anonymous_callers_read_nothing(client_for, anon_client, make_user, policy):
    ingest = make_user(Role.INGEST, username="ingestor", is_service_account=True)

    assert client_for(ingest).get(URL).status_code == 403
    assert anon_client.get(URL).status_code == 401


def test_a_governance_lead_writes_only_their_teams_policies(client_for, make_user, policy, other_team):
    outsider = client_for(make_user(Role.GOVERNANCE_LEAD, teams=[other_team]))

    version = outsider.post(versions_url(KEY), {"text": policy_text(name="Mine now")}, format="json")
    activate = outsider.post(f"{versions_url(KEY)}/1/activate", {}, format="json")
    create = outsider.post(URL, {"text": policy_text(key="for-fraud-ml")}, format="json")

    assert version.status_code == activate.status_code == create.status_code == 403
    assert "fraud-ml" in version.json()["error"]["message"]
    assert outsider.post(URL, {"text": policy_text(key="platform", owner_team=None)}, format="json").status_code == 201
    assert Policy.objects.count() == 2 and policy.versions.count() == 1


def test_an_admin_writes_any_policy(client_for, admin_user, policy):
    response = client_for(admin_user).post(f"{versions_url(KEY)}/1/activate", {}, format="json")

    assert response.status_code == 200
