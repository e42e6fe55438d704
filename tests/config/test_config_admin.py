"""The config admin: edit through the registry with schema errors on the form, history with a readable diff."""

from __future__ import annotations

import copy
import json

import pytest
from django.urls import reverse

from config import registry
from config.keys import KEYS, KEYS_BY_NAME
from config.models import PlatformConfig, PlatformConfigHistory
from governance.choices import AuditAction, Role
from governance.models import AuditLog

pytestmark = pytest.mark.django_db

DATA_QUALITY = "oversight.thresholds.data_quality"


def data_quality(**null_rate) -> dict:
    value = copy.deepcopy(KEYS_BY_NAME[DATA_QUALITY].default)
    value["null_rate"].update(null_rate)
    return value


def stored_state(key: str = DATA_QUALITY) -> tuple:
    row = PlatformConfig.objects.get(key=key)
    return row.value, row.version, PlatformConfigHistory.objects.filter(config=row).count(), AuditLog.objects.count()


def change_url(key: str = DATA_QUALITY) -> str:
    return reverse("admin:config_platformconfig_change", args=[PlatformConfig.objects.get(key=key).pk])


def form_data(value, *, reason: str = "fewer false alarms", expected_version: int = 1) -> dict:
    text = value if isinstance(value, str) else json.dumps(value)
    return {"value": text, "reason": reason, "expected_version": expected_version}


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


# --- list and form ----------------------------------------------------------------------------------
def test_the_changelist_shows_every_key_with_its_version(admin_client):
    response = admin_client.get(reverse("admin:config_platformconfig_changelist"))

    assert response.status_code == 200
    page = response.content.decode()
    for spec in KEYS:
        assert spec.key in page


def test_the_change_form_shows_the_value_as_json_the_schema_and_a_hidden_version(admin_client):
    response = admin_client.get(change_url())

    assert response.status_code == 200
    form = response.context["adminform"].form
    assert json.loads(form["value"].value()) == KEYS_BY_NAME[DATA_QUALITY].default
    assert form["expected_version"].value() == 1
    page = response.content.decode()
    assert 'type="hidden" name="expected_version" value="1"' in page
    assert "signal_thresholds" in page  # the JSON Schema, shown under "Schema"
    assert "initial value" in page  # the seeded version in the history table


def test_keys_cannot_be_added_or_deleted_in_the_admin(admin_client):
    row = PlatformConfig.objects.get(key=DATA_QUALITY)

    assert admin_client.get(reverse("admin:config_platformconfig_add")).status_code == 403
    assert admin_client.post(reverse("admin:config_platformconfig_delete", args=[row.pk])).status_code == 403
    assert PlatformConfig.objects.filter(pk=row.pk).exists()


# --- edits ------------------------------------------------------------------------------------------
def test_a_valid_edit_stores_a_new_version_with_the_reason_in_history_and_audit(admin_client, admin_user):
    response = admin_client.post(change_url(), form_data(data_quality(critical=0.3)))

    assert response.status_code == 302
    row = PlatformConfig.objects.get(key=DATA_QUALITY)
    assert (row.version, row.value["null_rate"]["critical"], row.updated_by) == (2, 0.3, admin_user)
    change = row.history.get(version=2)
    assert (change.reason, change.changed_by) == ("fewer false alarms", admin_user)
    entry = AuditLog.objects.get(action=AuditAction.CONFIG_UPDATED)
    assert entry.actor == admin_user.username
    assert entry.data["reason"] == "fewer false alarms"
    assert entry.data["changes"] == [{"path": "null_rate.critical", "op": "changed", "from": 0.2, "to": 0.3}]


def test_a_governance_lead_may_edit_config_in_the_admin(client, lead):
    client.force_login(lead)

    response = client.post(change_url(), form_data(data_quality(critical=0.3)))

    assert response.status_code == 302
    assert PlatformConfig.objects.get(key=DATA_QUALITY).version == 2


def test_a_viewer_sees_the_key_but_cannot_change_it(client, viewer):
    client.force_login(viewer)
    before = stored_state()

    assert client.get(change_url()).status_code == 200
    response = client.post(change_url(), form_data(data_quality(critical=0.3)))

    assert response.status_code == 403
    assert stored_state() == before


def test_a_schema_error_is_shown_on_the_form_naming_the_path_and_nothing_is_stored(admin_client):
    value = data_quality()
    del value["null_rate"]["critical"]
    before = stored_state()

    response = admin_client.post(change_url(), form_data(value))

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert errors["value"] == ["value.null_rate.critical: This field is required."]
    assert "value.null_rate.critical: This field is required." in response.content.decode()
    assert stored_state() == before


def test_a_semantic_error_is_shown_on_the_form_and_nothing_is_stored(admin_client):
    before = stored_state()

    response = admin_client.post(change_url(), form_data(data_quality(warning=0.3, critical=0.2)))

    assert response.status_code == 200
    (message,) = response.context["adminform"].form.errors["value"]
    assert message.startswith("value.null_rate.warning: direction is 'above'")
    assert stored_state() == before


def test_text_that_is_not_json_is_refused_and_nothing_is_stored(admin_client):
    before = stored_state()

    response = admin_client.post(change_url(), form_data('{"null_rate": '))

    assert response.status_code == 200
    assert "value" in response.context["adminform"].form.errors
    assert stored_state() == before


def test_a_reason_is_required(admin_client):
    before = stored_state()

    response = admin_client.post(change_url(), form_data(data_quality(critical=0.3), reason=""))

    assert response.status_code == 200
    assert "reason" in response.context["adminform"].form.errors
    assert stored_state() == before


def test_a_stale_expected_version_is_an_error_and_nothing_is_stored(admin_client, admin_user):
    registry.set(DATA_QUALITY, data_quality(critical=0.25), user=admin_user, reason="someone else")
    before = stored_state()

    response = admin_client.post(change_url(), form_data(data_quality(critical=0.3), expected_version=1))

    assert response.status_code == 200
    (message,) = response.context["adminform"].form.non_field_errors()
    assert "now version 2" in message
    assert stored_state() == before


def test_a_concurrent_edit_between_validation_and_save_is_refused_and_nothing_is_stored(
    admin_client, admin_user, monkeypatch
):
    # The form checked version 1; another editor commits version 2 just before registry.set runs.
    real_set = registry.set

    def set_after_someone_else(key, value, **kwargs):
        real_set(key, data_quality(critical=0.25), user=admin_user, reason="someone else")
        return real_set(key, value, **kwargs)

    monkeypatch.setattr(registry, "set", set_after_someone_else)

    response = admin_client.post(change_url(), form_data(data_quality(critical=0.3)), follow=True)

    row = PlatformConfig.objects.get(key=DATA_QUALITY)
    assert (row.version, row.value["null_rate"]["critical"]) == (2, 0.25)
    messages = [str(m) for m in response.context["messages"]]
    assert any(m.startswith("Not saved:") and "at version 2, not 1" in m for m in messages)
    assert not AuditLog.objects.filter(action=AuditAction.CONFIG_UPDATED, data__reason="fewer false alarms").exists()


# --- history with a readable diff -------------------------------------------------------------------
def test_the_history_admin_renders_readable_diff_lines(admin_client, admin_user):
    registry.set(DATA_QUALITY, data_quality(critical=0.3), user=admin_user, reason="fewer false alarms")

    response = admin_client.get(reverse("admin:config_platformconfighistory_changelist"))

    assert response.status_code == 200
    page = response.content.decode()
    assert "<div>null_rate.critical: 0.2 → 0.3</div>" in page
    assert "fewer false alarms" in page


def test_the_change_form_history_table_shows_the_diff_who_and_why(admin_client, admin_user):
    registry.set(DATA_QUALITY, data_quality(critical=0.3), user=admin_user, reason="fewer false alarms")

    page = admin_client.get(change_url()).content.decode()

    assert "<div>null_rate.critical: 0.2 → 0.3</div>" in page
    assert "<td>v2</td>" in page
    assert "<td>fewer false alarms</td>" in page
    assert f"<td>{admin_user.username}</td>" in page


def test_the_history_admin_is_read_only(admin_client):
    change = PlatformConfigHistory.objects.filter(config__key=DATA_QUALITY).get()

    assert admin_client.get(reverse("admin:config_platformconfighistory_add")).status_code == 403
    response = admin_client.post(
        reverse("admin:config_platformconfighistory_change", args=[change.pk]), {"reason": "rewritten"}
    )
    assert response.status_code == 403
    change.refresh_from_db()
    assert change.reason == "seeded by migration"


def test_a_service_account_cannot_use_the_config_admin(client, make_user):
    client.force_login(make_user(Role.INGEST, is_service_account=True))

    response = client.get(change_url())

    assert response.status_code == 302
    assert reverse("admin:login") in response["Location"]
