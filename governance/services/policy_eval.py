"""Evaluating policy documents against AI systems: the decision the CI/CD gate takes and shadow replay compares.

A policy (``apiVersion: vigil/v1``, see ``governance/schemas/policy.schema.json``) applies to the systems in
its ``scope``. Its rules are tried in order and the FIRST rule that matches decides (its ``action``, with
its id and severity); when none matches, ``default_action`` decides. A rule matches when every ``when``
condition holds and, if it has ``thresholds``, its subject crosses at least the least severe level.

What a condition reads (the *facts* of a system at a moment ``at``):

- ``metric``: the latest evaluation result (``EvaluationRun``) of that metric (of that ``suite`` when named)
  ran at or before ``at``. A result of a suite the gateway runs that was posted rather than run
  (provenance ``reported``) is not evidence and is ignored.
- ``signal``: an aggregate (``aggregate``, default ``last``) of the signal's events (of ``category`` when
  named) in the ``window`` (default ``24h``) ending at ``at``. Without events ``count`` and ``sum`` are 0.
- ``attribute``: the system's ``risk_class``, ``entity_type``, ``team`` (slug) or ``system`` (name).

A condition whose value is unknown (no evaluation result, no events for ``last``/``avg``…) does not hold:
a rule never fires on missing evidence, and the decision says which facts were missing. Values in
``percent`` are compared with ratio subjects as ratios (÷ 100) and the other way round; other units are
compared as written (the linter reports mismatches).
"""

from __future__ import annotations

import operator
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from governance.models import AISystem, EvaluationRun
from governance.services.bypass.gate_circumvention import is_unverified_gateway_result

__all__ = [
    "ACTION_RANK",
    "DEFAULT_AGGREGATE",
    "DEFAULT_WINDOW",
    "MetricKey",
    "PolicyDecision",
    "MetricTimeline",
    "Requirements",
    "SignalKey",
    "SystemFacts",
    "policy_decide",
    "policy_facts",
    "policy_requirements",
    "signal_values",
    "system_facts",
    "window_seconds",
]

DEFAULT_AGGREGATE = "last"
DEFAULT_WINDOW = "24h"
# How strongly an action holds a change back: what the gate and replay call "stricter".
ACTION_RANK = {"allow": 0, "require_review": 1, "escalate": 2, "deny": 3}
NOT_APPLICABLE = "not_applicable"
_WINDOW = re.compile(r"^([1-9][0-9]{0,5})(s|m|h|d)$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_NUMERIC_OPS = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}
_LEVELS = ("info", "warning", "critical")


def window_seconds(window: str | None) -> int:
    """``"15m"`` → 900; None → the default window (24 h). ``ValueError`` on anything else."""
    match = _WINDOW.match(window or DEFAULT_WINDOW)
    if match is None:
        raise ValueError(f"not a window: {window!r} (e.g. 30s, 15m, 24h, 7d)")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


@dataclass(frozen=True, order=True)
class MetricKey:
    """An evaluation metric a policy reads; ``suite`` "" = the metric's latest result from any suite."""

    suite: str
    metric: str

    def label(self) -> str:
        return f"{self.metric} ({self.suite})" if self.suite else self.metric


@dataclass(frozen=True, order=True)
class SignalKey:
    """A signal aggregate a policy reads: the events of ``signal`` (``category`` "" = any) over ``window``."""

    signal: str
    category: str
    aggregate: str
    window_seconds: int

    def label(self) -> str:
        return f"{self.aggregate}({self.signal}) over {_window_text(self.window_seconds)}"


def _window_text(seconds: int) -> str:
    for suffix, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{suffix}"
    return f"{seconds}s"


@dataclass(frozen=True)
class Requirements:
    """Every fact a set of policy documents reads."""

    metrics: frozenset[MetricKey] = frozenset()
    signals: frozenset[SignalKey] = frozenset()

    def __or__(self, other: Requirements) -> Requirements:
        return Requirements(self.metrics | other.metrics, self.signals | other.signals)


def _subject_key(item: Mapping[str, Any]) -> MetricKey | SignalKey | None:
    if "metric" in item:
        return MetricKey(suite=str(item.get("suite") or ""), metric=str(item["metric"]))
    if "signal" in item:
        return SignalKey(
            signal=str(item["signal"]),
            category=str(item.get("category") or ""),
            aggregate=str(item.get("aggregate") or DEFAULT_AGGREGATE),
            window_seconds=window_seconds(item.get("window")),
        )
    return None


def _rules(document: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return list((document.get("spec") or {}).get("rules") or [])


def policy_requirements(*documents: Mapping[str, Any]) -> Requirements:
    """The metrics and signal aggregates the documents' rules read (for ``policy_facts``)."""
    metrics: set[MetricKey] = set()
    signals: set[SignalKey] = set()
    for document in documents:
        for rule in _rules(document):
            subjects = [*(rule.get("when") or []), *([rule["thresholds"]] if rule.get("thresholds") else [])]
            for item in subjects:
                key = _subject_key(item)
                if isinstance(key, MetricKey):
                    metrics.add(key)
                elif isinstance(key, SignalKey):
                    signals.add(key)
    return Requirements(frozenset(metrics), frozenset(signals))


@dataclass(frozen=True)
class SystemFacts:
    """What the policies know about one system at one moment."""

    system_id: Any
    name: str
    risk_class: str
    entity_type: str
    team: str
    metrics: Mapping[MetricKey, float] = field(default_factory=dict)
    signals: Mapping[SignalKey, float | None] = field(default_factory=dict)
    # Where each metric value came from (the EvaluationRun id), for the reasons.
    metric_runs: Mapping[MetricKey, str] = field(default_factory=dict)

    def attribute(self, name: str) -> str:
        return {"risk_class": self.risk_class, "entity_type": self.entity_type, "team": self.team,
                "system": self.name}[name]  # fmt: skip


@dataclass(frozen=True)
class PolicyDecision:
    """One policy's decision for one system: the action, the rule that decided (None: the default) and why."""

    policy: str
    action: str
    rule_id: str | None = None
    severity: str | None = None
    level: str | None = None
    reasons: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()

    @property
    def applies(self) -> bool:
        return self.action != NOT_APPLICABLE

    def as_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "action": self.action,
            "rule_id": self.rule_id,
            "severity": self.severity,
            "level": self.level,
            "reasons": list(self.reasons),
            "missing": list(self.missing),
        }


def _in_scope(document: Mapping[str, Any], facts: SystemFacts) -> bool:
    scope = (document.get("spec") or {}).get("scope") or {}
    risk_classes, entity_types = scope.get("risk_class"), scope.get("entity_type")
    return (not risk_classes or facts.risk_class in risk_classes) and (
        not entity_types or facts.entity_type in entity_types
    )


def _natural_ratio(item: Mapping[str, Any]) -> bool:
    """Whether the subject is measured as a ratio: suite metrics are, and so are signals declared so."""
    from config import registry  # config is below governance; read lazily (registry caches)

    if "metric" in item:
        return True
    category = item.get("category")
    categories = [category] if category else ["data_quality", "model_perf", "fairness", "security", "compliance"]
    for name in categories:
        spec = (registry.get(f"oversight.thresholds.{name}") or {}).get(item.get("signal"))
        if spec is not None:
            return spec.get("unit") == "ratio"
    return False


def _comparable(item: Mapping[str, Any], limit: float) -> float:
    """The limit in the subject's unit: a percent limit on a ratio subject is divided by 100; everything else
    is compared as written."""
    unit = item.get("unit")
    if unit == "percent" and _natural_ratio(item):
        return limit / 100
    return limit


def _fact(item: Mapping[str, Any], facts: SystemFacts) -> tuple[float | None, str]:
    key = _subject_key(item)
    if isinstance(key, MetricKey):
        return facts.metrics.get(key), key.label()
    if isinstance(key, SignalKey):
        return facts.signals.get(key), key.label()
    return None, ""


def _condition(item: Mapping[str, Any], facts: SystemFacts) -> tuple[bool, str | None, str | None]:
    """(holds, reason when it holds, the missing fact when unknown)."""
    if "attribute" in item:
        actual = facts.attribute(item["attribute"])
        op, expected = item["op"], item["value"]
        if op in ("in", "not_in"):
            values = expected if isinstance(expected, list) else [expected]
            holds = (actual in values) == (op == "in")
        else:
            holds = (actual == expected) == (op == "==")
        return holds, f"{item['attribute']} {actual!r} {op} {expected!r}", None
    value, label = _fact(item, facts)
    if value is None:
        return False, None, label
    limit = _comparable(item, float(item["value"]))
    holds = _NUMERIC_OPS[item["op"]](value, limit)
    return holds, f"{label} = {value:g} {item['op']} {limit:g}", None


def _thresholds(spec: Mapping[str, Any], facts: SystemFacts) -> tuple[str | None, str | None, str | None]:
    """(the most severe level crossed, reason, the missing fact when unknown)."""
    value, label = _fact(spec, facts)
    if value is None:
        return None, None, label
    above = spec["direction"] == "above"
    crossed = None
    for level in _LEVELS:
        if level not in spec["levels"]:
            continue
        limit = _comparable(spec, float(spec["levels"][level]))
        if (value > limit) if above else (value < limit):
            crossed = (level, limit)
    if crossed is None:
        return None, None, None
    level, limit = crossed
    return level, f"{label} = {value:g} {'>' if above else '<'} {limit:g} ({level})", None


def policy_decide(document: Mapping[str, Any], facts: SystemFacts) -> PolicyDecision:
    """The decision of one (valid) policy document for one system. Pure: reads only ``facts``."""
    policy = str((document.get("metadata") or {}).get("id") or "")
    if not _in_scope(document, facts):
        return PolicyDecision(policy=policy, action=NOT_APPLICABLE, reasons=("system outside the policy's scope",))
    missing: list[str] = []
    for rule in _rules(document):
        reasons: list[str] = []
        matched = True
        for item in rule.get("when") or []:
            holds, reason, unknown = _condition(item, facts)
            if unknown:
                missing.append(unknown)
            if not holds:
                matched = False
                break
            reasons.append(reason)
        level = None
        if matched and rule.get("thresholds"):
            level, reason, unknown = _thresholds(rule["thresholds"], facts)
            if unknown:
                missing.append(unknown)
            matched = level is not None
            if matched:
                reasons.append(reason)
        if matched:
            return PolicyDecision(
                policy=policy,
                action=rule["action"],
                rule_id=rule["id"],
                severity=rule.get("severity"),
                level=level,
                reasons=tuple(reasons) or ("the rule applies to every system in scope",),
                missing=tuple(dict.fromkeys(missing)),
            )
    default = (document.get("spec") or {}).get("default_action") or "allow"
    return PolicyDecision(
        policy=policy, action=default, reasons=("no rule matched",), missing=tuple(dict.fromkeys(missing))
    )


# --- facts from the database ---------------------------------------------------------------------------------
class MetricTimeline:
    """The evaluation results of some systems in ``ran_at`` order, replayed forward: ``advance(at)`` takes in
    every result ran at or before ``at`` and ``values(system)`` gives the latest per metric key. One query
    for the whole timeline, however many moments are asked for (shadow replay asks ~31)."""

    def __init__(self, *, system_ids: Sequence[Any], wanted: Iterable[MetricKey], until: datetime):
        self._wanted = set(wanted)
        self._values: dict[Any, dict[MetricKey, float]] = {system_id: {} for system_id in system_ids}
        self._sources: dict[Any, dict[MetricKey, str]] = {system_id: {} for system_id in system_ids}
        self._rows: list[tuple] = []
        self._next = 0
        if self._wanted and system_ids:
            runs = (
                EvaluationRun.objects.filter(
                    system_id__in=system_ids, metric__in={key.metric for key in self._wanted}, ran_at__lte=until
                )
                .order_by("ran_at", "created_at")
                .values_list("id", "system_id", "suite", "metric", "value", "provenance", "ran_at")
            )
            self._rows = [
                row
                for row in runs
                # A posted result of a suite the gateway runs was never run: not evidence.
                if not is_unverified_gateway_result(suite=row[2], provenance=row[5])
            ]

    def advance(self, at: datetime) -> None:
        while self._next < len(self._rows) and self._rows[self._next][6] <= at:
            run_id, system_id, suite, metric, value, _, _ = self._rows[self._next]
            for key in (MetricKey(suite, metric), MetricKey("", metric)):
                if key in self._wanted:  # later rows overwrite earlier ones: the latest result wins
                    self._values[system_id][key] = value
                    self._sources[system_id][key] = str(run_id)
            self._next += 1

    def values(self, system_id: Any) -> tuple[dict[MetricKey, float], dict[MetricKey, str]]:
        return dict(self._values[system_id]), dict(self._sources[system_id])


def signal_values(system_ids: Sequence[Any], wanted: Iterable[SignalKey], at: datetime) -> dict[Any, dict]:
    """``{system id: {SignalKey: value}}`` as of ``at``: one query for every series on PostgreSQL
    (``oversight.selectors.signal_aggregates_many``)."""
    from oversight.selectors import SignalSeries, signal_aggregates_many  # oversight builds on governance

    by_series: dict[tuple[str, str, int], list[SignalKey]] = defaultdict(list)
    for key in wanted:
        by_series[(key.signal, key.category, key.window_seconds)].append(key)
    ordered = sorted(by_series)
    series = [
        SignalSeries(
            signal=signal,
            category=category or None,
            window=timedelta(seconds=seconds),
            aggregates=frozenset(key.aggregate for key in by_series[(signal, category, seconds)]),
        )  # fmt: skip
        for signal, category, seconds in ordered
    ]
    values = signal_aggregates_many(system_ids=system_ids, series=series, until=at)
    result: dict[Any, dict[SignalKey, float | None]] = {system_id: {} for system_id in system_ids}
    for system_id, per_series in values.items():
        for index, name in enumerate(ordered):
            for key in by_series[name]:
                result[system_id][key] = per_series[index].get(key.aggregate)
    return result


def system_facts(system: AISystem, *, metrics: tuple[dict, dict], signals: dict) -> SystemFacts:
    return SystemFacts(
        system_id=system.pk,
        name=system.name,
        risk_class=system.risk_class,
        entity_type=system.entity_type,
        team=system.team.slug if system.team_id else "",
        metrics=metrics[0],
        metric_runs=metrics[1],
        signals=signals,
    )


def policy_facts(*, systems: Iterable[AISystem], requirements: Requirements, at: datetime) -> dict[Any, SystemFacts]:
    """``{system id: SystemFacts}`` as of ``at``: one query for the evaluation results, three per distinct
    (signal, category, window) the requirements name, whatever the number of systems."""
    systems = list(systems)
    ids = [system.pk for system in systems]
    timeline = MetricTimeline(system_ids=ids, wanted=requirements.metrics, until=at)
    timeline.advance(at)
    signals = signal_values(ids, requirements.signals, at)
    return {
        system.pk: system_facts(system, metrics=timeline.values(system.pk), signals=signals[system.pk])
        for system in systems
    }
