"""``/predictions``: the risk forecasts of the user's teams, filters and their 400s, team scoping, cursor
pagination, and ``/predictions/quality`` (the active models' metrics and predicted-vs-actual)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from governance.choices import PredictionOutcome, PredictionType, Role
from tests.factories import PredictiveGovernanceFactory, PredictorModelFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/predictions"


def ids(response) -> list[str]:
    return [row["id"] for row in response.json()["results"]]


def test_a_viewer_reads_a_prediction_with_the_table_fields(viewer, own_system, client_for):
    model = PredictorModelFactory(version=3)
    prediction = PredictiveGovernanceFactory(system=own_system, model=model, risk_score=0.86, confidence=0.7)

    response = client_for(viewer).get(f"{URL}/{prediction.pk}")

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["id"] == str(prediction.pk)
    assert body["entity_type"] == "model"
    assert body["entity_id"] == str(own_system.pk)
    assert body["system_name"] == "fraud-scorer"
    assert body["prediction_type"] == "drift_risk"
    assert (body["risk_score"], body["confidence"], body["threshold"]) == (0.86, 0.7, 0.5)
    assert body["predicted_timeframe_hours"] == 24
    assert body["above_threshold"] is True
    assert body["badge"] == "Drift likely in 24 h"
    assert body["outcome"] == "pending" and body["outcome_at"] is None
    assert body["model_version"] == 3
    assert body["factors"][0] == {
        "feature": "psi_slope_6h",
        "label": "PSI trend over 6 h",
        "value": 0.042,
        "contribution": 1.31,
    }
    assert {"as_of", "created_at", "review_item_id", "outcome_evaluated_at"} <= set(body)


def test_a_prediction_below_threshold_has_no_badge(viewer, own_system, client_for):
    prediction = PredictiveGovernanceFactory(system=own_system, risk_score=0.2)

    body = client_for(viewer).get(f"{URL}/{prediction.pk}").json()

    assert (body["above_threshold"], body["badge"], body["model_version"]) == (False, None, None)


def test_the_list_holds_only_the_callers_teams_predictions(viewer, own_system, foreign_system, client_for):
    own = PredictiveGovernanceFactory(system=own_system)
    PredictiveGovernanceFactory(system=foreign_system)

    response = client_for(viewer).get(URL)

    assert response.status_code == 200
    assert ids(response) == [str(own.pk)]


def test_a_prediction_of_another_team_is_404_with_the_envelope(viewer, foreign_system, client_for):
    foreign = PredictiveGovernanceFactory(system=foreign_system)

    response = client_for(viewer).get(f"{URL}/{foreign.pk}")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_a_malformed_id_is_404(viewer, client_for):
    assert client_for(viewer).get(f"{URL}/not-a-uuid").status_code == 404


def test_an_admin_sees_every_team(admin_user, own_system, foreign_system, client_for):
    PredictiveGovernanceFactory(system=own_system)
    PredictiveGovernanceFactory(system=foreign_system)

    assert len(ids(client_for(admin_user).get(URL))) == 2


def test_entity_filters_by_system_name_or_id(viewer, own_system, team, client_for):
    from tests.factories import AISystemFactory

    other = AISystemFactory(name="churn-model", team=team)
    own = PredictiveGovernanceFactory(system=own_system)
    PredictiveGovernanceFactory(system=other)
    client = client_for(viewer)

    assert ids(client.get(URL, {"entity": "fraud-scorer"})) == [str(own.pk)]
    assert ids(client.get(URL, {"entity": str(own_system.pk)})) == [str(own.pk)]
    assert ids(client.get(URL, {"entity": "no-such-system"})) == []


def test_type_filters_and_an_unknown_type_is_a_400_naming_the_field(viewer, own_system, client_for):
    drift = PredictiveGovernanceFactory(system=own_system)
    PredictiveGovernanceFactory(system=own_system, prediction_type=PredictionType.COMPLIANCE_RISK)
    client = client_for(viewer)

    assert ids(client.get(URL, {"type": "drift_risk"})) == [str(drift.pk)]
    response = client.get(URL, {"type": "weather"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error" and list(error["fields"]) == ["type"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"above_threshold": "maybe"}, "above_threshold"),
        ({"latest": "yes please"}, "latest"),
        ({"outcome": "perhaps"}, "outcome"),
        ({"since": "last tuesday"}, "since"),
    ],
)
def test_bad_filter_values_are_400s_naming_the_field(viewer, client_for, params, field):
    response = client_for(viewer).get(URL, params)

    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]


def test_since_above_threshold_and_outcome_filter(viewer, own_system, client_for):
    now = timezone.now()
    old = PredictiveGovernanceFactory(
        system=own_system, as_of=now - timedelta(days=3), outcome=PredictionOutcome.OCCURRED
    )
    low = PredictiveGovernanceFactory(system=own_system, as_of=now - timedelta(hours=1), risk_score=0.1)
    high = PredictiveGovernanceFactory(system=own_system, as_of=now - timedelta(minutes=45), risk_score=0.9)
    client = client_for(viewer)

    since = (now - timedelta(days=1)).isoformat()
    assert set(ids(client.get(URL, {"since": since}))) == {str(low.pk), str(high.pk)}
    assert set(ids(client.get(URL, {"above_threshold": "true"}))) == {str(old.pk), str(high.pk)}
    assert ids(client.get(URL, {"above_threshold": "false"})) == [str(low.pk)]
    assert ids(client.get(URL, {"outcome": "occurred"})) == [str(old.pk)]


def test_latest_keeps_each_systems_newest_prediction_per_type(viewer, own_system, team, client_for):
    from tests.factories import AISystemFactory

    now = timezone.now()
    other = AISystemFactory(team=team)
    PredictiveGovernanceFactory(system=own_system, as_of=now - timedelta(minutes=30))
    newest_drift = PredictiveGovernanceFactory(system=own_system, as_of=now - timedelta(minutes=15))
    compliance = PredictiveGovernanceFactory(
        system=own_system, prediction_type=PredictionType.COMPLIANCE_RISK, as_of=now - timedelta(hours=2)
    )
    other_latest = PredictiveGovernanceFactory(system=other, as_of=now - timedelta(hours=5))
    client = client_for(viewer)

    latest = set(ids(client.get(URL, {"latest": "true"})))

    assert latest == {str(newest_drift.pk), str(compliance.pk), str(other_latest.pk)}
    assert len(ids(client.get(URL, {"latest": "false"}))) == 4


def test_the_list_is_cursor_paginated(viewer, own_system, client_for):
    created = [PredictiveGovernanceFactory(system=own_system) for _ in range(5)]
    client = client_for(viewer)

    first = client.get(URL, {"page_size": 2}).json()
    second = client.get(first["next"]).json()
    third = client.get(second["next"]).json()

    seen = [row["id"] for page in (first, second, third) for row in page["results"]]
    assert sorted(seen) == sorted(str(p.pk) for p in created)
    assert len(seen) == 5 and third["next"] is None


def test_anonymous_callers_get_401(anon_client):
    assert anon_client.get(URL).status_code == 401


def test_a_service_account_without_a_human_role_gets_403(make_user, team, client_for):
    ingest = make_user(Role.INGEST, teams=[team], is_service_account=True)

    assert client_for(ingest).get(URL).status_code == 403


def test_predictions_cannot_be_written_through_the_api(lead, own_system, client_for):
    prediction = PredictiveGovernanceFactory(system=own_system)
    client = client_for(lead)

    assert client.post(URL, {"system": own_system.name}).status_code == 405
    assert client.patch(f"{URL}/{prediction.pk}", {"risk_score": 0.1}).status_code == 405
    assert client.delete(f"{URL}/{prediction.pk}").status_code == 405


def _matured(system, *, above: bool, occurred: bool, **kwargs):
    return PredictiveGovernanceFactory(
        system=system,
        risk_score=0.8 if above else 0.2,
        outcome=PredictionOutcome.OCCURRED if occurred else PredictionOutcome.NOT_OCCURRED,
        outcome_evaluated_at=timezone.now(),
        **kwargs,
    )


def test_quality_reports_active_metrics_and_predicted_versus_actual(viewer, own_system, foreign_system, client_for):
    PredictorModelFactory(version=1, is_active=False, metrics={"auc": 0.6, "brier": 0.3})
    PredictorModelFactory(version=2)
    PredictorModelFactory(
        prediction_type=PredictionType.COMPLIANCE_RISK, version=1, metrics={"auc": 0.7, "brier": 0.25}
    )
    for above, occurred, count in ((True, True, 3), (True, False, 1), (False, True, 2), (False, False, 4)):
        for _ in range(count):
            _matured(own_system, above=above, occurred=occurred)
    PredictiveGovernanceFactory(system=own_system)  # pending
    _matured(foreign_system, above=True, occurred=False)  # another team: not counted

    response = client_for(viewer).get(f"{URL}/quality")

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["quality_floor"] == {"auc": 0.85, "brier": 0.2}
    by_type = {row["prediction_type"]: row for row in body["types"]}
    assert set(by_type) == set(PredictionType.values)
    drift = by_type["drift_risk"]
    assert drift["model"]["version"] == 2
    assert drift["model"]["metrics"]["auc"] == 0.91
    assert drift["model"]["meets_quality_floor"] is True
    assert (drift["matured"], drift["pending"]) == (10, 1)
    assert drift["above_threshold_occurred"] == 3
    assert drift["above_threshold_not_occurred"] == 1
    assert drift["below_threshold_occurred"] == 2
    assert drift["below_threshold_not_occurred"] == 4
    assert drift["precision"] == pytest.approx(0.75)
    assert drift["recall"] == pytest.approx(0.6)
    assert by_type["compliance_risk"]["model"]["meets_quality_floor"] is False
    assert by_type["compliance_risk"]["precision"] is None
    assert by_type["incident_probability"]["model"] is None


def test_quality_narrows_to_one_entity_and_type(viewer, own_system, team, client_for):
    from tests.factories import AISystemFactory

    other = AISystemFactory(team=team)
    _matured(own_system, above=True, occurred=True)
    _matured(other, above=True, occurred=False)
    client = client_for(viewer)

    body = client.get(f"{URL}/quality", {"entity": own_system.name, "type": "drift_risk"}).json()

    assert [row["prediction_type"] for row in body["types"]] == ["drift_risk"]
    assert body["types"][0]["precision"] == 1.0
    bad = client.get(f"{URL}/quality", {"type": "nope"})
    assert bad.status_code == 400 and "type" in bad.json()["error"]["fields"]
