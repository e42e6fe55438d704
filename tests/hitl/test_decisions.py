"""Deciding review items: guarded transitions, Decision rows, audit entries, escalation into incidents."""

from __future__ import annotations

import pytest

from governance.choices import AuditAction, Role, Severity
from governance.models import AuditLog
from hitl.models import Decision, DecisionSource, ReviewItem, ReviewStatus
from hitl.services.decisions import (
    ReviewItemMissing,
    ReviewNotPending,
    normalize_decision,
    review_item_decide,
    review_items_decide,
)
from incidents.models import Incident, IncidentStatus
from tests.hitl.factories import AutoApprovalPolicyFactory, ReviewItemFactory
from tests.oversight.factories import AlertFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def reviewer(make_user, team):
    return make_user(Role.REVIEWER, teams=[team], username="rita")


def test_approving_a_pending_item_records_who_when_why_and_audits_it(own_system, reviewer):
    item = ReviewItemFactory(system=own_system)

    decided = review_item_decide(item_id=item.id, decision="approve", rationale="known seasonal drift", actor=reviewer)

    assert decided.status == ReviewStatus.APPROVED
    assert decided.decision == "approve"
    assert decided.decided_by == reviewer
    assert decided.decided_at is not None
    assert decided.rationale == "known seasonal drift"
    assert decided.decision_source == DecisionSource.HUMAN
    decision = Decision.objects.get(item=item)
    assert (decision.decision, decision.source, decision.actor, decision.shadow) == (
        "approve",
        "human",
        reviewer,
        False,
    )
    entry = AuditLog.objects.get(action=AuditAction.REVIEW_DECIDED, object_id=str(item.id))
    assert entry.actor == "rita"
    assert entry.data["decision"] == "approve"
    assert entry.data["rationale"] == "known seasonal drift"


def test_deciding_an_item_that_is_no_longer_pending_raises_and_changes_nothing(own_system, reviewer):
    item = ReviewItemFactory(system=own_system)
    review_item_decide(item_id=item.id, decision="reject", rationale="false positive", actor=reviewer)
    audit_rows = AuditLog.objects.count()

    with pytest.raises(ReviewNotPending):
        review_item_decide(item_id=item.id, decision="approve", rationale="second opinion", actor=reviewer)

    item.refresh_from_db()
    assert item.status == ReviewStatus.REJECTED
    assert item.rationale == "false positive"
    assert Decision.objects.filter(item=item).count() == 1
    assert AuditLog.objects.count() == audit_rows


@pytest.mark.parametrize("rationale", ["", "   ", None])
def test_a_decision_without_rationale_is_refused(own_system, reviewer, rationale):
    item = ReviewItemFactory(system=own_system)

    with pytest.raises(ValueError, match="rationale"):
        review_item_decide(item_id=item.id, decision="approve", rationale=rationale, actor=reviewer)

    item.refresh_from_db()
    assert item.status == ReviewStatus.PENDING


def test_many_items_are_decided_all_or_nothing_when_one_is_not_pending(own_system, reviewer):
    pending = ReviewItemFactory.create_batch(3, system=own_system)
    done = ReviewItemFactory(system=own_system, decided=True)

    with pytest.raises(ReviewNotPending) as raised:
        review_items_decide(
            decisions={item.id: "approve" for item in [*pending, done]},
            rationale="batch",
            actor=reviewer,
            source=DecisionSource.BULK,
        )

    assert set(raised.value.statuses) == {done.id}
    assert ReviewItem.objects.filter(pk__in=[i.id for i in pending], status=ReviewStatus.PENDING).count() == 3
    assert not Decision.objects.filter(item__in=pending).exists()


def test_an_unknown_id_decides_nothing(own_system, reviewer):
    item = ReviewItemFactory(system=own_system)
    missing = "00000000-0000-0000-0000-000000000001"

    with pytest.raises(ReviewItemMissing):
        review_items_decide(
            decisions={item.id: "approve", missing: "approve"}, rationale="x", actor=reviewer, source="bulk"
        )

    item.refresh_from_db()
    assert item.status == ReviewStatus.PENDING


def test_escalating_an_item_without_an_open_incident_opens_one_for_its_team(own_system, reviewer):
    item = ReviewItemFactory(system=own_system, severity=Severity.HIGH)

    decided = review_item_decide(item_id=item.id, decision="escalate", rationale="customer impact", actor=reviewer)

    incident = decided.escalated_incident
    assert decided.status == ReviewStatus.ESCALATED
    assert incident.status == IncidentStatus.OPEN
    assert incident.team == own_system.team
    assert incident.severity == Severity.HIGH
    assert incident.fingerprint == item.fingerprint
    assert incident.timeline.filter(kind="opened").exists()
    assert AuditLog.objects.filter(action=AuditAction.INCIDENT_OPENED, object_id=str(incident.id)).exists()


def test_escalating_an_alert_review_joins_the_open_incident_of_that_alert(own_system, reviewer):
    alert = AlertFactory(system=own_system)
    existing = Incident.objects.create(
        title="psi drift",
        system=own_system,
        team=own_system.team,
        severity=Severity.HIGH,
        fingerprint=alert.fingerprint,
        opened_at=alert.detected_at,
    )
    item = ReviewItemFactory(system=own_system, source_alert=alert, fingerprint=alert.fingerprint)

    decided = review_item_decide(item_id=item.id, decision="escalate", rationale="same root cause", actor=reviewer)

    assert decided.escalated_incident == existing
    assert Incident.objects.count() == 1
    assert existing.timeline.filter(data__review_item_id=str(item.id)).exists()
    assert AuditLog.objects.filter(action=AuditAction.INCIDENT_JOINED, object_id=str(existing.id)).exists()


def test_two_escalations_of_the_same_thing_share_one_incident(own_system, reviewer):
    first, second = ReviewItemFactory.create_batch(2, system=own_system, fingerprint="a" * 64)

    review_items_decide(
        decisions={first.id: "escalate", second.id: "escalate"}, rationale="x", actor=reviewer, source="bulk"
    )

    assert Incident.objects.count() == 1
    assert set(ReviewItem.objects.values_list("escalated_incident", flat=True)) == {Incident.objects.get().id}


def test_a_policy_decision_names_the_policy_in_the_audit_log_and_has_no_human(own_system):
    policy = AutoApprovalPolicyFactory(policy_name="routine psi", enabled=True)
    item = ReviewItemFactory(system=own_system, assisted=True)

    review_items_decide(
        decisions={item.id: "approve"},
        rationale="auto",
        actor=None,
        source=DecisionSource.AUTO_POLICY,
        policy=policy,
        scores={item.id: (0.97, 12.0)},
    )

    item.refresh_from_db()
    assert item.decided_by is None
    assert item.decided_by_policy == policy
    entry = AuditLog.objects.get(action=AuditAction.REVIEW_DECIDED, object_id=str(item.id))
    assert entry.actor == "auto_policy:routine psi"
    assert entry.data["policy"]["name"] == "routine psi"
    assert entry.data["confidence"] == 0.97
    assert Decision.objects.get(item=item).policy == policy


@pytest.mark.parametrize(
    ("given", "expected"), [("approve", "approve"), ("Approved", "approve"), (" escalate ", "escalate")]
)
def test_decisions_accept_the_imperative_and_the_status_spelling(given, expected):
    assert normalize_decision(given) == expected


def test_an_unknown_decision_is_refused():
    with pytest.raises(ValueError, match="approve, reject, escalate"):
        normalize_decision("maybe")
