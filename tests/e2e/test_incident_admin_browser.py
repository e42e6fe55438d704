"""Bulk resolution in the incidents admin, in real headless Chromium: filter the changelist, shift-click a
range of incidents, choose "Bulk resolve selected", pick a configured reason and confirm."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from governance.choices import AuditAction, Role, Severity
from governance.models import AuditLog
from incidents.models import Incident, IncidentEvent, IncidentEventKind, IncidentStatus, RCATemplate
from tests.e2e.browser import log_in, submit
from tests.factories import AISystemFactory, TeamFactory, UserFactory
from tests.incidents.factories import IncidentFactory

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]


def test_a_lead_filters_shift_selects_and_bulk_resolves_low_incidents_with_a_reason(live_server, browser_page):
    team = TeamFactory(name="Fraud ML", slug="fraud-ml")
    UserFactory(username="lena", roles=[Role.GOVERNANCE_LEAD], teams=[team])
    system = AISystemFactory(name="fraud-scorer", team=team)
    now = timezone.now()
    # Opened an hour apart: the changelist (newest first) lists them in this order.
    low = [
        IncidentFactory(
            system=system, severity=Severity.LOW, title=f"low drift #{n}", opened_at=now - timedelta(hours=n)
        )
        for n in range(1, 6)
    ]
    high = IncidentFactory(system=system, severity=Severity.HIGH, title="serious one", opened_at=now)
    page = browser_page
    log_in(page, live_server, "lena")

    page.goto(f"{live_server.url}{reverse('admin:incidents_incident_changelist')}")
    assert page.locator(".action-select").count() == 6
    with page.expect_navigation():
        page.click('#changelist-filter a[href*="severity__exact=low"]')
    checkboxes = page.locator(".action-select")
    assert checkboxes.count() == 5
    checkboxes.nth(0).click()
    checkboxes.nth(3).click(modifiers=["Shift"])  # the admin's actions.js selects the whole range
    assert page.locator(".action-select:checked").count() == 4

    page.select_option("select[name=action]", "bulk_resolve_selected")
    submit(page, "button[name=index]")

    assert page.locator("#bulk-resolve-incidents tbody tr").count() == 4
    template_name = RCATemplate.objects.get(incident_type=low[0].incident_type).name
    assert page.locator('#bulk-resolve-incidents [data-field="rca-template"]').first.inner_text() == template_name
    page.select_option("#id_resolution_reason", "False positive")
    page.fill("#id_note", "Seasonal drift, confirmed with the model owners")
    submit(page, "#bulk-resolve-confirm")

    page.locator(".messagelist .success").wait_for()
    assert page.locator(".messagelist .success").inner_text() == "Resolved 4 incident(s): False positive."
    chosen, rest = [i.pk for i in low[:4]], [low[4].pk, high.pk]
    resolved = Incident.objects.filter(pk__in=chosen, status=IncidentStatus.RESOLVED)
    assert resolved.count() == 4
    assert set(resolved.values_list("resolution_reason", flat=True)) == {"False positive"}
    assert set(Incident.objects.filter(pk__in=rest).values_list("status", flat=True)) == {IncidentStatus.OPEN}
    events = IncidentEvent.objects.filter(kind=IncidentEventKind.RESOLVED)
    assert sorted(str(e.incident_id) for e in events) == sorted(str(pk) for pk in chosen)
    assert all("Seasonal drift" in e.message for e in events)
    assert AuditLog.objects.filter(action=AuditAction.INCIDENT_RESOLVED, actor="lena").count() == 4
    assert page.js_errors == []


def test_a_bulk_resolution_without_a_reason_is_refused_on_the_page(live_server, browser_page):
    team = TeamFactory(name="Fraud ML", slug="fraud-ml")
    UserFactory(username="lena", roles=[Role.GOVERNANCE_LEAD], teams=[team])
    incident = IncidentFactory(system=AISystemFactory(team=team), severity=Severity.LOW)
    page = browser_page
    log_in(page, live_server, "lena")

    page.goto(f"{live_server.url}{reverse('admin:incidents_incident_changelist')}")
    page.locator(".action-select").first.click()
    page.select_option("select[name=action]", "bulk_resolve_selected")
    submit(page, "button[name=index]")
    submit(page, "#bulk-resolve-confirm")

    assert "Pick the resolution reason" in page.locator(".field-resolution_reason .errorlist").inner_text()
    assert Incident.objects.get(pk=incident.pk).status == IncidentStatus.OPEN
    assert page.js_errors == []
