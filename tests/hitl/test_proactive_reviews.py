"""Proactive reviews: a prediction at or above the review threshold opens one low-severity review item
(through the ``predictions_recorded`` signal), deduplicated per system and prediction type, audited; the
queue's other machinery (auto-assist, auto-approval, the admin) copes with the new type."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from config import registry
from governance.choices import AuditAction, PredictionType, Severity
from governance.models import AuditLog
from governance.signals import predictions_recorded
from hitl.models import ReviewItem, ReviewStatus, ReviewType
from hitl.services.assist import review_items_assist
from hitl.services.auto_approval import auto_approval_apply
from hitl.services.proactive import proactive_reviews_open
from tests.factories import AISystemFactory, PredictiveGovernanceFactory, PredictorModelFactory

pytestmark = pytest.mark.django_db


def record(*predictions) -> None:
    """What the prediction pass does after committing its rows."""
    predictions_recorded.send(sender=None, predictions=list(predictions))


def test_a_prediction_above_the_review_threshold_opens_a_low_severity_proactive_review(own_system):
    prediction = PredictiveGovernanceFactory(
        system=own_system, risk_score=0.86, confidence=0.7, model=PredictorModelFactory(version=4)
    )
    before = timezone.now()

    record(prediction)

    item = ReviewItem.objects.get()
    assert item.review_type == ReviewType.PROACTIVE_RISK
    assert (item.severity, item.status, item.system) == (Severity.LOW, ReviewStatus.PENDING, own_system)
    low_sla = registry.get("hitl.sla_hours")["low"]
    assert before + timedelta(hours=low_sla) <= item.sla_due_at <= timezone.now() + timedelta(hours=low_sla)
    assert item.title == "Drift likely in 24 h: fraud-scorer (score 86%, confidence 70%)"
    assert "PSI trend over 6 h 0.042; Latest PSI 0.18; Accuracy change over 24 h -0.031" in item.context["description"]
    assert item.context["prediction"] == str(prediction.pk)
    assert (item.context["risk_score"], item.context["model_version"]) == (0.86, 4)
    assert len(item.context["factors"]) == 3
    assert item.rule == "predictive:drift_risk"
    prediction.refresh_from_db()
    assert prediction.review_item_id == item.pk


def test_opening_a_proactive_review_is_audited(own_system):
    prediction = PredictiveGovernanceFactory(system=own_system, risk_score=0.9)

    record(prediction)

    entry = AuditLog.objects.get(action=AuditAction.PREDICTION_REVIEW_OPENED)
    item = ReviewItem.objects.get()
    assert entry.object_id == str(item.pk)
    assert entry.data["prediction"] == str(prediction.pk)
    assert (entry.data["prediction_type"], entry.data["risk_score"]) == ("drift_risk", 0.9)
    assert entry.data["review_threshold"] == 0.8


def test_a_prediction_below_the_review_threshold_opens_nothing(own_system):
    prediction = PredictiveGovernanceFactory(system=own_system, risk_score=0.79)  # above the alert threshold only

    record(prediction)

    assert not ReviewItem.objects.exists()
    assert not AuditLog.objects.filter(action=AuditAction.PREDICTION_REVIEW_OPENED).exists()


def test_the_review_threshold_is_read_from_config(own_system):
    config = registry.get("governance.predictive")
    registry.set("governance.predictive", {**config, "review_threshold": 0.6}, user=None, reason="test")

    record(PredictiveGovernanceFactory(system=own_system, risk_score=0.65))

    assert ReviewItem.objects.count() == 1


def test_a_pending_proactive_review_absorbs_later_predictions_of_the_same_system_and_type(own_system):
    first = PredictiveGovernanceFactory(system=own_system, risk_score=0.85)
    record(first)
    later = PredictiveGovernanceFactory(system=own_system, risk_score=0.95)

    record(later)

    item = ReviewItem.objects.get()
    later.refresh_from_db()
    assert later.review_item_id == item.pk
    assert AuditLog.objects.filter(action=AuditAction.PREDICTION_REVIEW_OPENED).count() == 1


def test_a_decided_proactive_review_lets_the_next_prediction_open_a_new_one(own_system):
    record(PredictiveGovernanceFactory(system=own_system, risk_score=0.85))
    ReviewItem.objects.update(status=ReviewStatus.APPROVED, decided_at=timezone.now())

    record(PredictiveGovernanceFactory(system=own_system, risk_score=0.85))

    assert ReviewItem.objects.filter(status=ReviewStatus.PENDING).count() == 1
    assert ReviewItem.objects.count() == 2


def test_other_types_and_systems_get_their_own_reviews(own_system, team):
    other = AISystemFactory(team=team)
    record(
        PredictiveGovernanceFactory(system=own_system, risk_score=0.9),
        PredictiveGovernanceFactory(system=own_system, risk_score=0.9, prediction_type=PredictionType.COMPLIANCE_RISK),
        PredictiveGovernanceFactory(system=other, risk_score=0.9),
    )

    titles = sorted(ReviewItem.objects.values_list("title", flat=True))
    assert len(titles) == 3
    assert any(title.startswith("Compliance risk increasing: fraud-scorer") for title in titles)


def test_several_predictions_of_one_system_and_type_in_one_pass_open_one_review(own_system):
    now = timezone.now()
    older = PredictiveGovernanceFactory(system=own_system, risk_score=0.81, as_of=now - timedelta(minutes=15))
    newer = PredictiveGovernanceFactory(system=own_system, risk_score=0.93, as_of=now)

    record(older, newer)

    item = ReviewItem.objects.get()
    assert item.context["prediction"] == str(newer.pk)
    older.refresh_from_db()
    assert older.review_item_id == item.pk


def test_a_redelivered_signal_opens_nothing_new(own_system):
    prediction = PredictiveGovernanceFactory(system=own_system, risk_score=0.9)

    record(prediction)
    created_again = proactive_reviews_open(prediction_ids=[prediction.pk])

    assert created_again == []
    assert ReviewItem.objects.count() == 1


def test_auto_assist_suggests_a_decision_for_a_proactive_review(own_system):
    record(PredictiveGovernanceFactory(system=own_system, risk_score=0.9))
    item = ReviewItem.objects.get()

    review_items_assist(item_ids=[item.pk])

    item.refresh_from_db()
    assert item.suggested_decision in {"approve", "reject", "escalate"}
    assert item.assisted_at is not None
    assert "predicted_drift_risk" in item.assist_results.get().reasoning


def _assisted_proactive_item(system) -> ReviewItem:
    record(PredictiveGovernanceFactory(system=system, risk_score=0.9))
    item = ReviewItem.objects.get()
    ReviewItem.objects.filter(pk=item.pk).update(
        suggested_decision="approve", assist_confidence=0.99, risk_score=5.0, assisted_at=timezone.now()
    )
    return item


def test_auto_approval_policies_for_alert_triage_leave_proactive_reviews_alone(own_system):
    from tests.hitl.factories import AutoApprovalPolicyFactory

    AutoApprovalPolicyFactory(enabled=True)  # low/medium alert triage
    item = _assisted_proactive_item(own_system)

    auto_approval_apply()

    item.refresh_from_db()
    assert item.status == ReviewStatus.PENDING


def test_a_policy_naming_proactive_reviews_may_decide_them(own_system):
    from tests.hitl.factories import AutoApprovalPolicyFactory

    AutoApprovalPolicyFactory(enabled=True, review_type_filter=[ReviewType.PROACTIVE_RISK])
    item = _assisted_proactive_item(own_system)

    auto_approval_apply()

    item.refresh_from_db()
    assert item.status == ReviewStatus.APPROVED


def test_the_review_admin_lists_and_filters_proactive_reviews(client, lead, own_system):
    record(PredictiveGovernanceFactory(system=own_system, risk_score=0.9))
    item = ReviewItem.objects.get()
    client.force_login(lead)

    listing = client.get(reverse("admin:hitl_reviewitem_changelist"), {"review_type__exact": "proactive_risk"})
    page = client.get(reverse("admin:hitl_reviewitem_change", args=[item.pk]))

    assert listing.status_code == 200 and listing.context["cl"].result_count == 1
    assert page.status_code == 200
    assert "Drift likely in 24 h" in page.content.decode()
