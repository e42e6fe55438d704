"""The function dashboard, rendered in real headless Chromium (Debian's chromium)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from governance.choices import Role
from tasks import metrics
from tasks.tasks import canary
from tests.e2e.browser import log_in
from tests.factories import UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]


def test_the_dashboard_draws_data_points_for_functions_that_ran(live_server, browser_page):
    UserFactory(username="lena", roles=[Role.GOVERNANCE_LEAD])
    canary.apply()
    canary.apply(kwargs={"mode": "fail"}, throw=False)
    log_in(browser_page, live_server, "lena")  # the login requests are endpoint calls too
    metrics.flush()

    browser_page.goto(f"{live_server.url}{reverse('admin:tasks_functionmetric_dashboard')}?range=1h")

    heatmap_row = browser_page.locator('#latency-heatmap g.heatmap-row[data-function="tasks.canary"]')
    assert heatmap_row.locator("rect.heatmap-cell").count() >= 1
    canary_row = browser_page.locator('tr.function-row[data-function="tasks.canary"]')
    assert canary_row.locator("svg.sparkline polyline").count() == 1
    assert canary_row.locator("svg.error-chart rect.error-bar").count() >= 1
    assert "50.0%" in canary_row.locator("td.error-rate").inner_text()
    assert browser_page.locator('tr.function-row[data-function="POST /admin/login"]').count() == 1
    assert browser_page.js_errors == []

    browser_page.click('tr.function-row[data-function="tasks.canary"] a.failures-link')
    browser_page.wait_for_load_state()
    assert "CanaryFailure" in browser_page.content()
    assert browser_page.js_errors == []
