"""Bulk resolution: ≤ 1,000, one configured reason, all or nothing, a timeline and audit entry each."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from governance.choices import AuditAction, Role, Severity
from governance.models import AuditLog
from incidents.models import Incident, IncidentEvent, IncidentStatus
from incidents.services import rca
from incidents.services.bulk import MAX_BULK_INCIDENTS, BulkResolveError, incidents_bulk_resolve
from incidents.services.lifecycle import incident_resolve
from tests.incidents.factories import IncidentFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def responder(make_user, team):
    return make_user(Role.SECURITY, teams=[team], username="sam")


def open_ids():
    return set(Incident.objects.filter(status=IncidentStatus.OPEN).values_list("id", flat=True))


def test_bulk_resolve_by_ids_resolves_each_with_a_timeline_and_audit_entry(own_system, responder):
    incidents = IncidentFactory.create_batch(3, system=own_system, severity=Severity.LOW)

    outcome = incidents_bulk_resolve(user=responder, ids=[i.id for i in incidents], resolution_reason="Duplicate")

    assert (outcome.resolved, outcome.closed) == (3, 0)
    assert not open_ids()
    assert IncidentEvent.objects.filter(kind="resolved", data__bulk=True).count() == 3
    assert AuditLog.objects.filter(action=AuditAction.INCIDENT_RESOLVED).count() == 3
    assert set(Incident.objects.values_list("resolution_reason", flat=True)) == {"Duplicate"}


def test_one_closed_incident_in_the_ids_changes_nothing_and_is_named(own_system, responder):
    incidents = IncidentFactory.create_batch(2, system=own_system)
    done = IncidentFactory(system=own_system)
    incident_resolve(incident_id=done.id, actor=responder)

    with pytest.raises(BulkResolveError) as raised:
        incidents_bulk_resolve(user=responder, ids=[incidents[0].id, done.id, incidents[1].id],
                               resolution_reason="Fixed")  # fmt: skip

    assert list(raised.value.fields) == ["ids.1"]
    assert open_ids() == {i.id for i in incidents}


def test_the_reason_must_come_from_the_configured_list(own_system, responder):
    incident = IncidentFactory(system=own_system)

    with pytest.raises(BulkResolveError) as raised:
        incidents_bulk_resolve(user=responder, ids=[incident.id], resolution_reason="meh")

    assert "resolution_reason" in raised.value.fields


def test_other_teams_incidents_are_not_found(own_system, foreign_system, responder):
    theirs = IncidentFactory(system=foreign_system)

    with pytest.raises(BulkResolveError) as raised:
        incidents_bulk_resolve(user=responder, ids=[theirs.id], resolution_reason="Fixed")

    assert "no incident" in raised.value.fields["ids.0"][0]


def test_more_than_a_thousand_ids_are_too_many(responder):
    ids = [f"00000000-0000-0000-0000-{n:012d}" for n in range(MAX_BULK_INCIDENTS + 1)]

    with pytest.raises(BulkResolveError) as raised:
        incidents_bulk_resolve(user=responder, ids=ids, resolution_reason="Fixed")

    assert raised.value.too_many


def test_a_filter_by_severity_and_age_selects_old_low_incidents_only(own_system, responder):
    with time_machine.travel(timezone.now() - timedelta(hours=48), tick=False):
        old_low = IncidentFactory.create_batch(2, system=own_system, severity=Severity.LOW)
        old_high = IncidentFactory(system=own_system, severity=Severity.HIGH)
    new_low = IncidentFactory(system=own_system, severity=Severity.LOW)

    outcome = incidents_bulk_resolve(
        user=responder, filters={"severity": ["low"], "older_than_hours": 24}, resolution_reason="Stale, no impact"
    )

    assert set(outcome.ids) == {i.id for i in old_low}
    assert open_ids() == {old_high.id, new_low.id}


def test_a_bad_filter_is_named(responder):
    with pytest.raises(BulkResolveError) as raised:
        incidents_bulk_resolve(
            user=responder, filters={"severity": "urgent", "colour": "red"}, resolution_reason="Fixed"
        )

    assert {"filter.severity", "filter.colour"} == set(raised.value.fields)


def test_closing_in_bulk_refuses_a_critical_incident_without_its_rca(own_system, responder):
    low = IncidentFactory(system=own_system, severity=Severity.LOW)
    critical = IncidentFactory(system=own_system, severity=Severity.CRITICAL)

    with pytest.raises(BulkResolveError) as raised:
        incidents_bulk_resolve(user=responder, ids=[low.id, critical.id], resolution_reason="Fixed", close=True)

    assert "RCA" in raised.value.fields["ids.1"][0]
    assert open_ids() == {low.id, critical.id}


def test_closing_in_bulk_works_once_the_rca_is_complete(own_system, responder):
    critical = IncidentFactory(system=own_system, severity=Severity.CRITICAL)
    rca.incident_rca_update(
        incident_id=critical.id, values=dict.fromkeys(rca.required_fields(critical), "done"), actor=responder
    )

    outcome = incidents_bulk_resolve(user=responder, ids=[critical.id], resolution_reason="Fixed", close=True)

    assert (outcome.resolved, outcome.closed) == (1, 1)
    critical.refresh_from_db()
    assert critical.status == IncidentStatus.CLOSED
    assert list(critical.timeline.values_list("kind", flat=True).order_by("kind")) == [
        "closed",
        "rca_updated",
        "resolved",
    ]


def test_an_incident_without_a_template_gets_its_types_template(own_system, responder):
    incident = IncidentFactory(system=own_system, rca_template=None)

    incidents_bulk_resolve(user=responder, ids=[incident.id], resolution_reason="Fixed")

    incident.refresh_from_db()
    assert incident.rca_template.incident_type == incident.incident_type
