"""An item's evidence as numbers: severity, signal strength, system risk class, rule kind and the
history of past human decisions on the same fingerprint, rule and system.

Set-based for a whole chunk: :func:`history_for_items` answers three GROUP BY queries whatever the
chunk size; :func:`history_before_each` replays a time-ordered decision log in memory so a training
row only ever sees the decisions taken before it (no label leakage). Both feed the same
:class:`ItemEvidence`, so training and live assist compute identical features.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from django.db.models import Count, Q

from config import registry
from governance.choices import RiskClass, Severity
from hitl.models import Decision, DecisionSource, ReviewDecision, ReviewType
from oversight.models import Category

DECISIONS = tuple(ReviewDecision.values)  # approve, reject, escalate
HISTORY_SCOPES = ("fingerprint", "rule", "system")
RULE_KINDS = ("threshold", "rate", "compound", "absence", "other")
# TextChoices.values rebuilds its list on every access: read the enumerations once.
SEVERITIES = tuple(Severity.values)
REVIEW_TYPES = tuple(ReviewType.values)
RISK_CLASSES = tuple(RiskClass.values)
# Signal strength: 0 at the warning level, STRENGTH_AT_CRITICAL at the critical level, 1 when the value
# is as far past critical again as critical is past warning. Crossing critical is the big step.
STRENGTH_AT_CRITICAL = 0.6
# A rate alert is a run of warning-level breaches: min_breaches of them is this strong, never past critical.
STRENGTH_PER_MIN_BREACHES = 0.3
# A compound alert: each distinct breaching signal adds this much (four or more is the maximum).
STRENGTH_PER_COMPOUND_SIGNAL = 0.25
# A silent heartbeat says the system may be down, but measures nothing: a fixed middling strength.
ABSENCE_STRENGTH = 0.5


@dataclass(frozen=True)
class DecisionCounts:
    """Past human decisions on one scope (a fingerprint, a rule or a system)."""

    approve: int = 0
    reject: int = 0
    escalate: int = 0

    @property
    def total(self) -> int:
        return self.approve + self.reject + self.escalate

    def count(self, decision: str) -> int:
        return getattr(self, str(decision))

    def smoothed_share(self, decision: str) -> float:
        """Share of ``decision`` with one pseudo-decision spread evenly (⅓ each with no history)."""
        return (self.count(decision) + 1 / 3) / (self.total + 1)

    def describe(self) -> str:
        if not self.total:
            return "none"
        return f"{self.total} ({self.approve} approve / {self.reject} reject / {self.escalate} escalate)"

    def as_dict(self) -> dict[str, int]:
        return {"approve": self.approve, "reject": self.reject, "escalate": self.escalate}


NO_DECISIONS = DecisionCounts()


@dataclass(frozen=True)
class History:
    fingerprint: DecisionCounts = NO_DECISIONS
    rule: DecisionCounts = NO_DECISIONS
    system: DecisionCounts = NO_DECISIONS

    def scope(self, name: str) -> DecisionCounts:
        return getattr(self, name)


@dataclass(frozen=True)
class SignalStrength:
    value: float  # 0..1
    detail: str


@dataclass(frozen=True)
class ItemEvidence:
    """Everything observable about one item that rules and the model read."""

    severity: str
    review_type: str
    risk_class: str
    rule_kind: str
    signal: SignalStrength
    history: History = field(default_factory=History)


@dataclass(frozen=True)
class ItemKeys:
    """The scopes an item's history is looked up by."""

    fingerprint: str
    rule: str
    system_id: Any


def rule_kind(rule: str) -> str:
    """``threshold:data_quality`` → ``threshold``; ``compound`` → ``compound``; anything else → ``other``."""
    head = (rule or "").split(":", 1)[0]
    return head if head in RULE_KINDS else "other"


def detection_thresholds() -> dict[str, Mapping[str, Any]]:
    """category → signal → {warning, critical, direction}: fills what an item's context leaves out."""
    return {category: registry.get(f"oversight.thresholds.{category}") for category in Category.values}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def signal_strength(context: Mapping[str, Any], *, thresholds: Mapping[str, Mapping[str, Any]]) -> SignalStrength:
    """How far the evidence went past its warning level toward (or over) critical, 0..1.

    Reads what the oversight engine writes into ``context``: ``value`` with ``warning``/``critical``/
    ``direction`` (missing levels come from the signal's configured thresholds), ``breaches``/
    ``min_breaches`` for a rate alert, ``signals`` for a compound alert, ``window_seconds`` with a
    heartbeat for an absence alert.
    """
    signals = context.get("signals")
    if isinstance(signals, list) and signals:
        distinct = len({str(s) for s in signals})
        value = min(1.0, STRENGTH_PER_COMPOUND_SIGNAL * distinct)
        return SignalStrength(value, f"{distinct} signals breached together ({', '.join(map(str, signals[:5]))})")
    spec = thresholds.get(str(context.get("category", "")), {}).get(str(context.get("signal", "")), {})
    value = _number(context.get("value"))
    warning = _number(context.get("warning", spec.get("warning")))
    critical = _number(context.get("critical", spec.get("critical")))
    if value is not None and warning is not None and critical is not None and warning != critical:
        direction = context.get("direction") or spec.get("direction") or ("above" if critical > warning else "below")
        sign = 1.0 if direction == "above" else -1.0
        span = abs(critical - warning)
        past = sign * (value - warning) / span  # 0 at warning, 1 at critical
        if past <= 0:
            strength = 0.0
        elif past < 1:
            strength = STRENGTH_AT_CRITICAL * past
        else:
            strength = STRENGTH_AT_CRITICAL + (1 - STRENGTH_AT_CRITICAL) * min(1.0, past - 1)
        where = "past critical" if past >= 1 else "past warning" if past > 0 else "within warning"
        return SignalStrength(
            round(strength, 4),
            f"{context.get('signal') or 'value'} {value:g} {where} (warning {warning:g}, "
            f"critical {critical:g}, {direction})",
        )
    breaches, needed = _number(context.get("breaches")), _number(context.get("min_breaches"))
    if breaches is not None and needed is not None and needed > 0:
        strength = min(STRENGTH_AT_CRITICAL, max(0.0, STRENGTH_PER_MIN_BREACHES * breaches / needed))
        return SignalStrength(round(strength, 4), f"{breaches:g} warning breaches (rule needs {needed:g})")
    if rule_kind(str(context.get("rule", ""))) == "absence" or "last_heartbeat_at" in context:
        return SignalStrength(ABSENCE_STRENGTH, "heartbeat silent for the absence window")
    return SignalStrength(0.0, "no measured signal in the evidence")


def item_evidence(
    *,
    severity: str,
    review_type: str,
    risk_class: str,
    rule: str,
    context: Mapping[str, Any],
    history: History,
    thresholds: Mapping[str, Mapping[str, Any]],
) -> ItemEvidence:
    return ItemEvidence(
        severity=severity,
        review_type=review_type,
        risk_class=risk_class,
        rule_kind=rule_kind(rule),
        signal=signal_strength(context if isinstance(context, Mapping) else {}, thresholds=thresholds),
        history=history,
    )


def human_decisions(*, since: datetime | None = None, until: datetime | None = None):
    """Decisions people took (not policies, not bulk triage, not shadow proposals): what the model learns."""
    queryset = Decision.objects.filter(source=DecisionSource.HUMAN, shadow=False)
    if since is not None:
        queryset = queryset.filter(decided_at__gte=since)
    if until is not None:
        queryset = queryset.filter(decided_at__lte=until)
    return queryset


def history_for_items(items: Sequence[ItemKeys], *, since: datetime | None = None) -> list[History]:
    """Past human decisions per fingerprint, rule and system of each item.

    One GROUP BY (fingerprint, rule, system, decision) over the decisions touching any of the chunk's
    fingerprints, rules or systems, folded into the three scopes here: one scan whatever the chunk.
    """
    fingerprints = {item.fingerprint for item in items} - {""}
    rules = {item.rule for item in items} - {""}
    systems = {item.system_id for item in items} - {None}
    if not (fingerprints or rules or systems):
        return [History() for _ in items]
    touching = Q(item__fingerprint__in=list(fingerprints)) | Q(item__rule__in=list(rules))
    touching |= Q(item__system_id__in=list(systems))
    rows = (
        human_decisions(since=since)
        .filter(touching)
        .values_list("item__fingerprint", "item__rule", "item__system_id", "decision")
        .annotate(n=Count("id"))
        .order_by()
    )
    tallies: dict[str, dict[Any, dict[str, int]]] = {scope: {} for scope in HISTORY_SCOPES}
    for fingerprint, rule, system_id, decision, n in rows:
        for scope, key, wanted in (
            ("fingerprint", fingerprint, fingerprints),
            ("rule", rule, rules),
            ("system", system_id, systems),
        ):
            if key in wanted:
                tally = tallies[scope].setdefault(key, dict.fromkeys(DECISIONS, 0))
                tally[decision] += n
    counts = {scope: {key: DecisionCounts(**t) for key, t in by_key.items()} for scope, by_key in tallies.items()}
    return [
        History(
            fingerprint=counts["fingerprint"].get(item.fingerprint, NO_DECISIONS),
            rule=counts["rule"].get(item.rule, NO_DECISIONS),
            system=counts["system"].get(item.system_id, NO_DECISIONS),
        )
        for item in items
    ]


def history_before_each(rows: Iterable[tuple[ItemKeys, str]]) -> list[History]:
    """For a time-ordered log of (item keys, decision): each row's history of the rows before it."""
    tallies: dict[tuple[str, Any], dict[str, int]] = {}
    result = []
    for keys, decision in rows:
        scoped = {
            "fingerprint": ("fingerprint", keys.fingerprint),
            "rule": ("rule", keys.rule),
            "system": ("system", keys.system_id),
        }
        # Blank keys are never tallied, so an item without a fingerprint has no fingerprint history.
        result.append(History(**{scope: DecisionCounts(**tallies.get(key, {})) for scope, key in scoped.items()}))
        for key in scoped.values():
            if key[1] not in ("", None):
                tally = tallies.setdefault(key, dict.fromkeys(DECISIONS, 0))
                tally[str(decision)] += 1
    return result


FEATURE_NAMES: tuple[str, ...] = (
    *(f"severity={s}" for s in SEVERITIES),
    *(f"review_type={t}" for t in REVIEW_TYPES),
    *(f"risk_class={r}" for r in RISK_CLASSES),
    *(f"rule_kind={k}" for k in RULE_KINDS),
    "signal_strength",
    *(f"{scope}.{part}" for scope in HISTORY_SCOPES for part in (*(f"{d}_share" for d in DECISIONS), "log_count")),
)


def feature_vector(evidence: ItemEvidence) -> list[float]:
    """The values of :data:`FEATURE_NAMES` for one item (one-hot categories, shares, log counts)."""
    row = [float(evidence.severity == s) for s in SEVERITIES]
    row += [float(evidence.review_type == t) for t in REVIEW_TYPES]
    row += [float(evidence.risk_class == r) for r in RISK_CLASSES]
    row += [float(evidence.rule_kind == k) for k in RULE_KINDS]
    row.append(evidence.signal.value)
    for scope in HISTORY_SCOPES:
        counts = evidence.history.scope(scope)
        row += [counts.smoothed_share(d) for d in DECISIONS]
        row.append(math.log1p(counts.total))
    return row


def feature_matrix(evidences: Sequence[ItemEvidence]) -> np.ndarray:
    """One row of :data:`FEATURE_NAMES` per item, as float64."""
    if not evidences:
        return np.zeros((0, len(FEATURE_NAMES)))
    return np.array([feature_vector(e) for e in evidences], dtype=np.float64)
