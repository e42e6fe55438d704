"""Auto-close of stale incidents, follow-ups (scheduled, due, overdue) and regulatory deadline warnings.
Every timer is driven with time-machine."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from config import registry
from governance.choices import AuditAction, Role, Severity
from governance.models import AuditLog
from incidents.models import (
    FollowUp,
    FollowUpStatus,
    Incident,
    IncidentEvent,
    IncidentEventKind,
    IncidentStatus,
    Notification,
    RegulatoryBasis,
)
from incidents.services.housekeeping import (
    FollowUpNotOpen,
    auto_close_stale_incidents,
    follow_up_complete,
    follow_up_create,
    follow_ups_process,
    follow_ups_schedule_on_resolve,
    regulatory_deadlines_warn,
)
from incidents.services.lifecycle import IncidentInvalid, incident_note, incident_resolve
from tests.incidents.factories import FollowUpFactory, IncidentFactory

pytestmark = pytest.mark.django_db

T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)


@pytest.fixture
def clock(time_machine):
    time_machine.move_to(T0, tick=False)

    def move(delta: timedelta) -> datetime:
        time_machine.move_to(T0 + delta, tick=False)
        return T0 + delta

    return move


@pytest.fixture
def rita(make_user, team):
    return make_user(Role.REVIEWER, teams=[team], username="rita")


def status_of(incident) -> str:
    return Incident.objects.values_list("status", flat=True).get(pk=incident.pk)


# --- auto-close ----------------------------------------------------------------------------------


def test_a_low_incident_with_no_activity_for_7_days_is_closed_with_reason_timeline_and_audit(clock, own_system):
    incident = IncidentFactory(system=own_system, severity=Severity.LOW)

    clock(7 * DAY - timedelta(minutes=1))
    assert auto_close_stale_incidents() == 0
    clock(7 * DAY + timedelta(minutes=1))
    assert auto_close_stale_incidents() == 1

    incident.refresh_from_db()
    assert incident.status == IncidentStatus.CLOSED
    assert incident.closed_at == T0 + 7 * DAY + timedelta(minutes=1)
    assert incident.resolution_reason == "Auto-closed: no activity for 7 days"
    event = IncidentEvent.objects.get(incident=incident, kind=IncidentEventKind.CLOSED)
    assert event.data == {"reason": "Auto-closed: no activity for 7 days", "automatic": True}
    audit = AuditLog.objects.get(action=AuditAction.INCIDENT_CLOSED, object_id=str(incident.pk))
    assert audit.data["automatic"] is True
    assert auto_close_stale_incidents() == 0


@pytest.mark.parametrize(("severity", "closes"), [(Severity.INFO, True), (Severity.LOW, True),
                                                  (Severity.MEDIUM, False), (Severity.HIGH, False),
                                                  (Severity.CRITICAL, False)])  # fmt: skip
def test_only_low_and_info_incidents_are_auto_closed(clock, own_system, severity, closes):
    incident = IncidentFactory(system=own_system, severity=severity)
    clock(30 * DAY)

    auto_close_stale_incidents()

    assert (status_of(incident) == IncidentStatus.CLOSED) is closes


def test_a_resolved_low_incident_is_auto_closed_too(clock, own_system, rita):
    incident = IncidentFactory(system=own_system, severity=Severity.LOW)
    clock(DAY)
    incident_resolve(incident_id=incident.pk, actor=rita)

    clock(8 * DAY - timedelta(minutes=1))
    assert auto_close_stale_incidents() == 0  # resolving was activity: 7 days from then
    clock(8 * DAY + timedelta(minutes=1))
    assert auto_close_stale_incidents() == 1


def test_activity_resets_the_auto_close_clock(clock, own_system, rita):
    incident = IncidentFactory(system=own_system, severity=Severity.LOW)
    clock(5 * DAY)
    incident_note(incident_id=incident.pk, actor=rita, message="Still watching the upstream feed.")

    clock(8 * DAY)
    assert auto_close_stale_incidents() == 0
    clock(12 * DAY + timedelta(minutes=1))
    assert auto_close_stale_incidents() == 1


def test_an_incident_with_an_open_follow_up_is_never_auto_closed(clock, own_system, rita):
    incident = IncidentFactory(system=own_system, severity=Severity.LOW)
    follow_up = FollowUpFactory(incident=incident, owner=rita, due_date=date(2025, 3, 30))

    clock(60 * DAY)
    assert auto_close_stale_incidents() == 0
    assert status_of(incident) == IncidentStatus.OPEN

    follow_up_complete(follow_up_id=follow_up.pk, actor=rita)
    clock(67 * DAY + timedelta(minutes=1))
    assert auto_close_stale_incidents() == 1


def test_auto_close_follows_the_configured_days_and_severities(clock, own_system):
    registry.set("incidents.auto_close", {"days": 3, "severities": ["medium"]}, user="system:test", reason="test")
    medium = IncidentFactory(system=own_system, severity=Severity.MEDIUM)
    low = IncidentFactory(system=own_system, severity=Severity.LOW)
    clock(3 * DAY + timedelta(minutes=1))

    assert auto_close_stale_incidents() == 1

    assert (status_of(medium), status_of(low)) == (IncidentStatus.CLOSED, IncidentStatus.OPEN)


# --- follow-ups: create and complete ---------------------------------------------------------------


def test_a_follow_up_is_due_after_the_configured_days_by_default(clock, own_system, rita):
    incident = IncidentFactory(system=own_system)

    follow_up = follow_up_create(incident_id=incident.pk, title="Add a freshness check", owner=rita, actor=rita)

    assert follow_up.due_date == date(2025, 3, 17)
    assert follow_up.status == FollowUpStatus.OPEN
    audit = AuditLog.objects.get(action=AuditAction.FOLLOW_UP_CREATED)
    assert (audit.object_id, audit.data["follow_up_id"], audit.actor) == (str(incident.pk), str(follow_up.pk), "rita")
    assert IncidentEvent.objects.filter(incident=incident, kind=IncidentEventKind.FOLLOW_UP).count() == 1


def test_a_follow_up_needs_a_title_an_owner_on_the_team_and_a_future_date(clock, own_system, make_user):
    incident = IncidentFactory(system=own_system)
    outsider = make_user(Role.REVIEWER, username="otto")

    with pytest.raises(IncidentInvalid) as error:
        follow_up_create(incident_id=incident.pk, title=" ", owner=outsider, due_date=date(2025, 3, 1), actor=None)

    assert set(error.value.fields) == {"title", "owner", "due_date"}
    assert not FollowUp.objects.exists()


def test_completing_a_follow_up_twice_fails_the_second_time(clock, own_system, rita):
    follow_up = FollowUpFactory(incident=IncidentFactory(system=own_system), owner=rita)

    follow_up_complete(follow_up_id=follow_up.pk, actor=rita)
    with pytest.raises(FollowUpNotOpen):
        follow_up_complete(follow_up_id=follow_up.pk, actor=rita)

    assert AuditLog.objects.filter(action=AuditAction.FOLLOW_UP_COMPLETED).count() == 1


def test_the_follow_up_date_set_on_resolve_becomes_one_follow_up_for_the_assignee(clock, own_system, rita):
    incident = IncidentFactory(system=own_system, assignee=rita)
    incident_resolve(incident_id=incident.pk, actor=rita, follow_up_date=date(2025, 3, 20))

    assert follow_ups_schedule_on_resolve() == 1
    assert follow_ups_schedule_on_resolve() == 0

    follow_up = FollowUp.objects.get(incident=incident)
    assert (follow_up.owner, follow_up.due_date) == (rita, date(2025, 3, 20))
    assert AuditLog.objects.filter(action=AuditAction.FOLLOW_UP_CREATED, object_id=str(incident.pk)).count() == 1


# --- follow-ups: due and overdue -------------------------------------------------------------------


def test_a_due_follow_up_notifies_its_owner_once(clock, own_system, rita, lead):
    follow_up = FollowUpFactory(incident=IncidentFactory(system=own_system), owner=rita, due_date=date(2025, 3, 5))

    clock(DAY)
    assert follow_ups_process() == (0, 0)  # due on the 5th, today is the 4th
    clock(2 * DAY)
    assert follow_ups_process() == (1, 0)
    assert follow_ups_process() == (0, 0)

    notice = Notification.objects.get(kind="follow_up_due")
    assert (notice.target, notice.dedupe_key) == (rita.email, f"follow_up_due:{follow_up.pk}:email:{rita.email}")
    follow_up.refresh_from_db()
    assert follow_up.notified_at == T0 + 2 * DAY


def test_a_due_follow_up_without_an_owner_notifies_the_team_leads(clock, own_system, lead):
    FollowUpFactory(incident=IncidentFactory(system=own_system), owner=None, due_date=date(2025, 3, 3))

    follow_ups_process()

    assert list(Notification.objects.values_list("target", flat=True)) == [lead.email]


def test_an_overdue_follow_up_is_escalated_to_the_team_leads_once(clock, own_system, rita, lead):
    incident = IncidentFactory(system=own_system)
    follow_up = FollowUpFactory(incident=incident, owner=rita, due_date=date(2025, 3, 3))
    assert follow_ups_process() == (1, 0)

    clock(3 * DAY - timedelta(hours=10))  # 2 days late
    assert follow_ups_process() == (0, 0)
    clock(3 * DAY)  # 3 days late: escalate_overdue_after_days
    assert follow_ups_process() == (0, 1)
    assert follow_ups_process() == (0, 0)

    escalated = Notification.objects.get(kind="follow_up_overdue")
    assert escalated.target == lead.email
    audit = AuditLog.objects.get(action=AuditAction.FOLLOW_UP_ESCALATED)
    assert (audit.object_id, audit.data["follow_up_id"], audit.data["overdue_days"]) == (
        str(incident.pk), str(follow_up.pk), 3,
    )  # fmt: skip
    events = IncidentEvent.objects.filter(incident=incident, kind=IncidentEventKind.FOLLOW_UP)
    assert sorted(event.data["event"] for event in events) == ["due", "escalated"]


def test_a_completed_follow_up_is_neither_announced_nor_escalated(clock, own_system, rita, lead):
    follow_up = FollowUpFactory(incident=IncidentFactory(system=own_system), owner=rita, due_date=date(2025, 3, 3))
    follow_up_complete(follow_up_id=follow_up.pk, actor=rita)
    clock(10 * DAY)

    assert follow_ups_process() == (0, 0)


# --- regulatory deadlines --------------------------------------------------------------------------


@pytest.fixture
def serious(clock, own_system, lead, admin_user):
    return IncidentFactory(
        system=own_system,
        severity=Severity.CRITICAL,
        serious=True,
        regulatory_basis=RegulatoryBasis.STANDARD,
        regulatory_deadline_at=T0 + timedelta(hours=100),
    )


def regulatory_warnings(incident) -> list[IncidentEvent]:
    return list(IncidentEvent.objects.filter(incident=incident, kind=IncidentEventKind.REGULATORY).order_by("at"))


def test_no_warning_before_the_first_threshold(clock, serious):
    clock(timedelta(hours=27))  # 73 h left

    assert regulatory_deadlines_warn() == 0


def test_each_threshold_warns_leads_and_admins_once(clock, serious, lead, admin_user):
    for hours_left, expected in ((72, 1), (71, 0), (24, 1), (23, 0), (6, 1), (5, 0), (0, 1), (-10, 0)):
        clock(timedelta(hours=100 - hours_left))
        assert regulatory_deadlines_warn() == expected, f"{hours_left} h before the deadline"

    assert [event.data["threshold_hours"] for event in regulatory_warnings(serious)] == [72, 24, 6, 0]
    keys = set(Notification.objects.filter(kind="regulatory").values_list("dedupe_key", flat=True))
    people = (lead, admin_user)
    assert keys == {f"regulatory:{serious.pk}:{h}h:email:{person.email}" for h in (72, 24, 6, 0) for person in people}


def test_thresholds_crossed_together_give_one_warning_for_the_closest(clock, serious):
    clock(timedelta(hours=100 - 5))  # 5 h left: 72, 24 and 6 all crossed, none warned yet

    assert regulatory_deadlines_warn() == 1
    clock(timedelta(hours=100 - 4))
    assert regulatory_deadlines_warn() == 0

    [warning] = regulatory_warnings(serious)
    assert warning.data["threshold_hours"] == 6
    assert sorted(warning.data["warned_hours"]) == [6, 24, 72]
    assert "due in 5 h" in warning.message


def test_a_reported_incident_is_not_warned(clock, serious):
    Incident.objects.filter(pk=serious.pk).update(regulatory_reported_at=T0)
    clock(timedelta(hours=99))

    assert regulatory_deadlines_warn() == 0


def test_warning_thresholds_come_from_the_config(clock, serious):
    policy = {**registry.get("incidents.regulatory"), "warn_before_hours": [96]}
    registry.set("incidents.regulatory", policy, user="system:test", reason="test")
    clock(timedelta(hours=4))

    assert regulatory_deadlines_warn() == 1
    assert regulatory_warnings(serious)[0].data["threshold_hours"] == 96
