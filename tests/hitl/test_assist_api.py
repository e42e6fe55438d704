"""``POST /reviews/assist`` (auto-assist now, then the policies) and ``/assist-models`` (list, train)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from config import registry
from governance.choices import AuditAction, Role, Severity
from governance.models import AuditLog
from hitl.api import reviews as reviews_api
from hitl.models import AssistModel, AssistResult, DecisionSource, ReviewDecision, ReviewItem, ReviewStatus
from hitl.services.assist import AssistRunOutcome
from hitl.services.auto_approval import AutoApprovalOutcome
from hitl.services.automation import AutomationOutcome
from tests.hitl.factories import AutoApprovalPolicyFactory, DecisionFactory, ReviewItemFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/reviews/assist"
MODELS_URL = "/api/v1/assist-models"
RESULT_FIELDS = {"assisted", "provider", "model_version", "fallbacks", "auto_decided", "shadow", "spot_checks", "ids"}


@pytest.fixture
def reviewer(make_user, team):
    return make_user(Role.REVIEWER, teams=[team], username="rita")


def created_in_order(system, count: int) -> list[ReviewItem]:
    """Pending items created one minute apart, oldest first."""
    items = ReviewItemFactory.create_batch(count, system=system, severity=Severity.LOW)
    now = timezone.now()
    for age, item in zip(range(count, 0, -1), items, strict=True):
        ReviewItem.objects.filter(pk=item.pk).update(created_at=now - timedelta(minutes=age))
    return items


def assisted_ids() -> set:
    return set(ReviewItem.objects.filter(assisted_at__isnull=False).values_list("id", flat=True))


# --- POST /reviews/assist -------------------------------------------------------------------------------
def test_assist_suggests_for_the_unassisted_pending_items_of_the_callers_teams(
    client_for, reviewer, own_system, foreign_system
):
    mine = created_in_order(own_system, 3)
    ReviewItemFactory(system=foreign_system)
    ReviewItemFactory(system=own_system, decided=True)

    response = client_for(reviewer).post(URL, {})

    assert response.status_code == 200
    body = response.json()
    assert set(body) == RESULT_FIELDS
    assert body["assisted"] == 3
    assert set(body["ids"]) == {str(item.id) for item in mine}
    assert body["provider"]
    assert assisted_ids() == {item.id for item in mine}
    assert AssistResult.objects.count() == 3
    row = ReviewItem.objects.get(pk=mine[0].pk)
    assert row.suggested_decision in ReviewDecision.values
    assert 0 <= row.risk_score <= 100
    assert AuditLog.objects.filter(action=AuditAction.REVIEW_ASSISTED).count() == 1


def test_assist_without_ids_takes_the_oldest_items_up_to_the_limit(client_for, reviewer, own_system):
    items = created_in_order(own_system, 3)

    response = client_for(reviewer).post(URL, {"limit": 2})

    assert response.json()["assisted"] == 2
    assert assisted_ids() == {items[0].id, items[1].id}


def test_an_admin_without_ids_assists_items_of_every_team(client_for, admin_user, own_system, foreign_system):
    ReviewItemFactory(system=own_system)
    ReviewItemFactory(system=foreign_system)

    response = client_for(admin_user).post(URL, {})

    assert response.json()["assisted"] == 2


def test_assist_with_ids_assists_exactly_those_items_even_if_assisted_before(client_for, reviewer, own_system):
    named = ReviewItemFactory(system=own_system, assisted=True)
    ReviewItemFactory(system=own_system)

    response = client_for(reviewer).post(URL, {"ids": [str(named.id)]})

    assert response.json()["ids"] == [str(named.id)]
    assert AssistResult.objects.get().item_id == named.id


def test_an_id_outside_the_callers_teams_is_a_400_naming_it_and_nothing_is_assisted(
    client_for, reviewer, own_system, foreign_system
):
    mine = ReviewItemFactory(system=own_system)
    theirs = ReviewItemFactory(system=foreign_system)

    response = client_for(reviewer).post(URL, {"ids": [str(mine.id), str(theirs.id)]})

    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["ids.1"]
    assert not assisted_ids()


def test_a_malformed_id_is_a_400_naming_its_index(client_for, reviewer):
    response = client_for(reviewer).post(URL, {"ids": ["nope"]})

    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["ids.0"]


def test_more_than_a_thousand_ids_are_a_413(client_for, reviewer):
    ids = [f"00000000-0000-0000-0000-{n:012d}" for n in range(1001)]

    response = client_for(reviewer).post(URL, {"ids": ids})

    assert response.status_code == 413
    assert list(response.json()["error"]["fields"]) == ["ids"]


@pytest.mark.parametrize("limit", [0, 1001, "many"])
def test_a_limit_outside_1_to_1000_is_a_400_naming_it(client_for, reviewer, limit):
    response = client_for(reviewer).post(URL, {"limit": limit})

    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["limit"]


def test_a_viewer_may_not_run_assist(client_for, viewer, own_system):
    ReviewItemFactory(system=own_system)

    assert client_for(viewer).post(URL, {}).status_code == 403
    assert not assisted_ids()


def test_enabled_policies_decide_the_items_just_assisted(client_for, reviewer, admin_user, own_system):
    # Guard rails wide open and one policy per action, so whatever auto-assist suggests, a policy decides.
    registry.set(
        "hitl.auto_approval",
        {"confidence_floor": 0.5, "max_risk_score": 100, "spot_check_rate": 1.0, "agreement_floor": 0.9},
        user=admin_user,
        reason="test: decide everything assisted",
    )
    for action in ReviewDecision.values:
        AutoApprovalPolicyFactory(
            policy_name=f"all-{action}", auto_action=action, severity_filter=[], review_type_filter=[], enabled=True
        )
    items = ReviewItemFactory.create_batch(2, system=own_system, severity=Severity.LOW)

    response = client_for(reviewer).post(URL, {})

    body = response.json()
    assert (body["assisted"], body["auto_decided"], body["spot_checks"]) == (2, 2, 2)
    decided = ReviewItem.objects.filter(pk__in=[item.pk for item in items])
    assert set(decided.values_list("decision_source", flat=True)) == {DecisionSource.AUTO_POLICY}
    assert not decided.filter(status=ReviewStatus.PENDING).exists()


def test_the_response_reports_the_automation_outcome_for_the_callers_items(
    client_for, reviewer, own_system, monkeypatch
):
    item = ReviewItemFactory(system=own_system)
    calls = []

    def automation(*, item_ids, limit, actor):
        calls.append((item_ids, limit, actor))
        return AutomationOutcome(
            assist=AssistRunOutcome(
                assisted=1, item_ids=[item.id], provider="default", model_version="v7", fallbacks=1, by_decision={}
            ),
            approval=AutoApprovalOutcome(decided=1, shadow=2, spot_checks=1, by_policy={"routine": 1}),
        )

    monkeypatch.setattr(reviews_api, "review_items_assist_and_apply", automation)

    body = client_for(reviewer).post(URL, {"limit": 5}).json()

    assert calls == [([item.id], 5, reviewer)]
    assert body == {
        "assisted": 1,
        "provider": "default",
        "model_version": "v7",
        "fallbacks": 1,
        "auto_decided": 1,
        "shadow": 2,
        "spot_checks": 1,
        "ids": [str(item.id)],
    }


# --- /assist-models -------------------------------------------------------------------------------------
def a_model(version: int, *, active: bool) -> AssistModel:
    return AssistModel.objects.create(
        version=version,
        trained_at=timezone.now(),
        training_samples=400,
        holdout_samples=100,
        metrics={"agreement": 0.93, "ece": 0.03},
        active=active,
        trained_by="lena",
    )


def test_assist_models_are_listed_newest_version_first(client_for, lead):
    a_model(1, active=False)
    a_model(2, active=True)

    response = client_for(lead).get(MODELS_URL)

    assert response.status_code == 200
    rows = response.json()["results"]
    assert [(row["version"], row["active"]) for row in rows] == [(2, True), (1, False)]
    assert set(rows[0]) == {
        "id",
        "version",
        "trained_at",
        "training_samples",
        "holdout_samples",
        "metrics",
        "active",
        "trained_by",
    }
    assert rows[0]["metrics"] == {"agreement": 0.93, "ece": 0.03}


@pytest.mark.parametrize("role", [Role.REVIEWER, Role.VIEWER])
def test_only_admins_and_governance_leads_read_assist_models(client_for, make_user, team, role):
    assert client_for(make_user(role, teams=[team])).get(MODELS_URL).status_code == 403


def test_training_without_enough_history_is_a_409_not_enough_history(client_for, lead):
    response = client_for(lead).post(f"{MODELS_URL}/train")

    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "not_enough_history"
    assert "100" in error["message"]
    assert not AssistModel.objects.exists()


def test_training_on_enough_human_decisions_creates_the_active_model(client_for, admin_user, own_system):
    decided_at = timezone.now() - timedelta(days=1)
    routine, serious = (Severity.LOW, ReviewDecision.APPROVE), (Severity.HIGH, ReviewDecision.ESCALATE)
    for n in range(120):
        severity, decision = routine if n % 2 else serious
        DecisionFactory(
            item__system=own_system,
            item__severity=severity,
            decision=decision,
            actor=admin_user,
            decided_at=decided_at + timedelta(minutes=n),
        )

    response = client_for(admin_user).post(f"{MODELS_URL}/train")

    assert response.status_code == 201, response.json()
    model = AssistModel.objects.get()
    assert response.json()["version"] == model.version
    assert response.json()["active"] is True
    assert response.json()["training_samples"] + response.json()["holdout_samples"] == 120


def test_a_reviewer_may_not_train_a_model(client_for, reviewer):
    assert client_for(reviewer).post(f"{MODELS_URL}/train").status_code == 403
