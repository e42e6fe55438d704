"""``POST /cicd/gate`` without policies: deny while the system has an open critical or serious incident or a
failed latest evaluation; allow otherwise; every decision audited; roles and scoping. Policies, named runs and
reviews: test_cicd_gate_policies.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from governance.choices import AuditAction, Role, Severity
from governance.models import AuditLog
from incidents.models import IncidentStatus
from tests.factories import EvaluationRunFactory
from tests.incidents.factories import IncidentFactory

pytestmark = pytest.mark.django_db

GATE_URL = "/api/v1/cicd/gate"
NOW = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)
ARTIFACT = "registry.example.com/fraud-scorer@sha256:" + "ab" * 32


@pytest.fixture
def pipeline(make_user, team):
    return make_user(Role.CICD, teams=[team], username="svc-deploy", is_service_account=True)


def ask_gate(client, system, **extra):
    return client.post(GATE_URL, {"system": system.name, "artifact": ARTIFACT, **extra})


def gate_audits():
    return list(AuditLog.objects.filter(action=AuditAction.CICD_GATE_DECIDED).order_by("seq"))


def test_a_system_without_incidents_or_failed_evaluations_is_allowed_and_the_decision_audited(
    pipeline, own_system, client_for
):
    EvaluationRunFactory(system=own_system, passed=True)

    with time_machine.travel(NOW, tick=False):
        response = ask_gate(client_for(pipeline), own_system)

    assert response.status_code == 200
    [entry] = gate_audits()
    assert response.json() == {
        "decision": "allow",
        "reasons": [],
        "checked_at": "2026-11-02T09:30:00Z",
        "system": str(own_system.pk),
        "system_name": own_system.name,
        "artifact": ARTIFACT,
        "version": "",
        "policy_ids": [],
        "policies": [],
        "eval_run_ids": [],
        "audit_entry": str(entry.pk),
    }
    assert (entry.actor, entry.actor_type, entry.object_id) == ("svc-deploy", "service", str(own_system.pk))
    assert entry.data["decision"] == "allow"
    assert entry.data["artifact"] == ARTIFACT
    assert entry.data["caller"] == "svc-deploy"
    assert entry.data["policy_ids"] == []
    assert entry.data["reasons"] == []


@pytest.mark.parametrize("status", [IncidentStatus.OPEN, IncidentStatus.ACKNOWLEDGED, IncidentStatus.MITIGATED])
def test_an_open_critical_incident_denies_with_a_reason_naming_it(pipeline, own_system, client_for, status):
    incident = IncidentFactory(system=own_system, severity=Severity.CRITICAL, status=status, title="Model leaks PII")

    answer = ask_gate(client_for(pipeline), own_system).json()

    assert answer["decision"] == "deny"
    [reason] = answer["reasons"]
    assert f"open critical incident {incident.pk} ({status})" in reason
    assert "Model leaks PII" in reason
    [entry] = gate_audits()
    assert entry.data["decision"] == "deny"
    assert entry.data["reasons"] == answer["reasons"]


def test_an_open_serious_incident_denies_whatever_its_severity(pipeline, own_system, client_for):
    incident = IncidentFactory(system=own_system, severity=Severity.MEDIUM, serious=True)

    answer = ask_gate(client_for(pipeline), own_system).json()

    assert answer["decision"] == "deny"
    assert answer["reasons"][0].startswith(f"open serious incident {incident.pk}")


def test_closed_criticals_open_non_serious_highs_and_other_systems_incidents_do_not_deny(
    pipeline, own_system, team, client_for
):
    now = datetime.now(UTC)
    IncidentFactory(system=own_system, severity=Severity.CRITICAL, status=IncidentStatus.RESOLVED, resolved_at=now)
    IncidentFactory(
        system=own_system,
        severity=Severity.CRITICAL,
        status=IncidentStatus.CLOSED,
        serious=True,
        resolved_at=now,
        closed_at=now,
    )
    IncidentFactory(system=own_system, severity=Severity.HIGH)
    IncidentFactory(system__team=team, severity=Severity.CRITICAL)

    assert ask_gate(client_for(pipeline), own_system).json()["decision"] == "allow"


def test_a_failed_latest_evaluation_denies_with_its_result(pipeline, own_system, client_for):
    run = EvaluationRunFactory(
        system=own_system, suite="fairness", metric="parity_rate", value=0.5, threshold=0.9, passed=False
    )

    answer = ask_gate(client_for(pipeline), own_system).json()

    assert answer["decision"] == "deny"
    assert answer["reasons"] == [
        f"latest fairness/parity_rate evaluation failed: 0.5 against threshold 0.9 "
        f"(run {run.pk}, {run.ran_at:%Y-%m-%d %H:%M} UTC)"
    ]


def test_a_newer_pass_of_the_same_suite_supersedes_an_older_failure(pipeline, own_system, client_for):
    EvaluationRunFactory(system=own_system, suite="accuracy", metric="exact_match", passed=False, ran_at=NOW)
    EvaluationRunFactory(
        system=own_system, suite="accuracy", metric="exact_match", passed=True, ran_at=NOW + timedelta(hours=1)
    )

    assert ask_gate(client_for(pipeline), own_system).json()["decision"] == "allow"


def test_a_newer_pass_of_another_suite_does_not_hide_a_failure(pipeline, own_system, client_for):
    EvaluationRunFactory(system=own_system, suite="toxicity", metric="non_toxic_rate", passed=False, ran_at=NOW)
    EvaluationRunFactory(
        system=own_system, suite="accuracy", metric="exact_match", passed=True, ran_at=NOW + timedelta(hours=1)
    )

    answer = ask_gate(client_for(pipeline), own_system).json()

    assert answer["decision"] == "deny"
    assert [r.split(" evaluation")[0] for r in answer["reasons"]] == ["latest toxicity/non_toxic_rate"]


def test_every_reason_is_listed_incidents_first(pipeline, own_system, client_for):
    IncidentFactory(system=own_system, severity=Severity.CRITICAL, serious=True)
    EvaluationRunFactory(system=own_system, passed=False)

    reasons = ask_gate(client_for(pipeline), own_system).json()["reasons"]

    assert len(reasons) == 2
    assert reasons[0].startswith("open critical and serious incident")
    assert reasons[1].startswith("latest robustness/accuracy evaluation failed")


def test_every_decision_is_audited_in_order(pipeline, own_system, client_for):
    client = client_for(pipeline)
    ask_gate(client, own_system)
    IncidentFactory(system=own_system, severity=Severity.CRITICAL)
    ask_gate(client, own_system)

    assert [entry.data["decision"] for entry in gate_audits()] == ["allow", "deny"]


@pytest.mark.parametrize(
    ("role", "service", "expected"),
    [
        (Role.CICD, True, 200),
        (Role.ADMIN, False, 200),
        (Role.GOVERNANCE_LEAD, False, 200),
        (Role.INGEST, True, 403),
        (Role.VIEWER, False, 403),
        (Role.REVIEWER, False, 403),
        (Role.SECURITY, False, 403),
    ],
)
def test_only_cicd_service_accounts_leads_and_admins_may_ask(
    make_user, team, own_system, client_for, role, service, expected
):
    user = make_user(role, teams=[team], is_service_account=service)

    assert ask_gate(client_for(user), own_system).status_code == expected
    assert len(gate_audits()) == (1 if expected == 200 else 0)


def test_anonymous_callers_get_401(anon_client, own_system):
    assert ask_gate(anon_client, own_system).status_code == 401


def test_a_system_outside_the_callers_teams_answers_404_and_is_not_audited(pipeline, foreign_system, client_for):
    response = ask_gate(client_for(pipeline), foreign_system)

    assert response.status_code == 404
    assert gate_audits() == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"system": "fraud-scorer"}, "artifact"),
        ({"artifact": ARTIFACT}, "system"),
        ({"system": "fraud-scorer", "artifact": ""}, "artifact"),
        ({"system": "fraud-scorer", "artifact": ARTIFACT, "policy_ids": "pol-1"}, "policy_ids"),
        ({"system": "fraud-scorer", "artifact": ARTIFACT, "policy_ids": ["p"] * 101}, "policy_ids"),
    ],
)
def test_invalid_requests_answer_400_naming_the_field(pipeline, own_system, client_for, body, field):
    response = client_for(pipeline).post(GATE_URL, body)

    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]
    assert gate_audits() == []
