"""Incident transitions: guarded, with a timeline entry and an audit entry each; timers; RCA on close."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from config import registry
from governance.choices import AuditAction, Severity
from governance.models import AuditLog
from incidents.models import Incident, IncidentStatus, IncidentType
from incidents.services import rca
from incidents.services.lifecycle import (
    STOPPED_TOKEN,
    IncidentInvalid,
    IncidentTransitionError,
    incident_acknowledge,
    incident_assign,
    incident_close,
    incident_mitigate,
    incident_note,
    incident_reopen,
    incident_resolve,
)
from tests.incidents.factories import FollowUpFactory, IncidentFactory

pytestmark = pytest.mark.django_db


def kinds(incident) -> list[str]:
    return list(incident.timeline.order_by("at", "created_at").values_list("kind", flat=True))


def audited(action) -> int:
    return AuditLog.objects.filter(action=action).count()


def test_a_new_incident_carries_both_sla_targets_its_escalation_snapshot_and_rca_template(own_system):
    incident = IncidentFactory(system=own_system, severity=Severity.CRITICAL)

    ack, resolve = registry.get("slo.incident_ack_minutes"), registry.get("slo.incident_resolve_minutes")
    assert incident.sla_due_at == incident.opened_at + timedelta(minutes=ack["critical"])
    assert incident.resolve_due_at == incident.opened_at + timedelta(minutes=resolve["critical"])
    assert incident.next_escalation_at == incident.sla_due_at  # the first step fires at the breach
    assert incident.escalation_snapshot == registry.get("incidents.escalation_policy")
    assert incident.rca_template.incident_type == IncidentType.DATA_QUALITY


def test_acknowledging_records_who_and_when_and_moves_escalation_to_the_resolve_target(own_system, lead):
    incident = IncidentFactory(system=own_system)
    token = incident.escalation_token

    acked = incident_acknowledge(incident_id=incident.id, actor=lead, note="looking")

    assert acked.status == IncidentStatus.ACKNOWLEDGED
    assert acked.acknowledged_at is not None
    assert acked.assignee == lead
    assert acked.next_escalation_at == acked.resolve_due_at
    assert acked.escalation_token != token
    assert kinds(acked) == ["acknowledged"]
    assert audited(AuditAction.INCIDENT_ACKNOWLEDGED) == 1


def test_an_illegal_transition_raises_and_writes_nothing(own_system, lead):
    incident = IncidentFactory(system=own_system)
    incident_resolve(incident_id=incident.id, actor=lead)
    rows = AuditLog.objects.count()

    with pytest.raises(IncidentTransitionError, match="it is resolved"):
        incident_acknowledge(incident_id=incident.id, actor=lead)

    assert AuditLog.objects.count() == rows
    assert Incident.objects.get(pk=incident.pk).status == IncidentStatus.RESOLVED


def test_the_full_path_open_to_closed_keeps_every_step_on_the_timeline(own_system, lead):
    incident = IncidentFactory(system=own_system, severity=Severity.MEDIUM)

    incident_acknowledge(incident_id=incident.id, actor=lead)
    incident_mitigate(incident_id=incident.id, actor=lead, note="traffic shifted")
    incident_resolve(incident_id=incident.id, actor=lead, resolution_reason="Fixed")
    closed = incident_close(incident_id=incident.id, actor=lead)

    assert closed.status == IncidentStatus.CLOSED
    assert closed.resolution_reason == "Fixed"
    assert closed.next_escalation_at is None
    assert closed.escalation_token == STOPPED_TOKEN
    assert kinds(closed) == ["acknowledged", "mitigated", "resolved", "closed"]


def test_a_resolution_reason_outside_the_configured_list_is_refused(own_system, lead):
    incident = IncidentFactory(system=own_system)

    with pytest.raises(IncidentInvalid) as raised:
        incident_resolve(incident_id=incident.id, actor=lead, resolution_reason="Because")

    assert "resolution_reason" in raised.value.fields
    assert Incident.objects.get(pk=incident.pk).status == IncidentStatus.OPEN


@pytest.mark.parametrize("severity", [Severity.CRITICAL, Severity.HIGH])
def test_closing_a_serious_incident_without_its_rca_names_each_missing_field(own_system, lead, severity):
    incident = IncidentFactory(system=own_system, severity=severity)
    rca.incident_rca_update(incident_id=incident.id, values={"root_cause": "stale upstream table"}, actor=lead)

    with pytest.raises(IncidentInvalid) as raised:
        incident_close(incident_id=incident.id, actor=lead)

    assert set(raised.value.fields) == {"rca.impact", "rca.affected_data", "rca.corrective_actions"}
    assert Incident.objects.get(pk=incident.pk).status == IncidentStatus.OPEN


def test_a_complete_rca_lets_a_critical_incident_close_and_counts_as_resolved(own_system, lead):
    incident = IncidentFactory(system=own_system, severity=Severity.CRITICAL)
    values = {field: f"{field} text" for field in rca.required_fields(incident)}

    updated = rca.incident_rca_update(incident_id=incident.id, values=values, actor=lead)
    closed = incident_close(incident_id=incident.id, actor=lead, reason="done")

    assert updated.rca_completed_at is not None
    assert closed.status == IncidentStatus.CLOSED
    assert closed.resolved_at == closed.closed_at  # closed straight from open: MTTR still counts it
    assert audited(AuditAction.INCIDENT_RCA_UPDATED) == 1


def test_emptying_a_required_rca_field_makes_the_rca_incomplete_again(own_system, lead):
    incident = IncidentFactory(system=own_system, severity=Severity.LOW)
    values = dict.fromkeys(rca.required_fields(incident), "x")
    rca.incident_rca_update(incident_id=incident.id, values=values, actor=lead)

    updated = rca.incident_rca_update(incident_id=incident.id, values={"impact": ""}, actor=lead)

    assert updated.rca_completed_at is None
    assert "impact" not in updated.rca


def test_reopening_after_resolve_keeps_the_timeline_and_restarts_the_timers(own_system, lead):
    with time_machine.travel(timezone.now() - timedelta(hours=5), tick=False):
        incident = IncidentFactory(system=own_system)
        incident_resolve(incident_id=incident.id, actor=lead, resolution_reason="Fixed")

    reopened = incident_reopen(incident_id=incident.id, actor=lead, reason="drift is back")

    assert reopened.status == IncidentStatus.OPEN
    assert reopened.resolved_at is None
    assert reopened.reopened_count == 1
    assert reopened.sla_due_at > incident.sla_due_at + timedelta(hours=4)
    assert reopened.next_escalation_at is not None
    assert kinds(reopened) == ["resolved", "reopened"]
    assert audited(AuditAction.INCIDENT_REOPENED) == 1


def test_reopen_needs_a_reason_and_a_closed_or_resolved_incident(own_system, lead):
    incident = IncidentFactory(system=own_system)

    with pytest.raises(IncidentInvalid):
        incident_reopen(incident_id=incident.id, actor=lead, reason=" ")
    with pytest.raises(IncidentTransitionError):
        incident_reopen(incident_id=incident.id, actor=lead, reason="why not")


def test_reopening_is_refused_while_a_newer_incident_of_the_same_fingerprint_is_open(own_system, lead):
    old = IncidentFactory(system=own_system, fingerprint="f" * 64)
    incident_resolve(incident_id=old.id, actor=lead)
    IncidentFactory(system=own_system, fingerprint="f" * 64)

    with pytest.raises(IncidentTransitionError, match="superseded"):
        incident_reopen(incident_id=old.id, actor=lead, reason="same thing again")

    assert Incident.objects.get(pk=old.pk).status == IncidentStatus.RESOLVED


def test_assigning_needs_someone_of_the_team_and_is_audited(own_system, lead, make_user, other_team):
    incident = IncidentFactory(system=own_system)
    outsider = make_user("reviewer", teams=[other_team])

    with pytest.raises(IncidentInvalid):
        incident_assign(incident_id=incident.id, assignee=outsider, actor=lead)
    assigned = incident_assign(incident_id=incident.id, assignee=lead, actor=lead)

    assert assigned.assignee == lead
    assert kinds(assigned) == ["assigned"]
    assert audited(AuditAction.INCIDENT_ASSIGNED) == 1


def test_a_note_counts_as_activity(own_system, lead):
    with time_machine.travel(timezone.now() - timedelta(days=3), tick=False):
        incident = IncidentFactory(system=own_system)

    incident_note(incident_id=incident.id, actor=lead, message="customer informed")

    incident.refresh_from_db()
    assert incident.last_activity_at > incident.opened_at + timedelta(days=2)
    assert kinds(incident) == ["note"]


def test_follow_up_factory_attaches_to_an_incident():
    follow_up = FollowUpFactory()

    assert follow_up.incident.status == IncidentStatus.OPEN


def test_a_follow_up_date_in_the_past_is_refused_on_resolve(own_system, lead):
    incident = IncidentFactory(system=own_system)

    with pytest.raises(IncidentInvalid) as raised:
        incident_resolve(incident_id=incident.id, actor=lead, follow_up_date=timezone.localdate() - timedelta(days=1))

    assert "follow_up_date" in raised.value.fields
    assert Incident.objects.get(pk=incident.pk).status == IncidentStatus.OPEN
