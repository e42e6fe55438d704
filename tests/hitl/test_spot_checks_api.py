"""``/spot-checks``: team-scoped reads, filters, and a reviewer's verdict on an automatic decision."""

from __future__ import annotations

import pytest
from django.utils import timezone

from governance.choices import AuditAction, Role
from governance.models import AuditLog
from hitl.models import ReviewStatus, SpotCheck, SpotCheckStatus
from tests.hitl.factories import AutoApprovalPolicyFactory, ReviewItemFactory, SpotCheckFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/spot-checks"


@pytest.fixture
def reviewer(make_user, team):
    return make_user(Role.REVIEWER, teams=[team], username="rita")


@pytest.fixture
def policy():
    return AutoApprovalPolicyFactory(policy_name="routine", enabled=True)


def spot_check_of(system, policy, **fields) -> SpotCheck:
    return SpotCheckFactory(item=ReviewItemFactory(system=system, decided=True), policy=policy, **fields)


def ids_of(response) -> list[str]:
    assert response.status_code == 200, response.json()
    return [row["id"] for row in response.json()["results"]]


def test_a_spot_check_is_listed_with_its_item_and_policy(client_for, reviewer, own_system, policy):
    check = spot_check_of(own_system, policy)

    [row] = client_for(reviewer).get(URL).json()["results"]

    assert row["id"] == str(check.id)
    assert (row["item"], row["item_title"]) == (str(check.item_id), check.item.title)
    assert (row["system"], row["system_name"], row["severity"]) == (str(own_system.id), "fraud-scorer", "medium")
    assert (row["policy"], row["policy_name"]) == (str(policy.id), "routine")
    assert (row["auto_decision"], row["status"], row["human_decision"], row["reviewer"]) == (
        "approve",
        "pending",
        "",
        None,
    )


def test_reviewers_see_only_the_spot_checks_of_their_teams(client_for, reviewer, own_system, foreign_system, policy):
    mine = spot_check_of(own_system, policy)
    theirs = spot_check_of(foreign_system, policy)

    assert ids_of(client_for(reviewer).get(URL)) == [str(mine.id)]
    assert client_for(reviewer).get(f"{URL}/{theirs.id}").status_code == 404


def test_spot_checks_filter_by_status_and_policy(client_for, reviewer, own_system, policy):
    pending = spot_check_of(own_system, policy)
    spot_check_of(own_system, policy, status=SpotCheckStatus.AGREED, checked_at=timezone.now())
    other = spot_check_of(own_system, AutoApprovalPolicyFactory())
    client = client_for(reviewer)

    assert set(ids_of(client.get(URL, {"status": "pending"}))) == {str(pending.id), str(other.id)}
    assert ids_of(client.get(URL, {"status": "pending", "policy": str(policy.id)})) == [str(pending.id)]


def test_a_viewer_may_not_read_spot_checks(client_for, viewer, own_system, policy):
    spot_check_of(own_system, policy)

    assert client_for(viewer).get(URL).status_code == 403


def test_a_verdict_that_matches_the_policy_is_recorded_as_agreed(client_for, reviewer, own_system, policy):
    check = spot_check_of(own_system, policy)

    response = client_for(reviewer).post(
        f"{URL}/{check.id}/verdict", {"decision": "approve", "rationale": "drift was harmless"}
    )

    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["human_decision"], body["reviewer"]) == ("agreed", "approve", "rita")
    assert body["checked_at"] is not None
    entry = AuditLog.objects.get(action=AuditAction.SPOT_CHECK_RECORDED)
    assert entry.data["policy"]["name"] == "routine"


def test_a_verdict_that_differs_is_recorded_as_disagreed_and_the_item_keeps_its_decision(
    client_for, reviewer, own_system, policy
):
    check = spot_check_of(own_system, policy)

    response = client_for(reviewer).post(f"{URL}/{check.id}/verdict", {"decision": "escalate", "rationale": "real"})

    assert response.json()["status"] == "disagreed"
    check.item.refresh_from_db()
    assert check.item.status == ReviewStatus.APPROVED


def test_a_second_verdict_is_a_409_and_changes_nothing(client_for, reviewer, lead, own_system, policy):
    check = spot_check_of(own_system, policy)
    client_for(reviewer).post(f"{URL}/{check.id}/verdict", {"decision": "approve", "rationale": "fine"})

    response = client_for(lead).post(f"{URL}/{check.id}/verdict", {"decision": "reject", "rationale": "no"})

    assert response.status_code == 409
    check.refresh_from_db()
    assert (check.status, check.human_decision, check.reviewer) == (SpotCheckStatus.AGREED, "approve", reviewer)
    assert AuditLog.objects.filter(action=AuditAction.SPOT_CHECK_RECORDED).count() == 1


def test_a_blank_rationale_is_a_400_naming_it(client_for, reviewer, own_system, policy):
    check = spot_check_of(own_system, policy)

    response = client_for(reviewer).post(f"{URL}/{check.id}/verdict", {"decision": "approve", "rationale": " "})

    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["rationale"]
    check.refresh_from_db()
    assert check.status == SpotCheckStatus.PENDING


def test_an_unknown_decision_is_a_400_naming_it(client_for, reviewer, own_system, policy):
    check = spot_check_of(own_system, policy)

    response = client_for(reviewer).post(f"{URL}/{check.id}/verdict", {"decision": "shrug", "rationale": "x"})

    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["decision"]


def test_a_verdict_on_another_teams_spot_check_is_a_404(client_for, reviewer, foreign_system, policy):
    check = spot_check_of(foreign_system, policy)

    response = client_for(reviewer).post(f"{URL}/{check.id}/verdict", {"decision": "approve", "rationale": "x"})

    assert response.status_code == 404
    check.refresh_from_db()
    assert check.status == SpotCheckStatus.PENDING


@pytest.mark.parametrize("role", [Role.VIEWER, Role.SECURITY])
def test_viewers_and_security_may_not_give_verdicts(client_for, make_user, team, own_system, policy, role):
    check = spot_check_of(own_system, policy)

    response = client_for(make_user(role, teams=[team])).post(
        f"{URL}/{check.id}/verdict", {"decision": "approve", "rationale": "x"}
    )

    assert response.status_code == 403
