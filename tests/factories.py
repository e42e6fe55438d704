"""factory_boy factories for Vigil's models."""

from __future__ import annotations

from datetime import timedelta

import factory
from django.contrib.auth.models import Group
from django.utils import timezone

from governance.choices import (
    AssessmentStatus,
    EntityType,
    EvaluationProvenance,
    PredictionOutcome,
    PredictionType,
    PredictorSource,
    RiskClass,
)
from governance.models import (
    AISystem,
    ControlAssessment,
    EvaluationRun,
    PredictiveGovernance,
    PredictorModel,
    Team,
    User,
)

DEFAULT_PASSWORD = "correct-horse-battery-staple-42"


class TeamFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Team
        django_get_or_create = ("slug",)

    name = factory.Sequence(lambda n: f"Team {n}")
    slug = factory.Sequence(lambda n: f"team-{n}")


class UserFactory(factory.django.DjangoModelFactory):
    """``UserFactory(roles=["reviewer"], teams=[team])``."""

    class Meta:
        model = User
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda o: f"{o.username}@example.com")
    password = factory.django.Password(DEFAULT_PASSWORD)

    @factory.post_generation
    def roles(self, create, extracted, **kwargs):
        if create and extracted:
            self.groups.set(Group.objects.filter(name__in=extracted))

    @factory.post_generation
    def teams(self, create, extracted, **kwargs):
        if create and extracted:
            self.teams.set(extracted)


class AISystemFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AISystem

    name = factory.Sequence(lambda n: f"system-{n}")
    entity_type = EntityType.MODEL
    team = factory.SubFactory(TeamFactory)
    risk_class = RiskClass.LIMITED


class ControlAssessmentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ControlAssessment

    system = factory.SubFactory(AISystemFactory)
    control = "human-oversight"
    reference = "Art. 14"
    status = AssessmentStatus.EFFECTIVE
    assessed_at = factory.LazyFunction(timezone.now)


class EvaluationRunFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = EvaluationRun

    system = factory.SubFactory(AISystemFactory)
    suite = "robustness"
    metric = "accuracy"
    value = 0.93
    threshold = 0.9
    passed = True
    ran_at = factory.LazyFunction(timezone.now)
    # The default suite is one the gateway runs: a factory run stands for a gateway run unless told otherwise.
    provenance = EvaluationProvenance.GATEWAY


class PredictorModelFactory(factory.django.DjangoModelFactory):
    """An active drift-risk model whose backtest meets the default quality floor (AUC 0.85, Brier 0.2)."""

    class Meta:
        model = PredictorModel

    prediction_type = PredictionType.DRIFT_RISK
    version = factory.Sequence(lambda n: n + 1)
    source = PredictorSource.SYNTHETIC
    trained_at = factory.LazyFunction(timezone.now)
    parameters = factory.LazyFunction(lambda: {"features": ["psi_slope_6h", "psi_last"], "coefficients": [2.1, 1.4]})
    metrics = factory.LazyFunction(
        lambda: {
            "auc": 0.91,
            "brier": 0.11,
            "precision_at_threshold": 0.78,
            "mean_lead_time_hours": 9.5,
            "samples": 4000,
            "positives": 620,
            "threshold": 0.5,
        }
    )
    is_active = True


def _default_factors() -> list[dict]:
    return [
        {"feature": "psi_slope_6h", "label": "PSI trend over 6 h", "value": 0.042, "contribution": 1.31},
        {"feature": "psi_last", "label": "Latest PSI", "value": 0.18, "contribution": 0.74},
        {"feature": "accuracy_delta_24h", "label": "Accuracy change over 24 h", "value": -0.031, "contribution": 0.4},
        {"feature": "events_per_hour", "label": "Events per hour", "value": 120, "contribution": 0.05},
    ]


class PredictiveGovernanceFactory(factory.django.DjangoModelFactory):
    """A drift-risk forecast above the default alert threshold (0.5), outcome pending."""

    class Meta:
        model = PredictiveGovernance

    system = factory.SubFactory(AISystemFactory)
    entity_type = factory.LazyAttribute(lambda o: o.system.entity_type)
    prediction_type = PredictionType.DRIFT_RISK
    risk_score = 0.72
    confidence = 0.81
    predicted_timeframe_hours = 24
    factors = factory.LazyFunction(_default_factors)
    # Distinct even under a frozen clock: one prediction per system, type and as_of (prediction_one_per_slot).
    as_of = factory.Sequence(lambda n: timezone.now() + timedelta(microseconds=n))
    model = None
    threshold = 0.5
    above_threshold = factory.LazyAttribute(lambda o: o.risk_score >= o.threshold)
    outcome = PredictionOutcome.PENDING
