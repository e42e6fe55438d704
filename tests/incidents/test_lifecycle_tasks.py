"""The lifecycle engine's Celery tasks, its beat entries, the tick and the management command."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from django.core import mail
from django.core.management import call_command

from governance.choices import Role, Severity
from incidents import tasks
from incidents.models import FollowUp, Incident, IncidentStatus, Notification
from incidents.services.tick import lifecycle_tick
from tasks.base import is_instrumented
from tasks.schedules import SCHEDULES
from tests.incidents.factories import FollowUpFactory, IncidentFactory

pytestmark = pytest.mark.django_db

T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)


@pytest.fixture
def clock(time_machine):
    time_machine.move_to(T0, tick=False)

    def move(delta: timedelta) -> None:
        time_machine.move_to(T0 + delta, tick=False)

    return move


def test_the_tick_and_the_auditor_are_on_beat_on_the_lifecycle_queue():
    specs = {spec.task: spec for spec in SCHEDULES if spec.task.startswith("incidents.")}

    assert set(specs) == {"incidents.lifecycle_tick", "incidents.audit_active_escalations"}
    assert {spec.queue for spec in specs.values()} == {"lifecycle"}
    assert specs["incidents.lifecycle_tick"].every_seconds == 60
    assert specs["incidents.audit_active_escalations"].every_seconds == 300
    assert all(spec.expires_seconds and spec.expires_seconds < spec.every_seconds for spec in specs.values())


def test_every_incidents_task_is_a_named_instrumented_vigil_task():
    for task in (tasks.lifecycle_tick, tasks.deliver_notification, tasks.deliver_notifications,
                 tasks.audit_active_escalations, tasks.escalation_step):  # fmt: skip
        assert task.name.startswith("incidents.")
        assert is_instrumented(task)


def test_the_tick_task_escalates_closes_and_processes_follow_ups(clock, own_system, lead):
    breached = IncidentFactory(system=own_system, severity=Severity.HIGH)
    stale = IncidentFactory(system=own_system, severity=Severity.LOW)
    FollowUpFactory(incident=breached, owner=lead, due_date=T0.date() + timedelta(days=8))
    clock(timedelta(days=8))

    result = tasks.lifecycle_tick.delay().get()

    assert result["escalated"] >= 1
    assert result["auto_closed"] == 1
    assert result["follow_ups_notified"] == 1
    assert Incident.objects.get(pk=stale.pk).status == IncidentStatus.CLOSED
    assert Incident.objects.get(pk=breached.pk).escalation_level >= 1
    assert FollowUp.objects.get().notified_at is not None


def test_the_tick_enqueues_delivery_of_pending_notifications_after_commit(
    clock, own_system, lead, django_capture_on_commit_callbacks
):
    IncidentFactory(system=own_system, severity=Severity.HIGH)
    clock(timedelta(minutes=15))

    with django_capture_on_commit_callbacks(execute=True):
        report = lifecycle_tick()

    assert (report.escalated, report.escalation_notifications, report.deliveries_enqueued) == (1, 1, 1)
    assert [message.to for message in mail.outbox] == [[lead.email]]
    assert Notification.objects.get().status == "sent"


def test_the_tick_can_leave_delivery_to_the_workers(clock, own_system, lead, django_capture_on_commit_callbacks):
    IncidentFactory(system=own_system, severity=Severity.HIGH)
    clock(timedelta(minutes=15))

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        report = lifecycle_tick(enqueue_delivery=False)

    assert report.deliveries_enqueued == 0
    assert callbacks == []
    assert Notification.objects.get().status == "pending"


def test_the_delivery_task_sends_once(own_system, lead):
    incident = IncidentFactory(system=own_system)
    notice = Notification.objects.create(
        incident=incident, channel="email", target=lead.email, kind="escalation", subject="Escalated",
        payload={"message": "Escalated."}, dedupe_key="escalation:test:1",
    )  # fmt: skip

    assert tasks.deliver_notification.delay(str(notice.pk)).get() == "sent"
    assert tasks.deliver_notification.delay(str(notice.pk)).get() == "sent"

    assert len(mail.outbox) == 1


def test_the_step_task_ignores_a_stale_token_and_runs_a_current_one(clock, own_system):
    incident = IncidentFactory(system=own_system, severity=Severity.HIGH)

    assert tasks.escalation_step.delay(str(incident.pk), "stale").get() is False
    assert tasks.escalation_step.delay(str(incident.pk), incident.escalation_token).get() is True
    assert Incident.objects.get(pk=incident.pk).escalation_level == 1


def test_the_auditor_task_re_kicks_overdue_escalations(clock, own_system, make_user, team):
    make_user(Role.REVIEWER, teams=[team])
    incident = IncidentFactory(system=own_system, severity=Severity.HIGH)
    clock(timedelta(minutes=30))

    result = tasks.audit_active_escalations.delay().get()

    assert result["re_kicked"] == 1
    assert result["incident_ids"] == [str(incident.pk)]


def test_the_command_runs_one_tick_and_prints_the_report(clock, own_system):
    IncidentFactory(system=own_system, severity=Severity.HIGH)
    clock(timedelta(minutes=15))
    out = io.StringIO()

    call_command("lifecycle_tick", "--json", "--no-deliver", stdout=out)

    report = json.loads(out.getvalue())
    assert report["escalated"] == 1
    assert report["deliveries_enqueued"] == 0


def test_the_command_prints_a_readable_report_by_default(clock):
    out = io.StringIO()

    call_command("lifecycle_tick", "--no-deliver", stdout=out)

    assert "escalated: 0" in out.getvalue()
    assert "auto closed: 0" in out.getvalue()
