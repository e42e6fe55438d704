"""``manage.py cicd_gate``: exit 0 allow, 1 deny, 2 error; in-process and against a running server."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command

from governance.choices import AuditAction, Role, Severity
from governance.models import AuditLog
from tests.factories import DEFAULT_PASSWORD
from tests.incidents.factories import IncidentFactory

ARTIFACT = "registry.example.com/fraud-scorer@sha256:" + "ef" * 32


def run(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("cicd_gate", *args, stdout=out, stderr=err)
    except SystemExit as exit_:
        return int(exit_.code), out.getvalue(), err.getvalue()
    raise AssertionError("cicd_gate must exit with its verdict")


@pytest.fixture
def pipeline(make_user, team):
    return make_user(Role.CICD, teams=[team], username="ci-bot", is_service_account=True)


@pytest.mark.django_db
def test_in_process_allow_and_deny(pipeline, own_system):
    code, out, _ = run("--as", "ci-bot", "--system", own_system.name, "--artifact", ARTIFACT, "--version", "1.4.2")
    assert code == 0 and out.startswith(f"ALLOW: {own_system.name} {ARTIFACT}")
    incident = IncidentFactory(system=own_system, severity=Severity.CRITICAL, title="Leaks PII")

    code, out, _ = run("--as", "ci-bot", "--system", own_system.name, "--artifact", ARTIFACT, "--format", "json")

    answer = json.loads(out)
    assert code == 1 and answer["decision"] == "deny"
    assert str(incident.pk) in answer["reasons"][0]
    entries = AuditLog.objects.filter(action=AuditAction.CICD_GATE_DECIDED).order_by("seq")
    assert [entry.data["decision"] for entry in entries] == ["allow", "deny"]
    assert entries[0].data["version"] == "1.4.2" and entries[0].actor == "ci-bot"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--as", "nobody", "--system", "fraud-scorer"], "no active user 'nobody'"),
        (["--as", "ci-bot", "--system", "no-such-system"], "no AI system 'no-such-system'"),
        (["--system", "fraud-scorer"], "give --url"),
        (["--as", "ci-bot", "--system", "fraud-scorer", "--policy", "missing"], "policy_ids.0"),
    ],
)
def test_bad_input_exits_2_and_decides_nothing(pipeline, own_system, args, message):
    code, _, err = run(*args, "--artifact", ARTIFACT)
    assert code == 2 and message in err
    assert not AuditLog.objects.filter(action=AuditAction.CICD_GATE_DECIDED).exists()


@pytest.mark.django_db(transaction=True)
def test_against_a_running_server_with_a_service_account(pipeline, own_system, live_server, monkeypatch):
    monkeypatch.setenv("VIGIL_PASSWORD", DEFAULT_PASSWORD)
    common = ["--url", live_server.url, "--username", "ci-bot", "--system", own_system.name, "--artifact", ARTIFACT]

    code, out, _ = run(*common)
    assert code == 0 and out.startswith("ALLOW")

    IncidentFactory(system=own_system, severity=Severity.CRITICAL)
    code, out, _ = run(*common)
    assert code == 1 and out.startswith("DENY") and "open critical incident" in out

    monkeypatch.setenv("VIGIL_PASSWORD", "wrong")
    code, _, err = run(*common)
    assert code == 2 and "answered 401" in err


def test_without_a_token_or_a_reachable_server_it_exits_2(monkeypatch):
    monkeypatch.delenv("VIGIL_TOKEN", raising=False)
    code, _, err = run("--url", "http://127.0.0.1:9", "--system", "s", "--artifact", "a")
    assert code == 2 and "no token" in err
    monkeypatch.setenv("VIGIL_TOKEN", "t")
    code, _, err = run("--url", "http://127.0.0.1:9", "--system", "s", "--artifact", "a")
    assert code == 2 and "cannot reach" in err
