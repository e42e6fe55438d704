"""``POST /api/v1/reviews``: asking for a review of a model change, a policy exception or data access —
stored with its requester, audited, listed and filterable, validated field by field, team-scoped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.urls import reverse

from config import registry
from governance.choices import AuditAction, Role
from governance.models import AuditLog
from hitl.models import ReviewItem, ReviewStatus, ReviewType
from hitl.services.requests import CONTEXT_MAX_BYTES, ReviewRequestInvalid, review_item_request
from tests.hitl.factories import ReviewItemFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/reviews"
NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


@pytest.fixture
def reviewer(make_user, team):
    return make_user(Role.REVIEWER, teams=[team], username="rita")


@pytest.fixture
def service_account(make_user, team):
    return make_user(Role.CICD, teams=[team], username="svc-deploy", is_service_account=True)


def body(target, **overrides) -> dict:
    return {
        "review_type": "model_change",
        "system": target.name,
        "title": "Promote fraud-scorer v12 to production",
        **overrides,
    }


def error_fields(response) -> dict:
    return response.json()["error"]["fields"]


def test_requesting_a_review_stores_a_pending_item_with_its_requester(client_for, lead, own_system):
    with time_machine.travel(NOW, tick=False):
        response = client_for(lead).post(
            URL,
            body(own_system, severity="high", description="New features", context={"model_version": "v12"}),
            format="json",
        )

    assert response.status_code == 201, response.json()
    row = response.json()
    item = ReviewItem.objects.get()
    assert row["id"] == str(item.id)
    assert (item.review_type, item.status, item.severity) == ("model_change", "pending", "high")
    assert item.title == "Promote fraud-scorer v12 to production"
    assert item.system == own_system
    assert item.requested_by == lead
    assert item.context == {"model_version": "v12", "description": "New features"}
    # SLA from hitl.sla_hours for the severity, like items queued from alerts.
    assert item.sla_due_at == NOW + timedelta(hours=registry.get("hitl.sla_hours")["high"])
    assert (item.source_alert, item.decided_at, item.decision_source) == (None, None, "")


def test_the_answer_is_the_item_as_get_shows_it_plus_its_requester(client_for, lead, own_system):
    client = client_for(lead)

    created = client.post(URL, body(own_system), format="json").json()

    shown = client.get(f"{URL}/{created['id']}").json()
    assert created == shown
    assert created["requested_by"] == str(lead.id)
    assert (created["system"], created["system_name"], created["team"]) == (
        str(own_system.id),
        own_system.name,
        str(own_system.team_id),
    )
    assert (created["assist"], created["decisions"], created["suggestion"]) == (None, [], None)


def test_a_request_is_audited_as_review_requested_by_its_requester(client_for, lead, own_system):
    item_id = client_for(lead).post(URL, body(own_system, review_type="data_access"), format="json").json()["id"]

    entry = AuditLog.objects.get(action=AuditAction.REVIEW_REQUESTED)
    assert (entry.actor, entry.actor_type, entry.object_type, entry.object_id) == (
        "lena",
        "user",
        "hitl.reviewitem",
        item_id,
    )
    assert entry.data["review_type"] == "data_access"
    assert entry.data["system"] == str(own_system.id)
    assert entry.data["severity"] == "medium"
    assert entry.data["requested_by"] == str(lead.id)


def test_the_system_may_be_named_by_its_id(client_for, reviewer, own_system):
    response = client_for(reviewer).post(
        URL, body(own_system, system=str(own_system.id), review_type="policy_exception"), format="json"
    )

    assert response.status_code == 201
    assert ReviewItem.objects.get().review_type == ReviewType.POLICY_EXCEPTION


def test_severity_defaults_to_medium_and_the_context_to_empty(client_for, reviewer, own_system):
    row = client_for(reviewer).post(URL, body(own_system), format="json").json()

    assert (row["severity"], row["context"]) == ("medium", {})


def test_a_service_account_of_the_team_may_request_a_review(client_for, service_account, own_system):
    response = client_for(service_account).post(URL, body(own_system), format="json")

    assert response.status_code == 201
    item = ReviewItem.objects.get()
    assert item.requested_by == service_account
    assert AuditLog.objects.get(action=AuditAction.REVIEW_REQUESTED).actor_type == "service"


def test_a_viewer_may_not_request_a_review(client_for, viewer, own_system):
    response = client_for(viewer).post(URL, body(own_system), format="json")

    assert response.status_code == 403
    assert not ReviewItem.objects.exists()


def test_an_unauthenticated_caller_gets_401(anon_client, own_system):
    assert anon_client.post(URL, body(own_system), format="json").status_code == 401


def test_a_system_outside_your_teams_reads_like_an_unknown_one(client_for, lead, foreign_system):
    client = client_for(lead)

    foreign = client.post(URL, body(foreign_system), format="json")
    unknown = client.post(URL, body(foreign_system, system="no-such-system"), format="json")

    assert (foreign.status_code, unknown.status_code) == (400, 400)
    assert error_fields(foreign) == {"system": ["no AI system 'credit-limit-model' in your teams"]}
    assert error_fields(unknown) == {"system": ["no AI system 'no-such-system' in your teams"]}
    assert not ReviewItem.objects.exists()
    assert not AuditLog.objects.filter(action=AuditAction.REVIEW_REQUESTED).exists()


def test_an_admin_may_request_a_review_of_any_teams_system(client_for, admin_user, foreign_system):
    response = client_for(admin_user).post(URL, body(foreign_system), format="json")

    assert response.status_code == 201
    assert ReviewItem.objects.get().system == foreign_system


def test_alert_triage_cannot_be_requested(client_for, lead, own_system):
    response = client_for(lead).post(URL, body(own_system, review_type="alert_triage"), format="json")

    assert response.status_code == 400
    assert set(error_fields(response)) == {"review_type"}
    assert "queued from alerts only" in error_fields(response)["review_type"][0]
    assert not ReviewItem.objects.exists()


def test_every_bad_value_is_named_at_once(client_for, lead, own_system):
    response = client_for(lead).post(
        URL,
        body(own_system, review_type="coffee_break", severity="urgent", context={"bad": "nul\u0000"}),
        format="json",
    )

    assert response.status_code == 400
    assert set(error_fields(response)) == {"review_type", "severity", "context"}
    assert response.json()["error"]["code"]
    assert not ReviewItem.objects.exists()


def test_missing_fields_and_a_context_that_is_not_an_object_are_refused(client_for, lead):
    response = client_for(lead).post(URL, {"context": ["not", "an", "object"]}, format="json")

    assert response.status_code == 400
    assert {"review_type", "system", "title", "context"} <= set(error_fields(response))


def test_an_oversized_context_is_refused(client_for, lead, own_system):
    huge = {"notes": "x" * (CONTEXT_MAX_BYTES + 1)}

    response = client_for(lead).post(URL, body(own_system, context=huge), format="json")

    assert response.status_code == 400
    assert "the limit is" in error_fields(response)["context"][0]


def test_a_description_given_twice_is_refused(client_for, lead, own_system):
    response = client_for(lead).post(
        URL, body(own_system, description="why", context={"description": "also why"}), format="json"
    )

    assert response.status_code == 400
    assert set(error_fields(response)) == {"context.description"}


# --- listing and filtering --------------------------------------------------------------------------
def test_requested_items_are_listed_with_their_requester(client_for, lead, reviewer, own_system):
    client_for(lead).post(URL, body(own_system), format="json")
    ReviewItemFactory(system=own_system)  # queued from an alert: nobody requested it

    rows = client_for(reviewer).get(URL).json()["results"]

    requesters = {row["title"]: row["requested_by"] for row in rows}
    assert requesters.pop("Promote fraud-scorer v12 to production") == str(lead.id)
    assert list(requesters.values()) == [None]


def test_the_queue_filters_on_the_requester(client_for, lead, reviewer, own_system):
    mine = client_for(lead).post(URL, body(own_system), format="json").json()["id"]
    theirs = client_for(reviewer).post(URL, body(own_system, title="Open the churn dataset"), format="json").json()
    ReviewItemFactory(system=own_system)
    client = client_for(lead)

    by_id = client.get(URL, {"requested_by": str(lead.id)}).json()["results"]
    by_me = client.get(URL, {"requested_by": "me"}).json()["results"]

    assert [row["id"] for row in by_id] == [mine]
    assert [row["id"] for row in by_me] == [mine]
    assert [row["id"] for row in client.get(URL, {"requested_by": str(reviewer.id)}).json()["results"]] == [
        theirs["id"]
    ]


def test_a_malformed_requester_filter_is_a_400_naming_it(client_for, lead):
    response = client_for(lead).get(URL, {"requested_by": "lena"})

    assert response.status_code == 400
    assert set(error_fields(response)) == {"requested_by"}


# --- the service ------------------------------------------------------------------------------------
def test_an_internal_caller_may_request_for_any_system_with_its_own_sla(foreign_system):
    with time_machine.travel(NOW, tick=False):
        item = review_item_request(
            review_type=ReviewType.POLICY_EXCEPTION, system=foreign_system, title="Keep logs 400 days", actor=None,
            sla_hours=2,
        )  # fmt: skip

    assert item.requested_by is None
    assert item.sla_due_at == NOW + timedelta(hours=2)
    assert AuditLog.objects.get(action=AuditAction.REVIEW_REQUESTED).actor == "system"


def test_the_service_refuses_a_system_outside_the_actors_teams_and_writes_nothing(lead, foreign_system):
    with pytest.raises(ReviewRequestInvalid) as caught:
        review_item_request(review_type="model_change", system=foreign_system, title="t", actor=lead, sla_hours=0)

    assert set(caught.value.fields) == {"system", "sla_hours"}
    assert not ReviewItem.objects.exists()
    assert not AuditLog.objects.filter(action=AuditAction.REVIEW_REQUESTED).exists()


# --- admin ----------------------------------------------------------------------------------------------
def test_the_admin_lists_and_filters_items_by_requester(client, admin_user, lead, own_system):
    requested = review_item_request(review_type="model_change", system=own_system, title="Promote v12", actor=lead)
    ReviewItemFactory(system=own_system, title="From an alert")
    client.force_login(admin_user)
    url = reverse("admin:hitl_reviewitem_changelist")

    page = client.get(url, {"requested_by__id__exact": str(lead.id)})

    assert page.status_code == 200
    shown = list(page.context["cl"].queryset)
    assert shown == [requested]
    assert "lena" in page.content.decode()
    assert client.get(reverse("admin:hitl_reviewitem_change", args=[requested.pk])).status_code == 200


def test_the_admin_filters_self_approved_items(client, admin_user, lead, own_system):
    from hitl.services.decisions import review_item_decide

    own = review_item_request(review_type="data_access", system=own_system, title="Read churn", actor=lead)
    other = review_item_request(review_type="data_access", system=own_system, title="Read fraud", actor=lead)
    review_item_decide(item_id=own.pk, decision="approve", rationale="needed", actor=lead)
    review_item_decide(item_id=other.pk, decision="approve", rationale="needed", actor=admin_user)
    client.force_login(admin_user)

    page = client.get(reverse("admin:hitl_reviewitem_changelist"), {"self_approved": "yes"})

    assert [item.pk for item in page.context["cl"].queryset] == [own.pk]
    assert ReviewItem.objects.filter(status=ReviewStatus.APPROVED).count() == 2
