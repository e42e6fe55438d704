"""Alert writes: upsert by fingerprint, the pending → firing → resolved transitions, resolution."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from config import registry
from governance.choices import SEVERITY_RANK, AuditAction
from governance.services.audit import AuditEntry, audit_record_many
from oversight.models import OPEN_ALERT_STATUSES, Alert, AlertStatus, DetectionRule
from oversight.services.detection import Candidate, max_severity

# An alert keeps at most this many evidence ids (the first ones, which carry the onset); ``count``
# keeps counting past it.
EVIDENCE_CAP = 200
UPDATE_FIELDS = [
    "status",
    "severity",
    "first_event_at",
    "detected_at",
    "last_seen_at",
    "count",
    "annotations",
    "evidence_event_ids",
    "updated_at",
]


@dataclass
class UpsertOutcome:
    fired: list[Alert] = field(default_factory=list)  # started firing now (new, or pending → firing)
    escalated: list[Alert] = field(default_factory=list)  # already firing, severity went up
    created: int = 0
    updated: int = 0
    superseded: list[Alert] = field(default_factory=list)  # stale open alerts resolved for a new occurrence


def upsert_alerts(
    *, candidates: Sequence[Candidate], rules: dict[str, DetectionRule], now: datetime, quiet_period: timedelta
) -> UpsertOutcome:
    """Merge candidates into open alerts by fingerprint, or create new ones.

    Must run inside the caller's transaction, after the caller holds the per-system locks (the
    processing engine takes them), so no other writer creates an open alert for these fingerprints
    meanwhile. Idempotent for repeated evidence: an event id already on the alert is not counted again.
    An open alert whose last breach is older than the quiet period is resolved and the new breach
    starts a new occurrence. Audits alerts that fire and alerts it resolves.
    """
    outcome = UpsertOutcome()
    if not candidates:
        return outcome
    merged = _merge_same_fingerprint(candidates)
    open_alerts = {
        alert.fingerprint: alert
        for alert in Alert.objects.select_for_update().filter(
            fingerprint__in=list(merged), status__in=OPEN_ALERT_STATUSES
        )
    }
    to_create: list[Alert] = []
    to_update: list[Alert] = []
    for fingerprint, candidate in merged.items():
        alert = open_alerts.get(fingerprint)
        if alert is not None and candidate.first_event_at - alert.last_seen_at > quiet_period:
            alert.status = AlertStatus.RESOLVED
            alert.resolved_at = alert.last_seen_at + quiet_period
            outcome.superseded.append(alert)
            alert = None
        if alert is None:
            alert = _new_alert(candidate, rule=rules[candidate.rule], fingerprint=fingerprint, now=now)
            to_create.append(alert)
            if alert.status == AlertStatus.FIRING:
                outcome.fired.append(alert)
            continue
        change = _merge_into(alert, candidate, now=now)
        if change:
            to_update.append(alert)
            if change == "fired":
                outcome.fired.append(alert)
            elif change == "escalated":
                outcome.escalated.append(alert)
    if outcome.superseded:
        Alert.objects.bulk_update(outcome.superseded, ["status", "resolved_at", "updated_at"])
    Alert.objects.bulk_create(to_create)
    Alert.objects.bulk_update(to_update, UPDATE_FIELDS)
    outcome.created, outcome.updated = len(to_create), len(to_update)
    audit_record_many(
        entries=[
            *(_fired_entry(alert) for alert in outcome.fired),
            *(_resolved_entry(alert, reason="superseded by a new occurrence") for alert in outcome.superseded),
        ]
    )
    return outcome


def _merge_same_fingerprint(candidates: Iterable[Candidate]) -> dict[str, Candidate]:
    """One candidate per fingerprint (e.g. the event-time and wall-clock absence checks may agree)."""
    merged: dict[str, Candidate] = {}
    for candidate in candidates:
        existing = merged.get(candidate.fingerprint)
        if existing is None:
            merged[candidate.fingerprint] = candidate
            continue
        existing.firing = existing.firing or candidate.firing
        existing.severity = max_severity(existing.severity, candidate.severity)
        existing.evidence += [e for e in candidate.evidence if e not in existing.evidence]
        existing.first_event_at = min(existing.first_event_at, candidate.first_event_at)
        existing.last_seen_at = max(existing.last_seen_at, candidate.last_seen_at)
    return merged


def _new_alert(candidate: Candidate, *, rule: DetectionRule, fingerprint: str, now: datetime) -> Alert:
    firing = candidate.firing
    ids = candidate.evidence_ids
    return Alert(
        fingerprint=fingerprint,
        rule=rule,
        system_id=candidate.system_id,
        status=AlertStatus.FIRING if firing else AlertStatus.PENDING,
        severity=candidate.severity,
        category=candidate.category,
        signal=candidate.signal,
        first_event_at=candidate.first_event_at,
        detected_at=now if firing else None,
        last_seen_at=candidate.last_seen_at,
        count=len(candidate.evidence) or 1,
        labels=candidate.labels,
        annotations=candidate.annotations,
        evidence_event_ids=ids[:EVIDENCE_CAP],
    )


def _merge_into(alert: Alert, candidate: Candidate, *, now: datetime) -> str | None:
    """Fold a candidate into an open alert. Returns "fired", "escalated", "updated" or None."""
    known = set(alert.evidence_event_ids)
    new_ids = [event_id for event_id in candidate.evidence_ids if event_id not in known]
    change = None
    if new_ids or candidate.last_seen_at > alert.last_seen_at:
        change = "updated"
        alert.count += len([e for e in candidate.evidence if e.event_id in new_ids])
        room = EVIDENCE_CAP - len(alert.evidence_event_ids)
        alert.evidence_event_ids = alert.evidence_event_ids + new_ids[: max(room, 0)]
        alert.last_seen_at = max(alert.last_seen_at, candidate.last_seen_at)
        alert.first_event_at = min(alert.first_event_at, candidate.first_event_at)
        alert.annotations = {**alert.annotations, **candidate.annotations}
    if SEVERITY_RANK[candidate.severity] > SEVERITY_RANK[alert.severity]:
        alert.severity = candidate.severity
        change = "escalated" if alert.status == AlertStatus.FIRING else change or "updated"
    if alert.status == AlertStatus.PENDING and candidate.firing:
        alert.status = AlertStatus.FIRING
        alert.detected_at = now
        change = "fired"
    if change:
        alert.updated_at = now
    return change


def _fired_entry(alert: Alert) -> AuditEntry:
    return AuditEntry(
        action=AuditAction.ALERT_FIRED,
        target=alert,
        data={
            "rule": alert.labels.get("rule"),
            "system": str(alert.system_id),
            "severity": alert.severity,
            "fingerprint": alert.fingerprint,
            "first_event_at": alert.first_event_at,
            "detected_at": alert.detected_at,
            "evidence": alert.evidence_event_ids[:10],
        },
    )


def _resolved_entry(alert: Alert, *, reason: str, actor: Any = None) -> AuditEntry:
    return AuditEntry(
        action=AuditAction.ALERT_RESOLVED,
        actor=actor,
        target=alert,
        data={"fingerprint": alert.fingerprint, "reason": reason, "resolved_at": alert.resolved_at},
    )


# --- resolution ---------------------------------------------------------------------------------
RESOLVE_CHUNK = 1000


def resolve_stale_alerts(*, now: datetime | None = None) -> int:
    """Resolve open alerts with no breach for ``oversight.alert_quiet_period_seconds``.

    Guarded update (only rows still open change), at most 1,000 per call (the beat runs every
    minute), each resolution audited. Safe to run concurrently and repeatedly.
    """
    now = now or timezone.now()
    quiet = timedelta(seconds=registry.get("oversight.alert_quiet_period_seconds"))
    ids = list(
        Alert.objects.filter(status__in=OPEN_ALERT_STATUSES, last_seen_at__lt=now - quiet)
        .order_by("last_seen_at")
        .values_list("id", flat=True)[:RESOLVE_CHUNK]
    )
    return _resolve(ids, now=now, reason=f"no breach for {int(quiet.total_seconds())} s", actor=None)


def alerts_resolve(*, alert_ids: Sequence, actor: Any, reason: str) -> int:
    """Resolve the given open alerts now (an operator's decision). Returns how many changed."""
    return _resolve(list(alert_ids), now=timezone.now(), reason=reason or "resolved by an operator", actor=actor)


def _resolve(ids: list, *, now: datetime, reason: str, actor: Any) -> int:
    if not ids:
        return 0
    with transaction.atomic():
        alerts = list(
            Alert.objects.select_for_update(skip_locked=True).filter(pk__in=ids, status__in=OPEN_ALERT_STATUSES)
        )
        for alert in alerts:
            alert.status, alert.resolved_at, alert.updated_at = AlertStatus.RESOLVED, now, now
        Alert.objects.bulk_update(alerts, ["status", "resolved_at", "updated_at"])
        audit_record_many(entries=[_resolved_entry(alert, reason=reason, actor=actor) for alert in alerts])
    return len(alerts)


def alerts_record_history(*, alerts: list[dict]) -> int:
    """Store alerts that fired and resolved in the past (a synthetic history with known onsets): each dict
    names ``rule`` (a detection rule's name), ``system_id``, ``severity``, ``category``, ``signal``,
    ``first_event_at``, ``detected_at``, ``resolved_at`` and ``count``. Written resolved, never routed
    (no incident, no review, no audit of a firing that is not happening now). Returns the alerts stored."""
    import hashlib

    rules = {rule.name: rule for rule in DetectionRule.objects.filter(name__in={a["rule"] for a in alerts})}
    rows = [
        Alert(
            fingerprint=hashlib.sha256(
                f"history:{a['rule']}:{a['system_id']}:{a['detected_at'].isoformat()}".encode()
            ).hexdigest(),
            rule=rules[a["rule"]],
            system_id=a["system_id"],
            status=AlertStatus.RESOLVED,
            severity=a["severity"],
            category=a["category"],
            signal=a["signal"],
            first_event_at=a["first_event_at"],
            detected_at=a["detected_at"],
            last_seen_at=a["detected_at"],
            resolved_at=a["resolved_at"],
            count=a["count"],
            labels={"rule": a["rule"], "system": str(a["system_id"]), "signal": a["signal"]},
            annotations={"historical": True},
        )
        for a in alerts
    ]
    Alert.objects.bulk_create(rows, batch_size=1000)
    return len(rows)
