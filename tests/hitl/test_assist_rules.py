"""The transparent assist rules: signal strength, history concern, risk score, rules-only suggestion, SLA."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from governance.choices import RiskClass, Severity
from hitl.assist.base import UNCALIBRATED_CONFIDENCE_CAP
from hitl.assist.features import (
    DecisionCounts,
    History,
    ItemEvidence,
    ItemKeys,
    SignalStrength,
    history_before_each,
    rule_kind,
    signal_strength,
)
from hitl.assist.rules import HISTORY_PRIOR, assess, history_concern, recommend_sla
from hitl.models import ReviewType

WEIGHTS = {"severity": 0.35, "signal_strength": 0.25, "risk_class": 0.2, "history": 0.2}
THRESHOLDS = {
    "data_quality": {"psi": {"direction": "above", "warning": 0.1, "critical": 0.25, "unit": "score"}},
    "model_perf": {"accuracy": {"direction": "below", "warning": 0.9, "critical": 0.8, "unit": "ratio"}},
}
SLA_HOURS = {"critical": 1, "high": 4, "medium": 24, "low": 72, "info": 168}


def evidence(*, severity="medium", risk_class="limited", strength=0.3, history=None, review_type="alert_triage"):
    return ItemEvidence(
        severity=severity,
        review_type=review_type,
        risk_class=risk_class,
        rule_kind="rate",
        signal=SignalStrength(strength, "test signal"),
        history=history or History(),
    )


@pytest.mark.parametrize(
    ("context", "expected"),
    [
        ({"category": "data_quality", "signal": "psi", "value": 0.1}, 0.0),  # at warning
        ({"category": "data_quality", "signal": "psi", "value": 0.25}, 0.6),  # at critical
        ({"category": "data_quality", "signal": "psi", "value": 0.4}, 1.0),  # as far past critical again
        ({"category": "data_quality", "signal": "psi", "value": 0.175}, 0.3),  # halfway
        ({"category": "model_perf", "signal": "accuracy", "value": 0.85}, 0.3),  # "below" signals count down
        ({"category": "model_perf", "signal": "accuracy", "value": 0.95}, 0.0),  # healthy side of warning
        ({"value": 7, "warning": 5, "critical": 9, "direction": "above"}, 0.3),  # levels from the context itself
        ({"breaches": 3, "min_breaches": 3}, 0.3),  # a rate alert just firing
        ({"breaches": 12, "min_breaches": 3}, 0.6),  # never past critical: they are warning breaches
        ({"signals": ["psi", "dp_gap"]}, 0.5),
        ({"signals": ["a", "b", "c", "d", "e"]}, 1.0),
        ({"rule": "absence:heartbeat", "window_seconds": 600}, 0.5),
        ({"justification": "please"}, 0.0),
    ],
)
def test_signal_strength_measures_how_far_the_evidence_went_past_warning(context, expected):
    assert signal_strength(context, thresholds=THRESHOLDS).value == pytest.approx(expected)


def test_a_threshold_alert_context_takes_its_missing_warning_level_from_the_configured_thresholds():
    # The oversight engine writes value/critical/direction for threshold alerts, but not warning.
    context = {"category": "data_quality", "signal": "psi", "value": 0.175, "critical": 0.25, "direction": "above"}

    strength = signal_strength(context, thresholds=THRESHOLDS)

    assert strength.value == pytest.approx(0.3)
    assert "warning 0.1" in strength.detail


@given(st.dictionaries(st.sampled_from(["value", "warning", "critical", "breaches", "min_breaches", "signals",
                                        "direction", "category", "signal"]),
                       st.one_of(st.none(), st.booleans(), st.floats(allow_nan=True), st.integers(), st.text(),
                                 st.lists(st.text(max_size=3), max_size=6))))  # fmt: skip
def test_signal_strength_of_any_context_is_between_0_and_1(context):
    assert 0.0 <= signal_strength(context, thresholds=THRESHOLDS).value <= 1.0


def test_rule_kind_is_the_prefix_of_the_rule_name():
    assert [rule_kind(r) for r in ("threshold:security", "rate:fairness", "compound", "absence:heartbeat", "x")] == [
        "threshold",
        "rate",
        "compound",
        "absence",
        "other",
    ]


def test_without_history_the_history_factor_is_the_prior():
    assert history_concern(History()).value == pytest.approx(HISTORY_PRIOR)


def test_a_fingerprint_people_always_approved_has_a_low_history_factor_and_one_always_escalated_a_high_one():
    approved = History(fingerprint=DecisionCounts(approve=30))
    escalated = History(fingerprint=DecisionCounts(escalate=30))

    assert history_concern(approved).value < 0.05
    assert history_concern(escalated).value > 0.9


def test_one_odd_decision_does_not_swing_the_history_factor():
    one_escalation = History(fingerprint=DecisionCounts(escalate=1))

    assert history_concern(one_escalation).value < 0.6


def test_rejections_count_half_as_much_as_escalations():
    rejected = history_concern(History(fingerprint=DecisionCounts(reject=50))).value
    escalated = history_concern(History(fingerprint=DecisionCounts(escalate=50))).value

    assert rejected == pytest.approx(escalated / 2, abs=0.03)


def test_risk_score_is_100_times_the_weighted_sum_of_the_factors():
    history = History(fingerprint=DecisionCounts(approve=8))
    item = evidence(severity="medium", risk_class="limited", strength=0.3, history=history)

    assessment = assess(item, weights=WEIGHTS)

    expected = 100 * (0.35 * 0.35 + 0.25 * 0.3 + 0.2 * 0.3 + 0.2 * history_concern(history).value)
    assert assessment.risk_score == pytest.approx(expected, abs=0.01)
    assert set(assessment.factors) == {"severity", "signal_strength", "risk_class", "history"}
    assert "risk_class 0.30×0.2 (6.0)" in assessment.explain_risk()


def test_risk_weights_come_from_the_caller():
    item = evidence(severity="critical", risk_class="minimal", strength=0.0)

    only_severity = assess(item, weights={"severity": 1.0, "signal_strength": 0, "risk_class": 0, "history": 0})

    assert only_severity.risk_score == pytest.approx(100.0)


def test_rules_escalate_critical_items_and_high_risk_ones():
    critical = assess(evidence(severity=Severity.CRITICAL, risk_class="minimal", strength=0.0), weights=WEIGHTS)
    risky = assess(evidence(severity="high", risk_class=RiskClass.PROHIBITED, strength=0.9), weights=WEIGHTS)

    assert critical.decision == "escalate"
    assert risky.decision == "escalate"
    assert risky.risk_score >= 60


def test_rules_reject_what_people_kept_rejecting_on_the_same_fingerprint():
    history = History(fingerprint=DecisionCounts(reject=9, approve=1))

    assessment = assess(evidence(history=history, review_type=ReviewType.DATA_ACCESS), weights=WEIGHTS)

    assert assessment.decision == "reject"
    assert "rejected 9 of 10" in assessment.reason


def test_rules_approve_low_risk_items():
    assessment = assess(evidence(severity="low", risk_class="minimal", strength=0.1), weights=WEIGHTS)

    assert assessment.decision == "approve"
    assert assessment.risk_score < 30


@given(
    severity=st.sampled_from(Severity.values),
    risk_class=st.sampled_from(RiskClass.values),
    strength=st.floats(0, 1),
    counts=st.tuples(st.integers(0, 500), st.integers(0, 500), st.integers(0, 500)),
)
def test_rules_confidence_is_uncalibrated_and_never_clears_the_auto_approval_floor(
    severity, risk_class, strength, counts
):
    history = History(fingerprint=DecisionCounts(*counts), rule=DecisionCounts(*counts))

    assessment = assess(evidence(severity=severity, risk_class=risk_class, strength=strength, history=history),
                        weights=WEIGHTS)  # fmt: skip

    assert 0.5 <= assessment.confidence <= UNCALIBRATED_CONFIDENCE_CAP < 0.9
    assert 0 <= assessment.risk_score <= 100


def test_history_before_each_row_counts_only_earlier_decisions():
    keys = ItemKeys(fingerprint="fp", rule="rate:x", system_id=1)
    other = ItemKeys(fingerprint="fp2", rule="rate:x", system_id=2)

    histories = history_before_each([(keys, "approve"), (other, "escalate"), (keys, "reject"), (keys, "approve")])

    assert histories[0] == History()  # never its own decision: no label leakage
    assert histories[2].fingerprint == DecisionCounts(approve=1)
    assert histories[2].rule == DecisionCounts(approve=1, escalate=1)
    assert histories[3].fingerprint == DecisionCounts(approve=1, reject=1)
    assert histories[3].system == DecisionCounts(approve=1, reject=1)


QUEUED = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(("risk", "hours"), [(20, 24), (49.9, 24), (50, 12), (74.9, 12), (75, 6), (100, 6)])
def test_sla_recommendation_is_the_severity_sla_cut_when_risk_is_high(risk, hours):
    sla = recommend_sla(severity="medium", risk_score=risk, created_at=QUEUED, sla_due_at=None, sla_hours=SLA_HOURS)

    assert sla["hours"] == hours
    assert sla["due_at"] == (QUEUED + timedelta(hours=hours)).isoformat()
    assert "medium SLA 24 h" in sla["reason"]


def test_sla_recommendation_is_never_later_than_the_items_own_sla():
    due = QUEUED + timedelta(hours=2)

    sla = recommend_sla(severity="low", risk_score=10, created_at=QUEUED, sla_due_at=due, sla_hours=SLA_HOURS)

    assert sla["due_at"] == due.isoformat()


def test_a_provider_may_propose_a_shorter_sla_but_never_a_longer_one():
    shorter = recommend_sla(
        severity="medium", risk_score=10, created_at=QUEUED, sla_due_at=None, sla_hours=SLA_HOURS, max_hours=3
    )
    longer = recommend_sla(
        severity="medium", risk_score=10, created_at=QUEUED, sla_due_at=None, sla_hours=SLA_HOURS, max_hours=500
    )

    assert shorter["hours"] == 3
    assert longer["hours"] == 24
