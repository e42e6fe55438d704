"""The policy evaluator: first-match decisions over system facts, and the facts read from evaluation runs and events."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st

from governance.choices import EvaluationProvenance
from governance.services.policy_eval import (
    MetricKey,
    SignalKey,
    SystemFacts,
    policy_decide,
    policy_facts,
    policy_requirements,
    window_seconds,
)
from oversight.selectors import _percentile, signal_aggregates
from oversight.services.ingest import ingest_events
from tests.factories import AISystemFactory, EvaluationRunFactory

ACCURACY = MetricKey("accuracy", "exact_match")
DP_MAX_24H = SignalKey("dp_gap", "fairness", "max", 86400)


def document(*rules, scope=None, default="allow") -> dict:
    spec = {"default_action": default, "rules": list(rules)}
    if scope is not None:
        spec["scope"] = scope
    return {"apiVersion": "vigil/v1", "kind": "Policy", "metadata": {"id": "p", "name": "P"}, "spec": spec}


def rule(rule_id, action, *when, thresholds=None, severity="high", category="model_perf") -> dict:
    body = {"id": rule_id, "category": category, "severity": severity, "action": action, "when": list(when)}
    if thresholds is not None:
        body["thresholds"] = thresholds
    return body


def facts(**overrides) -> SystemFacts:
    base = {"system_id": "s", "name": "credit-scorer", "risk_class": "high", "entity_type": "model", "team": "fraud-ml",
            "metrics": {ACCURACY: 0.85}, "signals": {DP_MAX_24H: 0.12}}  # fmt: skip
    return SystemFacts(**{**base, **overrides})


FLOOR = {"metric": "exact_match", "suite": "accuracy", "op": "<", "value": 0.8}
DEGRADED = {"metric": "exact_match", "suite": "accuracy", "op": "<", "value": 0.9}


def test_the_first_matching_rule_decides():
    policy = document(rule("floor", "deny", FLOOR), rule("degraded", "require_review", DEGRADED))
    decision = policy_decide(policy, facts())
    assert (decision.action, decision.rule_id, decision.severity) == ("require_review", "degraded", "high")
    assert decision.reasons == ("exact_match (accuracy) = 0.85 < 0.9",)
    assert policy_decide(policy, facts(metrics={ACCURACY: 0.7})).rule_id == "floor"


def test_no_match_takes_the_default_action():
    decision = policy_decide(document(rule("floor", "deny", FLOOR), default="require_review"), facts())
    assert (decision.action, decision.rule_id, decision.reasons) == ("require_review", None, ("no rule matched",))


def test_out_of_scope_systems_are_not_judged():
    policy = document(rule("all", "deny"), scope={"risk_class": ["high"], "entity_type": ["system"]})
    assert policy_decide(policy, facts()).action == "not_applicable"
    assert not policy_decide(policy, facts()).applies
    assert policy_decide(policy, facts(entity_type="system")).action == "deny"


def test_missing_evidence_never_fires_a_rule_and_is_reported():
    decision = policy_decide(document(rule("floor", "deny", FLOOR)), facts(metrics={}))
    assert decision.action == "allow"
    assert decision.missing == ("exact_match (accuracy)",)


def test_attribute_conditions():
    in_high = {"attribute": "risk_class", "op": "in", "value": ["high", "limited"]}
    not_team = {"attribute": "team", "op": "!=", "value": "fraud-ml"}
    assert policy_decide(document(rule("r", "deny", in_high)), facts()).action == "deny"
    assert policy_decide(document(rule("r", "deny", in_high)), facts(risk_class="minimal")).action == "allow"
    assert policy_decide(document(rule("r", "deny", not_team)), facts()).action == "allow"


def test_graded_thresholds_name_the_level_crossed():
    graded = {"signal": "dp_gap", "category": "fairness", "aggregate": "max", "window": "24h", "direction": "above",
              "levels": {"info": 0.05, "warning": 0.1, "critical": 0.2}}  # fmt: skip
    decision = policy_decide(document(rule("dp", "require_review", thresholds=graded)), facts())
    assert (decision.action, decision.level) == ("require_review", "warning")
    assert policy_decide(document(rule("dp", "deny", thresholds=graded)), facts(signals={DP_MAX_24H: 0.01})).action == (
        "allow"
    )
    below = {"metric": "exact_match", "suite": "accuracy", "direction": "below", "levels": {"critical": 0.9}}
    assert policy_decide(document(rule("acc", "deny", thresholds=below)), facts()).level == "critical"


def test_percent_limits_on_ratio_subjects_are_compared_as_ratios():
    in_percent = {"metric": "exact_match", "suite": "accuracy", "op": "<", "value": 90, "unit": "percent"}
    assert policy_decide(document(rule("r", "deny", in_percent)), facts()).action == "deny"  # 0.85 < 0.90


def test_requirements_collect_every_subject_with_defaults():
    when = {"signal": "psi", "op": ">", "value": 0.2}
    graded = {"signal": "dp_gap", "category": "fairness", "aggregate": "max", "window": "24h", "direction": "above",
              "levels": {"warning": 0.1}}  # fmt: skip
    needed = policy_requirements(document(rule("a", "deny", FLOOR, when), rule("b", "deny", thresholds=graded)))
    assert needed.metrics == {ACCURACY}
    assert needed.signals == {SignalKey("psi", "", "last", 86400), DP_MAX_24H}


@given(st.from_regex(r"\A[1-9][0-9]{0,5}[smhd]\Z"))
def test_windows_parse(text):
    unit = {"s": 1, "m": 60, "h": 3600, "d": 86400}[text[-1]]
    assert window_seconds(text) == int(text[:-1]) * unit


@pytest.mark.parametrize("text", ["0m", "15", "1w", "-5m", "m"])
def test_bad_windows_are_refused(text):
    with pytest.raises(ValueError):
        window_seconds(text)


@pytest.mark.django_db
def test_facts_take_the_latest_verified_result_per_metric():
    system = AISystemFactory()
    now = timezone.now()

    def run(suite, value, ago, provenance=EvaluationProvenance.GATEWAY):
        EvaluationRunFactory(system=system, suite=suite, metric="exact_match", value=value, ran_at=now - ago,
                             provenance=provenance)  # fmt: skip

    run("accuracy", 0.7, timedelta(days=2))
    run("accuracy", 0.92, timedelta(days=1))
    # Posted, not run through the gateway: not evidence, even though it is the newest.
    run("accuracy", 0.99, timedelta(0), EvaluationProvenance.REPORTED)
    run("holdout", 0.5, timedelta(hours=1), EvaluationProvenance.REPORTED)
    needed = policy_requirements(document(rule("a", "deny", FLOOR, {"metric": "exact_match", "op": "<", "value": 1})))
    got = policy_facts(systems=[system], requirements=needed, at=now)[system.pk]
    assert got.metrics[ACCURACY] == 0.92
    assert got.metrics[MetricKey("", "exact_match")] == 0.5  # any suite: the external holdout result is newest
    earlier = policy_facts(systems=[system], requirements=needed, at=now - timedelta(hours=36))[system.pk]
    assert earlier.metrics[ACCURACY] == 0.7


def _ingest(system, signal, values, *, at, category="fairness"):
    items = [
        {
            "system": str(system.pk),
            "category": category,
            "severity": "info",
            "signal": signal,
            "value": value,
            "occurred_at": (at - timedelta(minutes=len(values) - i)).isoformat(),
        }  # fmt: skip
        for i, value in enumerate(values)
    ]
    ingest_events(items=items, submitted_by=None, now=at)


@pytest.mark.django_db
def test_signal_aggregates_over_the_window():
    system, quiet = AISystemFactory(), AISystemFactory()
    now = timezone.now()
    _ingest(system, "dp_gap", [0.05, 0.3, 0.1, 0.2], at=now)
    _ingest(system, "dp_gap", [0.9], at=now - timedelta(days=2))  # outside a 24 h window
    got = signal_aggregates(system_ids=[system.pk, quiet.pk], signal="dp_gap", category="fairness",
                            window=timedelta(hours=24), until=now)  # fmt: skip
    mine = got[system.pk]
    assert (mine["count"], mine["min"], mine["max"], mine["last"]) == (4.0, 0.05, 0.3, 0.2)
    assert mine["sum"] == pytest.approx(0.65) and mine["avg"] == pytest.approx(0.1625)
    assert mine["p50"] == pytest.approx(_percentile(sorted([0.05, 0.3, 0.1, 0.2]), 0.5))
    assert mine["p95"] == pytest.approx(_percentile(sorted([0.05, 0.3, 0.1, 0.2]), 0.95))
    assert got[quiet.pk]["count"] == 0 and got[quiet.pk]["last"] is None
    other_category = signal_aggregates(system_ids=[system.pk], signal="dp_gap", category="security",
                                       window=timedelta(hours=24), until=now)  # fmt: skip
    assert other_category[system.pk]["count"] == 0


@pytest.mark.django_db
def test_a_policy_decides_on_stored_telemetry():
    system = AISystemFactory(risk_class="high")
    now = timezone.now()
    _ingest(system, "dp_gap", [0.05, 0.25], at=now)
    policy = document(rule("dp", "deny", {"signal": "dp_gap", "category": "fairness", "aggregate": "max",
                                          "window": "24h", "op": ">", "value": 0.2}, category="fairness"))  # fmt: skip
    got = policy_facts(systems=[system], requirements=policy_requirements(policy), at=now)[system.pk]
    decision = policy_decide(policy, got)
    assert (decision.action, decision.rule_id) == ("deny", "dp")
    assert decision.reasons == ("max(dp_gap) over 1d = 0.25 > 0.2",)


@given(st.lists(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), min_size=1, max_size=50),
       st.sampled_from([0.5, 0.95, 0.99]))  # fmt: skip
def test_percentile_lies_between_the_neighbouring_values(values, q):
    ordered = sorted(values)
    result = _percentile(ordered, q)
    assert ordered[0] <= result <= ordered[-1]


@pytest.mark.django_db
def test_many_series_at_once_agree_with_one_series_at_a_time(django_assert_max_num_queries):
    from oversight.selectors import SIGNAL_AGGREGATES, SignalSeries, signal_aggregates_many

    systems = [AISystemFactory(), AISystemFactory(), AISystemFactory()]
    now = timezone.now()
    _ingest(systems[0], "dp_gap", [0.05, 0.3, 0.1, 0.2, 0.15], at=now)
    _ingest(systems[1], "dp_gap", [0.4], at=now - timedelta(hours=3))
    _ingest(systems[1], "psi", [0.2, 0.1], at=now, category="data_quality")
    series = [
        SignalSeries("dp_gap", "fairness", timedelta(hours=24), frozenset(SIGNAL_AGGREGATES)),
        SignalSeries("dp_gap", None, timedelta(hours=1), frozenset({"count", "max", "last"})),
        SignalSeries("psi", "data_quality", timedelta(days=7), frozenset({"avg", "p95", "sum"})),
    ]
    ids = [system.pk for system in systems]
    with django_assert_max_num_queries(1 if connection.vendor == "postgresql" else 12):
        many = signal_aggregates_many(system_ids=ids, series=series, until=now)
    for index, item in enumerate(series):
        one = signal_aggregates(system_ids=ids, signal=item.signal, category=item.category, window=item.window,
                                until=now)  # fmt: skip
        for system_id in ids:
            expected = {name: one[system_id][name] for name in item.aggregates}
            assert many[system_id][index] == pytest.approx(expected), (item, system_id)
