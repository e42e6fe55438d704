"""``/api/v1/config``: list, read, change (validated, versioned, audited) and history of config keys."""

from __future__ import annotations

import copy
import json

import pytest

from config import registry
from config.keys import KEYS, KEYS_BY_NAME
from config.models import PlatformConfig, PlatformConfigHistory
from governance.choices import HUMAN_ROLES, AuditAction, Role
from governance.models import AuditLog

pytestmark = pytest.mark.django_db

DATA_QUALITY = "oversight.thresholds.data_quality"
URL = f"/api/v1/config/{DATA_QUALITY}"


def default(key: str):
    return copy.deepcopy(KEYS_BY_NAME[key].default)


def data_quality(**null_rate) -> dict:
    value = default(DATA_QUALITY)
    value["null_rate"].update(null_rate)
    return value


def stored_state(key: str = DATA_QUALITY) -> tuple:
    """Everything a write would change: value, version, history rows and audit rows."""
    row = PlatformConfig.objects.get(key=key)
    return row.value, row.version, PlatformConfigHistory.objects.filter(config=row).count(), AuditLog.objects.count()


@pytest.fixture
def admin_api(client_for, admin_user):
    return client_for(admin_user)


# --- reads ------------------------------------------------------------------------------------------
def test_list_returns_every_declared_key_with_value_and_version(admin_api):
    response = admin_api.get("/api/v1/config")

    assert response.status_code == 200
    by_key = {item["key"]: item for item in response.json()}
    assert list(by_key) == [spec.key for spec in KEYS]
    assert by_key[DATA_QUALITY]["value"] == default(DATA_QUALITY)
    assert by_key[DATA_QUALITY]["version"] == 1
    assert by_key[DATA_QUALITY]["category"] == "thresholds"
    assert by_key[DATA_QUALITY]["stored"] is True


def test_list_filters_by_category(admin_api):
    response = admin_api.get("/api/v1/config", {"category": "slo"})

    assert response.status_code == 200
    assert {item["key"] for item in response.json()} == {spec.key for spec in KEYS if spec.category == "slo"}


def test_list_refuses_an_unknown_category(admin_api):
    response = admin_api.get("/api/v1/config", {"category": "colours"})

    assert response.status_code == 400
    assert "category" in response.json()["error"]["fields"]


def test_detail_includes_value_version_and_json_schema(admin_api):
    response = admin_api.get(URL)

    assert response.status_code == 200
    body = response.json()
    assert body["key"] == DATA_QUALITY
    assert body["value"] == default(DATA_QUALITY)
    assert body["version"] == 1
    assert body["schema"]["$ref"] == "urn:vigil:config:definitions#/$defs/signal_thresholds"


def test_detail_reports_a_key_missing_from_the_database_as_its_default_at_version_0(admin_api):
    PlatformConfig.objects.filter(key="incidents.auto_close").delete()

    body = admin_api.get("/api/v1/config/incidents.auto_close").json()

    assert (body["value"], body["version"], body["stored"]) == (default("incidents.auto_close"), 0, False)


@pytest.mark.parametrize("role", sorted(HUMAN_ROLES))
def test_every_human_role_reads_config(make_user, client_for, role):
    client = client_for(make_user(role))

    assert client.get("/api/v1/config").status_code == 200
    assert client.get(URL).status_code == 200
    assert client.get(f"{URL}/history").status_code == 200


def test_a_service_account_may_not_read_config(make_user, client_for):
    ingest = make_user(Role.INGEST, is_service_account=True)

    assert client_for(ingest).get(URL).status_code == 403


def test_anonymous_callers_are_refused_with_401(anon_client):
    response = anon_client.get(URL)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


@pytest.mark.parametrize("path", ["", "/history"])
def test_an_unknown_key_answers_404(admin_api, path):
    response = admin_api.get(f"/api/v1/config/oversight.no_such_key{path}")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_put_to_an_unknown_key_answers_404_and_writes_nothing(admin_api):
    audit_rows = AuditLog.objects.count()

    response = admin_api.put("/api/v1/config/oversight.no_such_key", {"value": 1, "reason": "x"})

    assert response.status_code == 404
    assert AuditLog.objects.count() == audit_rows
    assert not PlatformConfig.objects.filter(key="oversight.no_such_key").exists()


# --- writes -----------------------------------------------------------------------------------------
def test_admin_changes_a_value_and_gets_the_new_version(admin_api):
    response = admin_api.put(URL, {"value": data_quality(critical=0.3), "version": 1, "reason": "fewer false alarms"})

    assert response.status_code == 200
    assert response.json()["version"] == 2
    assert response.json()["value"]["null_rate"]["critical"] == 0.3
    assert admin_api.get(URL).json()["value"]["null_rate"]["critical"] == 0.3
    assert registry.get(DATA_QUALITY)["null_rate"]["critical"] == 0.3


def test_governance_lead_may_change_config(client_for, lead):
    response = client_for(lead).put(URL, {"value": data_quality(critical=0.3), "reason": "tune"})

    assert response.status_code == 200
    assert PlatformConfig.objects.get(key=DATA_QUALITY).updated_by == lead


@pytest.mark.parametrize("role", [Role.VIEWER, Role.REVIEWER, Role.SECURITY])
def test_roles_other_than_admin_and_lead_get_403_and_nothing_is_written(make_user, client_for, role):
    before = stored_state()

    response = client_for(make_user(role)).put(URL, {"value": data_quality(critical=0.3), "reason": "tune"})

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
    assert stored_state() == before


def test_a_change_writes_history_and_a_config_updated_audit_entry_with_the_diff(admin_api, admin_user):
    admin_api.put(URL, {"value": data_quality(critical=0.3), "reason": "fewer false alarms"})

    change = PlatformConfigHistory.objects.get(config__key=DATA_QUALITY, version=2)
    assert change.previous_value == default(DATA_QUALITY)
    assert change.new_value == data_quality(critical=0.3)
    assert (change.changed_by, change.reason) == (admin_user, "fewer false alarms")
    entry = AuditLog.objects.get(action=AuditAction.CONFIG_UPDATED)
    assert entry.actor == admin_user.username
    assert entry.data["changes"] == [{"path": "null_rate.critical", "op": "changed", "from": 0.2, "to": 0.3}]
    assert (entry.data["version"], entry.data["reason"]) == (2, "fewer false alarms")


def test_put_without_a_version_is_last_write_wins(admin_api):
    first = admin_api.put(URL, {"value": data_quality(critical=0.3), "reason": "one"})
    second = admin_api.put(URL, {"value": data_quality(critical=0.4), "reason": "two"})

    assert (first.status_code, second.status_code) == (200, 200)
    assert second.json()["version"] == 3
    assert PlatformConfig.objects.get(key=DATA_QUALITY).value["null_rate"]["critical"] == 0.4


def test_put_with_the_current_version_is_accepted(admin_api):
    admin_api.put(URL, {"value": data_quality(critical=0.3), "reason": "one"})

    response = admin_api.put(URL, {"value": data_quality(critical=0.4), "version": 2, "reason": "two"})

    assert response.status_code == 200
    assert response.json()["version"] == 3


def test_put_with_a_stale_version_answers_409_and_writes_nothing(admin_api):
    admin_api.put(URL, {"value": data_quality(critical=0.3), "reason": "someone else's edit"})
    before = stored_state()

    response = admin_api.put(URL, {"value": data_quality(critical=0.4), "version": 1, "reason": "my edit"})

    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "conflict"
    assert error["fields"] == {"version": ["stale: the stored version is 2, you sent 1"]}
    assert "now version 2" in error["message"]
    assert stored_state() == before


def test_putting_the_current_value_again_does_not_bump_the_version(admin_api):
    before = stored_state()

    response = admin_api.put(URL, {"value": default(DATA_QUALITY), "version": 1, "reason": "no change"})

    assert response.status_code == 200
    assert response.json()["version"] == 1
    assert stored_state() == before


def test_missing_critical_answers_400_naming_the_path_and_writes_nothing(admin_api):
    value = data_quality()
    del value["null_rate"]["critical"]
    before = stored_state()

    response = admin_api.put(URL, {"value": value, "reason": "oops"})

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["fields"] == {"value.null_rate.critical": ["This field is required."]}
    assert "value.null_rate.critical" in error["message"]
    assert stored_state() == before


INVALID_VALUES = [
    pytest.param(DATA_QUALITY, data_quality(warning="high"), "value.null_rate.warning", id="wrong-type"),
    pytest.param(DATA_QUALITY, data_quality(colour="red"), "value.null_rate.colour", id="unknown-field"),
    pytest.param(DATA_QUALITY, data_quality(direction="sideways"), "value.null_rate.direction", id="bad-enum"),
    pytest.param(
        DATA_QUALITY, data_quality(warning=0.3, critical=0.2), "value.null_rate.warning", id="warn-above-crit"
    ),
    pytest.param(DATA_QUALITY, data_quality(critical=2.0), "value.null_rate.critical", id="ratio-above-1"),
    pytest.param(
        "hitl.assist_weights",
        {"severity": 0.4, "signal_strength": 0.4, "risk_class": 0.4, "history": 0.4},
        "value",
        id="weights-not-summing-to-1",
    ),
    pytest.param(
        "incidents.escalation_policy",
        {
            "steps": [
                {"after_minutes": 30, "notify": ["team"], "channels": ["email"]},
                {"after_minutes": 10, "notify": ["role:admin"], "channels": ["email"]},
            ]
        },
        "value.steps.1.after_minutes",
        id="escalation-not-increasing",
    ),
    pytest.param(
        "slo.incident_resolve_minutes",
        {"critical": 300, "high": 240, "medium": 1440, "low": 4320, "info": 10080},
        "value.critical",
        id="slo-not-monotonic",
    ),
    pytest.param("oversight.correlation_window_seconds", "300", "value", id="string-for-integer"),
]


@pytest.mark.parametrize(("key", "value", "field"), INVALID_VALUES)
def test_an_invalid_value_answers_400_naming_the_field_and_writes_nothing(admin_api, key, value, field):
    before = stored_state(key)

    response = admin_api.put(f"/api/v1/config/{key}", {"value": value, "reason": "try"})

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert field in error["fields"]
    assert stored_state(key) == before


@pytest.mark.parametrize(
    ("character", "message"),
    [("\x00", "text cannot contain NUL characters"), ("\ud800", "text must be valid Unicode (no lone surrogates)")],
    ids=["nul", "lone-surrogate"],
)
def test_text_no_database_can_store_answers_400_not_500(admin_api, character, message):
    key = "incidents.resolution_reasons"
    before = stored_state(key)
    body = json.dumps({"value": ["Fixed", f"Dupli{character}cate"], "reason": "x"})  # escaped: ASCII on the wire

    response = admin_api.put(f"/api/v1/config/{key}", body, content_type="application/json")

    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"value.1": [message]}
    assert stored_state(key) == before


def test_a_put_without_value_answers_400_on_the_value_field(admin_api):
    response = admin_api.put(URL, {"reason": "nothing"})

    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["value"]


def test_a_negative_version_is_refused(admin_api):
    response = admin_api.put(URL, {"value": data_quality(critical=0.3), "version": -1})

    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["version"]


def test_put_to_a_key_missing_from_the_database_stores_it(admin_api):
    PlatformConfig.objects.filter(key="incidents.auto_close").delete()

    response = admin_api.put("/api/v1/config/incidents.auto_close", {"value": {"days": 3, "severities": ["info"]}})

    assert response.status_code == 200
    assert (response.json()["version"], response.json()["stored"]) == (2, True)


def test_put_with_version_0_to_a_key_served_from_its_default_is_accepted(admin_api):
    # GET reports version 0 for a key missing from the database; editing that version must work.
    PlatformConfig.objects.filter(key="incidents.auto_close").delete()
    url = "/api/v1/config/incidents.auto_close"
    version = admin_api.get(url).json()["version"]

    response = admin_api.put(url, {"value": {"days": 3, "severities": ["info"]}, "version": version})

    assert (version, response.status_code) == (0, 200)
    assert response.json()["value"] == {"days": 3, "severities": ["info"]}


def test_put_with_version_1_to_a_key_served_from_its_default_is_stale_and_writes_nothing(admin_api):
    PlatformConfig.objects.filter(key="incidents.auto_close").delete()
    audit_rows = AuditLog.objects.count()

    response = admin_api.put(
        "/api/v1/config/incidents.auto_close", {"value": {"days": 3, "severities": []}, "version": 1}
    )

    assert response.status_code == 409
    assert response.json()["error"]["fields"] == {"version": ["stale: the stored version is 0, you sent 1"]}
    assert not PlatformConfig.objects.filter(key="incidents.auto_close").exists()
    assert AuditLog.objects.count() == audit_rows


# --- history ----------------------------------------------------------------------------------------
def test_history_lists_changes_newest_first_with_a_structural_diff(admin_api):
    admin_api.put(URL, {"value": data_quality(critical=0.3), "reason": "one"})
    admin_api.put(URL, {"value": data_quality(critical=0.4), "reason": "two"})

    response = admin_api.get(f"{URL}/history")

    assert response.status_code == 200
    rows = response.json()["results"]
    assert [row["version"] for row in rows] == [3, 2, 1]
    newest = rows[0]
    assert newest["key"] == DATA_QUALITY
    assert newest["changed_by"] == "ada"
    assert newest["reason"] == "two"
    assert newest["previous_value"]["null_rate"]["critical"] == 0.3
    assert newest["new_value"]["null_rate"]["critical"] == 0.4
    assert newest["changes"] == [{"path": "null_rate.critical", "op": "changed", "from": 0.3, "to": 0.4}]


def test_history_shows_the_seeded_version_with_no_author_and_no_diff(admin_api):
    (seeded,) = admin_api.get(f"{URL}/history").json()["results"]

    assert (seeded["version"], seeded["previous_value"], seeded["changed_by"]) == (1, None, None)
    assert seeded["new_value"] == default(DATA_QUALITY)
    assert seeded["changes"] == []


def test_history_is_cursor_paginated(admin_api):
    for critical in (0.3, 0.4, 0.5):
        admin_api.put(URL, {"value": data_quality(critical=critical), "reason": "tune"})

    first = admin_api.get(f"{URL}/history", {"page_size": 2}).json()
    second = admin_api.get(first["next"]).json()

    assert [row["version"] for row in first["results"]] == [4, 3]
    assert [row["version"] for row in second["results"]] == [2, 1]
    assert second["next"] is None


def test_history_shows_only_the_requested_key(admin_api):
    admin_api.put("/api/v1/config/oversight.correlation_window_seconds", {"value": 120, "reason": "tune"})

    rows = admin_api.get(f"{URL}/history").json()["results"]

    assert {row["key"] for row in rows} == {DATA_QUALITY}
