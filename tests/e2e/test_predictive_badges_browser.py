"""Predicted-risk badges and the predicted-vs-actual panel on the admin home and an AI system's page,
rendered in real headless Chromium (Debian's chromium)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from governance.choices import PredictionOutcome, PredictionType, Role
from tests.e2e.browser import log_in
from tests.factories import (
    AISystemFactory,
    PredictiveGovernanceFactory,
    PredictorModelFactory,
    TeamFactory,
    UserFactory,
)

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]


@pytest.fixture
def forecast_estate(transactional_db):
    """A lead's team with one system likely to drift and to degrade, one calm system, and a history of
    matured drift predictions (two correct warnings, one false alarm, one miss)."""
    team = TeamFactory(name="Fraud ML", slug="fraud-ml")
    UserFactory(username="lena", roles=[Role.GOVERNANCE_LEAD], teams=[team])
    model = PredictorModelFactory(version=2)
    risky = AISystemFactory(name="fraud-scorer", team=team)
    calm = AISystemFactory(name="churn-model", team=team)
    now = timezone.now()
    PredictiveGovernanceFactory(system=risky, model=model, risk_score=0.87, confidence=0.74, as_of=now)
    PredictiveGovernanceFactory(
        system=risky, prediction_type=PredictionType.INCIDENT_PROBABILITY, risk_score=0.61, confidence=0.55, as_of=now
    )
    PredictiveGovernanceFactory(system=calm, risk_score=0.12, as_of=now)
    for hours, score, outcome in (
        (30, 0.9, PredictionOutcome.OCCURRED),
        (40, 0.7, PredictionOutcome.OCCURRED),
        (50, 0.6, PredictionOutcome.NOT_OCCURRED),
        (60, 0.2, PredictionOutcome.OCCURRED),
    ):
        PredictiveGovernanceFactory(
            system=risky, model=model, risk_score=score, as_of=now - timedelta(hours=hours), outcome=outcome
        )
    return risky


def test_the_home_page_shows_the_badges_and_the_predicted_versus_actual_panel(
    live_server, browser_page, forecast_estate
):
    log_in(browser_page, live_server, "lena")

    block = browser_page.locator("#vigil-predicted-risk")
    block.wait_for()
    row = block.locator('tr.predicted-risk-row[data-system="fraud-scorer"]')
    drift = row.locator('.prediction-badge[data-prediction-type="drift_risk"]')
    assert "Drift likely in 24 h" in drift.locator(".badge-text").inner_text()
    assert drift.locator(".badge-score").inner_text() == "score 87%"
    assert drift.locator(".badge-confidence").inner_text() == "confidence 74%"
    assert drift.locator("li.badge-factor").all_inner_texts() == [
        "PSI trend over 6 h: 0.042",
        "Latest PSI: 0.18",
        "Accuracy change over 24 h: -0.031",
    ]
    degradation = row.locator('.prediction-badge[data-prediction-type="incident_probability"]')
    assert "Model degradation trend" in degradation.inner_text()
    assert block.locator('tr.predicted-risk-row[data-system="churn-model"]').count() == 0

    panel = block.locator("#home-versus-actual")
    drift_counts = panel.locator('tr.versus-actual-row[data-prediction-type="drift_risk"]')
    assert drift_counts.locator("td.above-occurred").inner_text() == "2"
    assert drift_counts.locator("td.above-not-occurred").inner_text() == "1"
    assert drift_counts.locator("td.below-occurred").inner_text() == "1"
    assert drift_counts.locator("td.precision").inner_text() == "67%"
    assert drift_counts.locator("svg.versus-actual-bar rect").count() == 3
    assert panel.locator("tr.matured-prediction td.verdict").all_inner_texts() == [
        "✔ correct warning",
        "✔ correct warning",
        "✘ false alarm",
        "✘ missed",
    ]
    assert browser_page.js_errors == []

    with browser_page.expect_navigation():
        row.locator("td a").first.click()
    assert browser_page.url.endswith(reverse("admin:governance_aisystem_change", args=[forecast_estate.pk]))


def test_an_ai_system_page_shows_its_badges_recent_predictions_and_panel(live_server, browser_page, forecast_estate):
    log_in(browser_page, live_server, "lena")

    browser_page.goto(f"{live_server.url}{reverse('admin:governance_aisystem_change', args=[forecast_estate.pk])}")

    section = browser_page.locator("#system-predictions")
    section.wait_for()
    badges = section.locator(".prediction-badge")
    assert badges.count() == 2
    drift = section.locator('.prediction-badge[data-prediction-type="drift_risk"]')
    assert "Drift likely in 24 h" in drift.inner_text() and "score 87%" in drift.inner_text()
    assert section.locator("tr.recent-prediction").count() == 6
    panel = section.locator("#system-versus-actual")
    assert panel.locator('tr.versus-actual-row[data-prediction-type="drift_risk"] td.recall').inner_text() == "67%"
    assert panel.locator("tr.matured-prediction").count() == 4
    assert browser_page.js_errors == []


DEMO_PREDICTIONS = {
    "steps": [{"key": "estate", "params": {}}, {"key": "predictions", "params": {"days": 8}}],
    "expected_outcomes": {"predictions": {"active_models": {"eq": 3}, "predictions": {"gte": 18}}},
}


def test_the_demo_data_shows_badges_on_the_home_and_system_pages(live_server, browser_page, transactional_db):
    """The golden demo's own predictions step (estate history, synthetic training, the real pass), then
    the pages: every badge on screen is a latest prediction above its threshold, with its score."""
    from governance.models import DemoScenario, PredictiveGovernance
    from governance.services.demo import demo_run_execute, demo_run_start

    UserFactory(username="ada", roles=[Role.ADMIN])
    scenario = DemoScenario.objects.create(scenario_name="predictions only", category="training", **DEMO_PREDICTIONS)
    run = demo_run_execute(run_id=demo_run_start(scenario=scenario, seed=42).pk)
    assert run.status == "succeeded", run.error
    flagged = [
        p
        for p in PredictiveGovernance.objects.filter(above_threshold=True).select_related("system")
        if p == PredictiveGovernance.objects.filter(system=p.system, prediction_type=p.prediction_type).first()
    ]
    assert flagged, "the demo history is built so some risks are unfolding at the end"

    log_in(browser_page, live_server, "ada")
    block = browser_page.locator("#vigil-predicted-risk")
    block.wait_for()
    for prediction in flagged:
        row = block.locator(f'tr.predicted-risk-row[data-system="{prediction.system.name}"]')
        badge = row.locator(f'.prediction-badge[data-prediction-type="{prediction.prediction_type}"]')
        assert badge.locator(".badge-score").inner_text() == f"score {prediction.risk_score:.0%}"
        assert badge.locator("li.badge-factor").count() >= 1
    assert block.locator(".prediction-badge").count() == len(flagged)
    assert browser_page.js_errors == []

    system = flagged[0].system
    browser_page.goto(f"{live_server.url}{reverse('admin:governance_aisystem_change', args=[system.pk])}")
    section = browser_page.locator("#system-predictions")
    section.wait_for()
    assert section.locator("tr.recent-prediction").count() >= 3
    assert browser_page.js_errors == []
