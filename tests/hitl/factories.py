"""Factories for the review queue's tests."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import factory
from django.utils import timezone

from governance.choices import Severity
from hitl.models import (
    AssistResult,
    AutoApprovalPolicy,
    Decision,
    DecisionSource,
    ReviewDecision,
    ReviewItem,
    ReviewStatus,
    ReviewType,
    SpotCheck,
)
from tests.factories import AISystemFactory


class ReviewItemFactory(factory.django.DjangoModelFactory):
    """A pending alert-triage item, due in 24 h, not yet assisted."""

    class Meta:
        model = ReviewItem

    review_type = ReviewType.ALERT_TRIAGE
    title = factory.Sequence(lambda n: f"Triage threshold:data_quality: psi #{n}")
    system = factory.SubFactory(AISystemFactory)
    severity = Severity.MEDIUM
    rule = "threshold:data_quality"
    fingerprint = factory.Sequence(lambda n: hashlib.sha256(f"fp-{n}".encode()).hexdigest())
    status = ReviewStatus.PENDING
    sla_due_at = factory.LazyFunction(lambda: timezone.now() + timedelta(hours=24))
    context = factory.LazyFunction(
        lambda: {"rule": "threshold:data_quality", "signal": "psi", "value": 0.15, "critical": 0.25}
    )

    class Params:
        # ReviewItemFactory(assisted=True) carries a confident approve suggestion at low risk.
        assisted = factory.Trait(
            suggested_decision=ReviewDecision.APPROVE,
            assist_confidence=0.97,
            risk_score=12.0,
            assisted_at=factory.LazyFunction(timezone.now),
        )
        decided = factory.Trait(
            status=ReviewStatus.APPROVED,
            decision=ReviewDecision.APPROVE,
            decision_source=DecisionSource.HUMAN,
            decided_at=factory.LazyFunction(timezone.now),
            rationale="looked fine",
        )


class AssistResultFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AssistResult

    item = factory.SubFactory(ReviewItemFactory)
    summary = "PSI drift just above warning on a minimal-risk system."
    suggested_decision = ReviewDecision.APPROVE
    confidence = 0.95
    risk_score = 15.0
    reasoning = "severity medium; signal 0.15 vs critical 0.25"
    provider = "default"


class AutoApprovalPolicyFactory(factory.django.DjangoModelFactory):
    """Approve low/medium alert triage at risk ≤ 30; disabled, like a new policy."""

    class Meta:
        model = AutoApprovalPolicy

    policy_name = factory.Sequence(lambda n: f"routine-triage-{n}")
    severity_filter = factory.LazyFunction(lambda: [Severity.LOW, Severity.MEDIUM])
    review_type_filter = factory.LazyFunction(lambda: [ReviewType.ALERT_TRIAGE])
    max_risk_score = 30
    auto_action = ReviewDecision.APPROVE
    enabled = False


class DecisionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Decision

    item = factory.SubFactory(ReviewItemFactory, decided=True)
    decision = ReviewDecision.APPROVE
    source = DecisionSource.HUMAN
    rationale = "looked fine"
    decided_at = factory.LazyFunction(timezone.now)


class SpotCheckFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SpotCheck

    item = factory.SubFactory(ReviewItemFactory, decided=True)
    policy = factory.SubFactory(AutoApprovalPolicyFactory)
    auto_decision = ReviewDecision.APPROVE
