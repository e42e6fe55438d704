"""POST /api/v1/policies/lint and GET /api/v1/policies/schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from governance.services.policy_lint import MAX_DOCUMENT_BYTES

pytestmark = pytest.mark.django_db

URL = "/api/v1/policies/lint"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "policies"
EVERY = (EXAMPLES / "every-finding.yaml").read_text()
CLEAN = (EXAMPLES / "clean.yaml").read_text()


@pytest.fixture
def api(client_for, viewer):
    return client_for(viewer)


def test_a_yaml_text_is_linted_with_positions(api):
    response = api.post(URL, {"text": EVERY, "filename": "every-finding.yaml"}, format="json")

    assert response.status_code == 200
    body = response.json()
    assert body["filename"] == "every-finding.yaml"
    assert body["ok"] is False
    assert body["counts"]["error"] > 0
    duplicate = next(f for f in body["findings"] if f["name"] == "duplicate-id")
    assert (duplicate["code"], duplicate["path"], duplicate["rule_id"]) == ("VGL010", "spec.rules.14.id", "drift")
    assert duplicate["line"] == EVERY[: EVERY.index("- id: drift   ")].count("\n") + 1


def test_a_json_document_is_linted_without_positions(api):
    response = api.post(URL, {"document": yaml.safe_load(CLEAN)}, format="json")

    body = response.json()
    assert response.status_code == 200
    assert body["ok"] is True
    assert body["counts"]["warning"] == 0
    assert body["policy_id"] == "credit-scoring-high-risk"
    assert all(f["line"] is None for f in body["findings"])


@pytest.mark.parametrize("content_type", ["application/yaml", "text/yaml", "application/x-yaml"])
def test_a_raw_yaml_body_is_linted(api, content_type):
    response = api.generic("POST", URL, EVERY.encode(), content_type=content_type)

    assert response.status_code == 200
    body = response.json()
    assert body["filename"] == "request.yaml"
    assert {f["name"] for f in body["findings"]} >= {"syntax", "conflicting-rules", "regulatory-gap"}


def test_format_sarif_answers_a_sarif_log(api):
    response = api.post(f"{URL}?format=sarif", {"text": EVERY}, format="json")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/sarif+json")
    sarif = json.loads(response.content)
    assert sarif["version"] == "2.1.0"
    assert sarif["runs"][0]["tool"]["driver"]["name"] == "vigil-policy-lint"
    assert any(r["ruleId"] == "VGL030" for r in sarif["runs"][0]["results"])


def test_an_unknown_format_is_400_naming_it(api):
    response = api.post(f"{URL}?format=xml", {"text": CLEAN}, format="json")

    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["format"]


def test_neither_document_nor_text_is_400_naming_the_field(api):
    response = api.post(URL, {"filename": "x.yaml"}, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"
    assert list(response.json()["error"]["fields"]) == ["document"]


def test_both_document_and_text_is_400(api):
    response = api.post(URL, {"document": {}, "text": "a: 1"}, format="json")

    assert response.status_code == 400
    assert "document" in response.json()["error"]["fields"]


def test_a_text_that_is_not_a_string_is_400_naming_text(api):
    response = api.post(URL, {"text": {"a": 1}}, format="json")

    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["text"]


def test_a_body_over_one_megabyte_is_413(api):
    response = api.post(URL, {"text": "#" * MAX_DOCUMENT_BYTES}, format="json")

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    assert list(response.json()["error"]["fields"]) == ["body"]


def test_an_unauthenticated_caller_is_401(anon_client):
    assert anon_client.post(URL, {"text": CLEAN}, format="json").status_code == 401
    assert anon_client.get("/api/v1/policies/schema").status_code == 401


def test_any_authenticated_user_may_lint_even_without_a_role(client_for, make_user):
    assert client_for(make_user()).post(URL, {"text": CLEAN}, format="json").status_code == 200


def test_the_lint_passes_the_rate_limiter(api):
    response = api.post(URL, {"text": CLEAN}, format="json")

    assert "RateLimit-Limit" in response


def test_the_schema_is_published(api):
    response = api.get("/api/v1/policies/schema")

    assert response.status_code == 200
    schema = response.json()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["properties"]["apiVersion"] == {"const": "vigil/v1", "description": "Document format version."}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=30,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(document=json_values, as_text=st.booleans())
def test_the_api_answers_any_document_with_a_structured_report(api, document, as_text):
    payload = {"text": json.dumps(document), "filename": "fuzz.json"} if as_text else {"document": document}

    response = api.post(URL, payload, format="json")

    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body["counts"]) == {"error", "warning", "info"}
    assert sum(body["counts"].values()) == len(body["findings"])
    assert all(f["code"] != "VGL099" for f in body["findings"])
