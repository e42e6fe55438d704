"""The admin's KPI home and config editing, driven in real headless Chromium (Debian's chromium)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from config.models import PlatformConfig
from governance.choices import Role
from tests.e2e.browser import log_in, submit
from tests.factories import UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]


def test_admin_home_shows_the_kpi_scorecard(live_server, browser_page):
    UserFactory(username="lena", roles=[Role.GOVERNANCE_LEAD])

    log_in(browser_page, live_server, "lena")

    scorecard = browser_page.locator("#vigil-kpis")
    scorecard.wait_for()
    config_row = scorecard.locator("tr[data-kpi=config_centralization]")
    assert "100%" in config_row.inner_text()
    assert "met" in config_row.inner_text()
    assert "100%" in scorecard.locator("tr[data-kpi=rate_limit_coverage]").inner_text()
    assert scorecard.locator("tr.capability-row").count() == 12
    assert browser_page.js_errors == []


def test_config_edit_in_admin_shows_schema_errors_then_saves(live_server, browser_page):
    UserFactory(username="lena", roles=[Role.GOVERNANCE_LEAD])
    key = PlatformConfig.objects.get(key="oversight.correlation_window_seconds")
    log_in(browser_page, live_server, "lena")
    change_url = f"{live_server.url}{reverse('admin:config_platformconfig_change', args=[key.pk])}"

    browser_page.goto(change_url)
    browser_page.fill("#id_value", "5")
    browser_page.fill("#id_reason", "try a tiny window")
    submit(browser_page, "input[name=_save]")

    errors = browser_page.locator(".errorlist").all_inner_texts()
    assert any("value: 5 is less than the minimum of 10" in text for text in errors)
    key.refresh_from_db()
    assert (key.value, key.version) == (300, 1)

    browser_page.fill("#id_value", "600")
    browser_page.fill("#id_reason", "correlate slower pipelines")
    submit(browser_page, "input[name=_save]")

    browser_page.locator(".messagelist .success").wait_for()
    key.refresh_from_db()
    assert (key.value, key.version) == (600, 2)
    assert key.history.get(version=2).reason == "correlate slower pipelines"
    assert browser_page.js_errors == []
