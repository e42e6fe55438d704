"""``/api/v1/incidents`` (list and detail) and ``/api/v1/rca-templates``: team scoping, every
documented field, filters, ordering, cursor pages, and template edits (validated and audited)."""

from __future__ import annotations

import string
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from hypothesis import given
from hypothesis import strategies as st

from governance.choices import AuditAction, Role, Severity
from governance.models import AuditLog
from incidents.models import IncidentStatus, IncidentType, RCATemplate
from incidents.services.lifecycle import incident_acknowledge, incident_note, incident_resolve
from incidents.services.templates import RCATemplateInvalid, required_fields_clean
from tests.incidents.factories import FollowUpFactory, IncidentFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/incidents"
TEMPLATES_URL = "/api/v1/rca-templates"
NOW = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
LETTERS = set(string.ascii_letters)
IDENTIFIER = LETTERS | set(string.digits) | {"_"}
LIST_FIELDS = {
    "id",
    "title",
    "system",
    "system_name",
    "team",
    "severity",
    "status",
    "incident_type",
    "fingerprint",
    "opened_at",
    "acknowledged_at",
    "mitigated_at",
    "resolved_at",
    "closed_at",
    "sla_due_at",
    "resolve_due_at",
    "sla_breached",
    "escalation_level",
    "next_escalation_at",
    "assignee",
    "rca_template",
    "rca_completed_at",
    "follow_up_date",
    "resolution_reason",
    "serious",
    "regulatory_basis",
    "regulatory_deadline_at",
    "regulatory_reported_at",
    "source_alert",
    "created_at",
    "updated_at",
}
DETAIL_EXTRA = {
    "description",
    "rca",
    "rca_required_fields",
    "rca_missing_fields",
    "timeline",
    "follow_ups",
    "regulatory_countdown",
}


@pytest.fixture
def reviewer(make_user, team):
    return make_user(Role.REVIEWER, teams=[team], username="rita")


def ids_of(response) -> list[str]:
    assert response.status_code == 200, response.json()
    return [row["id"] for row in response.json()["results"]]


def error_fields(response) -> dict:
    return response.json()["error"]["fields"]


# --- list ---------------------------------------------------------------------------------------------
def test_an_open_incident_is_listed_with_every_documented_field(client_for, reviewer, own_system):
    with time_machine.travel(NOW, tick=False):
        incident = IncidentFactory(system=own_system, severity=Severity.HIGH)
        [row] = client_for(reviewer).get(URL).json()["results"]

    assert set(row) == LIST_FIELDS
    assert row["id"] == str(incident.id)
    assert (row["system"], row["system_name"], row["team"]) == (
        str(own_system.id),
        "fraud-scorer",
        str(own_system.team_id),
    )
    assert (row["status"], row["severity"], row["incident_type"]) == ("open", "high", "data_quality")
    # slo.incident_ack_minutes / incident_resolve_minutes defaults for high: 15 and 240 minutes.
    assert row["sla_due_at"] == "2025-03-10T12:15:00Z"
    assert row["resolve_due_at"] == "2025-03-10T16:00:00Z"
    assert row["sla_breached"] is False
    assert row["rca_template"] == str(RCATemplate.objects.get(incident_type=IncidentType.DATA_QUALITY).id)
    assert (row["escalation_level"], row["serious"], row["assignee"]) == (0, False, None)


def test_a_responder_sees_only_the_incidents_of_their_teams(client_for, reviewer, own_system, foreign_system):
    mine = IncidentFactory(system=own_system)
    IncidentFactory(system=foreign_system)

    assert ids_of(client_for(reviewer).get(URL)) == [str(mine.id)]


def test_an_admin_sees_the_incidents_of_every_team(client_for, admin_user, own_system, foreign_system):
    IncidentFactory(system=own_system)
    IncidentFactory(system=foreign_system)

    assert len(ids_of(client_for(admin_user).get(URL))) == 2


def test_a_viewer_may_read_incidents(client_for, viewer, own_system):
    IncidentFactory(system=own_system)

    assert len(ids_of(client_for(viewer).get(URL))) == 1


def test_an_unauthenticated_caller_gets_401_in_the_envelope(anon_client):
    response = anon_client.get(URL)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


def test_newest_incidents_come_first_by_default(client_for, reviewer, own_system):
    older = IncidentFactory(system=own_system, opened_at=NOW - timedelta(hours=2))
    newer = IncidentFactory(system=own_system, opened_at=NOW - timedelta(hours=1))

    assert ids_of(client_for(reviewer).get(URL)) == [str(newer.id), str(older.id)]
    assert ids_of(client_for(reviewer).get(URL, {"ordering": "opened_at"})) == [str(older.id), str(newer.id)]


def test_ordering_by_sla_due_at_puts_the_most_urgent_first(client_for, reviewer, own_system):
    low = IncidentFactory(system=own_system, severity=Severity.LOW, opened_at=NOW)  # ack due in 4 h
    critical = IncidentFactory(system=own_system, severity=Severity.CRITICAL, opened_at=NOW)  # due in 5 min

    assert ids_of(client_for(reviewer).get(URL, {"ordering": "sla_due_at"})) == [str(critical.id), str(low.id)]


def test_the_list_is_cursor_paginated_without_gaps_or_repeats(client_for, reviewer, own_system):
    incidents = [IncidentFactory(system=own_system, opened_at=NOW - timedelta(minutes=i)) for i in range(5)]
    client = client_for(reviewer)

    seen, url = [], f"{URL}?page_size=2"
    while url:
        page = client.get(url).json()
        seen += [row["id"] for row in page["results"]]
        url = page["next"]

    assert seen == [str(incident.id) for incident in incidents]


def test_listing_costs_the_same_queries_for_one_or_twenty_incidents(client_for, reviewer, own_system):
    client = client_for(reviewer)
    IncidentFactory(system=own_system)
    with CaptureQueriesContext(connection) as one:
        client.get(URL)
    IncidentFactory.create_batch(19, system=own_system)
    with CaptureQueriesContext(connection) as twenty:
        response = client.get(URL)

    assert len(response.json()["results"]) == 20
    assert len(twenty.captured_queries) == len(one.captured_queries)


# --- filters ------------------------------------------------------------------------------------------
def test_status_filters_one_status_and_open_filters_every_unresolved_one(client_for, reviewer, own_system):
    fresh = IncidentFactory(system=own_system)
    acknowledged = IncidentFactory(system=own_system)
    incident_acknowledge(incident_id=acknowledged.id, actor=reviewer)
    resolved = IncidentFactory(system=own_system)
    incident_resolve(incident_id=resolved.id, actor=reviewer)
    client = client_for(reviewer)

    assert ids_of(client.get(URL, {"status": "acknowledged"})) == [str(acknowledged.id)]
    assert set(ids_of(client.get(URL, {"open": "true"}))) == {str(fresh.id), str(acknowledged.id)}
    assert ids_of(client.get(URL, {"open": "false"})) == [str(resolved.id)]


def test_severity_type_serious_and_team_filters_narrow_the_list(client_for, admin_user, own_system, foreign_system):
    critical = IncidentFactory(system=own_system, severity=Severity.CRITICAL, incident_type=IncidentType.SECURITY)
    serious = IncidentFactory(system=own_system, serious=True)
    foreign = IncidentFactory(system=foreign_system)
    client = client_for(admin_user)

    assert ids_of(client.get(URL, {"severity": "critical"})) == [str(critical.id)]
    assert ids_of(client.get(URL, {"incident_type": "security"})) == [str(critical.id)]
    assert ids_of(client.get(URL, {"serious": "true"})) == [str(serious.id)]
    assert ids_of(client.get(URL, {"team": str(foreign_system.team_id)})) == [str(foreign.id)]


def test_the_system_filter_takes_an_id_or_a_name(client_for, reviewer, own_system, team):
    from tests.factories import AISystemFactory

    other = AISystemFactory(name="churn-model", team=team)
    mine = IncidentFactory(system=own_system)
    IncidentFactory(system=other)
    client = client_for(reviewer)

    assert ids_of(client.get(URL, {"system": "fraud-scorer"})) == [str(mine.id)]
    assert ids_of(client.get(URL, {"system": str(own_system.id)})) == [str(mine.id)]


def test_the_assignee_filter_takes_an_id_or_me(client_for, reviewer, lead, own_system):
    mine = IncidentFactory(system=own_system, assignee=reviewer)
    leads = IncidentFactory(system=own_system, assignee=lead)
    IncidentFactory(system=own_system)
    client = client_for(reviewer)

    assert ids_of(client.get(URL, {"assignee": "me"})) == [str(mine.id)]
    assert ids_of(client.get(URL, {"assignee": str(lead.id)})) == [str(leads.id)]


def test_a_malformed_assignee_filter_is_a_400_naming_it(client_for, reviewer):
    response = client_for(reviewer).get(URL, {"assignee": "rita"})

    assert response.status_code == 400
    assert "assignee" in error_fields(response)


def test_an_unknown_status_is_a_400_naming_it(client_for, reviewer):
    response = client_for(reviewer).get(URL, {"status": "snoozed"})

    assert response.status_code == 400
    assert "status" in error_fields(response)


def test_opened_before_and_after_bound_the_opening_time(client_for, reviewer, own_system):
    old = IncidentFactory(system=own_system, opened_at=NOW - timedelta(days=3))
    recent = IncidentFactory(system=own_system, opened_at=NOW - timedelta(hours=1))
    client = client_for(reviewer)
    cut = (NOW - timedelta(days=1)).isoformat()

    assert ids_of(client.get(URL, {"opened_before": cut})) == [str(old.id)]
    assert ids_of(client.get(URL, {"opened_after": cut})) == [str(recent.id)]


def test_sla_breached_marks_and_filters_incidents_past_their_acknowledge_target(client_for, reviewer, own_system):
    with time_machine.travel(NOW, tick=False):
        late = IncidentFactory(system=own_system, severity=Severity.CRITICAL)  # ack due at 12:05
        on_time = IncidentFactory(system=own_system, severity=Severity.LOW)  # ack due at 16:00

    with time_machine.travel(NOW + timedelta(minutes=10), tick=False):
        client = client_for(reviewer)
        breached = ids_of(client.get(URL, {"sla_breached": "true"}))
        fine = ids_of(client.get(URL, {"sla_breached": "false"}))
        flags = {row["id"]: row["sla_breached"] for row in client.get(URL).json()["results"]}

    assert breached == [str(late.id)]
    assert fine == [str(on_time.id)]
    assert flags == {str(late.id): True, str(on_time.id): False}


def test_an_incident_acknowledged_in_time_breaches_once_its_resolve_target_passes(client_for, reviewer, own_system):
    with time_machine.travel(NOW, tick=False):
        incident = IncidentFactory(system=own_system, severity=Severity.CRITICAL)  # resolve due at 13:00
    with time_machine.travel(NOW + timedelta(minutes=2), tick=False):
        incident_acknowledge(incident_id=incident.id, actor=reviewer)

    with time_machine.travel(NOW + timedelta(minutes=59), tick=False):
        before = client_for(reviewer).get(f"{URL}/{incident.id}").json()["sla_breached"]
    with time_machine.travel(NOW + timedelta(minutes=61), tick=False):
        after = client_for(reviewer).get(f"{URL}/{incident.id}").json()["sla_breached"]

    assert (before, after) == (False, True)


# --- detail -------------------------------------------------------------------------------------------
def test_the_detail_adds_rca_timeline_follow_ups_and_the_regulatory_countdown(client_for, reviewer, own_system):
    with time_machine.travel(NOW, tick=False):
        incident = IncidentFactory(system=own_system, description="PSI above 0.3 for 2 h", rca={"impact": "none"})
    with time_machine.travel(NOW + timedelta(minutes=1), tick=False):
        incident_note(incident_id=incident.id, actor=reviewer, message="looking into the feed")
    follow_up = FollowUpFactory(incident=incident, owner=reviewer)

    response = client_for(reviewer).get(f"{URL}/{incident.id}")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == LIST_FIELDS | DETAIL_EXTRA
    assert body["description"] == "PSI above 0.3 for 2 h"
    assert body["rca"] == {"impact": "none"}
    assert body["rca_required_fields"] == ["root_cause", "impact", "affected_data", "corrective_actions"]
    assert body["rca_missing_fields"] == ["root_cause", "affected_data", "corrective_actions"]
    assert [(e["kind"], e["actor"], e["message"]) for e in body["timeline"]] == [
        ("note", "rita", "looking into the feed")
    ]
    assert set(body["timeline"][0]) == {"kind", "at", "actor", "message", "data"}
    assert [(f["id"], f["owner"], f["status"]) for f in body["follow_ups"]] == [
        (str(follow_up.id), str(reviewer.id), "open")
    ]
    assert body["regulatory_countdown"] is None


def test_another_teams_incident_is_404_in_the_envelope(client_for, reviewer, foreign_system):
    incident = IncidentFactory(system=foreign_system)

    response = client_for(reviewer).get(f"{URL}/{incident.id}")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_a_malformed_incident_id_is_404(client_for, reviewer):
    assert client_for(reviewer).get(f"{URL}/not-a-uuid").status_code == 404


# --- RCA templates ------------------------------------------------------------------------------------
def test_every_incident_type_has_a_template_listed_for_every_role(client_for, viewer):
    response = client_for(viewer).get(TEMPLATES_URL, {"page_size": 50})

    assert response.status_code == 200
    rows = response.json()["results"]
    assert sorted(row["incident_type"] for row in rows) == sorted(IncidentType.values)
    assert set(rows[0]) == {"id", "incident_type", "name", "template_content", "required_fields", "created_at",
                            "updated_at"}  # fmt: skip


def test_a_template_is_found_by_id_or_by_incident_type(client_for, viewer):
    template = RCATemplate.objects.get(incident_type=IncidentType.FAIRNESS)
    client = client_for(viewer)

    by_id = client.get(f"{TEMPLATES_URL}/{template.id}").json()
    by_type = client.get(f"{TEMPLATES_URL}/fairness").json()

    assert by_id == by_type
    assert by_id["required_fields"] == ["root_cause", "impact", "affected_groups", "corrective_actions"]


def test_a_lead_changes_required_fields_and_the_change_is_audited(client_for, lead):
    template = RCATemplate.objects.get(incident_type=IncidentType.SECURITY)

    response = client_for(lead).patch(
        f"{TEMPLATES_URL}/{template.id}", {"required_fields": ["root_cause", "attack_vector"]}
    )

    assert response.status_code == 200, response.json()
    assert response.json()["required_fields"] == ["root_cause", "attack_vector"]
    template.refresh_from_db()
    assert template.required_fields == ["root_cause", "attack_vector"]
    entry = AuditLog.objects.get(action=AuditAction.RCA_TEMPLATE_UPDATED)
    assert entry.actor == "lena"
    assert entry.data["required_fields"] == {
        "from": ["root_cause", "impact", "attack_vector", "corrective_actions"],
        "to": ["root_cause", "attack_vector"],
    }


def test_a_changed_template_decides_what_closing_requires(client_for, lead, own_system):
    incident = IncidentFactory(system=own_system, incident_type=IncidentType.DATA_QUALITY)
    client = client_for(lead)
    client.patch(f"{TEMPLATES_URL}/data_quality", {"required_fields": ["root_cause"]})

    body = client.get(f"{URL}/{incident.id}").json()

    assert body["rca_missing_fields"] == ["root_cause"]


def test_sending_the_current_values_changes_and_audits_nothing(client_for, lead):
    template = RCATemplate.objects.get(incident_type=IncidentType.OTHER)

    response = client_for(lead).patch(f"{TEMPLATES_URL}/{template.id}", {"name": template.name})

    assert response.status_code == 200
    assert not AuditLog.objects.filter(action=AuditAction.RCA_TEMPLATE_UPDATED).exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"required_fields": []}, "required_fields"),
        ({"required_fields": "root_cause"}, "required_fields"),
        ({"required_fields": ["root_cause", "root cause"]}, "required_fields.1"),
        ({"required_fields": ["impact", "impact"]}, "required_fields.1"),
        ({"name": "  "}, "name"),
        ({"template_content": ""}, "template_content"),
        ({"incident_type": "security"}, "incident_type"),
    ],
)
def test_an_invalid_template_change_is_a_400_naming_the_field_and_writes_nothing(client_for, lead, body, field):
    template = RCATemplate.objects.get(incident_type=IncidentType.OTHER)
    before = (template.name, template.template_content, template.required_fields)

    response = client_for(lead).patch(f"{TEMPLATES_URL}/{template.id}", body)

    assert response.status_code == 400
    assert field in error_fields(response)
    template.refresh_from_db()
    assert (template.name, template.template_content, template.required_fields) == before
    assert not AuditLog.objects.filter(action=AuditAction.RCA_TEMPLATE_UPDATED).exists()


@pytest.mark.parametrize("role", [Role.REVIEWER, Role.SECURITY, Role.VIEWER])
def test_only_admins_and_leads_edit_templates(client_for, make_user, team, role):
    user = make_user(role, teams=[team])

    response = client_for(user).patch(f"{TEMPLATES_URL}/other", {"name": "Renamed"})

    assert response.status_code == 403
    assert RCATemplate.objects.get(incident_type=IncidentType.OTHER).name == "General incident"


def test_templates_cannot_be_created_or_deleted_through_the_api(client_for, admin_user):
    client = client_for(admin_user)

    assert client.post(TEMPLATES_URL, {"incident_type": "other"}).status_code == 405
    assert client.delete(f"{TEMPLATES_URL}/other").status_code == 405


@given(st.lists(st.from_regex(r"[a-z][a-z0-9_]{0,20}", fullmatch=True), min_size=1, max_size=10, unique=True))
def test_distinct_field_names_are_accepted_as_given(names):
    assert required_fields_clean(names) == names


@given(st.lists(st.text(alphabet=st.sampled_from("ab_9Z é-\n"), min_size=1, max_size=70), min_size=1, max_size=10))
def test_any_field_name_outside_the_rca_alphabet_is_refused(names):
    valid = all(name[0] in LETTERS and set(name) <= IDENTIFIER and len(name) <= 64 for name in names)
    distinct = len(set(names)) == len(names)
    if valid and distinct:
        assert required_fields_clean(names) == names
    else:
        with pytest.raises(RCATemplateInvalid):
            required_fields_clean(names)


def test_closed_incidents_keep_their_status_in_the_list(client_for, reviewer, own_system):
    incident = IncidentFactory(system=own_system, severity=Severity.LOW)
    incident_resolve(incident_id=incident.id, actor=reviewer)

    [row] = client_for(reviewer).get(URL).json()["results"]

    assert row["status"] == IncidentStatus.RESOLVED
    assert row["resolved_at"] is not None
