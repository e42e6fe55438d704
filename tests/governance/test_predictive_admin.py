"""Predictive governance in the admin: the "Predicted risk" block and the predicted-vs-actual panel on the
home page and each AI system's page, the read-only predictions admin, and predictor-model activation."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from governance.choices import AuditAction, PredictionOutcome, PredictionType
from governance.models import AuditLog, PredictorModel
from tests.factories import AISystemFactory, PredictiveGovernanceFactory, PredictorModelFactory

pytestmark = pytest.mark.django_db

HOME = reverse("admin:index")
PREDICTIONS = reverse("admin:governance_predictivegovernance_changelist")
MODELS = reverse("admin:governance_predictormodel_changelist")


def system_page(system) -> str:
    return reverse("admin:governance_aisystem_change", args=[system.pk])


def test_the_home_page_shows_a_badge_with_score_confidence_factors_and_a_link(client, lead, own_system):
    PredictiveGovernanceFactory(system=own_system, risk_score=0.86, confidence=0.72, predicted_timeframe_hours=12)
    client.force_login(lead)

    html = client.get(HOME).content.decode()

    assert 'id="vigil-predicted-risk"' in html
    assert "Drift likely in 12 h" in html
    assert "score 86%" in html and "confidence 72%" in html
    assert "PSI trend over 6 h: <strong>0.042</strong>" in html
    assert "Accuracy change over 24 h: <strong>-0.031</strong>" in html
    assert "Events per hour" not in html  # only the top 3 factors
    assert f'href="{system_page(own_system)}"' in html


def test_each_badge_type_reads_as_the_issue_words(client, lead, own_system):
    for kind in PredictionType.values:
        PredictiveGovernanceFactory(system=own_system, prediction_type=kind, risk_score=0.7)
    client.force_login(lead)

    html = client.get(HOME).content.decode()

    for words in ("Drift likely in 24 h", "Compliance risk increasing", "Model degradation trend"):
        assert words in html


def test_a_badge_shows_only_for_the_latest_prediction_when_it_is_above_threshold(client, lead, own_system, team):
    now = timezone.now()
    calm = AISystemFactory(name="calm-model", team=team)
    PredictiveGovernanceFactory(system=calm, risk_score=0.9, as_of=now - timedelta(hours=1))
    PredictiveGovernanceFactory(system=calm, risk_score=0.1, as_of=now)  # newer, below threshold
    PredictiveGovernanceFactory(system=own_system, risk_score=0.3)
    client.force_login(lead)

    html = client.get(HOME).content.decode()

    assert "Drift likely" not in html
    assert "No AI system's latest prediction is above its alert threshold." in html


def test_the_home_page_hides_other_teams_badges(client, lead, foreign_system):
    PredictiveGovernanceFactory(system=foreign_system, risk_score=0.95)
    client.force_login(lead)

    html = client.get(HOME).content.decode()

    assert "credit-limit-model" not in html and "Drift likely" not in html


def test_the_home_page_panel_counts_predicted_versus_actual(client, lead, own_system):
    for above, occurred in ((True, True), (True, True), (True, False), (False, True), (False, False)):
        PredictiveGovernanceFactory(
            system=own_system,
            risk_score=0.8 if above else 0.2,
            outcome=PredictionOutcome.OCCURRED if occurred else PredictionOutcome.NOT_OCCURRED,
        )
    client.force_login(lead)

    html = client.get(HOME).content.decode()

    assert 'id="home-versus-actual"' in html
    row = html[html.index('class="versus-actual-row" data-prediction-type="drift_risk"') :]
    row = row[: row.index("</tr>")]
    assert '<td class="above-occurred">2</td>' in row
    assert '<td class="above-not-occurred">1</td>' in row
    assert '<td class="below-occurred">1</td>' in row
    assert '<td class="precision">67%</td>' in row and '<td class="recall">67%</td>' in row
    assert 'aria-label="Drift risk: 2 correct warnings, 1 false alarms, 1 missed, 1 correctly quiet"' in row
    assert html.count('class="matured-prediction"') == 5
    assert "false alarm" in html and "correct warning" in html and "missed" in html


def test_the_system_page_shows_its_badges_recent_predictions_and_panel(client, lead, own_system, team):
    other = AISystemFactory(name="other-model", team=team)
    PredictiveGovernanceFactory(system=own_system, prediction_type=PredictionType.COMPLIANCE_RISK, risk_score=0.66)
    PredictiveGovernanceFactory(system=own_system, risk_score=0.2)
    PredictiveGovernanceFactory(system=other, risk_score=0.99)
    client.force_login(lead)

    response = client.get(system_page(own_system))

    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="system-predictions"' in html
    assert "Compliance risk increasing" in html and "score 66%" in html
    assert "Drift likely" not in html  # the drift forecast is below threshold; the other system's is not here
    assert html.count('class="recent-prediction"') == 2
    assert 'id="system-versus-actual"' in html


def test_a_system_without_predictions_says_so(client, lead, own_system):
    client.force_login(lead)

    html = client.get(system_page(own_system)).content.decode()

    assert "No prediction has been made for this system yet." in html
    assert "No prediction of the last 7 days has matured yet" in html


def test_the_predictions_changelist_filters_and_searches(client, lead, own_system, foreign_system):
    PredictiveGovernanceFactory(system=own_system, risk_score=0.8)
    PredictiveGovernanceFactory(system=foreign_system, risk_score=0.8)
    client.force_login(lead)

    response = client.get(PREDICTIONS, {"prediction_type__exact": "drift_risk", "above_threshold__exact": "1"})
    searched = client.get(PREDICTIONS, {"q": "fraud"})

    assert response.status_code == 200
    assert response.context["cl"].result_count == 1  # the other team's prediction is invisible
    assert searched.context["cl"].result_count == 1


def test_a_prediction_is_read_only_evidence_with_its_factors(client, lead, own_system):
    prediction = PredictiveGovernanceFactory(system=own_system)
    client.force_login(lead)
    url = reverse("admin:governance_predictivegovernance_change", args=[prediction.pk])

    html = client.get(url).content.decode()
    posted = client.post(url, {"risk_score": "0.1"})

    assert '<table class="prediction-factors">' in html
    assert "<td>Events per hour</td><td>120</td><td>+0.050</td>" in html
    assert 'name="_save"' not in html
    assert posted.status_code == 403
    prediction.refresh_from_db()
    assert prediction.risk_score == 0.72


def test_the_predictor_models_list_shows_metrics_and_the_quality_floor(client, lead):
    PredictorModelFactory(version=1, is_active=False, metrics={"auc": 0.7, "brier": 0.3})
    PredictorModelFactory(version=2)
    client.force_login(lead)

    html = client.get(MODELS).content.decode()

    assert "0.91" in html and "✔ meets the floor" in html
    assert "drift risk model v1 AUC 0.700 is below the floor 0.85" in html


def test_an_admin_activates_another_version_and_it_is_audited(client, admin_user):
    old = PredictorModelFactory(version=1)
    new = PredictorModelFactory(version=2, is_active=False)
    client.force_login(admin_user)

    response = client.post(MODELS, {"action": "activate_selected", "_selected_action": [new.pk]}, follow=True)

    assert response.status_code == 200
    assert set(PredictorModel.objects.filter(is_active=True).values_list("pk", flat=True)) == {new.pk}
    old.refresh_from_db()
    assert old.is_active is False
    entry = AuditLog.objects.get(action=AuditAction.PREDICTOR_ACTIVATED)
    assert (entry.actor, entry.object_id) == ("ada", str(new.pk))
    assert (entry.data["version"], entry.data["replaced_version"]) == (2, 1)


def test_activating_the_active_version_changes_nothing(client, admin_user):
    active = PredictorModelFactory(version=1)
    client.force_login(admin_user)

    client.post(MODELS, {"action": "activate_selected", "_selected_action": [active.pk]}, follow=True)

    assert not AuditLog.objects.filter(action=AuditAction.PREDICTOR_ACTIVATED).exists()


def test_a_lead_may_not_activate_a_version(client, lead):
    PredictorModelFactory(version=1)
    new = PredictorModelFactory(version=2, is_active=False)
    client.force_login(lead)

    page = client.get(MODELS).content.decode()
    client.post(MODELS, {"action": "activate_selected", "_selected_action": [new.pk]}, follow=True)

    assert "activate_selected" not in page
    new.refresh_from_db()
    assert new.is_active is False
    assert not AuditLog.objects.filter(action=AuditAction.PREDICTOR_ACTIVATED).exists()


def test_activation_switches_only_the_same_prediction_type(admin_user):
    from governance.services.predictions import predictor_model_activate

    drift = PredictorModelFactory(version=1)
    compliance = PredictorModelFactory(prediction_type=PredictionType.COMPLIANCE_RISK, version=1)
    drift_v2 = PredictorModelFactory(version=2, is_active=False)

    assert predictor_model_activate(model=drift_v2, actor=admin_user) is True

    active = set(PredictorModel.objects.filter(is_active=True).values_list("pk", flat=True))
    assert active == {drift_v2.pk, compliance.pk}
    drift.refresh_from_db()
    assert drift.is_active is False
