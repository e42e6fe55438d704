"""``POST /cicd/gate`` with policies, named evaluation runs and pending reviews: the gate decision matrix."""

from __future__ import annotations

import itertools
import json

import pytest
import yaml

from governance.choices import AuditAction, EvaluationProvenance, Role, Severity
from governance.models import AuditLog
from governance.services.policies import policy_create, policy_version_activate, policy_version_create
from tests.factories import EvaluationRunFactory
from tests.hitl.factories import ReviewItemFactory
from tests.incidents.factories import IncidentFactory

pytestmark = pytest.mark.django_db

GATE_URL = "/api/v1/cicd/gate"
ARTIFACT = "registry.example.com/fraud-scorer@sha256:" + "cd" * 32


def policy_text(*rules, key="fraud-gate", scope=None, default="allow") -> str:
    spec = {"default_action": default, "rules": list(rules)}
    if scope:
        spec["scope"] = scope
    return yaml.safe_dump(
        {"apiVersion": "vigil/v1", "kind": "Policy", "metadata": {"id": key, "name": key}, "spec": spec}
    )


ACCURACY_FLOOR = {
    "id": "accuracy-floor",
    "category": "model_perf",
    "severity": "critical",
    "when": [{"metric": "exact_match", "suite": "accuracy", "op": "<", "value": 0.8, "unit": "ratio"}],
    "action": "deny",
    "references": [{"framework": "eu_ai_act", "ref": "Art. 15"}],
}
REVIEW_LIMITED = {
    "id": "review-limited",
    "category": "compliance",
    "severity": "medium",
    "when": [{"attribute": "risk_class", "op": "==", "value": "limited"}],
    "action": "require_review",
}


@pytest.fixture
def pipeline(make_user, team):
    return make_user(Role.CICD, teams=[team], username="svc-deploy", is_service_account=True)


@pytest.fixture
def lead(make_user, team):
    return make_user(Role.GOVERNANCE_LEAD, teams=[team])


def active_policy(lead, text):
    version = policy_create(text=text, actor=lead)
    return policy_version_activate(version=version, actor=lead)


def ask(client, system, **extra):
    return client.post(GATE_URL, {"system": system.name, "artifact": ARTIFACT, **extra}, format="json")


def accuracy_run(system, value, **kwargs):
    return EvaluationRunFactory(system=system, suite="accuracy", metric="exact_match", value=value, threshold=0.8,
                                passed=value >= 0.8, **kwargs)  # fmt: skip


def test_an_active_policy_that_denies_blocks_with_its_rule(pipeline, lead, own_system, client_for):
    active_policy(lead, policy_text(ACCURACY_FLOOR))
    # The gateway run passed its own (lower) threshold, but the policy's floor is 0.8.
    EvaluationRunFactory(system=own_system, suite="accuracy", metric="exact_match", value=0.75, threshold=0.7,
                         passed=True)  # fmt: skip

    answer = ask(client_for(pipeline), own_system).json()

    assert answer["decision"] == "deny"
    [reason] = answer["reasons"]
    assert "policy 'fraud-gate' v1 denies (rule 'accuracy-floor', critical)" in reason
    assert "exact_match (accuracy) = 0.75 < 0.8" in reason
    [outcome] = answer["policies"]
    assert (outcome["policy"], outcome["version"], outcome["action"], outcome["rule_id"]) == (
        "fraud-gate",
        1,
        "deny",
        "accuracy-floor",
    )
    entry = AuditLog.objects.get(action=AuditAction.CICD_GATE_DECIDED)
    assert str(entry.pk) == answer["audit_entry"]
    assert entry.data["policies"][0]["action"] == "deny"


def test_named_evaluation_runs_are_the_artifacts_evidence(pipeline, lead, own_system, client_for):
    active_policy(lead, policy_text(ACCURACY_FLOOR))
    accuracy_run(own_system, 0.6)  # an older model's failure
    fresh = accuracy_run(own_system, 0.93)

    answer = ask(client_for(pipeline), own_system, eval_run_ids=[str(fresh.pk)]).json()

    assert (answer["decision"], answer["eval_run_ids"]) == ("allow", [str(fresh.pk)])


def test_a_named_failed_run_denies(pipeline, own_system, client_for):
    failed = accuracy_run(own_system, 0.5)

    answer = ask(client_for(pipeline), own_system, eval_run_ids=[str(failed.pk)]).json()

    assert answer["decision"] == "deny"
    assert answer["reasons"][0].startswith("accuracy/exact_match evaluation failed: 0.5 against threshold 0.8")


def test_a_named_posted_result_of_a_gateway_suite_is_not_evidence(pipeline, own_system, client_for):
    posted = accuracy_run(own_system, 0.99, provenance=EvaluationProvenance.REPORTED)

    answer = ask(client_for(pipeline), own_system, eval_run_ids=[str(posted.pk)]).json()

    assert answer["decision"] == "deny"
    assert "without an eval run" in answer["reasons"][0]


def test_require_review_blocks_a_pipeline(pipeline, lead, own_system, client_for):
    active_policy(lead, policy_text(REVIEW_LIMITED))

    answer = ask(client_for(pipeline), own_system).json()

    assert answer["decision"] == "deny"
    assert "requires a human review (rule 'review-limited', medium)" in answer["reasons"][0]


def test_policies_outside_their_scope_do_not_apply(pipeline, lead, own_system, client_for):
    active_policy(lead, policy_text(REVIEW_LIMITED, scope={"risk_class": ["high"]}))

    answer = ask(client_for(pipeline), own_system).json()

    assert answer["decision"] == "allow"
    assert answer["policies"][0]["action"] == "not_applicable"


def test_a_named_policy_without_an_active_version_denies(pipeline, lead, own_system, client_for):
    policy_create(text=policy_text(ACCURACY_FLOOR, key="draft-only"), actor=lead)

    answer = ask(client_for(pipeline), own_system, policy_ids=["draft-only"]).json()

    assert answer["decision"] == "deny"
    assert answer["reasons"] == ["policy 'draft-only' has no active version"]


def test_a_pinned_invalid_version_denies(pipeline, lead, own_system, client_for):
    version = policy_create(text=policy_text(ACCURACY_FLOOR), actor=lead)
    broken = dict(ACCURACY_FLOOR, when=[{**ACCURACY_FLOOR["when"][0], "value": 80, "unit": "ratio"}])
    policy_version_create(policy=version.policy, text=policy_text(broken), actor=lead)

    answer = ask(client_for(pipeline), own_system, policy_ids=["fraud-gate@2"]).json()

    assert answer["decision"] == "deny"
    [reason] = answer["reasons"]
    assert reason.startswith("policy 'fraud-gate' version 2 is not valid (")


@pytest.mark.parametrize(
    ("field", "body"),
    [
        ("policy_ids.0", {"policy_ids": ["no-such-policy"]}),
        ("policy_ids.0", {"policy_ids": ["fraud-gate@9"]}),
        ("eval_run_ids.0", {"eval_run_ids": ["not-a-uuid"]}),
        ("eval_run_ids.1", {"eval_run_ids": ["{own}", "{foreign}"]}),
    ],
)
def test_unknown_policies_and_runs_answer_400_and_are_not_audited(
    pipeline, lead, own_system, foreign_system, client_for, field, body
):
    active_policy(lead, policy_text(ACCURACY_FLOOR))
    own, foreign = accuracy_run(own_system, 0.9), accuracy_run(foreign_system, 0.9)
    body = json.loads(json.dumps(body).replace("{own}", str(own.pk)).replace("{foreign}", str(foreign.pk)))

    response = ask(client_for(pipeline), own_system, **body)

    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]
    assert not AuditLog.objects.filter(action=AuditAction.CICD_GATE_DECIDED).exists()


# --- the decision matrix: deny exactly when at least one cause holds ----------------------------------------
CAUSES = ("critical_incident", "pending_high_review", "failed_evaluation", "policy_denies")


@pytest.mark.parametrize("present", [set(combo) for n in range(len(CAUSES) + 1)
                                     for combo in itertools.combinations(CAUSES, n)])  # fmt: skip
def test_the_gate_decision_matrix(pipeline, lead, own_system, client_for, present):
    scope = {"risk_class": ["limited" if "policy_denies" in present else "high"]}
    active_policy(lead, policy_text({**REVIEW_LIMITED, "id": "deny-limited", "action": "deny"}, scope=scope))
    if "critical_incident" in present:
        IncidentFactory(system=own_system, severity=Severity.CRITICAL)
    if "pending_high_review" in present:
        ReviewItemFactory(system=own_system, severity=Severity.HIGH)
    ReviewItemFactory(system=own_system, severity=Severity.MEDIUM)  # never blocks
    if "failed_evaluation" in present:
        accuracy_run(own_system, 0.5)

    answer = ask(client_for(pipeline), own_system).json()

    assert answer["decision"] == ("deny" if present else "allow")
    assert len(answer["reasons"]) == len(present)
    found = {
        "critical_incident": any(r.startswith("open critical incident") for r in answer["reasons"]),
        "pending_high_review": any(r.startswith("pending high review") for r in answer["reasons"]),
        "failed_evaluation": any("evaluation failed" in r for r in answer["reasons"]),
        "policy_denies": any(r.startswith("policy 'fraud-gate'") for r in answer["reasons"]),
    }
    assert {cause for cause, seen in found.items() if seen} == present
