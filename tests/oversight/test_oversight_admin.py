"""Admin of the event pipeline: pages render, team scoping, read-only records, and the operator
actions (rules switched through the audited service, batches re-enqueued, alerts resolved)."""

from __future__ import annotations

from unittest import mock

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from governance.choices import AuditAction, Role
from governance.models import AuditLog
from oversight.models import Alert, AlertStatus, DetectionRule, EventRaw, IngestBatch, SystemHeartbeat
from oversight.services.rules_admin import detection_rule_update
from tests.oversight.factories import AlertFactory, EventRawFactory, IngestBatchFactory

pytestmark = pytest.mark.django_db


def changelist(model) -> str:
    return reverse(f"admin:oversight_{model._meta.model_name}_changelist")


def change_page(obj) -> str:
    return reverse(f"admin:oversight_{obj._meta.model_name}_change", args=[obj.pk])


def run_action(client, model, action: str, objects):
    return client.post(
        changelist(model), {"action": action, "_selected_action": [str(obj.pk) for obj in objects]}, follow=True
    )


def rule_audits():
    return AuditLog.objects.filter(action=AuditAction.DETECTION_RULE_UPDATED)


@pytest.fixture
def rule():
    return DetectionRule.objects.get(name="threshold:fairness")


@pytest.fixture
def estate(own_system, foreign_system):
    """One row of every model this admin shows, on both teams."""
    event = EventRawFactory(system=own_system, scenario_id="scn-1")
    EventRawFactory(system=foreign_system)
    SystemHeartbeat.objects.create(
        system=own_system, last_seen_at=timezone.now(), last_received_at=timezone.now(), last_event_id=event.event_id
    )
    AlertFactory(system=own_system)
    AlertFactory(system=foreign_system)
    return event


# --- Pages render --------------------------------------------------------------------------------


@pytest.mark.parametrize("model", [EventRaw, IngestBatch, DetectionRule, Alert, SystemHeartbeat])
def test_the_changelist_and_the_change_page_render_for_an_admin(client, admin_user, estate, model):
    client.force_login(admin_user)

    assert client.get(changelist(model)).status_code == 200
    assert client.get(change_page(model.objects.first())).status_code == 200


@pytest.mark.parametrize("query", ["?processed=no", "?processed=yes", "?category__exact=fairness", "?q=psi"])
def test_the_event_changelist_filters_and_search_work(client, admin_user, estate, query):
    client.force_login(admin_user)

    assert client.get(changelist(EventRaw) + query).status_code == 200


def test_an_event_is_found_by_its_exact_event_id(client, admin_user, estate):
    client.force_login(admin_user)

    response = client.get(changelist(EventRaw), {"q": str(estate.event_id)})

    assert list(response.context["cl"].result_list) == [estate]


def test_events_and_alerts_are_read_only_even_for_an_admin(client, admin_user, estate):
    client.force_login(admin_user)

    response = client.get(change_page(estate))

    assert response.context["has_change_permission"] is False
    assert client.get(reverse("admin:oversight_eventraw_add")).status_code == 403
    assert client.get(reverse("admin:oversight_alert_add")).status_code == 403


# --- Team scoping --------------------------------------------------------------------------------


@pytest.mark.parametrize("model", [EventRaw, Alert])
def test_a_lead_sees_only_their_teams_rows(client, lead, estate, own_system, model):
    client.force_login(lead)

    rows = client.get(changelist(model)).context["cl"].result_list

    assert {row.system_id for row in rows} == {own_system.pk}


def test_another_teams_event_cannot_be_opened_by_a_lead(client, lead, foreign_system):
    client.force_login(lead)
    event = EventRawFactory(system=foreign_system)

    assert client.get(change_page(event)).status_code == 302  # "does not exist": back to the index


def test_ingest_batches_are_for_the_admin_role_only(client, lead):
    client.force_login(lead)

    assert client.get(changelist(IngestBatch)).status_code == 403


# --- Detection rules -----------------------------------------------------------------------------


def test_disabling_rules_in_the_admin_audits_each_change(client, lead, rule):
    client.force_login(lead)
    compound = DetectionRule.objects.get(name="compound")

    run_action(client, DetectionRule, "disable", [rule, compound])

    assert not DetectionRule.objects.filter(pk__in=[rule.pk, compound.pk], enabled=True).exists()
    assert {entry.object_id for entry in rule_audits()} == {str(rule.pk), str(compound.pk)}
    entry = rule_audits().get(object_id=str(rule.pk))
    assert entry.data["changed"] == {"enabled": {"from": True, "to": False}}
    assert entry.actor == lead.username


def test_enabling_an_enabled_rule_changes_and_audits_nothing(client, lead, rule):
    client.force_login(lead)

    response = run_action(client, DetectionRule, "enable", [rule])

    assert not rule_audits().exists()
    assert "0 rule(s) enabled." in response.content.decode()


def test_the_rule_change_form_saves_through_the_service_with_before_and_after(client, lead, rule):
    client.force_login(lead)

    response = client.post(
        change_page(rule),
        {"enabled": "", "severity": "critical", "description": "Tightened after the Q3 review."},
    )

    assert response.status_code == 302
    rule.refresh_from_db()
    assert (rule.enabled, rule.severity, rule.description) == (False, "critical", "Tightened after the Q3 review.")
    entry = rule_audits().get()
    assert entry.data["changed"]["severity"] == {"from": "high", "to": "critical"}
    assert entry.data["changed"]["enabled"] == {"from": True, "to": False}


def test_the_rule_change_form_cannot_change_what_the_rule_watches(client, lead, rule):
    client.force_login(lead)

    client.post(
        change_page(rule),
        {"enabled": "on", "severity": "high", "description": rule.description, "config_key": "x", "name": "y"},
    )

    rule.refresh_from_db()
    assert (rule.name, rule.config_key) == ("threshold:fairness", "oversight.thresholds.fairness")
    assert not rule_audits().exists()


def test_a_viewer_cannot_change_a_rule(client, viewer, rule):
    client.force_login(viewer)

    response = client.post(change_page(rule), {"enabled": "", "severity": "low", "description": ""})

    assert response.status_code == 403
    rule.refresh_from_db()
    assert rule.enabled


def test_rules_cannot_be_added_or_deleted_in_the_admin(client, admin_user, rule):
    client.force_login(admin_user)

    assert client.get(reverse("admin:oversight_detectionrule_add")).status_code == 403
    assert client.get(reverse("admin:oversight_detectionrule_delete", args=[rule.pk])).status_code == 403


def test_detection_rule_update_writes_only_what_changed_and_audits_it(rule, lead):
    detection_rule_update(rule=rule, actor=lead, severity="critical", description=rule.description)

    assert rule.severity == "critical"
    assert rule_audits().get().data == {
        "rule": "threshold:fairness",
        "changed": {"severity": {"from": "high", "to": "critical"}},
    }


def test_detection_rule_update_with_nothing_new_audits_nothing(rule, lead):
    detection_rule_update(rule=rule, actor=lead, enabled=True, severity=rule.severity)

    assert not rule_audits().exists()


def test_detection_rule_update_refuses_an_unknown_severity(rule, lead):
    with pytest.raises(ValidationError):
        detection_rule_update(rule=rule, actor=lead, severity="urgent")

    rule.refresh_from_db()
    assert rule.severity == "high"
    assert not rule_audits().exists()


# --- Batches and alerts --------------------------------------------------------------------------


def test_reenqueueing_batches_sends_only_the_unprocessed_ones(client, admin_user, django_capture_on_commit_callbacks):
    client.force_login(admin_user)
    stuck = IngestBatchFactory()
    done = IngestBatchFactory(processed_at=timezone.now())

    with (
        mock.patch("oversight.tasks.process_batch.apply_async") as send,
        django_capture_on_commit_callbacks(execute=True),
    ):
        response = run_action(client, IngestBatch, "reenqueue_processing", [stuck, done])

    send.assert_called_once()
    assert send.call_args.kwargs["args"] == [str(stuck.pk)]
    assert "1 batch(es) re-enqueued for processing; 1 already processed were skipped." in response.content.decode()
    stuck.refresh_from_db()
    assert stuck.enqueue_count == 2


def test_resolving_alerts_in_the_admin_resolves_and_audits_them(client, lead, own_system):
    client.force_login(lead)
    alert = AlertFactory(system=own_system)

    response = run_action(client, Alert, "resolve_now", [alert])

    alert.refresh_from_db()
    assert alert.status == AlertStatus.RESOLVED
    assert AuditLog.objects.filter(action=AuditAction.ALERT_RESOLVED, object_id=str(alert.pk)).exists()
    assert "1 alert(s) resolved." in response.content.decode()


def test_a_viewer_is_not_offered_the_resolve_action(client, viewer, own_system):
    client.force_login(viewer)
    AlertFactory(system=own_system)

    response = client.get(changelist(Alert))

    assert "resolve_now" not in response.content.decode()


def test_a_viewer_logs_in_and_reads_the_event_changelist(client, make_user, team, own_system):
    reader = make_user(Role.VIEWER, teams=[team])
    EventRawFactory(system=own_system)
    client.force_login(reader)

    assert len(client.get(changelist(EventRaw)).context["cl"].result_list) == 1
