"""Real headless Chromium for the browser tests (Debian's ``chromium``, driven by Playwright)."""

from __future__ import annotations

import os
from collections.abc import Iterator

from django.db import connections
from django.urls import reverse

from tests.conftest import CHROMIUM_PATH
from tests.factories import DEFAULT_PASSWORD

CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def chromium_page() -> Iterator:
    """A Chromium page that records JavaScript errors in ``page.js_errors`` (the ``browser_page`` fixture)."""
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
