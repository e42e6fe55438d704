"""Factories and payload builders for the event pipeline's tests."""

from __future__ import annotations

import uuid
from datetime import timedelta

import factory
from django.utils import timezone

from governance.choices import Severity
from oversight.models import Alert, AlertStatus, Category, DetectionRule, EventRaw, IngestBatch
from oversight.services.detection import alert_fingerprint
from tests.factories import AISystemFactory


def event_item(system, **overrides) -> dict:
    """One event as a client posts it (JSON-ready), naming ``system`` by its name unless overridden."""
    item = {
        "event_id": str(uuid.uuid4()),
        "system": getattr(system, "name", system),
        "category": Category.DATA_QUALITY,
        "severity": Severity.INFO,
        "signal": "psi",
        "value": 0.05,
        "occurred_at": (timezone.now() - timedelta(seconds=30)).isoformat(),
    }
    item.update(overrides)
    return item


def event_items(system, count: int, **overrides) -> list[dict]:
    return [event_item(system, **overrides) for _ in range(count)]


class IngestBatchFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = IngestBatch

    received_at = factory.LazyFunction(timezone.now)


class EventRawFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = EventRaw

    event_id = factory.LazyFunction(uuid.uuid4)
    system = factory.SubFactory(AISystemFactory)
    category = Category.DATA_QUALITY
    severity = Severity.INFO
    signal = "psi"
    value = 0.05
    occurred_at = factory.LazyFunction(timezone.now)
    received_at = factory.LazyFunction(timezone.now)
    batch = factory.SubFactory(IngestBatchFactory)


class AlertFactory(factory.django.DjangoModelFactory):
    """A firing threshold alert on data quality (the built-in rule row, seeded by migration)."""

    class Meta:
        model = Alert

    rule = factory.LazyFunction(lambda: DetectionRule.objects.get(name="threshold:data_quality"))
    system = factory.SubFactory(AISystemFactory)
    status = AlertStatus.FIRING
    severity = Severity.HIGH
    category = Category.DATA_QUALITY
    signal = "psi"
    first_event_at = factory.LazyFunction(lambda: timezone.now() - timedelta(minutes=2))
    detected_at = factory.LazyFunction(timezone.now)
    last_seen_at = factory.LazyFunction(timezone.now)
    count = 1
    labels = factory.LazyAttribute(lambda o: {"rule": o.rule.name, "system": str(o.system.pk), "signal": o.signal})
    fingerprint = factory.LazyAttribute(lambda o: alert_fingerprint(o.labels))
