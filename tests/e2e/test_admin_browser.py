"""The admin's KPI home and config editing, driven in real headless Chromium (Debian's chromium)."""

from __future__ import annotations

import os

import pytest
from django.db import connections
from django.urls import reverse

from config.models import PlatformConfig
from governance.choices import Role
from tests.conftest import CHROMIUM_PATH
from tests.factories import DEFAULT_PASSWORD, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]

CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


@pytest.fixture
def browser_page():
    """A Chromium page that records JavaScript errors in ``page.js_errors``."""
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the ORM calls the test makes while the
    # browser is open are still plain synchronous calls.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM_PATH, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.js_errors = []
        page.on("pageerror", lambda error: page.js_errors.append(str(error)))
        try:
            yield page
        finally:
            # ORM calls made while Playwright runs use a connection of their own context: close it, or
            # the test database cannot be dropped at the end of the run.
            connections.close_all()
            browser.close()
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


def submit(page, selector: str) -> None:
    """Click a submit button and wait for the page it leads to."""
    with page.expect_navigation():
        page.click(selector)


def log_in(page, live_server, username: str) -> None:
    page.goto(f"{live_server.url}{reverse('admin:login')}")
    page.fill("#id_username", username)
    page.fill("#id_password", DEFAULT_PASSWORD)
    submit(page, "input[type=submit]")


def test_admin_home_shows_the_kpi_scorecard(live_server, browser_page):
    UserFactory(username="lena", roles=[Role.GOVERNANCE_LEAD])

    log_in(browser_page, live_server, "lena")

    scorecard = browser_page.locator("#vigil-kpis")
    scorecard.wait_for()
    config_row = scorecard.locator("tr[data-kpi=config_centralization]")
    assert "100%" in config_row.inner_text()
    assert "met" in config_row.inner_text()
    assert "not measured" in scorecard.locator("tr[data-kpi=hitl_backlog]").inner_text()
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
