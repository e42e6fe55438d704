"""SLA escalation along the incident's frozen policy: step times, breaches, repeat, stop, reassignment,
tokens and the auditor sweep. Every timer is driven with time-machine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import transaction

from config import registry
from governance.choices import AuditAction, Role, Severity
from governance.models import AuditLog
from incidents.models import Incident, IncidentEvent, IncidentEventKind, Notification
from incidents.services import escalation
from incidents.services.escalation import (
    audit_active_escalations,
    escalate_due_incidents,
    incident_escalation_step,
    step_due,
)
from incidents.services.lifecycle import incident_acknowledge, incident_reopen, incident_resolve
from tests.factories import TeamFactory
from tests.incidents.factories import IncidentFactory

pytestmark = pytest.mark.django_db

T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
# Defaults: a high incident must be acknowledged within 15 min and resolved within 240 min; the policy
# steps come 0, 15 and 45 min after the breach, then the last repeats every 60 min.
ACK_BREACH = 15
RESOLVE_BREACH = 240


@pytest.fixture
def clock(time_machine):
    time_machine.move_to(T0, tick=False)

    def move(minutes: float) -> datetime:
        time_machine.move_to(T0 + timedelta(minutes=minutes), tick=False)
        return T0 + timedelta(minutes=minutes)

    return move


@pytest.fixture
def rita(make_user, team):
    return make_user(Role.REVIEWER, teams=[team], username="rita")


@pytest.fixture
def incident(clock, own_system, rita, lead, admin_user):
    return IncidentFactory(system=own_system, severity=Severity.HIGH, assignee=rita)


def escalations(incident) -> list[IncidentEvent]:
    return list(IncidentEvent.objects.filter(incident=incident, kind=IncidentEventKind.ESCALATED).order_by("at", "id"))


def escalation_audits(incident) -> list[AuditLog]:
    return list(
        AuditLog.objects.filter(action=AuditAction.INCIDENT_ESCALATED, object_id=str(incident.pk)).order_by("seq")
    )


def emails_for(incident, level: int) -> set[str]:
    return set(
        Notification.objects.filter(
            incident=incident, channel="email", dedupe_key__startswith=f"escalation:{incident.pk}:{level}:"
        ).values_list("target", flat=True)
    )


def set_policy(steps, repeat=None, admin=None):
    registry.set(
        "incidents.escalation_policy",
        {"steps": steps, "repeat_last_every_minutes": repeat},
        user="system:test",
        reason="test policy",
    )


# --- the arithmetic --------------------------------------------------------------------------------


def test_step_due_picks_the_last_step_whose_time_has_come_and_schedules_the_next():
    snapshot = {"steps": [{"after_minutes": 0}, {"after_minutes": 15}, {"after_minutes": 45}]}

    due = step_due(snapshot=snapshot, breach_at=T0, scheduled_at=T0 + timedelta(minutes=15), now=T0)

    assert (due.index, due.repeat, due.next_at) == (1, False, T0 + timedelta(minutes=45))


def test_step_due_skips_repetitions_missed_while_no_tick_ran():
    snapshot = {"steps": [{"after_minutes": 0}], "repeat_last_every_minutes": 60}
    now = T0 + timedelta(minutes=200)

    due = step_due(snapshot=snapshot, breach_at=T0, scheduled_at=T0 + timedelta(minutes=60), now=now)

    assert due.repeat is True
    assert due.next_at == T0 + timedelta(minutes=240)


# --- acknowledge breach ------------------------------------------------------------------------------


def test_nothing_escalates_before_the_acknowledge_target(clock, incident):
    clock(ACK_BREACH - 1)

    run = escalate_due_incidents()

    assert run.escalated == 0
    assert escalations(incident) == []


def test_an_unacknowledged_incident_escalates_at_each_step_time(clock, incident, lead):
    levels = []
    for minute, expected_level in ((ACK_BREACH, 1), (ACK_BREACH + 14, 1), (ACK_BREACH + 15, 2), (ACK_BREACH + 44, 2),
                                   (ACK_BREACH + 45, 3)):  # fmt: skip
        clock(minute)
        escalate_due_incidents()
        incident.refresh_from_db()
        levels.append(incident.escalation_level)
        assert incident.escalation_level == expected_level, f"at +{minute} min"

    timeline = escalations(incident)
    assert [event.at for event in timeline] == [T0 + timedelta(minutes=m) for m in (15, 30, 60)]
    assert [event.data["step"] for event in timeline] == [1, 2, 3]
    assert {event.data["breach"] for event in timeline} == {"ack"}
    assert incident.next_escalation_at == T0 + timedelta(minutes=ACK_BREACH + 45 + 60)


def test_each_escalation_writes_one_audit_entry_with_level_step_breach_and_reassignment(clock, incident, lead):
    clock(ACK_BREACH)
    escalate_due_incidents()
    clock(ACK_BREACH + 15)
    escalate_due_incidents()

    audits = escalation_audits(incident)

    assert [(a.data["level"], a.data["step"], a.data["breach"], a.data["reassigned_to"]) for a in audits] == [
        (1, 1, "ack", None),
        (2, 2, "ack", "lena"),
    ]
    assert {a.actor for a in audits} == {"incidents.lifecycle"}


def test_the_steps_notify_whom_the_policy_names(clock, incident, rita, lead, admin_user):
    clock(ACK_BREACH)
    escalate_due_incidents()
    clock(ACK_BREACH + 15)
    escalate_due_incidents()
    clock(ACK_BREACH + 45)
    escalate_due_incidents()

    assert emails_for(incident, 1) == {rita.email, lead.email}  # assignee + team
    assert emails_for(incident, 2) == {rita.email, lead.email}  # team + governance leads of the team
    assert emails_for(incident, 3) == {admin_user.email}  # role:admin
    assert set(Notification.objects.values_list("status", flat=True)) == {"pending"}


def test_the_last_step_repeats_at_the_configured_interval(clock, incident):
    for minute in (ACK_BREACH, ACK_BREACH + 15, ACK_BREACH + 45, ACK_BREACH + 45 + 59):
        clock(minute)
        escalate_due_incidents()
    incident.refresh_from_db()
    assert incident.escalation_level == 3

    clock(ACK_BREACH + 45 + 60)
    escalate_due_incidents()

    last = escalations(incident)[-1]
    assert (last.data["level"], last.data["step"], last.data["repeat"]) == (4, 3, True)


def test_escalation_ends_after_the_last_step_when_the_policy_does_not_repeat(clock, own_system):
    set_policy([{"after_minutes": 0, "notify": ["team"], "channels": ["email"]}], repeat=None)
    incident = IncidentFactory(system=own_system, severity=Severity.HIGH)
    clock(ACK_BREACH)
    escalate_due_incidents()

    clock(ACK_BREACH + 24 * 60)
    escalate_due_incidents()

    incident.refresh_from_db()
    assert incident.escalation_level == 1
    assert incident.next_escalation_at is None
    assert "exhausted" in escalations(incident)[0].message


def test_a_missed_tick_fires_every_step_that_came_due_once_and_in_order(clock, incident):
    clock(ACK_BREACH + 50)  # no tick ran for 50 minutes: steps 1, 2 and 3 are all due

    run = escalate_due_incidents()

    assert run.escalated == 3
    steps_by_level = sorted((event.data["level"], event.data["step"]) for event in escalations(incident))
    assert steps_by_level == [(1, 1), (2, 2), (3, 3)]
    incident.refresh_from_db()
    assert incident.next_escalation_at == T0 + timedelta(minutes=ACK_BREACH + 45 + 60)


def test_two_ticks_at_the_same_moment_escalate_once(clock, incident):
    clock(ACK_BREACH)

    first, second = escalate_due_incidents(), escalate_due_incidents()

    assert (first.escalated, second.escalated) == (1, 0)
    assert len(escalation_audits(incident)) == 1


# --- resolve breach --------------------------------------------------------------------------------


def test_an_acknowledged_incident_escalates_on_its_resolve_target_instead(clock, incident, rita):
    clock(10)
    incident_acknowledge(incident_id=incident.pk, actor=rita)
    clock(ACK_BREACH + 60)
    assert escalate_due_incidents().escalated == 0  # acknowledged in time: the ack breach is gone

    clock(RESOLVE_BREACH - 1)
    assert escalate_due_incidents().escalated == 0
    clock(RESOLVE_BREACH)
    assert escalate_due_incidents().escalated == 1
    clock(RESOLVE_BREACH + 15)
    assert escalate_due_incidents().escalated == 1

    timeline = escalations(incident)
    assert [(e.data["breach"], e.data["step"], e.at) for e in timeline] == [
        ("resolve", 1, T0 + timedelta(minutes=RESOLVE_BREACH)),
        ("resolve", 2, T0 + timedelta(minutes=RESOLVE_BREACH + 15)),
    ]


def test_acknowledging_after_an_ack_breach_moves_escalation_to_the_resolve_target(clock, incident, rita):
    clock(ACK_BREACH)
    escalate_due_incidents()
    clock(ACK_BREACH + 5)
    incident_acknowledge(incident_id=incident.pk, actor=rita)

    clock(ACK_BREACH + 15)  # step 2 of the ack breach would have been due now
    assert escalate_due_incidents().escalated == 0
    clock(RESOLVE_BREACH)
    escalate_due_incidents()

    assert [(e.data["level"], e.data["breach"], e.data["step"]) for e in escalations(incident)] == [
        (1, "ack", 1),
        (2, "resolve", 1),
    ]


def test_resolving_stops_escalation(clock, incident, rita):
    clock(ACK_BREACH)
    escalate_due_incidents()
    clock(ACK_BREACH + 3)
    incident_resolve(incident_id=incident.pk, actor=rita)

    for minute in (ACK_BREACH + 15, ACK_BREACH + 45, 24 * 60):
        clock(minute)
        assert escalate_due_incidents().escalated == 0
    assert len(escalations(incident)) == 1


def test_a_reopened_incident_escalates_again_with_its_own_notifications(clock, incident, rita):
    clock(ACK_BREACH)
    escalate_due_incidents()
    clock(20)
    incident_resolve(incident_id=incident.pk, actor=rita)
    clock(30)
    incident_reopen(incident_id=incident.pk, actor=rita, reason="came back")

    clock(30 + ACK_BREACH)
    assert escalate_due_incidents().escalated == 1

    incident.refresh_from_db()
    assert incident.escalation_level == 1
    keys = list(Notification.objects.filter(incident=incident, target=rita.email).values_list("dedupe_key", flat=True))
    assert len(keys) == 2 and len(set(keys)) == 2  # the reopened life is notified too


# --- the snapshot --------------------------------------------------------------------------------


def test_a_policy_change_does_not_affect_incidents_already_open(clock, incident, own_system):
    set_policy([{"after_minutes": 100, "notify": ["team"], "channels": ["email"]}], repeat=None)
    newer = IncidentFactory(system=own_system, severity=Severity.HIGH)

    clock(ACK_BREACH)
    escalate_due_incidents()
    clock(ACK_BREACH + 15)
    escalate_due_incidents()

    incident.refresh_from_db()
    newer.refresh_from_db()
    assert incident.escalation_level == 2  # the policy frozen when it opened
    assert newer.escalation_level == 0  # the new policy: first step 100 min after the breach
    assert newer.next_escalation_at == T0 + timedelta(minutes=ACK_BREACH + 100)


# --- reassignment ------------------------------------------------------------------------------------


def test_step_two_reassigns_to_a_governance_lead_of_the_team(clock, incident, lead):
    clock(ACK_BREACH)
    escalate_due_incidents()
    clock(ACK_BREACH + 15)

    escalate_due_incidents()

    incident.refresh_from_db()
    assert incident.assignee == lead
    assert "Reassigned to lena" in escalations(incident)[-1].message


def test_reassign_to_a_team_moves_the_incident_there_unassigned_and_notifies_that_team(clock, own_system, make_user):
    sre = TeamFactory(name="SRE", slug="sre")
    oncall = make_user(Role.REVIEWER, teams=[sre], username="omar")
    set_policy([{"after_minutes": 0, "notify": ["team"], "reassign_to": "team:sre", "channels": ["email"]}])
    incident = IncidentFactory(system=own_system, severity=Severity.HIGH, assignee=make_user(Role.REVIEWER))
    clock(ACK_BREACH)

    escalate_due_incidents()

    incident.refresh_from_db()
    assert (incident.team, incident.assignee) == (sre, None)
    assert emails_for(incident, 1) == {oncall.email}
    assert escalation_audits(incident)[0].data["reassigned_to"] == "team:sre"


def test_reassign_to_a_role_nobody_on_the_team_holds_keeps_the_assignee_and_says_so(clock, own_system, rita):
    set_policy([{"after_minutes": 0, "notify": ["team"], "reassign_to": "role:security", "channels": ["email"]}])
    incident = IncidentFactory(system=own_system, severity=Severity.HIGH, assignee=rita)
    clock(ACK_BREACH)

    escalate_due_incidents()

    incident.refresh_from_db()
    assert incident.assignee == rita
    assert escalation_audits(incident)[0].data["reassign_unresolved"] == "role:security"


# --- tokens: the per-incident step ------------------------------------------------------------------


def test_the_step_with_a_stale_token_does_nothing(clock, incident):
    assert incident_escalation_step(incident_id=incident.pk, token="not-the-token") is False

    incident.refresh_from_db()
    assert incident.escalation_level == 0
    assert escalations(incident) == []


def test_the_step_with_the_current_token_escalates_once_and_a_duplicate_delivery_is_ignored(clock, incident):
    token = incident.escalation_token
    clock(ACK_BREACH)

    assert incident_escalation_step(incident_id=incident.pk, token=token) is True
    assert incident_escalation_step(incident_id=incident.pk, token=token) is False

    incident.refresh_from_db()
    assert incident.escalation_level == 1
    assert incident.escalation_token != token
    assert len(escalation_audits(incident)) == 1


def test_the_step_does_nothing_for_a_resolved_incident(clock, incident, rita):
    incident_resolve(incident_id=incident.pk, actor=rita)
    incident.refresh_from_db()

    assert incident_escalation_step(incident_id=incident.pk, token=incident.escalation_token) is False


def test_the_guarded_update_leaves_a_row_that_changed_since_it_was_claimed(clock, incident):
    clock(ACK_BREACH)
    with transaction.atomic():
        stale_rows = escalation._claim(due_before=T0 + timedelta(minutes=ACK_BREACH), limit=10)
    escalate_due_incidents()  # another tick escalated it meanwhile (new token)

    with transaction.atomic():
        ids, notices = escalation._rows_escalate(stale_rows, now=T0 + timedelta(minutes=ACK_BREACH), require_due=True)

    assert (ids, notices) == ([], 0)
    assert len(escalations(incident)) == 1


# --- the auditor sweep ---------------------------------------------------------------------------


def test_the_auditor_re_kicks_an_escalation_a_missed_tick_left_overdue(clock, incident, own_system, caplog):
    recent = IncidentFactory(system=own_system, severity=Severity.HIGH, opened_at=T0 + timedelta(minutes=9))
    clock(ACK_BREACH + 10)  # incident: 10 min overdue; recent: due 1 min ago, within the grace period

    with caplog.at_level("WARNING", logger="incidents.services.escalation"):
        kicked = audit_active_escalations(grace_seconds=120)

    assert kicked == [incident.pk]
    incident.refresh_from_db()
    recent.refresh_from_db()
    assert (incident.escalation_level, recent.escalation_level) == (1, 0)
    assert "re-kicking" in caplog.text
    assert audit_active_escalations(grace_seconds=120) == []


def test_the_auditor_finds_nothing_when_ticks_run(clock, incident):
    clock(ACK_BREACH)
    escalate_due_incidents()
    clock(ACK_BREACH + 5)

    assert audit_active_escalations() == []


def test_escalation_works_in_chunks(clock, own_system):
    incidents = [IncidentFactory(system=own_system, severity=Severity.HIGH) for _ in range(5)]
    clock(ACK_BREACH)

    run = escalate_due_incidents(chunk_size=2)

    assert run.escalated == 5
    assert set(Incident.objects.values_list("escalation_level", flat=True)) == {1}
    assert set(run.incident_ids) == {i.pk for i in incidents}
