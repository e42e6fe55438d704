"""Factories for the incident lifecycle's tests."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import factory
from django.utils import timezone

from governance.choices import Severity
from incidents.models import FollowUp, Incident, IncidentStatus, IncidentType
from incidents.services.lifecycle import lifecycle_fields
from tests.factories import AISystemFactory


class IncidentFactory(factory.django.DjangoModelFactory):
    """An open incident opened now, with the timers, escalation snapshot and RCA template a real one
    gets (``opened_at`` may be overridden: the timers follow it)."""

    class Meta:
        model = Incident

    title = factory.Sequence(lambda n: f"[high] threshold:data_quality: psi on system #{n}")
    system = factory.SubFactory(AISystemFactory)
    team = factory.LazyAttribute(lambda o: o.system.team)
    severity = Severity.HIGH
    status = IncidentStatus.OPEN
    fingerprint = factory.Sequence(lambda n: hashlib.sha256(f"incident-{n}".encode()).hexdigest())
    opened_at = factory.LazyFunction(timezone.now)
    incident_type = IncidentType.DATA_QUALITY

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        defaults = lifecycle_fields(
            severity=kwargs["severity"], incident_type=kwargs["incident_type"], opened_at=kwargs["opened_at"]
        )
        for key, value in defaults.items():
            kwargs.setdefault(key, value)
        return super()._create(model_class, *args, **kwargs)


class FollowUpFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = FollowUp

    incident = factory.SubFactory(IncidentFactory)
    title = factory.Sequence(lambda n: f"Add a freshness check #{n}")
    due_date = factory.LazyFunction(lambda: timezone.localdate() + timedelta(days=14))
