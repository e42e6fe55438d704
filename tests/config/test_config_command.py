"""``manage.py config list|get|set|seed``: the registry from the command line, with clear errors."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from config.keys import KEYS, KEYS_BY_NAME
from config.models import PlatformConfig, PlatformConfigHistory
from governance.choices import AuditAction
from governance.models import AuditLog

pytestmark = pytest.mark.django_db

WINDOW = "oversight.correlation_window_seconds"


def run(*args: str) -> str:
    out = StringIO()
    call_command("config", *args, stdout=out)
    return out.getvalue()


def stored_state(key: str = WINDOW) -> tuple:
    row = PlatformConfig.objects.get(key=key)
    return row.value, row.version, PlatformConfigHistory.objects.filter(config=row).count(), AuditLog.objects.count()


def test_list_prints_every_key_with_version_and_category():
    lines = run("list").splitlines()

    assert len(lines) == len(KEYS)
    assert lines[0].split() == [KEYS[0].key, "v1", KEYS[0].category]


def test_list_marks_a_key_served_from_its_default():
    PlatformConfig.objects.filter(key="incidents.auto_close").delete()

    (line,) = [line for line in run("list").splitlines() if line.startswith("incidents.auto_close ")]

    assert line.split()[1] == "v0"
    assert line.endswith("(default, not stored)")


def test_get_prints_the_value_as_json():
    assert json.loads(run("get", "slo.mttd_seconds")) == KEYS_BY_NAME["slo.mttd_seconds"].default


def test_set_stores_a_new_version_audited_as_the_cli():
    output = run("set", WINDOW, "600", "--reason", "slower pipelines")

    assert output.strip() == f"{WINDOW} is now version 2"
    row = PlatformConfig.objects.get(key=WINDOW)
    assert (row.value, row.version) == (600, 2)
    assert row.history.get(version=2).reason == "slower pipelines"
    entry = AuditLog.objects.get(action=AuditAction.CONFIG_UPDATED)
    assert (entry.actor, entry.data["reason"]) == ("system:cli", "slower pipelines")


def test_set_with_the_current_version_is_accepted():
    run("set", WINDOW, "600", "--reason", "tune", "--version", "1")

    assert PlatformConfig.objects.get(key=WINDOW).version == 2


def test_set_with_a_stale_version_is_refused_and_nothing_is_written():
    run("set", WINDOW, "600", "--reason", "first")
    before = stored_state()

    with pytest.raises(CommandError, match=r"is at version 2, not 1"):
        run("set", WINDOW, "900", "--reason", "late", "--version", "1")

    assert stored_state() == before


def test_set_requires_a_reason():
    with pytest.raises(CommandError, match="--reason"):
        run("set", WINDOW, "600")


def test_get_of_an_unknown_key_is_a_command_error():
    with pytest.raises(CommandError, match=r"unknown key 'oversight.no_such_key'"):
        run("get", "oversight.no_such_key")


def test_set_of_an_unknown_key_is_a_command_error():
    with pytest.raises(CommandError, match=r"unknown key 'oversight.no_such_key'"):
        run("set", "oversight.no_such_key", "1", "--reason", "x")


def test_a_value_that_is_not_json_is_a_command_error_and_nothing_is_written():
    before = stored_state()

    with pytest.raises(CommandError, match="value is not JSON"):
        run("set", WINDOW, "{six hundred", "--reason", "typo")

    assert stored_state() == before


def test_a_schema_violation_is_a_command_error_naming_the_path_and_nothing_is_written():
    value = json.loads(json.dumps(KEYS_BY_NAME["oversight.thresholds.data_quality"].default))
    del value["null_rate"]["critical"]
    before = stored_state("oversight.thresholds.data_quality")

    with pytest.raises(CommandError) as caught:
        run("set", "oversight.thresholds.data_quality", json.dumps(value), "--reason", "oops")

    assert str(caught.value) == "value.null_rate.critical: This field is required."
    assert stored_state("oversight.thresholds.data_quality") == before


def test_text_no_database_can_store_is_a_command_error():
    with pytest.raises(CommandError, match="value.1: text cannot contain NUL characters"):
        run("set", "incidents.resolution_reasons", '["Fixed", "Dupli\\u0000cate"]', "--reason", "x")


def test_a_semantic_violation_is_a_command_error():
    value = {"critical": 600, "high": 300, "medium": 3600, "low": 14400, "info": 86400}

    with pytest.raises(CommandError, match=r"value.critical: critical \(600\) must not be longer than high"):
        run("set", "slo.mttd_seconds", json.dumps(value), "--reason", "oops")


def test_seed_restores_missing_keys_and_reports_them():
    PlatformConfig.objects.filter(key__in=["incidents.auto_close", "hitl.sla_hours"]).delete()

    output = run("seed")

    assert output.strip() == "seeded 2 keys: hitl.sla_hours, incidents.auto_close"  # declaration order
    assert PlatformConfig.objects.filter(key__in=["incidents.auto_close", "hitl.sla_hours"], version=1).count() == 2
    seeded = AuditLog.objects.filter(action=AuditAction.CONFIG_SEEDED)
    assert {entry.actor for entry in seeded} == {"system:cli"}


def test_seed_when_nothing_is_missing_writes_nothing():
    audit_rows = AuditLog.objects.count()

    assert run("seed").strip() == "seeded 0 keys"
    assert AuditLog.objects.count() == audit_rows
