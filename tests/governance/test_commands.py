"""Operator commands: create_service_account, seed_demo and audit_verify."""

from __future__ import annotations

import re
from dataclasses import dataclass
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from governance.choices import AuditAction, Role
from governance.models import (
    AISystem,
    AuditLog,
    AuditVerification,
    ControlAssessment,
    EvaluationRun,
    Team,
    User,
)
from governance.services.audit import audit_chain_verify
from governance.services.kpis import kpi_report

pytestmark = pytest.mark.django_db


@dataclass
class Output:
    out: str
    err: str


def run(command: str, *args: str) -> Output:
    out, err = StringIO(), StringIO()
    call_command(command, *args, stdout=out, stderr=err)
    return Output(out.getvalue(), err.getvalue())


def printed_secret(output: Output) -> str:
    (secret,) = re.findall(r"^secret: (\S+)$", output.out, flags=re.MULTILINE)
    return secret


def obtain_token(anon_client, username: str, password: str):
    return anon_client.post("/api/v1/auth/token", {"username": username, "password": password})


# --- create_service_account -------------------------------------------------------------------------
def test_create_service_account_prints_the_secret_once_with_a_warning(team):
    output = run("create_service_account", "ingest-bot", "--role", "ingest", "--team", "fraud-ml")

    assert output.out.splitlines()[0] == "service account: ingest-bot (role ingest)"
    assert len(printed_secret(output)) >= 64
    assert output.out.count(printed_secret(output)) == 1
    assert "not shown again" in output.err


def test_create_service_account_stores_only_a_hash_of_the_secret(team):
    secret = printed_secret(run("create_service_account", "ingest-bot", "--role", "ingest", "--team", "fraud-ml"))

    account = User.objects.get(username="ingest-bot")
    assert secret not in account.password
    assert account.check_password(secret)


def test_create_service_account_gives_the_role_and_teams_and_audits_it(team, other_team):
    run("create_service_account", "ci-bot", "--role", "cicd", "--team", "fraud-ml", "--team", "Credit Risk")

    account = User.objects.get(username="ci-bot")
    assert account.is_service_account
    assert account.role_names == {Role.CICD}
    assert set(account.teams.all()) == {team, other_team}
    entry = AuditLog.objects.get(action=AuditAction.SERVICE_ACCOUNT_CREATED)
    assert (entry.actor, entry.object_id) == ("system:create_service_account", str(account.pk))
    assert entry.data["role"] == "cicd"


def test_the_new_account_obtains_a_jwt_with_its_secret(team, anon_client):
    secret = printed_secret(run("create_service_account", "ingest-bot", "--role", "ingest", "--team", "fraud-ml"))

    response = obtain_token(anon_client, "ingest-bot", secret)

    assert response.status_code == 200
    assert set(response.json()) >= {"access", "refresh"}


def test_rotate_issues_a_new_secret_and_the_old_one_stops_working(team, anon_client):
    old = printed_secret(run("create_service_account", "ingest-bot", "--role", "ingest", "--team", "fraud-ml"))

    new = printed_secret(run("create_service_account", "ingest-bot", "--rotate"))

    assert new != old
    assert obtain_token(anon_client, "ingest-bot", old).status_code == 401
    assert obtain_token(anon_client, "ingest-bot", new).status_code == 200
    assert AuditLog.objects.filter(action=AuditAction.SERVICE_ACCOUNT_ROTATED).count() == 1


def test_rotate_reports_the_role_the_account_has(team):
    run("create_service_account", "ci-bot", "--role", "cicd", "--team", "fraud-ml")

    output = run("create_service_account", "ci-bot", "--rotate")

    assert output.out.splitlines()[0] == "service account: ci-bot (role cicd)"
    assert User.objects.get(username="ci-bot").role_names == {Role.CICD}


def test_rotate_refuses_a_role_or_team_change(team):
    run("create_service_account", "ci-bot", "--role", "cicd", "--team", "fraud-ml")

    with pytest.raises(CommandError, match="--rotate keeps the account's role and teams"):
        run("create_service_account", "ci-bot", "--role", "ingest", "--rotate")

    assert User.objects.get(username="ci-bot").role_names == {Role.CICD}


def test_creating_without_a_role_is_a_command_error():
    with pytest.raises(CommandError, match="--role is required"):
        run("create_service_account", "nobody-bot")

    assert not User.objects.filter(username="nobody-bot").exists()


def test_rotate_of_an_unknown_account_is_a_command_error():
    with pytest.raises(CommandError, match="no account named 'ghost'"):
        run("create_service_account", "ghost", "--rotate")


def test_rotate_refuses_a_person(admin_user):
    password_before = admin_user.password

    with pytest.raises(CommandError, match="is not a service account"):
        run("create_service_account", admin_user.username, "--rotate")

    admin_user.refresh_from_db()
    assert admin_user.password == password_before


def test_an_unknown_team_is_a_command_error_and_nothing_is_created():
    audit_rows = AuditLog.objects.count()

    with pytest.raises(CommandError, match="no team 'nowhere'"):
        run("create_service_account", "ingest-bot", "--role", "ingest", "--team", "nowhere")

    assert not User.objects.filter(username="ingest-bot").exists()
    assert AuditLog.objects.count() == audit_rows


def test_a_name_already_taken_is_a_command_error_and_no_secret_is_printed(admin_user):
    out = StringIO()

    with pytest.raises(CommandError, match="already exists"):
        call_command("create_service_account", admin_user.username, "--role", "ingest", stdout=out)

    assert "secret" not in out.getvalue()


def test_a_human_role_is_refused_for_a_service_account():
    with pytest.raises(CommandError, match="invalid choice: 'admin'"):
        run("create_service_account", "sneaky-bot", "--role", "admin")

    assert not User.objects.filter(username="sneaky-bot").exists()


# --- seed_demo --------------------------------------------------------------------------------------
def estate_counts() -> dict[str, int]:
    return {
        "teams": Team.objects.count(),
        "users": User.objects.count(),
        "systems": AISystem.objects.count(),
        "assessments": ControlAssessment.objects.count(),
        "evaluations": EvaluationRun.objects.count(),
        "audit rows": AuditLog.objects.count(),
    }


def test_seed_demo_creates_the_estate_and_prints_the_admin_login_once():
    output = run("seed_demo")

    assert "seeded: 3 teams, 1 users, 6 systems, 9 control assessments, 6 evaluation runs" in output.out
    (password,) = re.findall(r"^admin login: demo-admin / (\S+)", output.out, flags=re.MULTILINE)
    admin = User.objects.get(username="demo-admin")
    assert admin.check_password(password)
    assert admin.role_names == {Role.ADMIN}
    assert "audit chain OK" in output.out


def test_seed_demo_twice_creates_nothing_new_and_hides_the_login():
    run("seed_demo")
    before = estate_counts()

    output = run("seed_demo")

    assert "seeded: nothing new (already seeded)" in output.out
    assert "admin login" not in output.out
    assert estate_counts() == before


def test_seed_demo_twice_leaves_a_chain_that_verifies():
    run("seed_demo")
    second = run("seed_demo")

    assert "audit chain OK" in second.out
    assert audit_chain_verify().ok
    assert list(AuditVerification.objects.values_list("ok", flat=True)) == [True, True]


def test_the_seeded_estate_enforces_the_governance_core_capabilities():
    run("seed_demo")

    statuses = {item["code"]: item["status"] for item in kpi_report()["capabilities"]["items"]}

    for code in ("inventory", "risk_classification", "evaluation", "audit_trail", "access_control"):
        assert statuses[code] == "enforced", code


# --- audit_verify -----------------------------------------------------------------------------------
def test_audit_verify_reports_an_intact_chain_and_records_the_verification():
    run("create_service_account", "ingest-bot", "--role", "ingest")  # one audited change

    output = run("audit_verify")

    assert output.out.startswith("audit chain OK: 1 rows, head seq=1")
    verification = AuditVerification.objects.get()
    assert (verification.ok, verification.checked_rows, verification.head_seq) == (True, 1, 1)


def test_audit_verify_names_the_first_broken_row_and_exits_1():
    run("create_service_account", "ingest-bot", "--role", "ingest")
    head = AuditLog.objects.order_by("-seq").first()
    forged = AuditLog.objects.create(  # appended without the chain's hash: what a forger would write
        seq=head.seq + 1,
        at=head.at,
        actor="mallory",
        actor_type="user",
        action=AuditAction.CONFIG_UPDATED,
        prev_hash=head.hash,
        hash="f" * 64,
    )
    err = StringIO()

    with pytest.raises(SystemExit) as exited:
        call_command("audit_verify", stdout=StringIO(), stderr=err)

    assert exited.value.code == 1
    assert f"audit chain BROKEN at seq={forged.seq}" in err.getvalue()
    assert AuditVerification.objects.get().ok is False
    assert AuditLog.objects.filter(action=AuditAction.AUDIT_CHAIN_BROKEN).exists()
