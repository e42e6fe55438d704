"""Rule evaluation: pure functions from events and settings to alert candidates.

No database access here — ``oversight.services.processing`` loads a batch, the recent window around
it and the settings in a few set-based queries, and calls :func:`evaluate_events`. Keeping the rules
pure makes them cheap to test exhaustively and cheap to run (a 5,000-event batch is a few ms).
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from governance.choices import SEVERITY_RANK
from oversight.models import HEARTBEAT_SIGNAL
from oversight.rules import ABSENCE_RULE, COMPOUND_RULE, rate_rule_name, threshold_rule_name

WARNING, CRITICAL = "warning", "critical"


@dataclass(frozen=True)
class EventRow:
    """The columns of an event that detection reads."""

    event_id: str
    system_id: UUID
    category: str
    severity: str
    signal: str
    value: float
    occurred_at: datetime
    in_batch: bool = True


@dataclass(frozen=True)
class RuleState:
    """What an operator controls on a rule row: on/off and the severity floor."""

    enabled: bool
    severity: str
    kind: str


@dataclass(frozen=True)
class DetectionSettings:
    """Everything rules read from the config registry, loaded once per batch."""

    thresholds: Mapping[str, Mapping[str, Mapping[str, Any]]]  # category -> signal -> spec
    rate_min_breaches: int
    rate_window: timedelta
    correlation_window: timedelta
    compound_min_signals: int
    absence_window: timedelta
    quiet_period: timedelta
    rules: Mapping[str, RuleState]

    @property
    def lookback(self) -> timedelta:
        """How far before a batch's events the window rules need history."""
        return max(self.rate_window, self.correlation_window)

    def enabled(self, rule: str) -> bool:
        state = self.rules.get(rule)
        return bool(state and state.enabled)


@dataclass
class Candidate:
    """An alert the rules want to exist: new, or merged into the open alert with its fingerprint."""

    rule: str
    system_id: UUID
    category: str
    signal: str
    firing: bool
    severity: str
    evidence: list[EventRow] = field(default_factory=list)
    first_event_at: datetime | None = None
    last_seen_at: datetime | None = None
    annotations: dict[str, Any] = field(default_factory=dict)
    extra_evidence_ids: list[str] = field(default_factory=list)

    @property
    def evidence_ids(self) -> list[str]:
        return [e.event_id for e in self.evidence] + self.extra_evidence_ids

    @property
    def labels(self) -> dict[str, str]:
        labels = {"rule": self.rule, "system": str(self.system_id)}
        if self.signal:
            labels["signal"] = self.signal
        return labels

    @property
    def fingerprint(self) -> str:
        return alert_fingerprint(self.labels)


def alert_fingerprint(labels: Mapping[str, str]) -> str:
    """sha256 of the identity labels (rule and what it watched), never of annotations."""
    return hashlib.sha256(json.dumps(dict(labels), sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def max_severity(*severities: str) -> str:
    return max(severities, key=lambda s: SEVERITY_RANK[s])


def breach_level(spec: Mapping[str, Any] | None, value: float) -> str | None:
    """``critical``, ``warning`` or None for a value against one signal's thresholds."""
    if spec is None:
        return None
    if spec["direction"] == "above":
        if value > spec["critical"]:
            return CRITICAL
        return WARNING if value > spec["warning"] else None
    if value < spec["critical"]:
        return CRITICAL
    return WARNING if value < spec["warning"] else None


def classify(events: Iterable[EventRow], settings: DetectionSettings) -> list[tuple[EventRow, str]]:
    """The events that cross a level, with the level, in event-time order."""
    breaches = []
    for event in events:
        if event.signal == HEARTBEAT_SIGNAL:
            continue
        level = breach_level(settings.thresholds.get(event.category, {}).get(event.signal), event.value)
        if level:
            breaches.append((event, level))
    breaches.sort(key=lambda pair: (pair[0].occurred_at, pair[0].event_id))
    return breaches


def evaluate_events(
    *, batch: Iterable[EventRow], history: Iterable[EventRow], settings: DetectionSettings
) -> list[Candidate]:
    """Threshold, rate and compound candidates for one batch, using ``history`` (the recent window of
    earlier events of the same systems) for the window rules. Only groups with a breach in the batch
    are evaluated, so re-reading history never re-raises what an earlier batch already raised."""
    breaches = classify([*batch, *history], settings)
    candidates: list[Candidate] = []
    candidates += _threshold_candidates(breaches, settings)
    candidates += _rate_candidates(breaches, settings)
    candidates += _compound_candidates(breaches, settings)
    return candidates


def _candidate(rule: str, evidence: list[EventRow], *, signal: str, firing: bool, settings, **annotations):
    floor = settings.rules[rule].severity
    first = evidence[0]
    return Candidate(
        rule=rule,
        system_id=first.system_id,
        category=first.category,
        signal=signal,
        firing=firing,
        severity=max_severity(floor, *(e.severity for e in evidence)),
        evidence=evidence,
        first_event_at=first.occurred_at,
        last_seen_at=evidence[-1].occurred_at,
        annotations=annotations,
    )


def _threshold_candidates(breaches, settings) -> list[Candidate]:
    groups: dict[tuple, list[EventRow]] = defaultdict(list)
    for event, level in breaches:
        if level == CRITICAL and event.in_batch:
            groups[(event.system_id, event.category, event.signal)].append(event)
    candidates = []
    for (_, category, signal), events in groups.items():
        rule = threshold_rule_name(category)
        if not settings.enabled(rule):
            continue
        spec = settings.thresholds[category][signal]
        worst = (
            max(events, key=lambda e: e.value) if spec["direction"] == "above" else min(events, key=lambda e: e.value)
        )
        candidates.append(
            _candidate(
                rule,
                events,
                signal=signal,
                firing=True,
                settings=settings,
                value=worst.value,
                critical=spec["critical"],
                direction=spec["direction"],
                unit=spec["unit"],
            )
        )
    return candidates


def _first_window(times: list[datetime], needed: int, window: timedelta) -> tuple[int, int] | None:
    """(start, end) indexes of the earliest run of ``needed`` times inside ``window``, if any."""
    for end in range(needed - 1, len(times)):
        start = end - needed + 1
        if times[end] - times[start] <= window:
            return start, end
    return None


def _rate_candidates(breaches, settings) -> list[Candidate]:
    # Warning-level breaches only: a critical one fires the threshold rule on its own.
    groups: dict[tuple, list[EventRow]] = defaultdict(list)
    for event, level in breaches:
        if level == WARNING:
            groups[(event.system_id, event.category, event.signal)].append(event)
    candidates = []
    for (_, category, signal), events in groups.items():
        rule = rate_rule_name(category)
        if not settings.enabled(rule) or not any(e.in_batch for e in events):
            continue
        spec = settings.thresholds[category][signal]
        needed, window = settings.rate_min_breaches, settings.rate_window
        found = _first_window([e.occurred_at for e in events], needed, window)
        if found:
            evidence = events[found[0] :]
        else:
            latest = events[-1].occurred_at
            evidence = [e for e in events if latest - e.occurred_at <= window]
        candidates.append(
            _candidate(
                rule,
                evidence,
                signal=signal,
                firing=found is not None,
                settings=settings,
                breaches=len(evidence),
                min_breaches=needed,
                window_seconds=int(window.total_seconds()),
                warning=spec["warning"],
                direction=spec["direction"],
                unit=spec["unit"],
            )
        )
    return candidates


def _compound_candidates(breaches, settings) -> list[Candidate]:
    if not settings.enabled(COMPOUND_RULE):
        return []
    by_system: dict[UUID, list[EventRow]] = defaultdict(list)
    for event, _level in breaches:
        by_system[event.system_id].append(event)
    needed, window = settings.compound_min_signals, settings.correlation_window
    candidates = []
    for events in by_system.values():
        if not any(e.in_batch for e in events):
            continue
        start = _first_distinct_window(events, needed, window)
        if start is None:
            continue
        evidence = events[start:]
        candidates.append(
            _candidate(
                COMPOUND_RULE,
                evidence,
                signal="",
                firing=True,
                settings=settings,
                signals=sorted({e.signal for e in evidence}),
                categories=sorted({e.category for e in evidence}),
                window_seconds=int(window.total_seconds()),
            )
        )
    return candidates


def _first_distinct_window(events: list[EventRow], needed: int, window: timedelta) -> int | None:
    """Start index of the earliest window holding ``needed`` distinct signals (two pointers)."""
    counts: dict[str, int] = defaultdict(int)
    start = 0
    for event in events:
        counts[event.signal] += 1
        while event.occurred_at - events[start].occurred_at > window:
            counts[events[start].signal] -= 1
            if not counts[events[start].signal]:
                del counts[events[start].signal]
            start += 1
        if len(counts) >= needed:
            return start
    return None


@dataclass(frozen=True)
class Heartbeat:
    system_id: UUID
    last_seen_at: datetime
    last_event_id: str


def heartbeat_silences(
    events: Iterable[EventRow], *, previous: Mapping[UUID, Heartbeat], watched: set, window: timedelta
) -> list[tuple[Heartbeat, datetime]]:
    """Silences of at least ``window`` in the heartbeats of ``watched`` systems, judged in event time.

    Walks each system's events in time order from its last known heartbeat (``previous``): a gap
    between two beats, or between the last beat and a later event of any other signal, is a silence.
    Returns (the beat before the silence, the event time that revealed it), the first per system —
    so a batch holding both the silence and the resumed beats still reports it.
    """
    by_system: dict[UUID, list[EventRow]] = defaultdict(list)
    for event in events:
        if event.system_id in watched:
            by_system[event.system_id].append(event)
    silences = []
    for system_id, stream in by_system.items():
        last = previous.get(system_id)
        for event in sorted(stream, key=lambda e: (e.occurred_at, e.signal != HEARTBEAT_SIGNAL)):
            if last is not None and event.occurred_at - last.last_seen_at >= window:
                silences.append((last, event.occurred_at))
                break
            if event.signal == HEARTBEAT_SIGNAL:
                last = Heartbeat(system_id=system_id, last_seen_at=event.occurred_at, last_event_id=event.event_id)
    return silences


def absence_candidates(
    observations: Iterable[tuple[Heartbeat, datetime]], *, settings: DetectionSettings
) -> list[Candidate]:
    """Systems whose heartbeat has been silent for the absence window as of each one's reference time
    (the system's own latest event time, or the wall clock).

    The alert's onset is when the silence crossed the window; ``last_seen_at`` is the reference, so
    an ongoing silence keeps the alert from resolving and a resumed heartbeat lets it resolve.
    """
    if not settings.enabled(ABSENCE_RULE):
        return []
    window = settings.absence_window
    floor = settings.rules[ABSENCE_RULE].severity
    candidates = []
    for beat, reference in observations:
        if reference - beat.last_seen_at < window:
            continue
        candidates.append(
            Candidate(
                rule=ABSENCE_RULE,
                system_id=beat.system_id,
                category="model_perf",
                signal=HEARTBEAT_SIGNAL,
                firing=True,
                severity=floor,
                evidence=[],
                extra_evidence_ids=[beat.last_event_id],
                first_event_at=beat.last_seen_at + window,
                last_seen_at=reference,
                annotations={
                    "last_heartbeat_at": beat.last_seen_at.isoformat(),
                    "last_heartbeat_event_id": beat.last_event_id,
                    "window_seconds": int(window.total_seconds()),
                },
            )
        )
    return candidates
