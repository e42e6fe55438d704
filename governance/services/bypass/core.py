"""What every governance-bypass detector shares: the platform system detections are reported against,
the detectors' settings, redaction, and the one way a detection enters the oversight pipeline.

A detection is ONE ``security`` event with the detector's own signal (``bypass_<detector>``, value 1) on
the platform's AI system ``vigil-platform`` (team ``security``), ingested with ``ingest_events``. The
security thresholds give every ``bypass_*`` signal a critical level of 0.5, so the engine's threshold
rule raises one alert per detector and the incident intake opens the incident for the security team
(severity ≥ high). Each detection also writes one ``security.bypass_detected`` audit entry, and the
event cites it and the audit entries of the requests concerned (``attributes.audit_refs``); the incident
knowledge graph links the incident to every cited entry.

A detection is recorded at most once per (detector, source, period): the event id is a UUID5 of that
triple, and ingest stores an event id only once; a duplicate writes no audit entry either.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from config import registry
from config.keys import BYPASS_DETECTORS
from governance.choices import AuditAction, RiskClass
from governance.models import AISystem
from governance.services import organization
from governance.services.audit import audit_record

__all__ = [
    "BYPASS_CONFIG_KEY",
    "CATEGORY",
    "DETECTION_NAMESPACE",
    "PLATFORM_SYSTEM_NAME",
    "SECURITY_TEAM_SLUG",
    "bypass_detection_emit",
    "bypass_event_id",
    "detector_settings",
    "detector_signal",
    "hour_start",
    "platform_system_ensure",
    "redact_details",
]

PLATFORM_SYSTEM_NAME = "vigil-platform"
SECURITY_TEAM_SLUG = "security"
SECURITY_TEAM_NAME = "Security"
CATEGORY = "security"
BYPASS_CONFIG_KEY = "governance.bypass"
SEVERITIES = ("high", "critical")
# Fixed namespace: the same (detector, source, period) always yields the same event id, on every host.
DETECTION_NAMESPACE = uuid.UUID("8a3c4f0e-6f1b-5d7a-9c2e-1b4d6f8a0c3e")
# Only these keys of a detection's details reach the event and the audit entry (an allow-list: headers,
# tokens, passwords and payloads can never leak, whatever a detector's caller passes).
_KEPT_DETAIL_KEYS = (
    # request facts
    "path", "method", "ip", "user_agent", "error", "caller", "user", "identities",
    # counters and windows
    "count", "limit", "denied", "window_start", "hour", "requests", "baseline", "reasons", "groups",
    # database changes
    "table", "operation", "rows", "row_ids", "db_user", "application", "client_addr", "txid",
    # governance objects
    "system", "system_name", "artifact", "environment", "deployment", "gate_decision", "suite",
    "evaluation_run", "review_item", "review_type", "decision",
)  # fmt: skip
_MAX_DETAIL_LENGTH = 300
_MAX_LIST_ITEMS = 20


def detector_signal(detector: str) -> str:
    """The security signal a detector reports as: ``bypass_<detector>``."""
    if detector not in BYPASS_DETECTORS:
        raise ValueError(f"unknown bypass detector {detector!r}; known: {', '.join(BYPASS_DETECTORS)}")
    return f"bypass_{detector}"


def detector_settings(detector: str) -> dict[str, Any]:
    """The detector's section of ``governance.bypass`` (``enabled`` plus its own counts)."""
    detector_signal(detector)
    return registry.get(BYPASS_CONFIG_KEY)[detector]


def platform_system_ensure() -> AISystem:
    """The AI system ``vigil-platform`` (system, limited risk) owned by team ``security``, created if missing."""
    return organization.platform_system_ensure(
        name=PLATFORM_SYSTEM_NAME,
        team_slug=SECURITY_TEAM_SLUG,
        team_name=SECURITY_TEAM_NAME,
        risk_class=RiskClass.LIMITED,
        description="The Vigil platform itself: bypass detections are reported against it.",
    )


def _clean(value: Any, depth: int = 0) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    if depth < 2 and isinstance(value, Mapping):
        return {str(k)[:_MAX_DETAIL_LENGTH]: _clean(v, depth + 1) for k, v in list(value.items())[:_MAX_LIST_ITEMS]}
    if depth < 2 and isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=str) if isinstance(value, set | frozenset) else value
        return [_clean(v, depth + 1) for v in list(items)[:_MAX_LIST_ITEMS]]
    return str(value)[:_MAX_DETAIL_LENGTH]


def redact_details(details: Mapping[str, Any]) -> dict[str, Any]:
    """Only the allow-listed keys; strings truncated to 300 characters, lists and maps to 20 items, two
    levels deep (anything deeper becomes a truncated string)."""
    return {key: _clean(details[key]) for key in _KEPT_DETAIL_KEYS if details.get(key) is not None}


def hour_start(moment: datetime) -> datetime:
    """The start of ``moment``'s UTC hour: the period of a detection."""
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def bypass_event_id(*, detector: str, source: str, now: datetime) -> uuid.UUID:
    """The deterministic event id of a detection: UUID5 of (detector, source, UTC hour of ``now``)."""
    return uuid.uuid5(DETECTION_NAMESPACE, f"{detector}|{source}|{hour_start(now).isoformat()}")


class _AlreadyRecorded(Exception):
    """Raised inside the detection's transaction to roll back its audit entry when ingest saw a duplicate."""


def bypass_detection_emit(
    *,
    detector: str,
    source: str,
    summary: str,
    details: Mapping[str, Any],
    severity: str = "high",
    audit_refs: Sequence[Any] = (),
    now: datetime | None = None,
    period: datetime | None = None,
) -> bool:
    """Record one detection: a ``security.bypass_detected`` audit entry and one ``bypass_<detector>``
    event on ``vigil-platform``, in one transaction. Returns True when it is new.

    ``source`` names what the detection is about (``ip:…``, ``user:…``, ``db:…``, ``deployment:…``);
    ``period`` (default ``now``) is the moment whose UTC hour, with detector and source, identifies the
    detection: a second emit for the same triple stores nothing and returns False. ``audit_refs`` are the
    ids of the audit entries of the requests concerned; the event cites them and the detection's own
    entry. ``details`` are reduced to the allow-list of ``redact_details``. Ingest enqueues processing
    after commit, so the alert and the security incident follow within the processing latency.
    """
    from oversight.models import EventRaw  # oversight imports governance; keep this one-way
    from oversight.services.ingest import ingest_events

    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}, got {severity!r}")
    signal = detector_signal(detector)
    now = now or timezone.now()
    event_id = str(bypass_event_id(detector=detector, source=source, now=period or now))
    if EventRaw.objects.filter(event_id=event_id).exists():
        return False
    system = platform_system_ensure()
    cleaned = redact_details(details)
    refs = [str(ref) for ref in dict.fromkeys(audit_refs)]
    try:
        with transaction.atomic():
            entry = audit_record(
                action=AuditAction.BYPASS_DETECTED,
                actor=None,
                target=system,
                data={
                    "detector": detector,
                    "source": source,
                    "severity": severity,
                    "summary": summary,
                    "details": cleaned,
                    "event_id": event_id,
                    "audit_refs": refs,
                },
            )
            item = {
                "event_id": event_id,
                "system": str(system.pk),
                "category": CATEGORY,
                "severity": severity,
                "signal": signal,
                "value": 1.0,
                "occurred_at": now.isoformat(),
                "attributes": {
                    "detector": detector,
                    "source": source,
                    "summary": summary[:_MAX_DETAIL_LENGTH],
                    "details": cleaned,
                    "audit_refs": [*refs, str(entry.pk)],
                },
            }
            # submitted_by=None: the platform itself is the internal caller (every system is writable to it).
            if ingest_events(items=[item], submitted_by=None, now=now).accepted != 1:
                raise _AlreadyRecorded
    except _AlreadyRecorded:
        return False
    return True
