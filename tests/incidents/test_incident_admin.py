"""The incidents admin: the changelist (columns, filters, scoping), the acknowledge and bulk-resolve
actions with their confirmation page, the change page (timeline, RCA section, related incidents,
lifecycle buttons, assignee), and the RCA template, follow-up, notification and link pages."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.contrib.messages import get_messages
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st

from governance.choices import AuditAction, Role, Severity
from governance.models import AuditLog
from incidents.admin import field_names_from_text
from incidents.models import (
    FollowUpStatus,
    Incident,
    IncidentEvent,
    IncidentEventKind,
    IncidentLink,
    IncidentStatus,
    IncidentType,
    LinkRelation,
    LinkTarget,
    Notification,
    NotificationChannel,
    RCATemplate,
    RegulatoryBasis,
)
from incidents.services import lifecycle
from tests.incidents.factories import FollowUpFactory, IncidentFactory

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:incidents_incident_changelist"
COMPLETE_DATA_QUALITY_RCA = {
    "root_cause": "Upstream schema change.",
    "impact": "One day of scores.",
    "affected_data": "Feature table of 2 May.",
    "corrective_actions": "Contract check in CI.",
}


@pytest.fixture
def as_lead(client, lead):
    client.force_login(lead)
    return client


@pytest.fixture
def as_admin(client, admin_user):
    client.force_login(admin_user)
    return client


def changelist(query: str = "") -> str:
    return reverse(CHANGELIST) + query


def change_url(incident) -> str:
    return reverse("admin:incidents_incident_change", args=[incident.pk])


def transition_url(incident, name: str) -> str:
    return reverse("admin:incidents_incident_transition", args=[incident.pk, name])


def run_action(client, action: str, incidents, **data):
    selected = [str(incident.pk) for incident in incidents]
    return client.post(changelist(), {"action": action, "_selected_action": selected, **data})


def confirm_bulk_resolve(client, incidents, **data):
    return run_action(client, "bulk_resolve_selected", incidents, post="yes", **data)


def message_texts(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def statuses(incidents) -> set[str]:
    return set(Incident.objects.filter(pk__in=[i.pk for i in incidents]).values_list("status", flat=True))


def rows(response) -> list[Incident]:
    return list(response.context["cl"].result_list)


# --- The changelist ------------------------------------------------------------------------------


def test_the_changelist_shows_sla_escalation_regulatory_and_rca_columns(as_lead, own_system):
    IncidentFactory(system=own_system, title="fresh one")
    IncidentFactory(system=own_system, title="late one", opened_at=timezone.now() - timedelta(hours=2))

    response = as_lead.get(changelist())

    content = response.content.decode()
    assert response.status_code == 200
    for column in ("severity_badge", "sla", "escalation_level", "assignee", "regulatory", "rca_done", "opened_at"):
        assert f"column-{column}" in content
    assert content.count('class="sla-overdue"') == 1  # a high incident is acknowledged within 15 minutes
    assert "ack by" in content


def test_the_changelist_lists_the_newest_incident_first(as_lead, own_system):
    now = timezone.now()
    old = IncidentFactory(system=own_system, opened_at=now - timedelta(days=3))
    new = IncidentFactory(system=own_system, opened_at=now - timedelta(minutes=5))
    middle = IncidentFactory(system=own_system, opened_at=now - timedelta(hours=5))

    assert rows(as_lead.get(changelist())) == [new, middle, old]


def test_an_acknowledged_incident_runs_against_its_resolve_target(as_lead, lead, own_system):
    incident = IncidentFactory(system=own_system)
    lifecycle.incident_acknowledge(incident_id=incident.pk, actor=lead)

    content = as_lead.get(changelist()).content.decode()

    assert "resolve by" in content and "ack by" not in content


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("?sla_breached=yes", {"breached", "ancient"}),
        ("?sla_breached=no", {"fresh", "low", "resolved", "serious"}),
        ("?age=1d", {"breached", "ancient"}),
        ("?age=7d", {"ancient"}),
        ("?age=30d", {"ancient"}),
        ("?status__exact=resolved", {"resolved"}),
        ("?severity__exact=low", {"low"}),
        ("?incident_type__exact=security", {"serious"}),
        ("?serious__exact=1", {"serious"}),
        ("?q=ancient", {"ancient"}),
    ],
)
def test_the_list_filters_narrow_the_incidents(as_lead, lead, own_system, query, expected):
    now = timezone.now()
    IncidentFactory(system=own_system, title="fresh")
    IncidentFactory(system=own_system, title="breached", opened_at=now - timedelta(days=2))
    IncidentFactory(system=own_system, title="ancient", opened_at=now - timedelta(days=40))
    IncidentFactory(system=own_system, title="low", severity=Severity.LOW)
    IncidentFactory(
        system=own_system, title="serious", incident_type=IncidentType.SECURITY, serious=True,
        regulatory_basis=RegulatoryBasis.STANDARD, regulatory_deadline_at=now + timedelta(days=15),
    )  # fmt: skip
    resolved = IncidentFactory(system=own_system, title="resolved", opened_at=now - timedelta(hours=20))
    lifecycle.incident_resolve(incident_id=resolved.pk, actor=lead)

    assert {row.title for row in rows(as_lead.get(changelist(query)))} == expected


def test_search_finds_an_incident_by_the_start_of_its_fingerprint_and_by_system_name(as_lead, own_system):
    incident = IncidentFactory(system=own_system, fingerprint="ab" * 32)
    IncidentFactory(system=own_system)

    assert rows(as_lead.get(changelist("?q=abab"))) == [incident]
    assert len(rows(as_lead.get(changelist(f"?q={own_system.name}")))) == 2


def test_the_regulatory_column_counts_down_to_the_art_73_deadline(as_lead, own_system):
    now = timezone.now()
    IncidentFactory(
        system=own_system, serious=True, regulatory_basis=RegulatoryBasis.WIDESPREAD,
        regulatory_deadline_at=now + timedelta(days=1, hours=2),
    )  # fmt: skip
    IncidentFactory(
        system=own_system, serious=True, regulatory_basis=RegulatoryBasis.STANDARD,
        regulatory_deadline_at=now - timedelta(hours=3),
    )  # fmt: skip
    IncidentFactory(
        system=own_system, serious=True, regulatory_basis=RegulatoryBasis.STANDARD,
        regulatory_deadline_at=now + timedelta(days=3), regulatory_reported_at=now - timedelta(hours=1),
    )  # fmt: skip

    content = as_lead.get(changelist()).content.decode().replace("\xa0", " ")

    assert 'class="regulatory-countdown">report in 1 day, 1 hour' in content
    assert 'class="regulatory-overdue"' in content and "report overdue by 3 hours" in content
    assert 'class="regulatory-reported">reported' in content


def test_the_rca_column_marks_serious_incidents_without_a_complete_rca(as_lead, own_system):
    done = IncidentFactory(system=own_system, severity=Severity.CRITICAL, rca_completed_at=timezone.now())
    missing = IncidentFactory(system=own_system, severity=Severity.HIGH)
    low = IncidentFactory(system=own_system, severity=Severity.LOW)
    admin = as_lead.get(changelist()).context["cl"].model_admin

    assert [admin.rca_done(done), admin.rca_done(missing), admin.rca_done(low)] == [True, False, None]


def test_a_lead_sees_only_their_teams_incidents(as_lead, own_system, foreign_system):
    mine = IncidentFactory(system=own_system)
    theirs = IncidentFactory(system=foreign_system)

    assert rows(as_lead.get(changelist())) == [mine]
    assert as_lead.get(change_url(theirs)).status_code == 302  # "does not exist": redirected to the index
    specs = {getattr(spec, "field_path", None): spec for spec in as_lead.get(changelist()).context["cl"].filter_specs}
    assert [title for _, title in specs["system"].lookup_choices] == [own_system.name]
    assert "team" not in specs  # one team of their own: nothing to choose


def test_security_sees_the_incidents_of_their_team_and_may_act(client, make_user, team, own_system, foreign_system):
    security = make_user(Role.SECURITY, teams=[team], username="sam")
    client.force_login(security)
    mine = IncidentFactory(system=own_system)
    IncidentFactory(system=foreign_system)

    response = client.get(changelist())
    client.post(transition_url(mine, "acknowledge"))

    assert rows(response) == [mine]
    assert "bulk_resolve_selected" in dict(response.context["action_form"].fields["action"].choices)
    assert Incident.objects.get(pk=mine.pk).status == IncidentStatus.ACKNOWLEDGED


def test_incidents_are_never_added_or_deleted_by_hand(as_admin, own_system):
    incident = IncidentFactory(system=own_system)

    assert as_admin.get(reverse("admin:incidents_incident_add")).status_code == 403
    assert as_admin.get(reverse("admin:incidents_incident_delete", args=[incident.pk])).status_code == 403
    assert "delete_selected" not in dict(as_admin.get(changelist()).context["action_form"].fields["action"].choices)


# --- Actions -------------------------------------------------------------------------------------


def test_acknowledge_selected_acknowledges_the_open_ones_and_skips_the_rest(as_lead, lead, own_system):
    open_ones = IncidentFactory.create_batch(2, system=own_system)
    resolved = IncidentFactory(system=own_system)
    lifecycle.incident_resolve(incident_id=resolved.pk, actor=lead)

    response = run_action(as_lead, "acknowledge_selected", [*open_ones, resolved])

    assert statuses(open_ones) == {IncidentStatus.ACKNOWLEDGED}
    assert Incident.objects.get(pk=resolved.pk).status == IncidentStatus.RESOLVED
    assert message_texts(response) == ["Acknowledged 2 incident(s); 1 not open, skipped."]
    assert AuditLog.objects.filter(action=AuditAction.INCIDENT_ACKNOWLEDGED, actor="lena").count() == 2


def test_the_first_post_of_bulk_resolve_lists_the_incidents_with_their_rca_template_and_changes_nothing(
    as_lead, own_system
):
    linked = IncidentFactory(system=own_system, title="has its template", incident_type=IncidentType.FAIRNESS)
    unlinked = IncidentFactory(system=own_system, title="template missing", incident_type=IncidentType.SECURITY)
    Incident.objects.filter(pk=unlinked.pk).update(rca_template=None)

    response = run_action(as_lead, "bulk_resolve_selected", [linked, unlinked])

    assert response.status_code == 200
    assert response.templates[0].name == "admin/incidents/incident/bulk_resolve.html"
    content = response.content.decode()
    assert "has its template" in content and "template missing" in content
    assert RCATemplate.objects.get(incident_type=IncidentType.FAIRNESS).name in content
    assert f"{RCATemplate.objects.get(incident_type=IncidentType.SECURITY).name} <em>(linked now)</em>" in content
    for reason in ("Fixed", "False positive", "Stale, no impact"):
        assert f'<option value="{reason}">' in content
    assert 'name="post" value="yes"' in content
    assert statuses([linked, unlinked]) == {IncidentStatus.OPEN}


def test_confirming_bulk_resolve_resolves_all_with_a_timeline_and_an_audit_entry_each(as_lead, own_system):
    incidents = IncidentFactory.create_batch(3, system=own_system, severity=Severity.MEDIUM)
    untouched = IncidentFactory(system=own_system)

    response = confirm_bulk_resolve(
        as_lead, incidents, resolution_reason="False positive", note="Seasonal drift, confirmed."
    )

    assert response.status_code == 302
    assert statuses(incidents) == {IncidentStatus.RESOLVED}
    assert set(
        Incident.objects.filter(pk__in=[i.pk for i in incidents]).values_list("resolution_reason", flat=True)
    ) == {"False positive"}
    assert Incident.objects.get(pk=untouched.pk).status == IncidentStatus.OPEN
    events = IncidentEvent.objects.filter(kind=IncidentEventKind.RESOLVED)
    assert sorted(str(e.incident_id) for e in events) == sorted(str(i.pk) for i in incidents)
    assert {e.actor for e in events} == {"lena"}
    audits = AuditLog.objects.filter(action=AuditAction.INCIDENT_RESOLVED)
    assert sorted(a.object_id for a in audits) == sorted(str(i.pk) for i in incidents)
    assert message_texts(response) == ["Resolved 3 incident(s): False positive."]


def test_bulk_resolve_can_close_them_too(as_lead, own_system):
    incidents = IncidentFactory.create_batch(2, system=own_system, severity=Severity.LOW)

    response = confirm_bulk_resolve(as_lead, incidents, resolution_reason="Duplicate", close="on")

    assert statuses(incidents) == {IncidentStatus.CLOSED}
    assert AuditLog.objects.filter(action=AuditAction.INCIDENT_CLOSED).count() == 2
    assert message_texts(response) == ["Resolved 2 and closed 2 incident(s): Duplicate."]


def test_one_closed_incident_in_the_selection_is_named_and_nothing_changes(as_lead, lead, own_system):
    open_ones = IncidentFactory.create_batch(2, system=own_system, severity=Severity.LOW)
    closed = IncidentFactory(system=own_system, severity=Severity.LOW, title="closed already")
    lifecycle.incident_close(incident_id=closed.pk, actor=lead)
    audits_before = AuditLog.objects.count()

    response = confirm_bulk_resolve(as_lead, [*open_ones, closed], resolution_reason="Fixed")

    texts = message_texts(response)
    assert any(text.startswith("closed already:") and "already closed" in text for text in texts)
    assert texts[-1] == "Nothing was resolved: fix the selection and try again."
    assert statuses(open_ones) == {IncidentStatus.OPEN}
    assert not IncidentEvent.objects.filter(incident__in=open_ones, kind=IncidentEventKind.RESOLVED).exists()
    assert AuditLog.objects.count() == audits_before


def test_a_missing_reason_rerenders_the_page_with_an_error_and_resolves_nothing(as_lead, own_system):
    incidents = IncidentFactory.create_batch(2, system=own_system)

    response = confirm_bulk_resolve(as_lead, incidents, resolution_reason="")

    assert response.status_code == 200
    assert "Pick the resolution reason these incidents share." in response.content.decode()
    assert statuses(incidents) == {IncidentStatus.OPEN}
    assert not AuditLog.objects.filter(action=AuditAction.INCIDENT_RESOLVED).exists()


def test_a_reason_outside_the_configured_list_is_refused(as_lead, own_system):
    incident = IncidentFactory(system=own_system)

    response = confirm_bulk_resolve(as_lead, [incident], resolution_reason="Because I said so")

    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    assert statuses([incident]) == {IncidentStatus.OPEN}


def test_closing_in_bulk_refuses_a_high_incident_without_its_rca(as_lead, own_system):
    low = IncidentFactory(system=own_system, severity=Severity.LOW)
    high = IncidentFactory(system=own_system, severity=Severity.HIGH, title="serious, unanalysed")

    response = confirm_bulk_resolve(as_lead, [low, high], resolution_reason="Fixed", close="on")

    texts = message_texts(response)
    assert any(text.startswith("serious, unanalysed:") and "root_cause" in text for text in texts)
    assert statuses([low, high]) == {IncidentStatus.OPEN}


def test_a_viewer_has_no_incident_actions_and_cannot_post_one(client, viewer, own_system):
    client.force_login(viewer)
    incident = IncidentFactory(system=own_system)

    page = client.get(changelist())
    confirm_bulk_resolve(client, [incident], resolution_reason="Fixed")

    assert page.status_code == 200
    assert page.context["action_form"] is None or "bulk_resolve_selected" not in dict(
        page.context["action_form"].fields["action"].choices
    )
    assert statuses([incident]) == {IncidentStatus.OPEN}
    assert client.post(transition_url(incident, "acknowledge")).status_code == 403


def test_another_teams_incident_cannot_be_slipped_into_a_bulk_resolution(as_lead, own_system, foreign_system):
    theirs = IncidentFactory(system=foreign_system)

    confirm_bulk_resolve(as_lead, [theirs], resolution_reason="Fixed")

    assert statuses([theirs]) == {IncidentStatus.OPEN}


# --- The change page -----------------------------------------------------------------------------


def test_the_change_page_shows_timeline_follow_ups_links_related_incidents_and_allowed_buttons(as_lead, own_system):
    earlier = IncidentFactory(system=own_system, title="the same thing last month")
    incident = IncidentFactory(system=own_system, title="drift again")
    IncidentEvent.objects.create(
        incident=incident, kind=IncidentEventKind.OPENED, at=incident.opened_at, actor="oversight", message="Opened."
    )
    FollowUpFactory(incident=incident, title="Add a freshness check")
    IncidentLink.objects.create(
        incident=incident, target_type=LinkTarget.INCIDENT, target_id=str(earlier.pk),
        relation=LinkRelation.SAME_FINGERPRINT, label="recurrence of the same thing last month",
    )  # fmt: skip

    response = as_lead.get(change_url(incident))

    content = response.content.decode()
    assert response.status_code == 200
    assert "Opened." in content  # timeline
    assert "Add a freshness check" in content  # follow-ups
    assert "recurrence of the same thing last month" in content  # links
    assert f'data-related="{earlier.pk}"' in content  # related incidents
    assert [t["name"] for t in response.context["transitions"]] == ["acknowledge", "mitigate", "resolve", "close"]
    assert 'id="incident-reopen"' not in content
    assert 'id="rca-form"' in content
    assert "Missing: root_cause, impact, affected_data, corrective_actions" in content


def test_a_viewer_sees_the_incident_without_buttons_or_rca_form(client, viewer, own_system):
    client.force_login(viewer)
    incident = IncidentFactory(system=own_system)

    content = client.get(change_url(incident)).content.decode()

    assert 'class="incident-transition"' not in content
    assert 'id="rca-form"' not in content


def test_the_acknowledge_button_acknowledges_and_records_who(as_lead, lead, own_system):
    incident = IncidentFactory(system=own_system)

    response = as_lead.post(transition_url(incident, "acknowledge"))

    incident.refresh_from_db()
    assert response.status_code == 302 and response.url == change_url(incident)
    assert incident.status == IncidentStatus.ACKNOWLEDGED
    assert incident.assignee == lead
    assert message_texts(response) == ["Incident acknowledged."]
    assert AuditLog.objects.filter(action=AuditAction.INCIDENT_ACKNOWLEDGED, object_id=str(incident.pk)).exists()


def test_lifecycle_buttons_only_accept_post(as_lead, own_system):
    incident = IncidentFactory(system=own_system)

    assert as_lead.get(transition_url(incident, "acknowledge")).status_code == 405
    assert as_lead.get(reverse("admin:incidents_incident_rca", args=[incident.pk])).status_code == 405
    assert Incident.objects.get(pk=incident.pk).status == IncidentStatus.OPEN


def test_an_illegal_move_is_reported_and_changes_nothing(as_lead, lead, own_system):
    incident = IncidentFactory(system=own_system)
    lifecycle.incident_resolve(incident_id=incident.pk, actor=lead)

    response = as_lead.post(transition_url(incident, "mitigate"))

    assert message_texts(response) == [
        f"cannot move to mitigated incident {incident.pk}: it is resolved. Nothing changed."
    ]
    assert Incident.objects.get(pk=incident.pk).status == IncidentStatus.RESOLVED


def test_resolve_asks_for_a_reason_first_then_resolves_with_it(as_lead, own_system):
    incident = IncidentFactory(system=own_system)
    follow_up = timezone.localdate() + timedelta(days=14)

    page = as_lead.post(transition_url(incident, "resolve"))
    assert page.status_code == 200 and 'name="resolution_reason"' in page.content.decode()
    assert Incident.objects.get(pk=incident.pk).status == IncidentStatus.OPEN

    as_lead.post(
        transition_url(incident, "resolve"),
        {"post": "yes", "resolution_reason": "Fixed", "note": "Rolled back.", "follow_up_date": follow_up.isoformat()},
    )

    incident.refresh_from_db()
    assert (incident.status, incident.resolution_reason, incident.follow_up_date) == (
        IncidentStatus.RESOLVED, "Fixed", follow_up,
    )  # fmt: skip
    assert incident.timeline.get(kind=IncidentEventKind.RESOLVED).message == "Rolled back."


def test_closing_a_high_incident_without_its_rca_names_each_missing_field(as_lead, own_system):
    incident = IncidentFactory(system=own_system, severity=Severity.HIGH, rca={"root_cause": "Known."})

    page = as_lead.post(transition_url(incident, "close"))
    response = as_lead.post(transition_url(incident, "close"), {"post": "yes", "reason": "done"})

    assert "Its RCA lacks impact, affected_data, corrective_actions" in page.content.decode()
    texts = message_texts(response)
    assert texts[:3] == [
        "rca.impact: required to close a high incident",
        "rca.affected_data: required to close a high incident",
        "rca.corrective_actions: required to close a high incident",
    ]
    assert texts[-1] == "Nothing changed."
    assert Incident.objects.get(pk=incident.pk).status == IncidentStatus.OPEN


def test_reopen_needs_a_reason_and_keeps_the_timeline(as_lead, lead, own_system):
    incident = IncidentFactory(system=own_system, severity=Severity.MEDIUM)
    lifecycle.incident_resolve(incident_id=incident.pk, actor=lead)

    refused = as_lead.post(transition_url(incident, "reopen"), {"post": "yes", "reason": "  "})
    as_lead.post(transition_url(incident, "reopen"), {"post": "yes", "reason": "It fired again."})

    assert "Say why the incident is reopened." in refused.content.decode()
    incident.refresh_from_db()
    assert (incident.status, incident.reopened_count) == (IncidentStatus.OPEN, 1)
    assert list(incident.timeline.order_by("at").values_list("kind", flat=True)) == [
        IncidentEventKind.RESOLVED,
        IncidentEventKind.REOPENED,
    ]


def test_another_teams_incident_has_no_buttons_to_press(as_lead, foreign_system):
    theirs = IncidentFactory(system=foreign_system)

    assert as_lead.post(transition_url(theirs, "acknowledge")).status_code == 404
    assert (
        as_lead.post(reverse("admin:incidents_incident_rca", args=[theirs.pk]), {"root_cause": "x"}).status_code == 404
    )
    assert Incident.objects.get(pk=theirs.pk).status == IncidentStatus.OPEN


def test_the_rca_section_saves_changed_fields_and_completes_the_rca(as_lead, own_system):
    incident = IncidentFactory(system=own_system, severity=Severity.HIGH)
    url = reverse("admin:incidents_incident_rca", args=[incident.pk])

    partial = as_lead.post(url, {"root_cause": "Upstream schema change.", "impact": ""})
    incident.refresh_from_db()
    assert incident.rca == {"root_cause": "Upstream schema change."}
    assert incident.rca_completed_at is None
    assert message_texts(partial) == ["RCA saved; still missing: impact, affected_data, corrective_actions."]

    complete = as_lead.post(url, COMPLETE_DATA_QUALITY_RCA)
    incident.refresh_from_db()
    assert incident.rca == COMPLETE_DATA_QUALITY_RCA
    assert incident.rca_completed_at is not None
    assert message_texts(complete)[-1] == "RCA saved: complete."
    audits = AuditLog.objects.filter(action=AuditAction.INCIDENT_RCA_UPDATED, object_id=str(incident.pk))
    assert [a.data["fields"] for a in audits.order_by("seq")] == [
        ["root_cause"],
        ["affected_data", "corrective_actions", "impact"],
    ]
    assert incident.timeline.filter(kind=IncidentEventKind.RCA_UPDATED).count() == 2


def test_saving_an_unchanged_rca_writes_nothing(as_lead, own_system):
    incident = IncidentFactory(system=own_system, rca={"root_cause": "Known."})

    response = as_lead.post(reverse("admin:incidents_incident_rca", args=[incident.pk]), {"root_cause": "Known."})

    assert message_texts(response) == ["No RCA field changed."]
    assert not AuditLog.objects.filter(action=AuditAction.INCIDENT_RCA_UPDATED).exists()


def test_changing_the_assignee_goes_through_the_assign_service(as_lead, make_user, team, own_system):
    responder = make_user(Role.SECURITY, teams=[team], username="sam")
    make_user(Role.SECURITY, username="outsider")  # not on the team: not offered
    incident = IncidentFactory(system=own_system)

    page = as_lead.get(change_url(incident))
    as_lead.post(change_url(incident), {**inline_management_data(), "assignee": str(responder.pk)})

    assert {user.username for user in page.context["adminform"].form.fields["assignee"].queryset} == {"lena", "sam"}
    incident.refresh_from_db()
    assert incident.assignee == responder
    assert incident.timeline.get(kind=IncidentEventKind.ASSIGNED).message == "Assigned to sam."
    assert AuditLog.objects.get(action=AuditAction.INCIDENT_ASSIGNED).data == {"assignee": "sam"}


def inline_management_data() -> dict[str, str]:
    data = {}
    for prefix in ("timeline", "follow_ups", "links"):
        data |= {f"{prefix}-TOTAL_FORMS": "0", f"{prefix}-INITIAL_FORMS": "0", f"{prefix}-MAX_NUM_FORMS": "0"}
    return data


# --- RCA templates -------------------------------------------------------------------------------


def test_a_lead_edits_an_rca_template_through_the_audited_service(as_lead):
    template = RCATemplate.objects.get(incident_type=IncidentType.FAIRNESS)
    url = reverse("admin:incidents_rcatemplate_change", args=[template.pk])

    page = as_lead.get(url)
    response = as_lead.post(
        url,
        {
            "name": template.name,
            "template_content": template.template_content,
            "required_fields": "root_cause\nimpact\naffected_groups\ncorrective_actions\nmetric_gap",
        },
    )

    assert "root_cause\nimpact\naffected_groups\ncorrective_actions" in page.content.decode()
    assert response.status_code == 302
    template.refresh_from_db()
    assert template.required_fields == ["root_cause", "impact", "affected_groups", "corrective_actions", "metric_gap"]
    entry = AuditLog.objects.get(action=AuditAction.RCA_TEMPLATE_UPDATED)
    assert entry.actor == "lena"
    assert entry.data["required_fields"]["to"][-1] == "metric_gap"


def test_an_invalid_required_field_name_is_refused_on_the_form(as_lead):
    template = RCATemplate.objects.get(incident_type=IncidentType.FAIRNESS)

    response = as_lead.post(
        reverse("admin:incidents_rcatemplate_change", args=[template.pk]),
        {"name": template.name, "template_content": template.template_content, "required_fields": "root cause!"},
    )

    assert response.status_code == 200
    assert "required_fields" in response.context["adminform"].form.errors
    assert 'id="id_required_fields_error"' in response.content.decode()
    assert not AuditLog.objects.filter(action=AuditAction.RCA_TEMPLATE_UPDATED).exists()


def test_security_may_read_but_not_edit_rca_templates(client, make_user, team):
    client.force_login(make_user(Role.SECURITY, teams=[team]))
    template = RCATemplate.objects.get(incident_type=IncidentType.SECURITY)
    url = reverse("admin:incidents_rcatemplate_change", args=[template.pk])

    page = client.get(url)
    client.post(url, {"name": "Renamed", "template_content": "x", "required_fields": "root_cause"})

    assert page.status_code == 200 and 'name="required_fields"' not in page.content.decode()
    assert RCATemplate.objects.get(pk=template.pk).name != "Renamed"


# --- Follow-ups, notifications, links ------------------------------------------------------------


def test_the_follow_up_due_filter_and_overdue_marker(as_lead, own_system):
    today = timezone.localdate()
    incident = IncidentFactory(system=own_system)
    overdue = FollowUpFactory(incident=incident, title="late", due_date=today - timedelta(days=2))
    FollowUpFactory(incident=incident, title="today", due_date=today)
    FollowUpFactory(incident=incident, title="later", due_date=today + timedelta(days=30))
    url = reverse("admin:incidents_followup_changelist")

    response = as_lead.get(url + "?due=overdue")

    assert list(response.context["cl"].result_list) == [overdue]
    assert response.content.decode().count('class="follow-up-overdue"') == 1
    assert [f.title for f in as_lead.get(url + "?due=today").context["cl"].result_list] == ["today"]
    assert [f.title for f in as_lead.get(url + "?due=later").context["cl"].result_list] == ["later"]


def test_mark_done_completes_the_open_follow_ups_through_the_housekeeping_service(as_lead, own_system):
    incident = IncidentFactory(system=own_system)
    follow_ups = FollowUpFactory.create_batch(2, incident=incident)

    response = as_lead.post(
        reverse("admin:incidents_followup_changelist"),
        {"action": "mark_done", "_selected_action": [str(f.pk) for f in follow_ups]},
    )

    assert message_texts(response) == ["Marked 2 follow-up(s) done."]
    assert {f.status for f in incident.follow_ups.all()} == {FollowUpStatus.DONE}
    assert AuditLog.objects.filter(action=AuditAction.FOLLOW_UP_COMPLETED).count() == 2


def test_notifications_and_links_are_read_only_and_scoped(as_lead, own_system, foreign_system):
    mine, theirs = IncidentFactory(system=own_system), IncidentFactory(system=foreign_system)
    for incident in (mine, theirs):
        Notification.objects.create(
            incident=incident, channel=NotificationChannel.EMAIL, target="oncall@example.com", kind="escalation",
            subject=f"Escalated: {incident.title}", dedupe_key=f"escalation:{incident.pk}:1",
        )  # fmt: skip
        IncidentLink.objects.create(
            incident=incident, target_type=LinkTarget.SYSTEM, target_id=str(incident.system_id),
            relation=LinkRelation.AFFECTS, label=f"affects {incident.system.name}",
        )  # fmt: skip

    notifications = as_lead.get(reverse("admin:incidents_notification_changelist"))
    links = as_lead.get(reverse("admin:incidents_incidentlink_changelist"))

    assert [n.incident_id for n in notifications.context["cl"].result_list] == [mine.pk]
    assert [link.incident_id for link in links.context["cl"].result_list] == [mine.pk]
    notification = Notification.objects.get(incident=mine)
    page = as_lead.get(reverse("admin:incidents_notification_change", args=[notification.pk]))
    assert page.status_code == 200 and 'name="target"' not in page.content.decode()


@time_machine.travel("2026-03-02 10:00:00+00:00", tick=False)
def test_the_sla_breached_filter_follows_the_clock(as_lead, own_system):
    IncidentFactory(system=own_system, title="critical", severity=Severity.CRITICAL)  # ack within 5 minutes

    assert rows(as_lead.get(changelist("?sla_breached=yes"))) == []
    with time_machine.travel("2026-03-02 10:06:00+00:00", tick=False):
        assert [i.title for i in rows(as_lead.get(changelist("?sla_breached=yes")))] == ["critical"]


@given(
    names=st.lists(st.from_regex(r"[a-z][a-z0-9_]{0,20}", fullmatch=True), min_size=1, max_size=8, unique=True),
    separator=st.sampled_from(["\n", "\r\n", ", ", ",", "\n\n  "]),
)
def test_required_field_names_typed_one_per_line_or_comma_separated_round_trip(names, separator):
    assert field_names_from_text(separator.join(f"  {name} " for name in names)) == names


def test_the_changelist_makes_no_query_per_row(as_lead, own_system, django_assert_max_num_queries):
    IncidentFactory.create_batch(3, system=own_system, assignee=None)
    as_lead.get(changelist())  # warm the session and permission caches
    with CaptureQueriesContext(connection) as few:
        as_lead.get(changelist())
    IncidentFactory.create_batch(30, system=own_system, serious=True, rca_completed_at=timezone.now())
    with django_assert_max_num_queries(len(few.captured_queries)):
        as_lead.get(changelist())
