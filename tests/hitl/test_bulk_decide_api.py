"""``POST /reviews/bulk-decide`` and ``POST /reviews/clear-low-risk``: up to 1,000 items, all or
nothing, every problem named, suggestions applied only where a machine may decide."""

from __future__ import annotations

import uuid

import pytest

from governance.choices import AuditAction, Role, Severity
from governance.models import AuditLog
from hitl.models import Decision, DecisionSource, ReviewDecision, ReviewItem, ReviewStatus
from hitl.services.triage import MAX_BULK_ITEMS
from tests.hitl.factories import ReviewItemFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/reviews/bulk-decide"
CLEAR_URL = "/api/v1/reviews/clear-low-risk"


@pytest.fixture
def reviewer(make_user, team):
    return make_user(Role.REVIEWER, teams=[team], username="rita")


def pending_ids() -> set:
    return set(ReviewItem.objects.filter(status=ReviewStatus.PENDING).values_list("id", flat=True))


def many_pending(system, count: int, **fields) -> list[ReviewItem]:
    items = ReviewItemFactory.build_batch(count, system=system, **fields)
    return ReviewItem.objects.bulk_create(items)


def error_fields(response) -> dict:
    return response.json()["error"]["fields"]


def test_bulk_approving_listed_ids_decides_each_and_reports_the_counts(client_for, reviewer, own_system):
    items = ReviewItemFactory.create_batch(3, system=own_system)
    ids = [str(item.id) for item in items]

    response = client_for(reviewer).post(URL, {"ids": ids, "decision": "approve", "rationale": "weekly review"})

    assert response.status_code == 200
    assert response.json() == {"decided": 3, "by_decision": {"approve": 3}, "ids": ids}
    assert not pending_ids()
    assert set(ReviewItem.objects.values_list("decision_source", flat=True)) == {DecisionSource.BULK}
    assert AuditLog.objects.filter(action=AuditAction.REVIEW_DECIDED).count() == 3


def test_a_thousand_ids_are_decided_in_one_request(client_for, reviewer, own_system):
    items = many_pending(own_system, MAX_BULK_ITEMS)

    response = client_for(reviewer).post(
        URL, {"ids": [str(item.id) for item in items], "decision": "reject", "rationale": "known noise"}
    )

    assert response.status_code == 200
    assert response.json()["decided"] == MAX_BULK_ITEMS
    assert ReviewItem.objects.filter(status=ReviewStatus.REJECTED).count() == MAX_BULK_ITEMS


def test_a_thousand_and_one_ids_are_refused_with_413_and_nothing_changes(client_for, reviewer, own_system):
    items = many_pending(own_system, MAX_BULK_ITEMS + 1)

    response = client_for(reviewer).post(
        URL, {"ids": [str(item.id) for item in items], "decision": "approve", "rationale": "too many"}
    )

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    assert list(error_fields(response)) == ["ids"]
    assert len(pending_ids()) == MAX_BULK_ITEMS + 1


def test_one_item_no_longer_pending_fails_the_request_naming_its_index_and_nothing_changes(
    client_for, reviewer, own_system
):
    items = ReviewItemFactory.create_batch(3, system=own_system)
    done = ReviewItemFactory(system=own_system, decided=True)
    ids = [str(items[0].id), str(items[1].id), str(done.id), str(items[2].id)]

    response = client_for(reviewer).post(URL, {"ids": ids, "decision": "reject", "rationale": "noise"})

    assert response.status_code == 400
    assert list(error_fields(response)) == ["ids.2"]
    assert "approved" in error_fields(response)["ids.2"][0]
    assert pending_ids() == {item.id for item in items}
    assert not Decision.objects.filter(source=DecisionSource.BULK).exists()
    assert not AuditLog.objects.filter(action=AuditAction.REVIEW_DECIDED).exists()


def test_a_malformed_id_is_a_400_naming_its_index(client_for, reviewer, own_system):
    item = ReviewItemFactory(system=own_system)

    response = client_for(reviewer).post(
        URL, {"ids": [str(item.id), "not-a-uuid"], "decision": "approve", "rationale": "x"}
    )

    assert response.status_code == 400
    assert list(error_fields(response)) == ["ids.1"]
    assert pending_ids() == {item.id}


def test_an_item_of_another_team_is_named_as_not_found(client_for, reviewer, own_system, foreign_system):
    mine = ReviewItemFactory(system=own_system)
    theirs = ReviewItemFactory(system=foreign_system)

    response = client_for(reviewer).post(
        URL, {"ids": [str(mine.id), str(theirs.id)], "decision": "approve", "rationale": "x"}
    )

    assert response.status_code == 400
    assert "no review item" in error_fields(response)["ids.1"][0]
    assert pending_ids() == {mine.id, theirs.id}


def test_a_missing_rationale_and_decision_are_both_named(client_for, reviewer, own_system):
    item = ReviewItemFactory(system=own_system)

    response = client_for(reviewer).post(URL, {"ids": [str(item.id)]})

    assert response.status_code == 400
    assert {"rationale", "decision"} <= set(error_fields(response))


def test_an_unknown_decision_is_named(client_for, reviewer, own_system):
    item = ReviewItemFactory(system=own_system)

    response = client_for(reviewer).post(URL, {"ids": [str(item.id)], "decision": "maybe", "rationale": "x"})

    assert response.status_code == 400
    assert list(error_fields(response)) == ["decision"]


def test_neither_ids_nor_filter_is_a_400(client_for, reviewer):
    response = client_for(reviewer).post(URL, {"decision": "approve", "rationale": "x"})

    assert response.status_code == 400
    assert "ids" in error_fields(response)


def test_a_filter_decides_the_matching_pending_items_of_the_callers_teams(
    client_for, reviewer, own_system, foreign_system
):
    low = ReviewItemFactory.create_batch(2, system=own_system, severity=Severity.LOW)
    ReviewItemFactory(system=own_system, severity=Severity.HIGH)
    ReviewItemFactory(system=foreign_system, severity=Severity.LOW)

    response = client_for(reviewer).post(
        URL, {"filter": {"severity": ["low"]}, "decision": "reject", "rationale": "false positives"}
    )

    assert response.status_code == 200
    assert set(response.json()["ids"]) == {str(item.id) for item in low}
    assert ReviewItem.objects.filter(status=ReviewStatus.REJECTED).count() == 2


def test_a_filter_matching_more_than_a_thousand_items_is_refused_as_too_broad(client_for, reviewer, own_system):
    many_pending(own_system, MAX_BULK_ITEMS + 1, severity=Severity.LOW)

    response = client_for(reviewer).post(
        URL, {"filter": {"severity": ["low"]}, "decision": "approve", "rationale": "x"}
    )

    assert response.status_code == 400
    assert "1,001" in error_fields(response)["filter"][0]
    assert len(pending_ids()) == MAX_BULK_ITEMS + 1


def test_an_unknown_filter_key_is_named(client_for, reviewer, own_system):
    ReviewItemFactory(system=own_system)

    response = client_for(reviewer).post(URL, {"filter": {"colour": "red"}, "decision": "approve", "rationale": "x"})

    assert response.status_code == 400
    assert list(error_fields(response)) == ["filter.colour"]


def test_apply_suggestions_decides_only_medium_and_low_items_above_the_confidence_floor(
    client_for, reviewer, own_system
):
    confident_low = ReviewItemFactory(system=own_system, severity=Severity.LOW, assisted=True)
    confident_reject = ReviewItemFactory(
        system=own_system, severity=Severity.MEDIUM, assisted=True, suggested_decision=ReviewDecision.REJECT
    )
    unsure = ReviewItemFactory(system=own_system, severity=Severity.LOW, assisted=True, assist_confidence=0.6)
    high = ReviewItemFactory(system=own_system, severity=Severity.HIGH, assisted=True)
    critical = ReviewItemFactory(system=own_system, severity=Severity.CRITICAL, assisted=True)
    unassisted = ReviewItemFactory(system=own_system, severity=Severity.LOW)

    response = client_for(reviewer).post(
        URL,
        {"filter": {"status": "pending"}, "apply_suggestions": True, "rationale": "agree with auto-assist"},
        format="json",
    )

    assert response.status_code == 200
    assert response.json()["by_decision"] == {"approve": 1, "reject": 1}
    assert set(response.json()["ids"]) == {str(confident_low.id), str(confident_reject.id)}
    assert pending_ids() == {unsure.id, high.id, critical.id, unassisted.id}
    confident_reject.refresh_from_db()
    assert confident_reject.status == ReviewStatus.REJECTED


def test_apply_suggestions_on_a_listed_high_item_is_refused_naming_it(client_for, reviewer, own_system):
    low = ReviewItemFactory(system=own_system, severity=Severity.LOW, assisted=True)
    high = ReviewItemFactory(system=own_system, severity=Severity.HIGH, assisted=True)

    response = client_for(reviewer).post(
        URL, {"ids": [str(low.id), str(high.id)], "apply_suggestions": True, "rationale": "x"}, format="json"
    )

    assert response.status_code == 400
    assert list(error_fields(response)) == ["ids.1"]
    assert "high" in error_fields(response)["ids.1"][0]
    assert pending_ids() == {low.id, high.id}


def test_a_viewer_may_not_bulk_decide(client_for, viewer, own_system):
    item = ReviewItemFactory(system=own_system)

    response = client_for(viewer).post(URL, {"ids": [str(item.id)], "decision": "approve", "rationale": "x"})

    assert response.status_code == 403
    assert pending_ids() == {item.id}


def test_bulk_decide_is_a_route_of_its_own_not_an_item_action(client_for, reviewer):
    response = client_for(reviewer).post(URL, {"ids": [str(uuid.uuid4())], "decision": "approve", "rationale": "x"})

    assert response.status_code == 400
    assert "no review item" in error_fields(response)["ids.0"][0]


# --- clear low risk -----------------------------------------------------------------------------------
def test_clear_low_risk_approves_confident_low_risk_low_items_only(client_for, reviewer, own_system, foreign_system):
    cleared = ReviewItemFactory.create_batch(2, system=own_system, severity=Severity.LOW, assisted=True)
    risky = ReviewItemFactory(system=own_system, severity=Severity.LOW, assisted=True, risk_score=70)
    medium = ReviewItemFactory(system=own_system, severity=Severity.MEDIUM, assisted=True)
    theirs = ReviewItemFactory(system=foreign_system, severity=Severity.LOW, assisted=True)

    response = client_for(reviewer).post(CLEAR_URL, {})

    assert response.status_code == 200
    assert response.json()["decided"] == 2
    assert set(response.json()["ids"]) == {str(item.id) for item in cleared}
    assert pending_ids() == {risky.id, medium.id, theirs.id}
    rationale = ReviewItem.objects.filter(pk=cleared[0].pk).values_list("rationale", flat=True).get()
    assert rationale.startswith("Clear Low Risk")


def test_clear_low_risk_records_a_given_rationale(client_for, reviewer, own_system):
    item = ReviewItemFactory(system=own_system, severity=Severity.INFO, assisted=True)

    response = client_for(reviewer).post(CLEAR_URL, {"rationale": "Friday sweep"})

    assert response.status_code == 200
    item.refresh_from_db()
    assert (item.status, item.rationale) == (ReviewStatus.APPROVED, "Friday sweep")


def test_clear_low_risk_with_nothing_to_clear_decides_nothing(client_for, reviewer, own_system):
    ReviewItemFactory(system=own_system, severity=Severity.LOW)

    response = client_for(reviewer).post(CLEAR_URL, {})

    assert response.json() == {"decided": 0, "ids": []}


def test_a_viewer_may_not_clear_low_risk(client_for, viewer, own_system):
    ReviewItemFactory(system=own_system, severity=Severity.LOW, assisted=True)

    assert client_for(viewer).post(CLEAR_URL, {}).status_code == 403
    assert len(pending_ids()) == 1
