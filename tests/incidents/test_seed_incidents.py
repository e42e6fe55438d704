"""manage.py seed_incidents and triage_incidents: the open-incident mix, idempotency, and the plan's
scenario — open incidents from 218 to fewer than 30 without closing a critical incident that lacks its RCA."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from io import StringIO

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.utils import timezone

from config import registry
from governance.choices import AuditAction, Role, Severity
from governance.models import AuditLog
from incidents.models import (
    OPEN_INCIDENT_STATUSES,
    FollowUp,
    FollowUpStatus,
    Incident,
    IncidentEvent,
    IncidentEventKind,
    IncidentStatus,
    RCATemplate,
)
from incidents.services import rca
from incidents.services.seed import RESPONDER_USERNAME, SEED_ACTOR
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

NOW = "2026-03-02 10:00:00+00:00"


def seed(*args: str) -> str:
    out = StringIO()
    call_command("seed_incidents", *args, stdout=out)
    return out.getvalue()


def triage(*args: str) -> str:
    out = StringIO()
    call_command("triage_incidents", *args, stdout=out)
    return out.getvalue()


def open_incidents():
    return Incident.objects.filter(status__in=OPEN_INCIDENT_STATUSES)


@time_machine.travel(NOW, tick=False)
def test_seeding_creates_an_open_mix_of_severities_statuses_and_ages():
    output = seed("--open", "218")

    incidents = Incident.objects.all()
    by_severity = Counter(incidents.values_list("severity", flat=True))
    assert incidents.count() == open_incidents().count() == 218
    assert (by_severity["critical"], by_severity["high"], by_severity["medium"]) == (5, 17, 65)
    assert by_severity["low"] > 50 and by_severity["info"] > 40
    assert set(incidents.values_list("status", flat=True)) == set(OPEN_INCIDENT_STATUSES)
    now = timezone.now()
    ages = [now - opened for opened in incidents.values_list("opened_at", flat=True)]
    assert min(ages) < timedelta(hours=3) and max(ages) > timedelta(days=21)
    assert len(set(incidents.values_list("incident_type", flat=True))) >= 5
    assert "open incidents created: 218" in output


@time_machine.travel(NOW, tick=False)
def test_stale_low_and_info_incidents_exist_and_some_have_an_open_follow_up():
    seed("--open", "218")

    week_ago = timezone.now() - timedelta(days=7)
    stale = Incident.objects.filter(last_activity_at__lt=week_ago, severity__in=[Severity.LOW, Severity.INFO])
    assert stale.count() > 30
    follow_ups = FollowUp.objects.filter(status=FollowUpStatus.OPEN)
    assert 0 < follow_ups.count() < stale.count()
    assert set(follow_ups.values_list("incident_id", flat=True)) <= set(stale.values_list("pk", flat=True))
    assert set(follow_ups.values_list("owner__username", flat=True)) == {RESPONDER_USERNAME}


@time_machine.travel(NOW, tick=False)
def test_some_serious_incidents_carry_a_complete_rca_and_others_not():
    seed("--open", "218")

    serious = Incident.objects.filter(severity__in=[Severity.CRITICAL, Severity.HIGH]).select_related("rca_template")
    complete = [i for i in serious if i.rca_completed_at is not None]
    incomplete = [i for i in serious if i.rca_completed_at is None]
    assert complete and incomplete
    assert all(not rca.missing_fields(i) for i in complete)
    assert all(rca.missing_fields(i) for i in incomplete)
    assert any(i.rca for i in incomplete)  # a partial RCA: started, not finished
    assert any(i.severity == Severity.CRITICAL for i in incomplete)
    assert not Incident.objects.exclude(severity__in=[Severity.CRITICAL, Severity.HIGH]).exclude(rca={}).exists()


@time_machine.travel(NOW, tick=False)
def test_seeded_incidents_are_opened_like_real_ones_with_timers_template_timeline_and_audit():
    seed("--open", "60")

    ack = registry.get("slo.incident_ack_minutes")
    resolve = registry.get("slo.incident_resolve_minutes")
    policy = registry.get("incidents.escalation_policy")
    templates = dict(RCATemplate.objects.values_list("incident_type", "id"))
    for incident in Incident.objects.all():
        assert incident.sla_due_at == incident.opened_at + timedelta(minutes=ack[incident.severity])
        assert incident.resolve_due_at == incident.opened_at + timedelta(minutes=resolve[incident.severity])
        assert incident.escalation_snapshot == policy
        assert incident.rca_template_id == templates[incident.incident_type]
        assert len(incident.fingerprint) == 64 and incident.escalation_token
        assert incident.created_at == incident.opened_at
        if incident.status == IncidentStatus.OPEN:
            assert incident.assignee is None and incident.acknowledged_at is None
        else:
            assert incident.assignee.username == RESPONDER_USERNAME
            assert incident.opened_at < incident.acknowledged_at <= incident.last_activity_at
    assert Incident.objects.values("fingerprint").distinct().count() == 60
    assert IncidentEvent.objects.filter(kind=IncidentEventKind.OPENED).count() == 60
    acknowledged = Incident.objects.exclude(status=IncidentStatus.OPEN).count()
    assert IncidentEvent.objects.filter(kind=IncidentEventKind.ACKNOWLEDGED).count() == acknowledged
    audits = AuditLog.objects.filter(action=AuditAction.INCIDENT_OPENED)
    assert audits.count() == 60
    assert {a.actor for a in audits} == {SEED_ACTOR}
    assert {a.object_id for a in audits} == {str(pk) for pk in Incident.objects.values_list("pk", flat=True)}


def test_running_it_again_creates_nothing_and_a_larger_count_tops_up():
    seed("--open", "40")
    first = set(Incident.objects.values_list("id", flat=True))

    again = seed("--open", "40")
    assert set(Incident.objects.values_list("id", flat=True)) == first
    assert "open incidents created: 0" in again

    more = seed("--open", "55")
    assert Incident.objects.count() == 55
    assert first <= set(Incident.objects.values_list("id", flat=True))
    assert "open incidents created: 15" in more
    assert AuditLog.objects.filter(action=AuditAction.INCIDENT_OPENED).count() == 55


def test_the_same_seed_plans_the_same_incidents():
    seed("--open", "30", "--seed", "7")
    titles = sorted(Incident.objects.values_list("title", "severity", "status"))
    Incident.objects.all().delete()

    seed("--open", "30", "--seed", "7")

    assert sorted(Incident.objects.values_list("title", "severity", "status")) == titles


def test_a_negative_count_is_refused():
    with pytest.raises(CommandError, match="--open must not be negative"):
        seed("--open", "-1")


# --- triage_incidents ----------------------------------------------------------------------------


def test_triage_needs_a_known_user_a_configured_reason_and_something_to_do():
    UserFactory(username="ada", roles=[Role.ADMIN])

    with pytest.raises(CommandError, match="no active user 'nobody'"):
        triage("--as", "nobody", "--close-stale")
    with pytest.raises(CommandError, match="--reason must be one of"):
        triage("--as", "ada", "--bulk-resolve-older-than-hours", "4", "--reason", "Because")
    with pytest.raises(CommandError, match="nothing to do"):
        triage("--as", "ada")


def test_bulk_resolution_leaves_every_serious_incident_without_a_complete_rca_open():
    seed("--open", "218")
    admin = UserFactory(username="ada", roles=[Role.ADMIN])
    unanalysed = set(
        open_incidents()
        .filter(severity__in=[Severity.CRITICAL, Severity.HIGH], rca_completed_at__isnull=True)
        .values_list("pk", flat=True)
    )
    analysed = set(
        Incident.objects.filter(rca_completed_at__isnull=False)
        .filter(opened_at__lt=timezone.now() - timedelta(hours=4))
        .values_list("pk", flat=True)
    )

    output = triage("--as", admin.username, "--bulk-resolve-older-than-hours", "4", "--reason", "Stale, no impact")

    assert set(open_incidents().filter(pk__in=unanalysed).values_list("pk", flat=True)) == unanalysed
    assert set(
        Incident.objects.filter(pk__in=analysed, status=IncidentStatus.RESOLVED).values_list("pk", flat=True)
    ) == (analysed)
    assert (
        not open_incidents()
        .filter(
            severity__in=[Severity.MEDIUM, Severity.LOW, Severity.INFO],
            opened_at__lt=timezone.now() - timedelta(hours=4),
        )
        .exists()
    )
    resolved = Incident.objects.filter(status=IncidentStatus.RESOLVED)
    assert set(resolved.values_list("resolution_reason", flat=True)) == {"Stale, no impact"}
    assert IncidentEvent.objects.filter(kind=IncidentEventKind.RESOLVED).count() == resolved.count()
    assert AuditLog.objects.filter(action=AuditAction.INCIDENT_RESOLVED, actor="ada").count() == resolved.count()
    assert "critical/high incidents closed or resolved without a complete RCA: 0" in output


def test_the_readme_scenario_brings_open_incidents_below_30_without_closing_an_unanalysed_critical():
    seed("--open", "218")
    admin = UserFactory(username="ada", roles=[Role.ADMIN])
    critical_without_rca = set(
        Incident.objects.filter(severity=Severity.CRITICAL, rca_completed_at__isnull=True).values_list("pk", flat=True)
    )
    stale_with_follow_up = set(FollowUp.objects.values_list("incident_id", flat=True))
    assert open_incidents().count() == 218 and critical_without_rca

    output = triage(
        "--as", admin.username, "--close-stale",
        "--bulk-resolve-older-than-hours", "4", "--reason", "Stale, no impact", "--close",
    )  # fmt: skip

    assert open_incidents().count() < 30
    assert (
        set(open_incidents().filter(pk__in=critical_without_rca).values_list("pk", flat=True)) == critical_without_rca
    )
    assert not Incident.objects.filter(
        severity__in=[Severity.CRITICAL, Severity.HIGH], rca_completed_at__isnull=True, status=IncidentStatus.CLOSED
    ).exists()
    auto_closed = IncidentEvent.objects.filter(kind=IncidentEventKind.CLOSED, data__automatic=True)
    assert auto_closed.count() > 20
    assert not auto_closed.filter(incident_id__in=stale_with_follow_up).exists()  # open follow-ups keep them
    assert set(auto_closed.values_list("incident__severity", flat=True)) <= {Severity.LOW, Severity.INFO}
    assert "target met" in output
    assert "critical/high incidents closed or resolved without a complete RCA: 0" in output
    assert "auto-closed" in output
