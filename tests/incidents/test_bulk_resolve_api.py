"""``POST /api/v1/incidents/bulk-resolve``: up to 1,000 open incidents with one configured reason, by
ids or a filter, optionally closed too — all or nothing, every problem named."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from governance.choices import AuditAction, Role, Severity
from governance.models import AuditLog
from incidents.models import Incident, IncidentEvent, IncidentEventKind, IncidentStatus
from incidents.services.bulk import MAX_BULK_INCIDENTS
from incidents.services.lifecycle import incident_close
from tests.incidents.factories import IncidentFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/incidents/bulk-resolve"
NOW = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)


@pytest.fixture
def reviewer(make_user, team):
    return make_user(Role.REVIEWER, teams=[team], username="rita")


def statuses(incidents) -> list[str]:
    by_id = dict(Incident.objects.filter(pk__in=[i.pk for i in incidents]).values_list("pk", "status"))
    return [by_id[i.pk] for i in incidents]


def error_fields(response) -> dict:
    return response.json()["error"]["fields"]


def test_listed_ids_are_resolved_each_with_a_timeline_and_an_audit_entry(client_for, reviewer, own_system):
    incidents = IncidentFactory.create_batch(3, system=own_system, severity=Severity.LOW)
    ids = [str(i.id) for i in incidents]

    response = client_for(reviewer).post(URL, {"ids": ids, "resolution_reason": "False positive", "note": "noise"})

    assert response.status_code == 200, response.json()
    assert response.json() == {"resolved": 3, "closed": 0, "ids": ids}
    assert statuses(incidents) == [IncidentStatus.RESOLVED] * 3
    assert set(Incident.objects.values_list("resolution_reason", flat=True)) == {"False positive"}
    assert IncidentEvent.objects.filter(kind=IncidentEventKind.RESOLVED).count() == 3
    assert AuditLog.objects.filter(action=AuditAction.INCIDENT_RESOLVED, actor="rita").count() == 3


def test_one_already_closed_incident_fails_the_request_naming_it_and_changes_nothing(client_for, reviewer,
                                                                                     own_system):  # fmt: skip
    incidents = IncidentFactory.create_batch(3, system=own_system, severity=Severity.LOW)
    incident_close(incident_id=incidents[1].id, actor=reviewer)
    before_events = IncidentEvent.objects.count()

    response = client_for(reviewer).post(URL, {"ids": [str(i.id) for i in incidents], "resolution_reason": "Fixed"})

    assert response.status_code == 400
    assert set(error_fields(response)) == {"ids.1"}
    assert statuses(incidents) == [IncidentStatus.OPEN, IncidentStatus.CLOSED, IncidentStatus.OPEN]
    assert IncidentEvent.objects.count() == before_events
    assert not AuditLog.objects.filter(action=AuditAction.INCIDENT_RESOLVED).exists()


def test_another_teams_incident_is_named_like_an_unknown_one(client_for, reviewer, own_system, foreign_system):
    mine = IncidentFactory(system=own_system)
    foreign = IncidentFactory(system=foreign_system)

    response = client_for(reviewer).post(URL, {"ids": [str(mine.id), str(foreign.id)], "resolution_reason": "Fixed"})

    assert response.status_code == 400
    assert set(error_fields(response)) == {"ids.1"}
    assert statuses([mine, foreign]) == [IncidentStatus.OPEN, IncidentStatus.OPEN]


def test_a_malformed_id_is_named_by_its_index(client_for, reviewer, own_system):
    incident = IncidentFactory(system=own_system)

    response = client_for(reviewer).post(URL, {"ids": [str(incident.id), "nope"], "resolution_reason": "Fixed"})

    assert response.status_code == 400
    assert "ids.1" in error_fields(response)


def test_more_than_a_thousand_ids_is_a_413_before_any_lookup(client_for, reviewer):
    ids = [str(uuid.uuid4()) for _ in range(MAX_BULK_INCIDENTS + 1)]

    response = client_for(reviewer).post(URL, {"ids": ids, "resolution_reason": "Fixed"})

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    assert "ids" in error_fields(response)


@pytest.mark.parametrize("reason", ["", "Because I said so"])
def test_the_reason_must_be_one_of_the_configured_ones(client_for, reviewer, own_system, reason):
    incident = IncidentFactory(system=own_system)

    response = client_for(reviewer).post(URL, {"ids": [str(incident.id)], "resolution_reason": reason})

    assert response.status_code == 400
    assert "resolution_reason" in error_fields(response)
    assert statuses([incident]) == [IncidentStatus.OPEN]


def test_a_missing_reason_is_a_400_naming_it(client_for, reviewer, own_system):
    incident = IncidentFactory(system=own_system)

    response = client_for(reviewer).post(URL, {"ids": [str(incident.id)]})

    assert response.status_code == 400
    assert "resolution_reason" in error_fields(response)


def test_ids_and_filter_together_are_refused(client_for, reviewer, own_system):
    incident = IncidentFactory(system=own_system)

    response = client_for(reviewer).post(
        URL, {"ids": [str(incident.id)], "filter": {"severity": "low"}, "resolution_reason": "Fixed"}
    )

    assert response.status_code == 400
    assert statuses([incident]) == [IncidentStatus.OPEN]


def test_a_filter_resolves_the_matching_open_incidents_of_your_teams(client_for, reviewer, own_system,
                                                                     foreign_system):  # fmt: skip
    with time_machine.travel(NOW - timedelta(hours=30), tick=False):
        old_low = IncidentFactory.create_batch(2, system=own_system, severity=Severity.LOW)
        old_high = IncidentFactory(system=own_system, severity=Severity.HIGH)
        foreign_low = IncidentFactory(system=foreign_system, severity=Severity.LOW)
    with time_machine.travel(NOW - timedelta(hours=1), tick=False):
        young_low = IncidentFactory(system=own_system, severity=Severity.LOW)

    with time_machine.travel(NOW, tick=False):
        response = client_for(reviewer).post(
            URL,
            {"filter": {"severity": ["low"], "older_than_hours": 24}, "resolution_reason": "Stale, no impact"},
        )

    assert response.status_code == 200, response.json()
    assert response.json()["resolved"] == 2
    assert set(response.json()["ids"]) == {str(i.id) for i in old_low}
    assert statuses([old_high, foreign_low, young_low]) == [IncidentStatus.OPEN] * 3


def test_an_unknown_filter_key_is_named(client_for, reviewer, own_system):
    IncidentFactory(system=own_system)

    response = client_for(reviewer).post(URL, {"filter": {"colour": "red"}, "resolution_reason": "Fixed"})

    assert response.status_code == 400
    assert "filter.colour" in error_fields(response)


def test_close_closes_them_too(client_for, reviewer, own_system):
    incidents = IncidentFactory.create_batch(2, system=own_system, severity=Severity.INFO)

    response = client_for(reviewer).post(
        URL, {"ids": [str(i.id) for i in incidents], "resolution_reason": "Duplicate", "close": True}
    )

    assert response.status_code == 200, response.json()
    assert (response.json()["resolved"], response.json()["closed"]) == (2, 2)
    assert statuses(incidents) == [IncidentStatus.CLOSED] * 2
    assert AuditLog.objects.filter(action=AuditAction.INCIDENT_CLOSED).count() == 2


def test_closing_a_critical_incident_without_its_rca_fails_the_whole_request(client_for, reviewer, own_system):
    low = IncidentFactory(system=own_system, severity=Severity.LOW)
    critical = IncidentFactory(system=own_system, severity=Severity.CRITICAL)

    response = client_for(reviewer).post(
        URL, {"ids": [str(low.id), str(critical.id)], "resolution_reason": "Fixed", "close": True}
    )

    assert response.status_code == 400
    assert set(error_fields(response)) == {"ids.1"}
    assert statuses([low, critical]) == [IncidentStatus.OPEN, IncidentStatus.OPEN]


def test_a_viewer_may_not_bulk_resolve(client_for, viewer, own_system):
    incident = IncidentFactory(system=own_system)

    response = client_for(viewer).post(URL, {"ids": [str(incident.id)], "resolution_reason": "Fixed"})

    assert response.status_code == 403
    assert statuses([incident]) == [IncidentStatus.OPEN]


def test_a_thousand_incidents_are_resolved_in_one_request(client_for, reviewer, own_system):
    built = IncidentFactory.build_batch(MAX_BULK_INCIDENTS, system=own_system, severity=Severity.LOW)
    template = IncidentFactory(system=own_system, severity=Severity.LOW)  # the fields a real incident gets
    for incident in built:
        for field in ("sla_due_at", "resolve_due_at", "next_escalation_at", "escalation_snapshot", "rca_template_id",
                      "escalation_token", "last_activity_at"):  # fmt: skip
            setattr(incident, field, getattr(template, field))
    Incident.objects.bulk_create(built)

    response = client_for(reviewer).post(URL, {"ids": [str(i.id) for i in built], "resolution_reason": "Fixed"})

    assert response.status_code == 200, response.json()
    assert response.json()["resolved"] == MAX_BULK_INCIDENTS
    assert Incident.objects.filter(status=IncidentStatus.RESOLVED).count() == MAX_BULK_INCIDENTS
