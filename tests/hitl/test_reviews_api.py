"""``/api/v1/reviews``: the team-scoped queue (fields, filters, ordering, cursor pages), one item with
its assist result and decisions, deciding one item, and backlog health."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from governance.choices import AuditAction, Role, Severity
from governance.models import AuditLog
from hitl.models import Decision, DecisionSource, ReviewDecision, ReviewItem, ReviewStatus, ReviewType
from hitl.services.decisions import review_items_decide
from incidents.models import Incident
from tests.hitl.factories import AssistResultFactory, AutoApprovalPolicyFactory, DecisionFactory, ReviewItemFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/reviews"
ITEM_FIELDS = {
    "id",
    "review_type",
    "title",
    "system",
    "system_name",
    "team",
    "severity",
    "status",
    "sla_due_at",
    "sla_breached",
    "assignee",
    "requested_by",
    "decision",
    "decided_by",
    "decided_by_policy",
    "decided_at",
    "rationale",
    "decision_source",
    "source_alert",
    "source_incident",
    "escalated_incident",
    "context",
    "suggestion",
    "created_at",
    "updated_at",
}


@pytest.fixture
def reviewer(make_user, team):
    return make_user(Role.REVIEWER, teams=[team], username="rita")


def ids_of(response) -> list[str]:
    assert response.status_code == 200, response.json()
    return [row["id"] for row in response.json()["results"]]


def error_fields(response) -> dict:
    return response.json()["error"]["fields"]


# --- list ---------------------------------------------------------------------------------------------
def test_a_pending_item_is_listed_with_every_documented_field(client_for, reviewer, own_system):
    item = ReviewItemFactory(system=own_system, severity=Severity.MEDIUM, assisted=True)

    [row] = client_for(reviewer).get(URL).json()["results"]

    assert set(row) == ITEM_FIELDS
    assert row["id"] == str(item.id)
    assert (row["system"], row["system_name"], row["team"]) == (
        str(own_system.id),
        "fraud-scorer",
        str(own_system.team_id),
    )
    assert (row["status"], row["severity"], row["review_type"]) == ("pending", "medium", "alert_triage")
    assert row["sla_breached"] is False
    assert row["suggestion"]["suggested_decision"] == "approve"
    assert row["suggestion"]["confidence"] == pytest.approx(0.97)
    assert row["suggestion"]["risk_score"] == pytest.approx(12.0)
    assert row["suggestion"]["assisted_at"] is not None
    assert (row["decision"], row["decided_by"], row["decided_at"]) == ("", None, None)
    assert row["context"]["signal"] == "psi"


def test_an_item_never_assisted_has_no_suggestion(client_for, reviewer, own_system):
    ReviewItemFactory(system=own_system)

    [row] = client_for(reviewer).get(URL).json()["results"]

    assert row["suggestion"] is None


def test_a_reviewer_sees_only_the_items_of_their_teams(client_for, reviewer, own_system, foreign_system):
    mine = ReviewItemFactory(system=own_system)
    ReviewItemFactory(system=foreign_system)

    assert ids_of(client_for(reviewer).get(URL)) == [str(mine.id)]


def test_an_admin_sees_the_items_of_every_team(client_for, admin_user, own_system, foreign_system):
    ReviewItemFactory(system=own_system)
    ReviewItemFactory(system=foreign_system)

    assert len(ids_of(client_for(admin_user).get(URL))) == 2


def test_a_viewer_may_read_the_queue(client_for, viewer, own_system):
    ReviewItemFactory(system=own_system)

    assert len(ids_of(client_for(viewer).get(URL))) == 1


def test_an_unauthenticated_caller_gets_401(anon_client):
    response = anon_client.get(URL)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


def test_the_queue_filters_by_status_severity_and_review_type(client_for, reviewer, own_system):
    wanted = ReviewItemFactory(system=own_system, severity=Severity.HIGH, review_type=ReviewType.MODEL_CHANGE)
    ReviewItemFactory(system=own_system, severity=Severity.HIGH, review_type=ReviewType.ALERT_TRIAGE)
    ReviewItemFactory(system=own_system, severity=Severity.LOW, review_type=ReviewType.MODEL_CHANGE)
    ReviewItemFactory(system=own_system, severity=Severity.HIGH, review_type=ReviewType.MODEL_CHANGE, decided=True)

    response = client_for(reviewer).get(URL, {"status": "pending", "severity": "high", "review_type": "model_change"})

    assert ids_of(response) == [str(wanted.id)]


def test_the_queue_filters_by_system_id_or_name_and_by_team(client_for, admin_user, own_system, foreign_system):
    mine = ReviewItemFactory(system=own_system)
    theirs = ReviewItemFactory(system=foreign_system)
    client = client_for(admin_user)

    assert ids_of(client.get(URL, {"system": "fraud-scorer"})) == [str(mine.id)]
    assert ids_of(client.get(URL, {"system": str(foreign_system.id)})) == [str(theirs.id)]
    assert ids_of(client.get(URL, {"team": str(foreign_system.team_id)})) == [str(theirs.id)]


def test_the_queue_filters_by_suggestion_including_items_not_assisted(client_for, reviewer, own_system):
    approve = ReviewItemFactory(system=own_system, assisted=True)
    escalate = ReviewItemFactory(system=own_system, assisted=True, suggested_decision=ReviewDecision.ESCALATE)
    unassisted = ReviewItemFactory(system=own_system)
    client = client_for(reviewer)

    assert ids_of(client.get(URL, {"suggestion": "approve"})) == [str(approve.id)]
    assert ids_of(client.get(URL, {"suggestion": "escalate"})) == [str(escalate.id)]
    assert ids_of(client.get(URL, {"suggestion": "none"})) == [str(unassisted.id)]


def test_an_unknown_suggestion_is_a_400_naming_it(client_for, reviewer):
    response = client_for(reviewer).get(URL, {"suggestion": "maybe"})

    assert response.status_code == 400
    assert "suggestion" in error_fields(response)


def test_sla_breached_means_pending_past_due_or_decided_after_due(client_for, reviewer, own_system):
    now = timezone.now()
    overdue = ReviewItemFactory(system=own_system, sla_due_at=now - timedelta(minutes=5))
    ReviewItemFactory(system=own_system, sla_due_at=now + timedelta(hours=1))
    late = ReviewItemFactory(system=own_system, decided=True, sla_due_at=now - timedelta(hours=2))
    ReviewItemFactory(system=own_system, decided=True, sla_due_at=now + timedelta(hours=2))
    client = client_for(reviewer)

    breached = client.get(URL, {"sla_breached": "true"})

    assert set(ids_of(breached)) == {str(overdue.id), str(late.id)}
    assert all(row["sla_breached"] for row in breached.json()["results"])
    assert len(ids_of(client.get(URL, {"sla_breached": "false"}))) == 2


def test_the_queue_filters_by_decision_source(client_for, reviewer, own_system):
    bulk = ReviewItemFactory(system=own_system, decided=True, decision_source=DecisionSource.BULK)
    ReviewItemFactory(system=own_system, decided=True)

    assert ids_of(client_for(reviewer).get(URL, {"decision_source": "bulk"})) == [str(bulk.id)]


def test_the_queue_filters_by_assignee_id_or_me(client_for, reviewer, lead, own_system):
    rita_s = ReviewItemFactory(system=own_system, assignee=reviewer)
    lena_s = ReviewItemFactory(system=own_system, assignee=lead)
    ReviewItemFactory(system=own_system)
    client = client_for(reviewer)

    assert ids_of(client.get(URL, {"assignee": "me"})) == [str(rita_s.id)]
    assert ids_of(client.get(URL, {"assignee": str(lead.id)})) == [str(lena_s.id)]


def test_an_assignee_that_is_neither_an_id_nor_me_is_a_400(client_for, reviewer):
    response = client_for(reviewer).get(URL, {"assignee": "bob"})

    assert response.status_code == 400
    assert "assignee" in error_fields(response)


def test_the_queue_is_ordered_by_sla_due_at_by_default_and_on_request(client_for, reviewer, own_system):
    now = timezone.now()
    later = ReviewItemFactory(system=own_system, sla_due_at=now + timedelta(hours=8))
    soonest = ReviewItemFactory(system=own_system, sla_due_at=now + timedelta(hours=1))
    middle = ReviewItemFactory(system=own_system, sla_due_at=now + timedelta(hours=4))
    client = client_for(reviewer)
    by_due = [str(soonest.id), str(middle.id), str(later.id)]

    assert ids_of(client.get(URL)) == by_due
    assert ids_of(client.get(URL, {"status": "pending", "ordering": "sla_due_at"})) == by_due
    assert ids_of(client.get(URL, {"ordering": "-sla_due_at"})) == by_due[::-1]


def test_the_queue_orders_by_creation_time_on_request(client_for, reviewer, own_system):
    first = ReviewItemFactory(system=own_system, sla_due_at=timezone.now() + timedelta(hours=9))
    second = ReviewItemFactory(system=own_system, sla_due_at=timezone.now() + timedelta(hours=1))
    ReviewItem.objects.filter(pk=first.pk).update(created_at=timezone.now() - timedelta(hours=1))
    client = client_for(reviewer)

    assert ids_of(client.get(URL, {"ordering": "created_at"})) == [str(first.id), str(second.id)]
    assert ids_of(client.get(URL, {"ordering": "-created_at"})) == [str(second.id), str(first.id)]


def test_cursor_pages_walk_every_item_once_in_due_order(client_for, reviewer, own_system):
    now = timezone.now()
    items = [ReviewItemFactory(system=own_system, sla_due_at=now + timedelta(minutes=n)) for n in range(7)]
    client = client_for(reviewer)

    seen, page = [], client.get(URL, {"ordering": "sla_due_at", "page_size": 3}).json()
    seen += [row["id"] for row in page["results"]]
    while page["next"]:
        page = client.get(page["next"]).json()
        seen += [row["id"] for row in page["results"]]

    assert seen == [str(item.id) for item in items]


def test_listing_costs_the_same_queries_for_one_item_or_many(client_for, reviewer, lead, own_system, settings):
    policy = AutoApprovalPolicyFactory()
    client = client_for(reviewer)
    # The rate limiter reads the config registry: load its snapshot first and keep it for the test, so
    # both captures count the same fixed per-request queries (incl. the one limiter upsert).
    settings.CONFIG_REFRESH_SECONDS = 60
    client.get(URL)
    ReviewItemFactory(system=own_system, assignee=lead, decided=True, decided_by=lead, decided_by_policy=policy)
    with CaptureQueriesContext(connection) as one:
        client.get(URL)
    ReviewItemFactory.create_batch(
        5, system=own_system, assignee=lead, decided=True, decided_by=lead, decided_by_policy=policy
    )
    with CaptureQueriesContext(connection) as six:
        rows = client.get(URL).json()["results"]

    assert len(rows) == 6
    assert {(row["decided_by"], row["decided_by_policy"]) for row in rows} == {("lena", policy.policy_name)}
    assert len(six.captured_queries) == len(one.captured_queries)


# --- detail -------------------------------------------------------------------------------------------
def test_an_item_shows_its_latest_assist_result_and_its_decisions_newest_first(client_for, reviewer, own_system):
    item = ReviewItemFactory(system=own_system, decided=True)
    AssistResultFactory(item=item, summary="older", provider="default")
    latest = AssistResultFactory(
        item=item,
        summary="newer",
        evidence_refs=["alert:1"],
        factors={"severity": {"value": 0.5, "contribution": 0.17}},
        sla_recommendation={"hours": 24},
        model_version="v3",
    )
    policy = AutoApprovalPolicyFactory(policy_name="routine")
    shadow = DecisionFactory(
        item=item, source=DecisionSource.AUTO_POLICY, policy=policy, shadow=True, decided_at=timezone.now()
    )
    human = DecisionFactory(item=item, actor=reviewer, decided_at=timezone.now() + timedelta(minutes=1))

    body = client_for(reviewer).get(f"{URL}/{item.id}").json()

    assert set(body) == ITEM_FIELDS | {"assist", "decisions"}
    assert body["assist"]["summary"] == latest.summary
    assert body["assist"]["evidence_refs"] == ["alert:1"]
    assert body["assist"]["factors"]["severity"]["contribution"] == 0.17
    assert (body["assist"]["model_version"], body["assist"]["sla_recommendation"]) == ("v3", {"hours": 24})
    assert [d["id"] for d in body["decisions"]] == [str(human.id), str(shadow.id)]
    assert (body["decisions"][0]["actor"], body["decisions"][1]["policy"]) == ("rita", "routine")
    assert body["decisions"][1]["shadow"] is True


def test_an_item_never_assisted_has_no_assist_result(client_for, reviewer, own_system):
    item = ReviewItemFactory(system=own_system)

    body = client_for(reviewer).get(f"{URL}/{item.id}").json()

    assert (body["assist"], body["decisions"]) == (None, [])


def test_an_item_of_another_team_is_a_404(client_for, reviewer, foreign_system):
    item = ReviewItemFactory(system=foreign_system)

    response = client_for(reviewer).get(f"{URL}/{item.id}")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_a_malformed_item_id_is_a_404(client_for, reviewer):
    assert client_for(reviewer).get(f"{URL}/not-a-uuid").status_code == 404


# --- decide -------------------------------------------------------------------------------------------
def decide(client, item, **body):
    return client.post(f"{URL}/{item.id}/decide", body, format="json")


def test_a_reviewer_approves_a_pending_item(client_for, reviewer, own_system):
    item = ReviewItemFactory(system=own_system)

    response = decide(client_for(reviewer), item, decision="approve", rationale="drift within tolerance")

    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["decision"], body["decided_by"]) == ("approved", "approve", "rita")
    assert (body["decision_source"], body["rationale"]) == ("human", "drift within tolerance")
    assert body["decided_at"] is not None
    assert [d["decision"] for d in body["decisions"]] == ["approve"]
    item.refresh_from_db()
    assert (item.status, item.decided_by) == (ReviewStatus.APPROVED, reviewer)
    entry = AuditLog.objects.get(action=AuditAction.REVIEW_DECIDED)
    assert entry.object_id == str(item.id)


def test_escalating_an_item_opens_an_incident_and_names_it(client_for, lead, own_system):
    item = ReviewItemFactory(system=own_system, severity=Severity.HIGH)

    response = decide(client_for(lead), item, decision="escalate", rationale="customer impact")

    assert response.status_code == 200
    incident = Incident.objects.get()
    assert response.json()["escalated_incident"] == str(incident.id)
    assert response.json()["status"] == "escalated"
    assert incident.system == own_system


def test_deciding_an_item_that_is_no_longer_pending_is_a_409_and_changes_nothing(client_for, reviewer, own_system):
    item = ReviewItemFactory(system=own_system, decided=True)
    decided_at = item.decided_at

    response = decide(client_for(reviewer), item, decision="reject", rationale="changed my mind")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "conflict"
    item.refresh_from_db()
    assert (item.status, item.decision, item.decided_at) == (ReviewStatus.APPROVED, "approve", decided_at)
    assert not Decision.objects.exists()
    assert not AuditLog.objects.filter(action=AuditAction.REVIEW_DECIDED).exists()


@pytest.mark.parametrize("rationale", [None, "", "   "])
def test_a_missing_or_blank_rationale_is_a_400_naming_it(client_for, reviewer, own_system, rationale):
    item = ReviewItemFactory(system=own_system)
    body = {"decision": "approve"} if rationale is None else {"decision": "approve", "rationale": rationale}

    response = client_for(reviewer).post(f"{URL}/{item.id}/decide", body, format="json")

    assert response.status_code == 400
    assert list(error_fields(response)) == ["rationale"]
    item.refresh_from_db()
    assert item.status == ReviewStatus.PENDING


def test_an_unknown_decision_is_a_400_naming_it(client_for, reviewer, own_system):
    item = ReviewItemFactory(system=own_system)

    response = decide(client_for(reviewer), item, decision="maybe", rationale="unsure")

    assert response.status_code == 400
    assert list(error_fields(response)) == ["decision"]


@pytest.mark.parametrize("role", [Role.VIEWER, Role.SECURITY])
def test_viewers_and_security_may_not_decide(client_for, make_user, team, own_system, role):
    item = ReviewItemFactory(system=own_system)

    response = decide(client_for(make_user(role, teams=[team])), item, decision="approve", rationale="ok")

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
    item.refresh_from_db()
    assert item.status == ReviewStatus.PENDING


def test_deciding_an_item_of_another_team_is_a_404_and_changes_nothing(client_for, reviewer, foreign_system):
    item = ReviewItemFactory(system=foreign_system)

    response = decide(client_for(reviewer), item, decision="approve", rationale="ok")

    assert response.status_code == 404
    item.refresh_from_db()
    assert item.status == ReviewStatus.PENDING


# --- health -------------------------------------------------------------------------------------------
NOW = datetime(2026, 11, 29, 12, 30, tzinfo=UTC)


def test_health_reports_the_backlog_of_the_callers_teams(client_for, reviewer, own_system, foreign_system):
    with time_machine.travel(NOW - timedelta(hours=30), tick=False):
        ReviewItemFactory(system=own_system, severity=Severity.HIGH, sla_due_at=NOW - timedelta(hours=2))
    with time_machine.travel(NOW - timedelta(hours=3), tick=False):
        fresh = ReviewItemFactory.create_batch(3, system=own_system, severity=Severity.LOW)
        ReviewItemFactory.create_batch(5, system=foreign_system)
    review_items_decide(
        decisions={fresh[0].id: "approve"}, rationale="x", actor=None, source="bulk", now=NOW - timedelta(minutes=5)
    )

    with time_machine.travel(NOW, tick=False):
        response = client_for(reviewer).get(f"{URL}/health")

    assert response.status_code == 200
    body = response.json()
    assert (body["pending"], body["sla_breached"]) == (3, 1)
    assert body["oldest_age_seconds"] == pytest.approx(30 * 3600)
    assert body["pending_by_severity"] == {"critical": 0, "high": 1, "medium": 0, "low": 2, "info": 0}
    assert (body["inflow_24h"], body["outflow_24h"], body["net_flow_24h"]) == (3, 1, 2)
    assert body["decided_24h_by_source"] == {"human": 0, "auto_policy": 0, "bulk": 1}
    assert len(body["hourly"]) == 24
    by_hour = {row["hour"]: (row["inflow"], row["outflow"]) for row in body["hourly"]}
    assert by_hour["2026-11-29T09:00:00Z"] == (3, 0)
    assert by_hour["2026-11-29T12:00:00Z"] == (0, 1)
    assert body["as_of"] == "2026-11-29T12:30:00Z"


def test_health_is_a_route_of_its_own_not_an_item_lookup(client_for, viewer):
    response = client_for(viewer).get(f"{URL}/health/")

    assert response.status_code == 200
    assert response.json()["pending"] == 0
