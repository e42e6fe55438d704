"""Opening incidents from alerts and reviews: lifecycle fields and knowledge-graph links from the start."""

from __future__ import annotations

import pytest
from django.utils import timezone

from governance.choices import Severity
from incidents.models import IncidentLink, IncidentType, LinkRelation, LinkTarget
from incidents.services.intake import incidents_open_for_alerts
from tests.oversight.factories import AlertFactory

pytestmark = pytest.mark.django_db


def test_an_incident_opened_from_an_alert_is_typed_timed_and_linked(own_system):
    alert = AlertFactory(system=own_system, severity=Severity.CRITICAL)

    [incident] = incidents_open_for_alerts(alerts=[alert], now=timezone.now())

    assert incident.incident_type == IncidentType.DATA_QUALITY
    assert incident.rca_template.incident_type == IncidentType.DATA_QUALITY
    assert incident.resolve_due_at > incident.sla_due_at > incident.opened_at
    links = set(IncidentLink.objects.filter(incident=incident).values_list("target_type", "relation"))
    assert (LinkTarget.SYSTEM, LinkRelation.AFFECTS) in links
    assert (LinkTarget.ALERT, LinkRelation.TRIGGERED_BY) in links
    assert (LinkTarget.AUDIT, LinkRelation.RECORDED_IN) in links


def test_a_lost_heartbeat_opens_an_availability_incident(own_system):
    from oversight.models import DetectionRule

    rule = DetectionRule.objects.get(name="absence:heartbeat")
    alert = AlertFactory(system=own_system, rule=rule, signal="heartbeat", labels={"rule": rule.name})

    [incident] = incidents_open_for_alerts(alerts=[alert], now=timezone.now())

    assert incident.incident_type == IncidentType.AVAILABILITY
