"""Synthetic telemetry with planted, labelled scenarios: the ground truth detection is measured by.

``plan_events`` decides once, from the seed, the fleet, the heartbeat schedule and which event
indexes carry a scenario; ``EventPlan.events(start, stop)`` then produces any slice of the stream
without replaying from 0 — a noise event is derived from ``(seed, index)`` alone. The same inputs
give the same events (ids, values, times, systems) on every machine and in every process, so a
simulation step on any worker can rebuild its plan and resume at its cursor.

The labels are exact because of three invariants (``tests/oversight/test_generator.py`` checks them):

* every scenario runs on its own system, and that system carries no other scenario in the run;
* noise never crosses a warning level: noise is drawn from a realistic band clamped well inside the
  thresholds the plan was made for (``NOISE_CEILING`` of the way from the healthy ideal to warning);
* scenario events cross exactly what their rule needs (see ``PlannedScenario.kind``):
  ``single_breach`` one event past critical → ``threshold:<category>``; ``sustained_drift`` ≥
  ``min_breaches`` events of one signal strictly between warning and critical inside half the rate
  window → ``rate:<category>``; ``compound`` one event each of ≥ 2 signals (≥ 2 categories) strictly
  between the levels inside half the correlation window → ``compound``; ``heartbeat_loss`` a
  heartbeat system silent for two absence windows while its telemetry goes on → ``absence:heartbeat``;
  ``near_miss`` 80–95 % of the way to warning → nothing.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import random
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction

from config import registry
from governance.choices import AuditAction, EntityType, RiskClass, Severity
from governance.models import AISystem, Team
from governance.services.audit import AuditEntry, audit_record_many
from governance.services.organization import team_create
from oversight.models import HEARTBEAT_SIGNAL, ScenarioKind, ScenarioLabel, Simulation
from oversight.rules import ABSENCE_RULE, CATEGORIES, COMPOUND_RULE, rate_rule_name, threshold_rule_name

# Fixed forever: event ids are uuid5(EVENT_ID_NAMESPACE, "<namespace>:<index>"), so a resend of the same
# plan (another process, another release) is recognised as duplicates by the ingest service.
EVENT_ID_NAMESPACE = uuid.UUID("0b6f2c1e-7d4a-5e9b-8c3f-5a1d9e7b2c40")

DEFAULT_MIX: dict[str, float] = {
    "data_quality": 0.45,
    "model_perf": 0.20,
    "fairness": 0.15,
    "security": 0.12,
    "compliance": 0.08,
}
SEVERITY_MIX: dict[str, float] = {"critical": 0.05, "high": 0.15, "medium": 0.30, "low": 0.30, "info": 0.20}
SCENARIO_KIND_MIX: dict[str, float] = {
    ScenarioKind.SINGLE_BREACH.value: 0.35,
    ScenarioKind.SUSTAINED_DRIFT.value: 0.30,
    ScenarioKind.COMPOUND.value: 0.20,
    ScenarioKind.HEARTBEAT_LOSS.value: 0.10,
    ScenarioKind.NEAR_MISS.value: 0.05,
}
EVENTS_PER_SCENARIO = 100
MIN_FLEET_SIZE = 20
SYSTEMS_PER_SCENARIO = 1.6
HEARTBEAT_FLEET_SHARE = 0.10
BEATS_PER_ABSENCE_WINDOW = 5
HEARTBEAT_MIN_SPAN_WINDOWS = 3  # a shorter timeline gets no heartbeats at all
HEARTBEAT_SILENCE_WINDOWS = 2  # a heartbeat loss is silent this many absence windows, then beats again
HEARTBEAT_MODEL_PERF_BUDGET = 0.75  # heartbeats never take more than this share of model_perf's events
NOISE_CEILING = 0.70  # noise stays within this fraction of the way from the healthy ideal to warning
NEAR_MISS_BAND = (0.80, 0.95)  # near misses: this fraction of the way from the healthy ideal to warning
BETWEEN_BAND = (0.20, 0.80)  # drift and compound values: this fraction of the way from warning to critical
BREACH_MARGIN = (0.05, 0.50)  # single breaches: this fraction past critical
SCENARIO_SPAN_OF_WINDOW = 0.5  # multi-event scenarios fit inside half their rule's window
# ... and inside this many events: at real-time rates a scenario unfolds as a burst (0.3 s at 1,000
# events/s), so a simulation's MTTD measures the pipeline, not how slowly the planted pattern develops.
SCENARIO_MAX_INDEX_SPAN = 300
MAX_SCENARIO_ID_LENGTH = 64
ENTITY_TYPE_MIX = {EntityType.MODEL: 0.55, EntityType.SYSTEM: 0.30, EntityType.DATASET: 0.15}
RISK_CLASS_MIX = {RiskClass.HIGH: 0.30, RiskClass.LIMITED: 0.40, RiskClass.MINIMAL: 0.30}
SYNTHETIC_TEAM_NAME = "Synthetic fleet"
SYNTHETIC_TEAM_SLUG = "synthetic-fleet"
GENERATOR_ACTOR = "system:generator"
HEARTBEAT_ATTRIBUTES = {"source": "vigil-agent"}

RULE_SETTING_KEYS = (
    "min_breaches",
    "rate_window_seconds",
    "correlation_window_seconds",
    "compound_min_signals",
    "absence_window_seconds",
)


# --- public data ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class FleetSystem:
    name: str
    entity_type: str
    risk_class: str
    sends_heartbeats: bool


@dataclass(frozen=True, slots=True)
class GeneratedEvent:
    index: int
    event_id: uuid.UUID
    system: str  # the AI system's name
    category: str
    severity: str
    signal: str
    value: float
    occurred_at: datetime
    attributes: dict
    scenario_id: str | None

    def as_payload(self) -> dict[str, Any]:
        """The item as ``POST /api/v1/events`` takes it (JSON-ready: string id, ISO time)."""
        return {
            "event_id": str(self.event_id),
            "system": self.system,
            "category": self.category,
            "severity": self.severity,
            "signal": self.signal,
            "value": self.value,
            "occurred_at": self.occurred_at.isoformat(),
            "attributes": self.attributes,
            "scenario_id": self.scenario_id,
        }


@dataclass(frozen=True)
class PlannedScenario:
    scenario_id: str
    kind: str  # a ScenarioKind value
    system: str  # the AI system's name
    category: str
    severity: str
    signals: tuple[str, ...]
    expected_rule: str  # "" for a near miss: nothing may fire
    onset_at: datetime  # first anomalous event (heartbeat loss: last beat + absence window)
    event_count: int  # events carrying this scenario_id

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["signals"] = list(self.signals)
        data["onset_at"] = self.onset_at.isoformat()
        return data


@dataclass(frozen=True)
class ScenarioRules:
    """The rule numbers scenarios are shaped for (the registry's, unless a caller passes others)."""

    min_breaches: int
    rate_window_seconds: float
    correlation_window_seconds: float
    compound_min_signals: int
    absence_window_seconds: float


# --- signal models: what noise, a near miss, a drift and a breach look like for one signal ---------
@dataclass(frozen=True)
class SignalProfile:
    """A signal's healthy behaviour under the default thresholds: the ideal it tends to, a realistic
    band around it, and the attribute its events carry."""

    ideal: float
    low: float
    high: float
    attribute: str = ""
    values: tuple[str, ...] = ()


_ENDPOINTS = ("/v1/score", "/v1/predict", "/v1/explain")
_GROUPS = ("age_65_plus", "female", "non_native_speaker", "disability_declared")
SIGNAL_PROFILES: dict[str, SignalProfile] = {
    "null_rate": SignalProfile(0.0, 0.0, 0.03, "column", ("income", "age", "postcode", "tenure_months")),
    "schema_violations": SignalProfile(0.0, 0.0, 3.0, "table", ("applications", "transactions", "customers")),
    "psi": SignalProfile(0.0, 0.01, 0.06, "feature", ("income", "age", "credit_utilisation", "region")),
    "freshness_lag_minutes": SignalProfile(0.0, 2.0, 35.0, "source", ("crm_export", "payments_stream", "ledger")),
    "accuracy": SignalProfile(1.0, 0.93, 0.99, "slice", ("all", "new_customers", "mobile", "high_value")),
    "latency_p95_ms": SignalProfile(0.0, 120.0, 340.0, "endpoint", _ENDPOINTS),
    "error_rate": SignalProfile(0.0, 0.0, 0.012, "endpoint", _ENDPOINTS),
    "dp_gap": SignalProfile(0.0, 0.0, 0.06, "group", _GROUPS),
    "eo_gap": SignalProfile(0.0, 0.0, 0.06, "group", _GROUPS),
    "prompt_injection_score": SignalProfile(0.0, 0.0, 0.30, "channel", ("chat", "api", "email_ingest")),
    "auth_failures": SignalProfile(0.0, 0.0, 6.0, "client", ("mobile_app", "partner_api", "batch_scorer")),
    "missing_documentation": SignalProfile(0.0, 0.0, 0.0, "artifact", ("model_card", "data_sheet", "dpia")),
    "retention_violations": SignalProfile(0.0, 0.0, 0.0, "store", ("feature_store", "training_archive")),
}


@dataclass(frozen=True, eq=False)  # compared by identity: one instance per signal and plan
class _Signal:
    """One signal under the plan's thresholds, with its noise band already clamped to them."""

    name: str
    category: str
    above: bool
    warning: float
    critical: float
    integral: bool  # unit "count": values are whole numbers
    bounded: bool  # unit "ratio": values stay in [0, 1]
    ideal: float
    noise_low: float
    noise_high: float
    attribute: str
    values: tuple[str, ...]

    @classmethod
    def build(cls, name: str, category: str, spec: Mapping[str, Any]) -> _Signal:
        above = spec["direction"] == "above"
        warning, critical = float(spec["warning"]), float(spec["critical"])
        unit = spec.get("unit", "")
        profile = SIGNAL_PROFILES.get(name) or _fallback_profile(above, warning, critical, unit == "ratio")
        low, high = _clamped_band(profile, above=above, warning=warning)
        return cls(
            name=name,
            category=category,
            above=above,
            warning=warning,
            critical=critical,
            integral=unit == "count",
            bounded=unit == "ratio",
            ideal=profile.ideal,
            noise_low=low,
            noise_high=high,
            attribute=profile.attribute,
            values=profile.values,
        )

    # The level checks mirror oversight.services.detection.breach_level (strict comparisons).
    def crosses_warning(self, value: float) -> bool:
        return value > self.warning if self.above else value < self.warning

    def crosses_critical(self, value: float) -> bool:
        return value > self.critical if self.above else value < self.critical

    def noise(self, u: float) -> float:
        value = self.noise_low + u * (self.noise_high - self.noise_low)
        if self.integral:
            # Toward the healthy side, so rounding never moves a value closer to warning.
            return float(math.floor(value) if self.above else math.ceil(value))
        return min(max(round(value, 4), self.noise_low), self.noise_high)

    def near_miss(self, rng: random.Random) -> float | None:
        """80–95 % of the way from the ideal to warning, never crossing it; None when impossible."""
        lo_f, hi_f = NEAR_MISS_BAND
        span = self.warning - self.ideal
        if (span > 0) != self.above or span == 0:
            return None
        lo, hi = sorted((self.ideal + lo_f * span, self.ideal + hi_f * span))
        if self.integral:
            return _whole_number_in(lo, hi, rng)
        return _tidy(lo + rng.random() * (hi - lo), lambda v: lo <= v <= hi)

    def between(self, rng: random.Random) -> float | None:
        """Strictly between warning and critical (a warning breach, never critical); None when impossible."""
        lo, hi = sorted((self.warning, self.critical))
        if self.integral:
            inner = _whole_number_in(lo + BETWEEN_BAND[0] * (hi - lo), lo + BETWEEN_BAND[1] * (hi - lo), rng)
            value = inner if inner is not None else _whole_number_in(math.floor(lo) + 1, math.ceil(hi) - 1, rng)
            return value if value is not None and lo < value < hi else None
        value = lo + (BETWEEN_BAND[0] + rng.random() * (BETWEEN_BAND[1] - BETWEEN_BAND[0])) * (hi - lo)
        return _tidy(value, lambda v: lo < v < hi)

    def breach(self, rng: random.Random) -> float | None:
        """5–50 % past critical (ratios stay in [0, 1], counts whole); None when impossible."""
        critical, sign = self.critical, (1 if self.above else -1)
        if self.bounded and (critical >= 1 if self.above else critical <= 0):
            return None
        margin = BREACH_MARGIN[0] + rng.random() * (BREACH_MARGIN[1] - BREACH_MARGIN[0])
        scale = abs(critical) or abs(critical - self.warning)
        value = critical + sign * margin * scale
        if self.bounded and not 0 <= value <= 1:
            bound = 1.0 if self.above else 0.0
            value = critical + margin * (bound - critical)
        if self.integral:
            value = (
                max(math.ceil(value), math.floor(critical) + 1)
                if self.above
                else min(math.floor(value), math.ceil(critical) - 1)
            )
            return float(value)
        return _tidy(value, lambda v: self.crosses_critical(v) and (not self.bounded or 0 <= v <= 1))

    def attributes(self, u: float) -> dict[str, str]:
        if not self.attribute or not self.values:
            return {}
        return {self.attribute: self.values[min(int(u * len(self.values)), len(self.values) - 1)]}


def _fallback_profile(above: bool, warning: float, critical: float, bounded: bool) -> SignalProfile:
    """For a signal an operator added to the thresholds: healthy ideal on the far side of warning."""
    span = abs(critical - warning)
    if above:
        ideal = 0.0 if warning > 0 else warning - span
        return SignalProfile(ideal, ideal, ideal + 0.5 * (warning - ideal))
    ideal = 1.0 if bounded and warning < 1 else warning + span
    return SignalProfile(ideal, ideal - 0.5 * (ideal - warning), ideal)


def _clamped_band(profile: SignalProfile, *, above: bool, warning: float) -> tuple[float, float]:
    """The realistic band, squeezed toward the ideal when the thresholds leave it less room."""
    ideal, low, high = profile.ideal, profile.low, profile.high
    room = (warning - ideal) if above else (ideal - warning)
    if room <= 0:  # thresholds on the ideal's side: the only safe value is the warning level itself
        return warning, warning
    if above:
        cap = ideal + NOISE_CEILING * room
        if high <= cap:
            return low, high
        factor = (cap - ideal) / (high - ideal)
        return ideal + (low - ideal) * factor, cap
    cap = ideal - NOISE_CEILING * room
    if low >= cap:
        return low, high
    factor = (ideal - cap) / (ideal - low)
    return cap, ideal - (ideal - high) * factor


def _whole_number_in(lo: float, hi: float, rng: random.Random) -> float | None:
    first, last = math.ceil(lo), math.floor(hi)
    return float(rng.randint(first, last)) if first <= last else None


def _tidy(value: float, keeps: Any) -> float:
    """Four decimals when that keeps the value's property (readable payloads), else the exact value."""
    rounded = round(value, 4)
    return rounded if keeps(rounded) else value


def event_uuid(namespace: str, index: int) -> uuid.UUID:
    """``uuid5(EVENT_ID_NAMESPACE, f"{namespace}:{index}")``, computed without ``uuid5``'s overhead (the
    generator's hottest line): SHA-1 of namespace and name, version and variant bits set."""
    digest = hashlib.sha1(_EVENT_ID_NAMESPACE_BYTES + f"{namespace}:{index}".encode(), usedforsecurity=False).digest()
    value = int.from_bytes(digest[:16], "big")
    return uuid.UUID(int=(value & _UUID_VERSION_CLEAR) | _UUID5_BITS)


_EVENT_ID_NAMESPACE_BYTES = EVENT_ID_NAMESPACE.bytes
_UUID_VERSION_CLEAR = ~((0xF000 << 64) | (0xC000 << 48)) & ((1 << 128) - 1)
_UUID5_BITS = (5 << 76) | (0x8000 << 48)


# --- per-index randomness: splitmix64, so any index is drawn without replaying the ones before ---
_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15


def _mix64(x: int) -> int:
    x = (x + _GOLDEN) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


_UNIT21 = 1.0 / (1 << 21)
_UNIT64 = 1.0 / (1 << 64)


@dataclass(frozen=True)
class _NoiseModel:
    """What a noise event draws from: categories and severities (already compensated for the fixed
    events), each category's signals, and the fleet."""

    categories: tuple[str, ...]
    category_cumulative: tuple[float, ...]
    severities: tuple[str, ...]
    severity_cumulative: tuple[float, ...]
    signals: Mapping[str, tuple[_Signal, ...]]
    systems: tuple[str, ...]
    key: int  # the seed, mixed once


# A scenario's or heartbeat's event, fixed at plan time: (system, category, signal, value, severity,
# attributes, scenario_id).
_Fixed = tuple[str, str, str, float, str, dict, "str | None"]


@dataclass
class EventPlan:
    """A deterministic stream of ``count`` events with its fleet and labelled scenarios.

    ``thresholds`` and ``rules`` are what the scenarios were shaped for: a caller that rebuilds the
    plan later (another simulation step) passes them back explicitly, so a config change in between
    cannot change the stream. ``fixed_events`` (scenario and heartbeat events by index) and
    ``noise_model`` are internals of ``event_at``."""

    seed: int
    count: int
    start: datetime
    spacing_seconds: float
    mix: dict[str, float]
    namespace: str
    fleet: list[FleetSystem]
    scenarios: list[PlannedScenario]
    rate_per_s: float = 1.0
    rules: ScenarioRules | None = None
    thresholds: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict, repr=False)
    fixed_events: dict[int, _Fixed] = field(default_factory=dict, repr=False)
    noise_model: _NoiseModel | None = field(default=None, repr=False)

    @property
    def heartbeat_systems(self) -> list[str]:
        return [system.name for system in self.fleet if system.sends_heartbeats]

    @property
    def end(self) -> datetime:
        """Event time of the last event."""
        return self.time_of(self.count - 1)

    def time_of(self, index: int) -> datetime:
        """Event time of event ``index``: ``start + index / rate_per_s``."""
        return self.start + timedelta(seconds=index / self.rate_per_s)

    def events(self, start: int = 0, stop: int | None = None) -> Iterator[GeneratedEvent]:
        """Events ``start`` … ``stop - 1`` (clipped to the plan); any slice equals that slice of the
        whole stream, at a cost proportional to the slice only."""
        stop = self.count if stop is None else min(stop, self.count)
        for index in range(max(start, 0), stop):
            yield self.event_at(index)

    def event_at(self, index: int) -> GeneratedEvent:
        if not 0 <= index < self.count:
            raise IndexError(f"event {index} is outside the plan (0 … {self.count - 1})")
        event_id = event_uuid(self.namespace, index)
        occurred_at = self.start + timedelta(seconds=index / self.rate_per_s)
        fixed = self.fixed_events.get(index)
        if fixed is not None:
            system, category, signal, value, severity, attributes, scenario_id = fixed
            return GeneratedEvent(
                index, event_id, system, category, severity, signal, value, occurred_at, dict(attributes), scenario_id
            )
        return self._noise_event(index, event_id, occurred_at)

    def _noise_event(self, index: int, event_id: uuid.UUID, occurred_at: datetime) -> GeneratedEvent:
        model = self.noise_model
        first = _mix64(model.key ^ ((index * _GOLDEN) & _MASK64))
        second = _mix64(first)
        third = _mix64(second)
        category = model.categories[
            min(bisect.bisect_right(model.category_cumulative, (first & 0x1FFFFF) * _UNIT21), len(model.categories) - 1)
        ]
        severity = model.severities[
            min(
                bisect.bisect_right(model.severity_cumulative, ((first >> 21) & 0x1FFFFF) * _UNIT21),
                len(model.severities) - 1,
            )
        ]
        signals = model.signals[category]
        signal = signals[((first >> 42) & 0x1FFFFF) * len(signals) >> 21]
        system = model.systems[(second & 0xFFFFFFFF) * len(model.systems) >> 32]
        return GeneratedEvent(
            index,
            event_id,
            system,
            category,
            severity,
            signal.name,
            signal.noise(third * _UNIT64),
            occurred_at,
            signal.attributes((second >> 32) * (1.0 / (1 << 32))),
            None,
        )


# --- planning ------------------------------------------------------------------------------------
def validate_mix(mix: Any) -> dict[str, list[str]]:
    """Errors of a category mix, keyed for the API: ``mix`` (the whole value) or ``mix.<key>``.

    A mix maps categories (a subset is fine: missing ones get no events) to shares ≥ 0 summing to 1
    (± 1e-6). Empty when valid."""
    if not isinstance(mix, Mapping):
        return {"mix": ['must be an object mapping categories to shares, e.g. {"data_quality": 1.0}']}
    errors: dict[str, list[str]] = {}
    total, numeric = 0.0, True
    for key, share in mix.items():
        if key not in CATEGORIES:
            errors[f"mix.{key}"] = [f"unknown category {str(key)[:64]!r}; expected one of: {', '.join(CATEGORIES)}"]
            continue
        if isinstance(share, bool) or not isinstance(share, int | float) or not math.isfinite(share):
            errors[f"mix.{key}"] = ["must be a number"]
            numeric = False
        elif share < 0:
            errors[f"mix.{key}"] = ["must be ≥ 0"]
            numeric = False
        else:
            total += share
    if numeric and not errors and abs(total - 1.0) > 1e-6:
        errors["mix"] = [f"shares must sum to 1 (they sum to {total:g})"]
    return errors


def detection_config(values: Mapping[str, Any] | None = None) -> tuple[dict, ScenarioRules]:
    """The thresholds and rule numbers scenarios are shaped for, from config values keyed like the
    registry (``oversight.thresholds.<category>``, ``oversight.rate_rule``, …) — by default the
    registry's current values. The API client of ``manage.py generate_events`` passes a remote
    server's values."""
    if values is None:
        keys = [f"oversight.thresholds.{category}" for category in CATEGORIES] + [
            "oversight.rate_rule",
            "oversight.correlation_window_seconds",
            "oversight.compound_min_signals",
            "oversight.absence_window_seconds",
        ]
        values = {key: registry.get(key) for key in keys}
    thresholds = {category: dict(values[f"oversight.thresholds.{category}"]) for category in CATEGORIES}
    rules = ScenarioRules(
        min_breaches=int(values["oversight.rate_rule"]["min_breaches"]),
        rate_window_seconds=float(values["oversight.rate_rule"]["window_seconds"]),
        correlation_window_seconds=float(values["oversight.correlation_window_seconds"]),
        compound_min_signals=int(values["oversight.compound_min_signals"]),
        absence_window_seconds=float(values["oversight.absence_window_seconds"]),
    )
    return thresholds, rules


def plan_events(
    *,
    count: int,
    seed: int,
    start: datetime,
    rate_per_s: float,
    mix: Mapping[str, float] | None = None,
    namespace: str,
    fleet_prefix: str,
    thresholds: Mapping[str, Mapping[str, Mapping[str, Any]]] | None = None,
    rule_settings: Mapping[str, float] | ScenarioRules | None = None,
) -> EventPlan:
    """Plan ``count`` events at ``rate_per_s`` from ``start`` (event ``i`` at ``start + i / rate``).

    Deterministic in its arguments. ``thresholds`` and ``rule_settings`` (keys ``RULE_SETTING_KEYS``;
    a partial mapping fills the rest from the registry) default to the registry's values now.
    Raises ``ValueError`` on a bad argument (an invalid mix, a namespace too long for scenario ids …).
    """
    if count < 1:
        raise ValueError("count must be at least 1")
    if not (isinstance(rate_per_s, int | float) and math.isfinite(rate_per_s) and rate_per_s > 0):
        raise ValueError("rate_per_s must be a positive number")
    if start.utcoffset() is None:
        raise ValueError("start must be timezone-aware")
    mix = dict(DEFAULT_MIX if mix is None else mix)
    if errors := validate_mix(mix):
        raise ValueError(f"invalid mix: {errors}")
    longest_kind = max(len(kind) for kind in ScenarioKind.values)
    if len(namespace) + longest_kind + 7 > MAX_SCENARIO_ID_LENGTH:
        raise ValueError(f"namespace {namespace!r} is too long: scenario ids must fit in {MAX_SCENARIO_ID_LENGTH}")
    if not isinstance(rule_settings, ScenarioRules):
        given = dict(rule_settings or {})
        if unknown := set(given) - set(RULE_SETTING_KEYS):
            raise ValueError(f"unknown rule settings {sorted(unknown)}; expected {', '.join(RULE_SETTING_KEYS)}")
    if thresholds is None or (not isinstance(rule_settings, ScenarioRules) and len(given) < len(RULE_SETTING_KEYS)):
        registry_thresholds, registry_rules = detection_config()  # only what the caller left out is read
        thresholds = registry_thresholds if thresholds is None else thresholds
        if not isinstance(rule_settings, ScenarioRules):
            given = {**asdict(registry_rules), **given}
    if not isinstance(rule_settings, ScenarioRules):
        rule_settings = ScenarioRules(**given)
    return _Planner(
        count=count,
        seed=seed,
        start=start,
        rate=float(rate_per_s),
        mix={category: float(mix.get(category, 0.0)) for category in CATEGORIES},
        namespace=namespace,
        fleet_prefix=fleet_prefix,
        thresholds={c: {s: dict(spec) for s, spec in (thresholds.get(c) or {}).items()} for c in CATEGORIES},
        rules=rule_settings,
    ).plan()


class _Planner:
    """Builds one EventPlan. All plan-level randomness comes from one ``random.Random`` seeded by the
    seed, consumed in a fixed order."""

    def __init__(self, *, count, seed, start, rate, mix, namespace, fleet_prefix, thresholds, rules):
        self.count, self.seed, self.start, self.rate = count, seed, start, rate
        self.mix, self.namespace, self.fleet_prefix = mix, namespace, fleet_prefix
        self.thresholds, self.rules = thresholds, rules
        # Reproducible, not secret; a str seed hashes the same in every process (unlike hash()).
        self.rng = random.Random(f"vigil-generator:{seed}")  # noqa: S311
        self.fixed: dict[int, _Fixed] = {}
        self.eligible: dict[Any, dict[str, list[_Signal]]] = {}
        self.signals = {
            category: tuple(_Signal.build(name, category, spec) for name, spec in self.thresholds[category].items())
            for category in CATEGORIES
        }
        missing = [c for c in CATEGORIES if mix[c] > 0 and not self.signals[c]]
        if missing:
            raise ValueError(f"categories with a share but no signals in their thresholds: {', '.join(missing)}")

    # -- timeline helpers --
    def index_span(self, window_seconds: float) -> int:
        """How many index steps fit inside half a rule window (capped by the burst length and the plan)."""
        return min(int(SCENARIO_SPAN_OF_WINDOW * window_seconds * self.rate), SCENARIO_MAX_INDEX_SPAN, self.count - 1)

    def take_free(self, index: int) -> int | None:
        """The first free index at or after ``index`` (heartbeats may slide by a few events)."""
        while index < self.count and index in self.fixed:
            index += 1
        return index if index < self.count else None

    def time_of(self, index: int) -> datetime:
        return self.start + timedelta(seconds=index / self.rate)

    # -- the plan --
    def plan(self) -> EventPlan:
        rules = self.rules
        absence = rules.absence_window_seconds
        beat_every = absence / BEATS_PER_ABSENCE_WINDOW * self.rate  # in index steps
        scenario_total = max(1, round(self.count / EVENTS_PER_SCENARIO))
        heartbeats_possible = (
            self.count / self.rate >= HEARTBEAT_MIN_SPAN_WINDOWS * absence and self.mix["model_perf"] > 0
        ) and beat_every >= 2
        quotas = self.kind_quotas(scenario_total, heartbeats=heartbeats_possible)
        fleet_size = max(MIN_FLEET_SIZE, math.ceil(SYSTEMS_PER_SCENARIO * sum(quotas.values())))
        heartbeat_count = 0
        if heartbeats_possible:
            wanted_losses = quotas.get(ScenarioKind.HEARTBEAT_LOSS, 0)
            heartbeat_count, losses = self.heartbeat_systems(fleet_size, wanted_losses, beat_every)
            if losses < wanted_losses:  # the budget carries fewer: the other kinds take the rest
                quotas = self.kind_quotas(scenario_total - losses, heartbeats=False)
                quotas[ScenarioKind.HEARTBEAT_LOSS] = losses
        losses = quotas.get(ScenarioKind.HEARTBEAT_LOSS, 0)
        others = sum(quotas.values()) - losses
        fleet_size = max(fleet_size, others + heartbeat_count)
        fleet = self.make_fleet(fleet_size, heartbeat_count)
        heartbeat_names = [s.name for s in fleet if s.sends_heartbeats]
        plain_names = [s.name for s in fleet if not s.sends_heartbeats]

        beats = self.place_heartbeats(heartbeat_names, beat_every)
        kinds = [kind for kind in SCENARIO_KIND_MIX for _ in range(quotas.get(kind, 0))]
        self.rng.shuffle(kinds)
        loss_systems = iter(self.rng.sample(heartbeat_names, losses))
        scenario_systems = iter(self.rng.sample(plain_names, others))
        scenarios = []
        for number, kind in enumerate(kinds):
            scenario_id = f"{self.namespace}:{kind}:{number:04d}"
            if kind == ScenarioKind.HEARTBEAT_LOSS:
                system = next(loss_systems)
                scenario = self.plant_heartbeat_loss(scenario_id, system, beats[system])
            else:
                scenario = self.plant(kind, scenario_id, next(scenario_systems))
            if scenario is not None:
                scenarios.append(scenario)
        scenarios.sort(key=lambda s: (s.onset_at, s.scenario_id))
        return EventPlan(
            seed=self.seed,
            count=self.count,
            start=self.start,
            spacing_seconds=1.0 / self.rate,
            mix=dict(self.mix),
            namespace=self.namespace,
            fleet=fleet,
            scenarios=scenarios,
            rate_per_s=self.rate,
            rules=rules,
            thresholds=self.thresholds,
            fixed_events=self.fixed,
            noise_model=self.noise_model(fleet),
        )

    def kind_quotas(self, total: int, *, heartbeats: bool) -> dict[str, int]:
        """Scenarios per kind by largest remainder over the kinds this plan can carry (an impossible
        kind's share goes to the others)."""
        feasible = {kind: share for kind, share in SCENARIO_KIND_MIX.items() if self.feasible(kind, heartbeats)}
        if not feasible:
            return {}
        scale = total / sum(feasible.values())
        exact = {kind: share * scale for kind, share in feasible.items()}
        quotas = {kind: int(value) for kind, value in exact.items()}
        by_remainder = sorted(feasible, key=lambda kind: (-(exact[kind] - quotas[kind]), -feasible[kind]))
        for kind in by_remainder[: total - sum(quotas.values())]:
            quotas[kind] += 1
        return quotas

    def feasible(self, kind: str, heartbeats: bool) -> bool:
        """Whether this plan can carry a scenario of ``kind`` (signals for it, room for its events)."""
        rules = self.rules
        if kind == ScenarioKind.HEARTBEAT_LOSS:
            silence = math.ceil(HEARTBEAT_SILENCE_WINDOWS * rules.absence_window_seconds * self.rate)
            return heartbeats and silence < self.count - 1
        if kind == ScenarioKind.SINGLE_BREACH:
            return bool(self.categories_with(_Signal.breach))
        if kind == ScenarioKind.NEAR_MISS:
            return bool(self.categories_with(_Signal.near_miss))
        between = self.categories_with(_Signal.between)
        if kind == ScenarioKind.SUSTAINED_DRIFT:
            needed = max(3, rules.min_breaches)
            return bool(between) and self.index_span(rules.rate_window_seconds) >= needed - 1
        needed = max(2, rules.compound_min_signals)
        return (
            len(between) >= 2
            and sum(len(signals) for signals in between.values()) >= needed
            and self.index_span(rules.correlation_window_seconds) >= needed - 1
        )

    def categories_with(self, make_value) -> dict[str, list[_Signal]]:
        """Categories with a share, each with its signals that can take such a value (computed once
        per kind of value: eligibility depends on the thresholds only)."""
        cached = self.eligible.get(make_value)
        if cached is None:
            probe = random.Random(0)  # noqa: S311 -- eligibility only: the draws are thrown away
            cached = self.eligible[make_value] = {
                category: signals
                for category in CATEGORIES
                if self.mix[category] > 0
                and (signals := [s for s in self.signals[category] if make_value(s, probe) is not None])
            }
        return cached

    def heartbeat_systems(self, fleet_size: int, losses: int, beat_every: float) -> tuple[int, int]:
        """(heartbeat systems, heartbeat losses): about a tenth of the fleet beats, at least one system
        more than the losses, within the model_perf budget. A heartbeat system beats for the whole
        timeline, so on a long one the budget carries fewer systems and so fewer losses."""
        beats_per_system = self.count / beat_every + 1
        affordable = int(HEARTBEAT_MODEL_PERF_BUDGET * self.mix["model_perf"] * self.count // beats_per_system)
        losses = min(losses, max(affordable - 1, 0))
        wanted = max(math.ceil(HEARTBEAT_FLEET_SHARE * fleet_size), losses + 1)
        return min(wanted, affordable), losses

    def make_fleet(self, size: int, heartbeat_count: int) -> list[FleetSystem]:
        entity_types, entity_weights = zip(*ENTITY_TYPE_MIX.items(), strict=True)
        risk_classes, risk_weights = zip(*RISK_CLASS_MIX.items(), strict=True)
        heartbeats = set(self.rng.sample(range(size), heartbeat_count))
        entity_type_of = self.rng.choices(entity_types, entity_weights, k=size)
        risk_class_of = self.rng.choices(risk_classes, risk_weights, k=size)
        return [
            FleetSystem(
                name=f"{self.fleet_prefix}-{number + 1:04d}",
                entity_type=str(entity_type_of[number]),
                risk_class=str(risk_class_of[number]),
                sends_heartbeats=number in heartbeats,
            )
            for number in range(size)
        ]

    def place_heartbeats(self, systems: list[str], beat_every: float) -> dict[str, list[int]]:
        """Each heartbeat system beats every ``beat_every`` index steps from a random phase."""
        beats: dict[str, list[int]] = {}
        for system in systems:
            phase = self.rng.random() * beat_every
            placed, step = [], 0
            while (target := round(phase + step * beat_every)) < self.count:
                index = self.take_free(max(target, placed[-1] + 1 if placed else 0))
                if index is None:
                    break
                self.fixed[index] = self.heartbeat(system)
                placed.append(index)
                step += 1
            beats[system] = placed
        return beats

    def heartbeat(self, system: str) -> _Fixed:
        return (system, "model_perf", HEARTBEAT_SIGNAL, 1.0, Severity.INFO.value, HEARTBEAT_ATTRIBUTES, None)

    def telemetry_signal(self) -> _Signal:
        """The signal a silent heartbeat system keeps reporting (latency when the thresholds have it)."""
        signals = self.signals["model_perf"] or next(s for c in CATEGORIES for s in [self.signals[c]] if s)
        return next((s for s in signals if s.name == "latency_p95_ms"), signals[0])

    def plant_heartbeat_loss(self, scenario_id: str, system: str, beats: list[int]) -> PlannedScenario | None:
        """Silence ``system``'s heartbeat for two absence windows after one of its beats, keep its
        telemetry going in the beats' place (so event-time detection sees the silence, including one
        event exactly one window after the last beat), then beat again."""
        window = self.rules.absence_window_seconds
        one_window = math.ceil(window * self.rate)
        silence = math.ceil(HEARTBEAT_SILENCE_WINDOWS * window * self.rate)
        candidates = [beat for beat in beats if beat + silence < self.count]
        if not candidates:
            return None
        last = self.rng.choice(candidates)
        signal = self.telemetry_signal()
        telemetry = [beat for beat in beats if last < beat < last + silence]
        probe = last + one_window
        if probe not in telemetry:
            probe = self.take_free(probe)
            if probe is not None and probe < last + silence:
                telemetry.append(probe)
        telemetry.sort()
        for index in telemetry:
            value = signal.noise(self.rng.random())
            attributes = signal.attributes(self.rng.random())
            self.fixed[index] = (
                system,
                signal.category,
                signal.name,
                value,
                Severity.INFO.value,
                attributes,
                scenario_id,
            )
        resume = last + silence
        if self.fixed.get(resume, (None, None, None))[:3] != (system, "model_perf", HEARTBEAT_SIGNAL):
            resume = self.take_free(resume)
            if resume is not None:
                self.fixed[resume] = self.heartbeat(system)
        return PlannedScenario(
            scenario_id=scenario_id,
            kind=ScenarioKind.HEARTBEAT_LOSS.value,
            system=system,
            category="model_perf",
            severity=Severity.HIGH.value,
            signals=(HEARTBEAT_SIGNAL,),
            expected_rule=ABSENCE_RULE,
            onset_at=self.time_of(last) + timedelta(seconds=window),
            event_count=len(telemetry),
        )

    def plant(self, kind: str, scenario_id: str, system: str) -> PlannedScenario | None:
        """One value-based scenario: choose its signals, values, severity and free indexes."""
        rng, rules = self.rng, self.rules
        if kind == ScenarioKind.SINGLE_BREACH:
            signal = self.pick_signal(_Signal.breach)
            values = [(signal, signal.breach(rng))]
            severity = Severity.CRITICAL.value if rng.random() < 0.25 else Severity.HIGH.value
            span, expected = 0, threshold_rule_name(signal.category)
        elif kind == ScenarioKind.SUSTAINED_DRIFT:
            signal = self.pick_signal(_Signal.between)
            span = self.index_span(rules.rate_window_seconds)
            low = max(3, rules.min_breaches)
            n = min(rng.randint(low, max(6, low)), span + 1)
            values = [(signal, signal.between(rng)) for _ in range(n)]
            severity = Severity.MEDIUM.value if rng.random() < 0.7 else Severity.LOW.value
            expected = rate_rule_name(signal.category)
        elif kind == ScenarioKind.COMPOUND:
            span = self.index_span(rules.correlation_window_seconds)
            low = max(2, rules.compound_min_signals)
            chosen = self.pick_compound_signals(min(rng.randint(low, max(3, low)), span + 1))
            values = [(signal, signal.between(rng)) for signal in chosen]
            rng.shuffle(values)
            severity = Severity.CRITICAL.value if rng.random() < 0.25 else Severity.HIGH.value
            expected = COMPOUND_RULE
        else:  # near miss
            signal = self.pick_signal(_Signal.near_miss)
            span = self.index_span(rules.rate_window_seconds)
            n = min(rng.randint(1, 3), span + 1)
            values = [(signal, signal.near_miss(rng)) for _ in range(n)]
            severity = Severity.LOW.value if rng.random() < 0.5 else Severity.INFO.value
            expected = ""
        indexes = self.free_run(len(values), span)
        if indexes is None:
            return None
        for index, (signal, value) in zip(indexes, values, strict=True):
            attributes = signal.attributes(rng.random())
            self.fixed[index] = (system, signal.category, signal.name, value, severity, attributes, scenario_id)
        first_signal = values[0][0]
        return PlannedScenario(
            scenario_id=scenario_id,
            kind=kind,
            system=system,
            category=first_signal.category,
            severity=severity,
            signals=tuple(dict.fromkeys(signal.name for signal, _ in values)),
            expected_rule=expected,
            onset_at=self.time_of(indexes[0]),
            event_count=len(values),
        )

    def pick_category(self, categories: Iterable[str]) -> str:
        categories = list(categories)
        return self.rng.choices(categories, [self.mix[c] for c in categories])[0]

    def pick_signal(self, make_value) -> _Signal:
        eligible = self.categories_with(make_value)
        return self.rng.choice(eligible[self.pick_category(eligible)])

    def pick_compound_signals(self, n: int) -> list[_Signal]:
        """``n`` distinct signals, the first two from two different categories."""
        eligible = self.categories_with(_Signal.between)
        first = self.pick_category(eligible)
        second = self.pick_category(c for c in eligible if c != first)
        chosen = [self.rng.choice(eligible[first]), self.rng.choice(eligible[second])]
        rest = [s for signals in eligible.values() for s in signals if s not in chosen]
        chosen += self.rng.sample(rest, min(n - 2, len(rest)))
        return chosen

    def free_run(self, n: int, span: int) -> list[int] | None:
        """``n`` free indexes, the first and last at most ``span`` steps apart."""
        rng = self.rng
        for _ in range(200):
            extent = rng.randint(n - 1, span) if n > 1 else 0
            offsets = [0, *sorted(rng.sample(range(1, extent + 1), n - 1))] if n > 1 else [0]
            anchor = rng.randrange(self.count - offsets[-1])
            indexes = [anchor + offset for offset in offsets]
            if not any(index in self.fixed for index in indexes):
                return indexes
        # A crowded plan: scan for the first run of consecutive free indexes.
        run: list[int] = []
        for index in range(self.count):
            run = [*run, index] if index not in self.fixed else []
            if len(run) == n:
                return run
        return None

    def noise_model(self, fleet: list[FleetSystem]) -> _NoiseModel:
        """Noise shares make up for the fixed events, so the whole stream matches the category mix and
        the severity mix (scenario and heartbeat events keep their own)."""
        noise_total = self.count - len(self.fixed)
        fixed_categories = Counter(event[1] for event in self.fixed.values())
        fixed_severities = Counter(event[4] for event in self.fixed.values())
        categories = [c for c in CATEGORIES if self.signals[c] and self.mix[c] > 0]
        category_weights = [max(self.mix[c] * self.count - fixed_categories[c], 0.0) for c in categories]
        severities = list(SEVERITY_MIX)
        severity_weights = [max(SEVERITY_MIX[s] * self.count - fixed_severities[s], 0.0) for s in severities]
        if noise_total <= 0 or not any(category_weights):
            category_weights = [self.mix[c] for c in categories]
        if not any(severity_weights):
            severity_weights = list(SEVERITY_MIX.values())
        return _NoiseModel(
            categories=tuple(categories),
            category_cumulative=_cumulative(category_weights),
            severities=tuple(severities),
            severity_cumulative=_cumulative(severity_weights),
            signals={c: self.signals[c] for c in categories},
            systems=tuple(system.name for system in fleet),
            key=_mix64(self.seed & _MASK64),
        )


def _cumulative(weights: list[float]) -> tuple[float, ...]:
    total = sum(weights)
    running, cumulative = 0.0, []
    for weight in weights:
        running += weight / total
        cumulative.append(running)
    cumulative[-1] = 1.0
    return tuple(cumulative)


# --- the database side: fleet, labels --------------------------------------------------------------
def synthetic_team() -> Team:
    """The team synthetic fleets belong to unless a caller names one (created, audited, on first use)."""
    team = Team.objects.filter(slug=SYNTHETIC_TEAM_SLUG).first()
    return team or team_create(
        name=SYNTHETIC_TEAM_NAME,
        slug=SYNTHETIC_TEAM_SLUG,
        actor=GENERATOR_ACTOR,
        description="AI systems of synthetic load runs (manage.py generate_events, simulations).",
    )


@transaction.atomic
def ensure_fleet(plan: EventPlan, *, team: Team | None = None) -> dict[str, AISystem]:
    """Every system of the plan's fleet, by name, existing and active.

    Idempotent: systems already there (by name) are reused — reactivated if a finished run
    deactivated them, never moved to another team; the missing ones are created in one INSERT with
    metadata ``{"synthetic": true, "seed": seed}``. One query reads what exists. Creations and
    reactivations are audited. Refuses (``ValueError``, nothing written) to adopt a system of the same
    name that is not synthetic: synthetic telemetry must never land on a real system.
    """
    names = [system.name for system in plan.fleet]
    existing = {system.name: system for system in AISystem.objects.filter(name__in=names)}
    real = sorted(name for name, system in existing.items() if not (system.metadata or {}).get("synthetic"))
    if real:
        raise ValueError(f"these fleet names belong to non-synthetic AI systems: {', '.join(real[:5])}")
    team = team or synthetic_team()
    created = [
        AISystem(
            name=spec.name,
            entity_type=spec.entity_type,
            risk_class=spec.risk_class,
            team=team,
            description="Synthetic AI system (generated telemetry).",
            metadata={"synthetic": True, "seed": plan.seed},
        )
        for spec in plan.fleet
        if spec.name not in existing
    ]
    AISystem.objects.bulk_create(created, batch_size=1000)
    inactive = [system for system in existing.values() if not system.is_active]
    if inactive:
        AISystem.objects.filter(pk__in=[system.pk for system in inactive]).update(is_active=True)
        for system in inactive:
            system.is_active = True
    audit_record_many(
        entries=[
            *(
                AuditEntry(
                    action=AuditAction.SYSTEM_REGISTERED,
                    actor=GENERATOR_ACTOR,
                    target=system,
                    data={
                        "name": system.name,
                        "entity_type": system.entity_type,
                        "team": str(team.pk),
                        "risk_class": system.risk_class,
                        "synthetic": True,
                    },
                )
                for system in created
            ),
            *(_active_change(system, active=True) for system in inactive),
        ]
    )
    by_name = {**existing, **{system.name: system for system in created}}
    return {name: by_name[name] for name in names}


def _active_change(system: AISystem, *, active: bool) -> AuditEntry:
    return AuditEntry(
        action=AuditAction.SYSTEM_UPDATED,
        actor=GENERATOR_ACTOR,
        target=system,
        data={"changes": {"is_active": {"from": not active, "to": active}}},
    )


@transaction.atomic
def deactivate_fleet(systems: Mapping[str, AISystem] | Iterable[AISystem]) -> int:
    """Mark the systems inactive (audited), so the wall-clock heartbeat check ignores a finished
    synthetic fleet. Returns how many changed; already inactive ones are left alone."""
    systems = list(systems.values() if isinstance(systems, Mapping) else systems)
    active_ids = set(
        AISystem.objects.filter(pk__in=[system.pk for system in systems], is_active=True).values_list("pk", flat=True)
    )
    if not active_ids:
        return 0
    AISystem.objects.filter(pk__in=active_ids).update(is_active=False)
    changed = [system for system in systems if system.pk in active_ids]
    for system in changed:
        system.is_active = False
    audit_record_many(entries=[_active_change(system, active=False) for system in changed])
    return len(active_ids)


def store_labels(plan: EventPlan, *, systems: Mapping[str, AISystem], simulation: Simulation | None = None) -> int:
    """The plan's scenarios as ``ScenarioLabel`` rows (the ground truth). Idempotent on
    ``scenario_id``: labels already stored are left as they are. One read, one bulk insert; returns
    how many were created."""
    stored = set(
        ScenarioLabel.objects.filter(scenario_id__startswith=f"{plan.namespace}:").values_list("scenario_id", flat=True)
    )
    labels = [
        ScenarioLabel(
            scenario_id=scenario.scenario_id,
            simulation=simulation,
            seed=plan.seed,
            kind=scenario.kind,
            system=systems[scenario.system],
            category=scenario.category,
            severity=scenario.severity,
            signals=list(scenario.signals),
            expected_rule=scenario.expected_rule,
            onset_at=scenario.onset_at,
            event_count=scenario.event_count,
        )
        for scenario in plan.scenarios
        if scenario.scenario_id not in stored
    ]
    ScenarioLabel.objects.bulk_create(labels, batch_size=1000, ignore_conflicts=True)
    return len(labels)
