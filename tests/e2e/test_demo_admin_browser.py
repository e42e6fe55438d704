"""The golden demo's live run page, rendered in real headless Chromium (Debian's chromium)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from governance.choices import Role
from governance.models import DemoScenario
from governance.services.demo import demo_run_execute, demo_run_start
from tests.e2e.browser import log_in
from tests.factories import UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]

QUICK = {
    "steps": [{"key": "estate", "params": {}}, {"key": "audit_verify", "params": {}}],
    "expected_outcomes": {"estate": {"systems": {"gte": 6}}, "audit_verify": {"chain_ok": {"eq": 1}}},
}


def test_the_run_page_follows_a_run_live_and_shows_steps_narration_and_kpis(live_server, browser_page):
    UserFactory(username="lena", roles=[Role.GOVERNANCE_LEAD])
    scenario = DemoScenario.objects.create(scenario_name="quick", category="training", **QUICK)
    run = demo_run_start(scenario=scenario, seed=3)
    log_in(browser_page, live_server, "lena")

    browser_page.goto(f"{live_server.url}{reverse('admin:governance_demorun_change', args=[run.pk])}")
    browser_page.wait_for_selector('#demo-live [data-field="status"]:text("pending")')
    assert browser_page.locator("#demo-stepper li").count() == 2

    demo_run_execute(run_id=run.pk)  # the page polls and catches up

    browser_page.wait_for_selector('#demo-live [data-field="status"]:text("succeeded")', timeout=15_000)
    assert browser_page.locator("#demo-stepper li.succeeded").count() == 2
    assert browser_page.locator("#demo-kpis tbody tr").count() >= 9
    assert "Open incidents" in browser_page.locator("#demo-kpis").inner_text()
    assert browser_page.locator('[data-field="why"]').inner_text() not in ("", "–")
    assert browser_page.locator("#demo-counters tbody tr").count() == 2
    assert browser_page.js_errors == []
