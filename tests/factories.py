"""factory_boy factories for Vigil's models."""

from __future__ import annotations

import factory
from django.contrib.auth.models import Group
from django.utils import timezone

from governance.choices import AssessmentStatus, EntityType, EvaluationProvenance, RiskClass
from governance.models import AISystem, ControlAssessment, EvaluationRun, Team, User

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
