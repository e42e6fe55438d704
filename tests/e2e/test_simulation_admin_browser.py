"""A simulation started, watched and stopped from the admin, in real headless Chromium."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from governance.choices import Role
from oversight.models import Simulation, SimulationStatus
from oversight.services import simulation as service
from tests.e2e.browser import log_in, submit
from tests.factories import UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]


@pytest.fixture
def polls_drive_the_simulation(monkeypatch):
    """No worker: each poll of the live view first runs one step (one batch) in the server thread.

    The page's own polling then drives the run at a visible pace, and every database write happens
    in the live server's thread (the test thread never writes while the browser is polling)."""
    from oversight import simulation_admin

    monkeypatch.setattr(service, "enqueue_simulation_step", lambda pk, countdown=None: None)
    represent = simulation_admin.simulation_representation

    def step_then_represent(simulation, **kwargs):
        service.simulation_step(simulation_id=simulation.pk, budget_seconds=0)
        simulation.refresh_from_db()
        return represent(simulation, **kwargs)

    monkeypatch.setattr(simulation_admin, "simulation_representation", step_then_represent)


def test_a_lead_starts_watches_and_stops_a_simulation(live_server, browser_page, polls_drive_the_simulation):
    from playwright.sync_api import expect

    UserFactory(username="lena", roles=[Role.GOVERNANCE_LEAD])
    page = browser_page
    log_in(page, live_server, "lena")

    page.goto(f"{live_server.url}{reverse('admin:oversight_simulation_add')}")
    page.fill("#id_total", "5000")
    page.fill("#id_batch_size", "100")
    page.fill("#id_rate_per_s", "")  # a backdated history: one batch per poll
    page.fill("#id_seed", "7")
    submit(page, "input[name=_start]")

    live = page.locator("#simulation-live")
    expect(live).to_be_visible()
    expect(live.locator("[data-field=status]")).to_have_text("running", timeout=15_000)
    generated = live.locator("[data-field=generated]")
    expect(generated).to_have_text(re.compile(r"^[3-9]\d\d$|^\d{4}$"), timeout=20_000)  # ≥ 300: it moves
    expect(live.locator("[data-field=processed]")).not_to_have_text("0")
    expect(page.locator("#simulation-chart-events")).to_have_attribute("points", re.compile(r"\d+\.\d,\d+\.\d"))

    submit(page, "#simulation-stop")

    expect(live.locator("[data-field=status]")).to_have_text("stopped", timeout=15_000)
    expect(page.locator("#simulation-stop")).to_have_count(0)
    simulation = Simulation.objects.get()
    assert simulation.status == SimulationStatus.STOPPED
    assert 300 <= simulation.cursor < simulation.total
    assert simulation.report["counters"]["ingested"] == simulation.cursor
    assert page.locator(".messagelist .success").count() == 1
    assert page.js_errors == []
