"""The open-incidents KPI and the incident-management capability, measured from incidents."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from governance.choices import Severity
from governance.services.kpis import kpi_report
from incidents.models import Incident, IncidentStatus
from incidents.services.lifecycle import incident_acknowledge, incident_resolve
from tests.incidents.factories import IncidentFactory

pytestmark = pytest.mark.django_db


def kpi(code: str) -> dict:
    return next(item for item in kpi_report()["kpis"] if item["code"] == code)


def capability(code: str) -> dict:
    return next(item for item in kpi_report()["capabilities"]["items"] if item["code"] == code)


def test_open_incidents_counts_unresolved_ones_and_is_met_below_thirty(lead):
    IncidentFactory.create_batch(29, severity=Severity.LOW)
    resolved = IncidentFactory(severity=Severity.CRITICAL)
    incident_resolve(incident_id=resolved.id, actor=lead)

    item = kpi("open_incidents")

    assert (item["value"], item["status"]) == (29, "met")
    assert item["detail"].startswith("0 critical, 0 high")


def test_open_incidents_is_not_met_at_thirty():
    IncidentFactory.create_batch(30)

    assert kpi("open_incidents")["status"] == "not_met"


def test_incident_management_is_enforced_when_incidents_are_handled_and_escalations_are_on_time(lead):
    incident = IncidentFactory()
    incident_acknowledge(incident_id=incident.id, actor=lead)

    assert capability("incident_management")["status"] == "enforced"


def test_incident_management_is_not_enforced_when_an_escalation_is_overdue(lead):
    handled = IncidentFactory()
    incident_acknowledge(incident_id=handled.id, actor=lead)
    stuck = IncidentFactory()
    Incident.objects.filter(pk=stuck.pk).update(next_escalation_at=timezone.now() - timedelta(minutes=30))

    item = capability("incident_management")

    assert item["status"] == "not_enforced"
    assert "lifecycle tick" in item["evidence"]


def test_incident_management_is_not_enforced_with_a_serious_incident_past_its_deadline(lead):
    handled = IncidentFactory()
    incident_acknowledge(incident_id=handled.id, actor=lead)
    Incident.objects.filter(pk=handled.pk).update(
        serious=True, regulatory_deadline_at=timezone.now() - timedelta(hours=1), status=IncidentStatus.ACKNOWLEDGED
    )

    assert "Art. 73" in capability("incident_management")["evidence"]


def test_the_scorecard_reports_mtta_and_mttr_per_severity(lead):
    with time_machine.travel(timezone.now() - timedelta(minutes=30), tick=False):
        incident = IncidentFactory(severity=Severity.CRITICAL)
    with time_machine.travel(timezone.now() - timedelta(minutes=26), tick=False):
        incident_acknowledge(incident_id=incident.id, actor=lead)
    incident_resolve(incident_id=incident.id, actor=lead)

    rows = {row["severity"]: row for row in kpi_report()["response_times"]}

    assert rows["critical"]["mtta_p50"] == pytest.approx(240, abs=1)
    assert rows["critical"]["mttr_p95"] == pytest.approx(1800, abs=5)
    assert (rows["critical"]["acknowledged"], rows["critical"]["resolved"]) == (1, 1)
    assert rows["low"]["mtta_p50"] is None


def test_the_admin_home_and_the_kpis_command_show_response_times(client, lead):
    from io import StringIO

    from django.core.management import call_command

    incident = IncidentFactory(severity=Severity.HIGH)
    incident_acknowledge(incident_id=incident.id, actor=lead)
    client.force_login(lead)
    out = StringIO()

    page = client.get("/admin/").content.decode()
    call_command("kpis", stdout=out)

    assert 'id="vigil-response-times"' in page
    assert '<tr data-severity="high">' in page
    assert "Incident response, last 30 days" in out.getvalue()
