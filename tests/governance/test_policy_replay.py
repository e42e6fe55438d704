"""Shadow replay: a new policy version against the active one over the last days of events and evaluation runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import yaml

from governance.choices import AuditAction, Role
from governance.models import AuditLog
from governance.services.policies import policy_create, policy_version_activate, policy_version_create
from governance.services.policy_replay import PolicyNotReplayable, policy_shadow_replay, replay_summary
from oversight.services.ingest import ingest_events
from tests.factories import AISystemFactory, EvaluationRunFactory

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def policy_text(limit: float, *, extra_rules=()) -> str:
    rule = {"id": "dp", "category": "fairness", "severity": "high", "action": "deny",
            "when": [{"signal": "dp_gap", "category": "fairness", "aggregate": "max", "window": "24h", "op": ">",
                      "value": limit, "unit": "ratio"}]}  # fmt: skip
    document = {"apiVersion": "vigil/v1", "kind": "Policy", "metadata": {"id": "fairness-gate", "name": "Fairness"},
                "spec": {"scope": {"risk_class": ["high"]}, "default_action": "allow",
                         "rules": [rule, *extra_rules]}}  # fmt: skip
    return yaml.safe_dump(document)


@pytest.fixture
def lead(make_user, team):
    return make_user(Role.GOVERNANCE_LEAD, teams=[team])


@pytest.fixture
def estate(team):
    """A high-risk system whose dp_gap was 0.12 for 20 days, then 0.25 for the last 10; a minimal-risk one."""
    scorer = AISystemFactory(name="credit-scorer", team=team, risk_class="high")
    AISystemFactory(name="chatbot", team=team, risk_class="minimal")
    items = []
    for day in range(30, 0, -1):
        value = 0.25 if day <= 10 else 0.12
        items.append({"system": str(scorer.pk), "category": "fairness", "severity": "info", "signal": "dp_gap",
                      "value": value, "occurred_at": (NOW - timedelta(days=day, hours=-1)).isoformat()})  # fmt: skip
    ingest_events(items=items, submitted_by=None, now=NOW)
    return scorer


def test_replay_reports_the_decisions_a_stricter_version_would_change(lead, estate):
    v1 = policy_create(text=policy_text(0.3), actor=lead)
    policy_version_activate(version=v1, actor=lead)
    v2 = policy_version_create(policy=v1.policy, text=policy_text(0.2), actor=lead)

    report = policy_shadow_replay(version=v2, actor=lead, days=30, now=NOW)

    assert (report["version"], report["baseline_version"], report["moments"]) == (2, 1, 31)
    # Only the high-risk system is in scope: one decision per moment.
    assert report["decisions_evaluated"] == 31
    # The last 10 days had dp_gap 0.25: v1 (> 0.3) allowed, v2 (> 0.2) denies.
    assert report["transitions"] == {"allow -> deny": report["decisions_changed"]}
    assert 10 <= report["decisions_changed"] <= 11
    [changed] = report["systems_changed"]
    assert changed["system_name"] == "credit-scorer"
    assert report["rules_fired"] == {"dp": report["decisions_changed"]}
    assert report["now"] == [
        {
            "system": str(estate.pk),
            "system_name": "credit-scorer",
            "baseline": "allow",
            "action": "deny",
            "rule_id": "dp",
            "reasons": ["max(dp_gap) over 1d = 0.25 > 0.2"],
        }  # fmt: skip
    ]
    v2.refresh_from_db()
    assert v2.shadow_report == report and v2.shadow_replayed_at == NOW
    entry = AuditLog.objects.get(action=AuditAction.POLICY_SHADOW_REPLAYED)
    assert entry.data["decisions_changed"] == report["decisions_changed"]
    assert "would change over 30 days" in replay_summary(report)


def test_a_looser_version_reports_the_opposite_transitions(lead, estate):
    v1 = policy_create(text=policy_text(0.2), actor=lead)
    policy_version_activate(version=v1, actor=lead)
    v2 = policy_version_create(policy=v1.policy, text=policy_text(0.3), actor=lead)

    report = policy_shadow_replay(version=v2, actor=lead, days=30, now=NOW)

    assert set(report["transitions"]) == {"deny -> allow"}
    assert report["rules_fired"] == {}


def test_without_an_active_version_every_decision_is_new(lead, estate):
    v1 = policy_create(text=policy_text(0.2), actor=lead)

    report = policy_shadow_replay(version=v1, actor=lead, days=7, now=NOW)

    assert report["baseline_version"] is None
    assert report["decisions_changed"] == report["decisions_evaluated"] == 8
    assert set(report["transitions"]) <= {"none -> allow", "none -> deny"}


def test_evaluation_results_are_replayed_as_they_were(lead, estate):
    metric_rule = {"id": "accuracy-floor", "category": "model_perf", "severity": "critical", "action": "deny",
                   "when": [{"metric": "exact_match", "suite": "accuracy", "op": "<", "value": 0.8}]}  # fmt: skip
    v1 = policy_create(text=policy_text(0.9), actor=lead)
    policy_version_activate(version=v1, actor=lead)
    v2 = policy_version_create(policy=v1.policy, text=policy_text(0.9, extra_rules=[metric_rule]), actor=lead)
    EvaluationRunFactory(
        system=estate, suite="accuracy", metric="exact_match", value=0.7, ran_at=NOW - timedelta(days=5)
    )
    EvaluationRunFactory(
        system=estate, suite="accuracy", metric="exact_match", value=0.9, ran_at=NOW - timedelta(days=2)
    )

    report = policy_shadow_replay(version=v2, actor=lead, days=10, now=NOW)

    # Denied from the day the 0.7 result existed until the 0.9 result replaced it.
    assert report["transitions"] == {"allow -> deny": 3}
    assert report["rules_fired"] == {"accuracy-floor": 3}


def test_an_unvalidated_version_cannot_be_replayed(lead, estate):
    v1 = policy_create(text=policy_text(0.2), actor=lead)
    broken = policy_version_create(policy=v1.policy, text=policy_text(20), actor=lead)
    assert not broken.validated

    with pytest.raises(PolicyNotReplayable) as caught:
        policy_shadow_replay(version=broken, actor=lead, now=NOW)
    assert "version" in caught.value.fields


@pytest.mark.parametrize("days", [0, 91])
def test_days_are_bounded(lead, estate, days):
    v1 = policy_create(text=policy_text(0.2), actor=lead)
    with pytest.raises(PolicyNotReplayable) as caught:
        policy_shadow_replay(version=v1, actor=lead, days=days, now=NOW)
    assert "days" in caught.value.fields


def test_the_api_replays_and_activation_records_what_the_replay_said(lead, estate, client_for):
    v1 = policy_create(text=policy_text(0.3), actor=lead)
    policy_version_activate(version=v1, actor=lead)
    v2 = policy_version_create(policy=v1.policy, text=policy_text(0.2), actor=lead)
    client = client_for(lead)
    url = f"/api/v1/policies/fairness-gate/versions/{v2.version}"

    response = client.post(f"{url}/shadow-replay", {"days": 14}, format="json")

    assert response.status_code == 200
    report = response.json()
    assert (report["days"], report["baseline_version"]) == (14, 1)
    assert report["transitions"].get("allow -> deny", 0) == report["decisions_changed"] > 0
    assert client.get(url).json()["shadow_report"] == report
    assert client.post(f"{url}/activate", {"reason": "stricter fairness"}, format="json").status_code == 200
    activated = AuditLog.objects.filter(action=AuditAction.POLICY_ACTIVATED).order_by("-seq").first()
    assert activated.data["shadow_replay"].startswith(f"{report['decisions_changed']} of ")


@pytest.mark.parametrize(("body", "status", "field"), [({"days": 0}, 400, "days"), ({"days": "x"}, 400, "days")])
def test_the_api_refuses_bad_days(lead, estate, client_for, body, status, field):
    policy_create(text=policy_text(0.3), actor=lead)
    response = client_for(lead).post("/api/v1/policies/fairness-gate/versions/1/shadow-replay", body, format="json")
    assert response.status_code == status
    assert field in response.json()["error"]["fields"]


def test_the_api_refuses_to_replay_an_unvalidated_version_and_viewers(lead, estate, client_for, make_user, team):
    v1 = policy_create(text=policy_text(0.3), actor=lead)
    policy_version_create(policy=v1.policy, text=policy_text(30), actor=lead)
    client = client_for(lead)
    refused = client.post("/api/v1/policies/fairness-gate/versions/2/shadow-replay", {}, format="json")
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "policy_version_not_validated"
    viewer = client_for(make_user(Role.VIEWER, teams=[team]))
    assert viewer.post("/api/v1/policies/fairness-gate/versions/1/shadow-replay", {}, format="json").status_code == 403
    assert not AuditLog.objects.filter(action=AuditAction.POLICY_SHADOW_REPLAYED).exists()
