"""Transparent auto-assist rules: a risk score anyone can recompute by hand, a rules-only suggestion,
and the SLA recommendation.

Risk score = 100 × Σ weight × factor, weights from ``hitl.assist_weights`` (they sum to 1), every
factor in 0..1:

* severity — critical 1, high 0.75, medium 0.35, low 0.15, info 0.05;
* signal_strength — :func:`hitl.assist.features.signal_strength` (0 at warning, 0.6 at critical, 1 far past);
* risk_class — the system's EU AI Act tier: prohibited 1, high 0.75, limited 0.3, minimal 0.1;
* history — how concerning past human decisions were: the share of escalations plus half the share of
  rejections (a reject is a dismissal or a refusal, less alarming than an escalation), estimated for
  the rule, then the system, then the fingerprint, each level shrunk toward the one before with two
  pseudo-decisions, starting from a prior of 0.25 — so one odd decision never swings the score.

The rules-only suggestion (used when no model is trained yet) escalates at risk ≥ 60 or critical
severity, rejects what humans kept rejecting on the same fingerprint, and approves the rest. Its
confidence is a heuristic — distance from the decision boundary — **not calibrated**, and capped at
0.85 so that it can never clear the auto-approval confidence floor on its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from governance.choices import RiskClass, Severity
from hitl.assist.base import UNCALIBRATED_CONFIDENCE_CAP
from hitl.assist.features import DecisionCounts, History, ItemEvidence
from hitl.models import ReviewDecision

SEVERITY_FACTOR = {
    Severity.CRITICAL: 1.0,
    Severity.HIGH: 0.75,
    Severity.MEDIUM: 0.35,
    Severity.LOW: 0.15,
    Severity.INFO: 0.05,
}
RISK_CLASS_FACTOR = {RiskClass.PROHIBITED: 1.0, RiskClass.HIGH: 0.75, RiskClass.LIMITED: 0.3, RiskClass.MINIMAL: 0.1}
HISTORY_PRIOR = 0.25
HISTORY_PSEUDO_DECISIONS = 2
REJECT_CONCERN = 0.5
HISTORY_SCOPE_ORDER = ("rule", "system", "fingerprint")  # general → specific

ESCALATE_AT_RISK = 60.0
REJECT_AT_SHARE = 0.6
REJECT_MIN_DECISIONS = 3
# SLA: above these risk scores the severity's SLA is cut to this fraction.
SLA_CUTS = ((75.0, 0.25), (50.0, 0.5))


@dataclass(frozen=True)
class Factor:
    value: float
    weight: float
    detail: str

    @property
    def contribution(self) -> float:
        return 100 * self.value * self.weight

    def as_dict(self) -> dict[str, Any]:
        return {
            "value": round(self.value, 4),
            "weight": self.weight,
            "contribution": round(self.contribution, 2),
            "detail": self.detail,
        }


@dataclass(frozen=True)
class RuleAssessment:
    risk_score: float
    factors: dict[str, Factor]
    decision: str
    confidence: float  # heuristic, uncalibrated
    reason: str

    def explain_risk(self) -> str:
        parts = " + ".join(
            f"{name} {factor.value:.2f}×{factor.weight:g} ({factor.contribution:.1f})"
            for name, factor in self.factors.items()
        )
        return f"risk {self.risk_score:.0f}/100 = {parts}"


def _concern(counts: DecisionCounts) -> float:
    return counts.escalate + REJECT_CONCERN * counts.reject


def history_concern(history: History) -> Factor:
    """The history factor (weight filled in by :func:`assess`)."""
    estimate = HISTORY_PRIOR
    for scope in HISTORY_SCOPE_ORDER:
        counts = history.scope(scope)
        estimate = (_concern(counts) + HISTORY_PSEUDO_DECISIONS * estimate) / (counts.total + HISTORY_PSEUDO_DECISIONS)
    detail = "; ".join(f"{scope} {history.scope(scope).describe()}" for scope in reversed(HISTORY_SCOPE_ORDER))
    return Factor(value=estimate, weight=0.0, detail=f"past human decisions: {detail}")


def assess(evidence: ItemEvidence, *, weights: Mapping[str, float]) -> RuleAssessment:
    """Risk score, factors and the rules-only suggestion for one item."""
    history = history_concern(evidence.history)
    factors = {
        "severity": Factor(SEVERITY_FACTOR.get(evidence.severity, 0.5), weights["severity"], evidence.severity),
        "signal_strength": Factor(evidence.signal.value, weights["signal_strength"], evidence.signal.detail),
        "risk_class": Factor(
            RISK_CLASS_FACTOR.get(evidence.risk_class, 0.5), weights["risk_class"], f"{evidence.risk_class} system"
        ),
        "history": Factor(history.value, weights["history"], history.detail),
    }
    risk = min(100.0, max(0.0, sum(f.contribution for f in factors.values())))
    decision, confidence, reason = _rules_decision(evidence, risk)
    return RuleAssessment(
        risk_score=round(risk, 2), factors=factors, decision=decision, confidence=confidence, reason=reason
    )


def _rules_decision(evidence: ItemEvidence, risk: float) -> tuple[str, float, str]:
    fingerprint = evidence.history.fingerprint
    reject_share = fingerprint.reject / fingerprint.total if fingerprint.total else 0.0
    if risk >= ESCALATE_AT_RISK or evidence.severity == Severity.CRITICAL:
        margin = max(0.0, (risk - ESCALATE_AT_RISK) / (100 - ESCALATE_AT_RISK))
        reason = (
            f"risk {risk:.0f} ≥ {ESCALATE_AT_RISK:g}"
            if risk >= ESCALATE_AT_RISK
            else f"critical severity (risk {risk:.0f})"
        )
        return ReviewDecision.ESCALATE, _heuristic_confidence(margin), f"escalate: {reason}"
    if fingerprint.total >= REJECT_MIN_DECISIONS and reject_share >= REJECT_AT_SHARE:
        margin = (reject_share - 0.5) / 0.5
        return (
            ReviewDecision.REJECT,
            _heuristic_confidence(margin),
            f"reject: people rejected {fingerprint.reject} of {fingerprint.total} past items of this fingerprint",
        )
    margin = (ESCALATE_AT_RISK - risk) / ESCALATE_AT_RISK
    return ReviewDecision.APPROVE, _heuristic_confidence(margin), f"approve: risk {risk:.0f} < {ESCALATE_AT_RISK:g}"


def _heuristic_confidence(margin: float) -> float:
    """0.5 on the decision boundary, rising with the margin to the uncalibrated cap."""
    return round(0.5 + (UNCALIBRATED_CONFIDENCE_CAP - 0.5) * min(1.0, max(0.0, margin)), 4)


def recommend_sla(
    *,
    severity: str,
    risk_score: float,
    created_at: datetime,
    sla_due_at: datetime | None,
    sla_hours: Mapping[str, float],
    max_hours: float | None = None,
) -> dict[str, Any]:
    """Hours for a human to decide: the severity's ``hitl.sla_hours``, cut to half at risk ≥ 50 and to
    a quarter at risk ≥ 75. ``due_at`` counts from when the item was queued and is never later than
    the item's own SLA. ``max_hours`` lets a provider propose a shorter time (never a longer one)."""
    base = float(sla_hours.get(severity, sla_hours.get(Severity.MEDIUM, 24)))
    hours, reason = base, f"{severity} SLA {base:g} h"
    for floor, fraction in SLA_CUTS:
        if risk_score >= floor:
            hours = base * fraction
            reason += f", cut to {fraction:g}× because risk {risk_score:.0f} ≥ {floor:g}"
            break
    if max_hours is not None and max_hours < hours:
        hours = max_hours
        reason += f", shortened to {max_hours:g} h as proposed"
    due_at = created_at + timedelta(hours=hours)
    if sla_due_at is not None and sla_due_at < due_at:
        due_at = sla_due_at
    return {"hours": round(hours, 3), "due_at": due_at.isoformat(), "reason": reason}
