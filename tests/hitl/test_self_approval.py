"""A reviewer approving their own request: the decision stands, and after it commits a
``policy_circumvention`` detection becomes a security incident linked to the request and the decision."""

from __future__ import annotations

import pytest
from django.db import transaction

from config import registry
from governance.choices import AuditAction, Role
from governance.models import AuditLog
from governance.services.bypass import BYPASS_CONFIG_KEY, PLATFORM_SYSTEM_NAME
from hitl.models import ReviewItem, ReviewStatus
from hitl.services.decisions import review_item_decide
from hitl.services.requests import review_item_request
from hitl.services.self_approval import review_self_approvals_report
from incidents.models import Incident, IncidentLink
from oversight.models import EventRaw
from tests.hitl.factories import ReviewItemFactory

pytestmark = pytest.mark.django_db

REVIEWS = "/api/v1/reviews"
BULK = "/api/v1/reviews/bulk-decide"
SIGNAL = "bypass_policy_circumvention"


@pytest.fixture
def reviewer(make_user, team):
    return make_user(Role.REVIEWER, teams=[team], username="rita")


def request_review(client, system, **overrides):
    payload = {"review_type": "model_change", "system": system.name, "title": "Promote fraud-scorer v12", **overrides}
    response = client.post(REVIEWS, payload, format="json")
    assert response.status_code == 201, response.json()
    return response.json()["id"]


def decide(client, item_id, decision="approve"):
    return client.post(f"{REVIEWS}/{item_id}/decide", {"decision": decision, "rationale": "looks fine"}, format="json")


def entry(action, item_id) -> AuditLog:
    return AuditLog.objects.get(action=action, object_type="hitl.reviewitem", object_id=str(item_id))


def detections() -> list[EventRaw]:
    return list(EventRaw.objects.filter(signal=SIGNAL).order_by("received_at"))


def test_approving_your_own_request_is_allowed_and_becomes_a_security_incident(
    client_for, reviewer, own_system, django_capture_on_commit_callbacks
):
    client = client_for(reviewer)
    item_id = request_review(client, own_system)

    with django_capture_on_commit_callbacks(execute=True):
        response = decide(client, item_id)

    # Detected, not blocked: the decision is taken as asked.
    assert response.status_code == 200
    assert response.json()["status"] == "approved"
    item = ReviewItem.objects.get(pk=item_id)
    assert (item.status, item.decided_by, item.requested_by) == (ReviewStatus.APPROVED, reviewer, reviewer)
    requested, decided = entry(AuditAction.REVIEW_REQUESTED, item_id), entry(AuditAction.REVIEW_DECIDED, item_id)
    [event] = detections()
    assert (event.category, event.severity, event.value) == ("security", "high", 1.0)
    assert event.system.name == PLATFORM_SYSTEM_NAME
    attributes = event.attributes
    assert (attributes["detector"], attributes["source"]) == ("policy_circumvention", f"review:{item_id}")
    assert attributes["summary"] == 'rita approved their own model change request "Promote fraud-scorer v12"'
    assert attributes["details"] == {
        "review_item": item_id,
        "review_type": "model_change",
        "user": "rita",
        "system": str(own_system.id),
        "system_name": "fraud-scorer",
        "decision": "approve",
    }
    detection = AuditLog.objects.get(action=AuditAction.BYPASS_DETECTED)
    assert detection.data["audit_refs"] == [str(requested.id), str(decided.id)]
    assert attributes["audit_refs"] == [str(requested.id), str(decided.id), str(detection.id)]
    # The security team's incident is linked to the request and the decision it is evidenced by.
    incident = Incident.objects.get(system=event.system)
    assert (incident.team.slug, incident.severity) == ("security", "high")
    linked = set(
        IncidentLink.objects.filter(incident=incident, target_type="audit", relation="evidenced_by").values_list(
            "target_id", flat=True
        )
    )
    assert {str(requested.id), str(decided.id), str(detection.id)} <= linked


def test_bulk_approving_your_own_requests_reports_each_one(
    client_for, reviewer, own_system, django_capture_on_commit_callbacks
):
    client = client_for(reviewer)
    own = [request_review(client, own_system, title=f"Open dataset {n}", review_type="data_access") for n in (1, 2)]
    alert_item = ReviewItemFactory(system=own_system)  # nobody requested it

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            BULK, {"ids": [*own, str(alert_item.id)], "decision": "approve", "rationale": "batch"}, format="json"
        )

    assert response.status_code == 200
    assert response.json()["decided"] == 3
    assert sorted(event.attributes["source"] for event in detections()) == sorted(f"review:{i}" for i in own)
    for event in detections():
        item_id = event.attributes["details"]["review_item"]
        assert event.attributes["audit_refs"][:2] == [
            str(entry(AuditAction.REVIEW_REQUESTED, item_id).id),
            str(entry(AuditAction.REVIEW_DECIDED, item_id).id),
        ]
    assert Incident.objects.filter(system__name=PLATFORM_SYSTEM_NAME).count() == 1


def test_another_reviewer_approving_the_request_is_not_a_detection(
    client_for, lead, reviewer, own_system, django_capture_on_commit_callbacks
):
    item_id = request_review(client_for(lead), own_system)

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        assert decide(client_for(reviewer), item_id).status_code == 200

    assert ReviewItem.objects.get(pk=item_id).status == ReviewStatus.APPROVED
    assert not callbacks  # nothing even scheduled
    assert not detections()
    assert not AuditLog.objects.filter(action=AuditAction.BYPASS_DETECTED).exists()


@pytest.mark.parametrize("decision", ["reject", "escalate"])
def test_rejecting_or_escalating_your_own_request_is_not_a_detection(
    client_for, reviewer, own_system, django_capture_on_commit_callbacks, decision
):
    client = client_for(reviewer)
    item_id = request_review(client, own_system)

    with django_capture_on_commit_callbacks(execute=True):
        assert decide(client, item_id, decision).status_code == 200

    assert ReviewItem.objects.get(pk=item_id).decision == decision
    assert not detections()


def test_a_refused_bulk_decision_reports_nothing(client_for, reviewer, own_system, django_capture_on_commit_callbacks):
    client = client_for(reviewer)
    own = request_review(client, own_system)
    already = ReviewItemFactory(system=own_system, decided=True)

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = client.post(
            BULK, {"ids": [own, str(already.id)], "decision": "approve", "rationale": "batch"}, format="json"
        )

    assert response.status_code == 400  # all or nothing: the decided item is named, nothing is decided
    assert set(response.json()["error"]["fields"]) == {"ids.1"}
    assert ReviewItem.objects.get(pk=own).status == ReviewStatus.PENDING
    assert not callbacks
    assert not detections()


class Abandoned(Exception):
    pass


def test_a_self_approval_rolled_back_with_its_transaction_reports_nothing(
    reviewer, own_system, django_capture_on_commit_callbacks
):
    own = review_item_request(review_type="model_change", system=own_system, title="Promote v12", actor=reviewer)

    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(Abandoned),
        transaction.atomic(),
    ):
        review_item_decide(item_id=own.pk, decision="approve", rationale="fine", actor=reviewer)
        raise Abandoned

    assert ReviewItem.objects.get(pk=own.pk).status == ReviewStatus.PENDING
    assert not callbacks
    assert not detections()
    assert not AuditLog.objects.filter(action=AuditAction.REVIEW_DECIDED).exists()


def test_a_switched_off_detector_reports_nothing(
    client_for, reviewer, admin_user, own_system, django_capture_on_commit_callbacks
):
    settings = registry.get(BYPASS_CONFIG_KEY)
    settings["policy_circumvention"]["enabled"] = False
    registry.set(BYPASS_CONFIG_KEY, settings, user=admin_user, reason="test")
    client = client_for(reviewer)
    item_id = request_review(client, own_system)

    with django_capture_on_commit_callbacks(execute=True):
        assert decide(client, item_id).status_code == 200

    assert ReviewItem.objects.get(pk=item_id).status == ReviewStatus.APPROVED
    assert not detections()


def test_the_report_reads_the_committed_rows_and_records_a_detection_once(reviewer, lead, own_system):
    own = review_item_request(review_type="policy_exception", system=own_system, title="Skip bias eval", actor=reviewer)
    other = review_item_request(review_type="policy_exception", system=own_system, title="Skip drift", actor=lead)
    review_item_decide(item_id=own.pk, decision="approve", rationale="fine", actor=reviewer)
    review_item_decide(item_id=other.pk, decision="approve", rationale="fine", actor=reviewer)
    entries = {item.pk: entry(AuditAction.REVIEW_DECIDED, item.pk).id for item in (own, other)}

    # Only the self-approval counts, whatever the caller hands in; a second report adds nothing.
    assert review_self_approvals_report(decided_entries=entries) == 1
    assert review_self_approvals_report(decided_entries=entries) == 0
    assert [event.attributes["source"] for event in detections()] == [f"review:{own.pk}"]
