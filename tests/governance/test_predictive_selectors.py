"""The read side of predictive governance: latest-per-type, badges, predicted-vs-actual, each block one
query whatever the number of systems and predictions."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from governance.choices import PredictionOutcome, PredictionType
from governance.models import PredictiveGovernance
from governance.selectors_predictive import (
    predicted_versus_actual,
    prediction_badge_text,
    prediction_badges,
    prediction_badges_by_system,
    prediction_outcome_counts,
    predictions_latest,
    predictions_recent,
    system_predictions,
)
from tests.factories import AISystemFactory, PredictiveGovernanceFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def estate(team):
    """Five systems with three prediction rounds each (the newest one above threshold for odd systems)."""
    now = timezone.now()
    systems = [AISystemFactory(name=f"model-{n}", team=team) for n in range(5)]
    for n, system in enumerate(systems):
        for round_ in range(3):
            for kind in PredictionType.values:
                newest = round_ == 2
                PredictiveGovernanceFactory(
                    system=system,
                    prediction_type=kind,
                    as_of=now - timedelta(minutes=15 * (2 - round_)),
                    risk_score=0.9 if newest and n % 2 else 0.2 + 0.1 * round_,
                    outcome=PredictionOutcome.PENDING if newest else PredictionOutcome.NOT_OCCURRED,
                )
    return systems


def test_badge_texts():
    assert prediction_badge_text(prediction_type="drift_risk", timeframe_hours=6) == "Drift likely in 6 h"
    assert prediction_badge_text(prediction_type="compliance_risk", timeframe_hours=24) == "Compliance risk increasing"
    assert (
        prediction_badge_text(prediction_type="incident_probability", timeframe_hours=24) == "Model degradation trend"
    )


def test_latest_keeps_one_row_per_system_and_type(estate):
    latest = list(predictions_latest(PredictiveGovernance.objects.all()))

    assert len(latest) == 5 * len(PredictionType.values)
    newest = timezone.now() - timedelta(minutes=1)
    assert all(row.as_of >= newest for row in latest)


def test_badges_take_a_fixed_number_of_queries_whatever_the_estate(lead, estate, django_assert_num_queries):
    assert lead.role_names  # loaded once per request by the permission checks
    with django_assert_num_queries(4):  # the user's teams (twice: predictions, systems), latest ids, badges
        badges = prediction_badges(user=lead)

    assert len(badges) == 2 * len(PredictionType.values)  # model-1 and model-3, every type
    assert {badge.system_name for badge in badges} == {"model-1", "model-3"}
    assert all(badge.score_percent == 90 for badge in badges)


def test_the_home_block_groups_badges_by_system_and_counts_them(lead, estate):
    systems, total = prediction_badges_by_system(user=lead, limit=1)

    assert total == 2
    assert len(systems) == 1 and len(systems[0].badges) == len(PredictionType.values)


def test_predicted_versus_actual_is_two_queries(lead, estate, django_assert_num_queries):
    assert lead.role_names
    with django_assert_num_queries(3):  # the user's teams, the counts, the latest matured
        panel = predicted_versus_actual(user=lead)

    drift = next(row for row in panel.counts if row.prediction_type == "drift_risk")
    assert (drift.below_not_occurred, drift.pending, drift.matured) == (10, 5, 10)
    assert drift.precision is None and drift.recall is None
    assert len(panel.latest) == 10 and all(m.verdict == "correctly quiet" for m in panel.latest)


def test_the_system_page_needs_a_fixed_number_of_queries(lead, estate, django_assert_num_queries):
    assert lead.role_names
    with django_assert_num_queries(9):  # badges 4, recent 2, predicted vs actual 3 (each scoping reads the teams)
        page = system_predictions(user=lead, system=estate[1])

    assert len(page.badges) == len(PredictionType.values)
    assert len(page.recent) == 9
    assert all(p.system_id == estate[1].pk for p in predictions_recent(user=lead, system=estate[1]))


def test_outcome_counts_list_every_type_even_without_rows():
    counts = prediction_outcome_counts(PredictiveGovernance.objects.none())

    assert [row.prediction_type for row in counts] == PredictionType.values
    assert all(row.matured == 0 and row.bar_segments == [] for row in counts)


def test_the_bar_splits_its_width_by_outcome(own_system):
    for above, outcome in ((True, "occurred"), (True, "occurred"), (True, "not_occurred"), (False, "not_occurred")):
        PredictiveGovernanceFactory(system=own_system, risk_score=0.9 if above else 0.1, outcome=outcome)

    drift = prediction_outcome_counts(PredictiveGovernance.objects.all())[0]

    assert [(s["words"], s["count"], s["x"], s["width"]) for s in drift.bar_segments] == [
        ("correct warnings", 2, 0.0, 120.0),
        ("false alarms", 1, 120.0, 60.0),
        ("correctly quiet", 1, 180.0, 60.0),
    ]
    assert (drift.precision_text, drift.recall_text) == ("67%", "100%")


def test_predicted_versus_actual_covers_the_last_seven_days(lead, own_system):
    now = timezone.now()
    PredictiveGovernanceFactory(system=own_system, as_of=now - timedelta(days=2), outcome="occurred")
    PredictiveGovernanceFactory(system=own_system, as_of=now - timedelta(days=8), outcome="occurred")

    panel = predicted_versus_actual(user=lead)

    assert panel.counts[0].above_occurred == 1 and len(panel.latest) == 1
