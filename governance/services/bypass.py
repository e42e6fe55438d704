"""Bypass detection (first slice): failed JWT authentications and repeated 429s per caller.

Both detectors read the ``rate_limits`` counters (no new tables) and report through the normal telemetry
pipeline: a detection is ONE ``security``/``auth_failures`` event on the platform's own AI system
``vigil-platform`` (team ``security``), ingested with ``ingest_events``; the oversight engine then raises
the alert against ``oversight.thresholds.security.auth_failures`` and, at ≥ high, opens the incident for
the security team. A detection is recorded at most once per (detector, source, hour): the event id is a
UUID5 of that triple, and ingest stores an event id only once.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from config import registry
from governance.choices import EntityType, RiskClass
from governance.models import AISystem, RateLimit, Team
from governance.services.organization import ai_system_register, team_create
from governance.services.ratelimit import client_ip, rate_limit_for, rate_limit_hit

__all__ = [
    "AUTH_FAILURE_GROUP",
    "AUTH_FAILURE_WINDOW_SECONDS",
    "DETECTION_NAMESPACE",
    "PLATFORM_SYSTEM_NAME",
    "RATE_LIMIT_ABUSE_MIN_DENIED",
    "SECURITY_TEAM_SLUG",
    "auth_failure_record",
    "bypass_detection_emit",
    "bypass_event_id",
    "bypass_scan",
    "bypass_scan_invalid_tokens",
    "bypass_scan_rate_limit_abuse",
    "platform_system_ensure",
    "redact_details",
]

PLATFORM_SYSTEM_NAME = "vigil-platform"
SECURITY_TEAM_SLUG = "security"
SECURITY_TEAM_NAME = "Security"
AUTH_FAILURE_GROUP = "auth_failures"
AUTH_FAILURE_WINDOW_SECONDS = 3600
# The counter must never refuse anything: it only counts. ``rate_limit_hit`` needs a positive limit.
_AUTH_FAILURE_COUNT_ONLY_LIMIT = 10**9
# A caller refused this many times (count − limit) within one window is pressing on the limiter.
RATE_LIMIT_ABUSE_MIN_DENIED = 10
SIGNAL = "auth_failures"
CATEGORY = "security"
THRESHOLDS_KEY = "oversight.thresholds.security"
# Fixed namespace: the same (detector, source, hour) always yields the same event id, on every host.
DETECTION_NAMESPACE = uuid.UUID("8a3c4f0e-6f1b-5d7a-9c2e-1b4d6f8a0c3e")
# Only these keys of a detection's details reach the event (an allow-list: headers, tokens and passwords
# can never leak, whatever a caller passes).
_KEPT_DETAIL_KEYS = ("path", "method", "ip", "user_agent", "error", "count", "limit", "denied", "window_start")
_SAMPLE_CACHE_PREFIX = "bypass:auth-failure-sample:"
_MAX_DETAIL_LENGTH = 300


def platform_system_ensure() -> AISystem:
    """The AI system ``vigil-platform`` (system, limited risk) owned by team ``security``, created if missing.

    Idempotent; creation goes through ``team_create`` / ``ai_system_register`` (so it is audited as they
    audit, actor None = the platform). A concurrent creator losing the unique-name race reads the winner's row.
    """
    system = AISystem.objects.select_related("team").filter(name=PLATFORM_SYSTEM_NAME).first()
    if system is not None:
        return system
    try:
        with transaction.atomic():
            team = Team.objects.filter(slug=SECURITY_TEAM_SLUG).first() or team_create(
                name=SECURITY_TEAM_NAME, slug=SECURITY_TEAM_SLUG, actor=None
            )
            return ai_system_register(
                name=PLATFORM_SYSTEM_NAME,
                entity_type=EntityType.SYSTEM,
                team=team,
                risk_class=RiskClass.LIMITED,
                actor=None,
                description="The Vigil platform itself: bypass detections are reported against it.",
            )
    except IntegrityError:
        return AISystem.objects.select_related("team").get(name=PLATFORM_SYSTEM_NAME)


def redact_details(details: Mapping[str, Any]) -> dict[str, Any]:
    """Only the allow-listed keys (path, method, ip, user_agent, error, counts), strings truncated."""
    kept: dict[str, Any] = {}
    for key in _KEPT_DETAIL_KEYS:
        if key in details and details[key] is not None:
            value = details[key]
            if not isinstance(value, int | float | bool):
                value = str(value)[:_MAX_DETAIL_LENGTH]
            kept[key] = value
    return kept


def _hour_of(now: datetime) -> datetime:
    return now.replace(minute=0, second=0, microsecond=0)


def bypass_event_id(*, detector: str, source: str, now: datetime) -> uuid.UUID:
    """The deterministic event id of a detection: UUID5 of (detector, source, UTC hour)."""
    hour = _hour_of(now.astimezone(UTC))
    return uuid.uuid5(DETECTION_NAMESPACE, f"{detector}|{source}|{hour.isoformat()}")


def _severity_for(value: float) -> str:
    spec = registry.get(THRESHOLDS_KEY).get(SIGNAL, {})
    if value >= spec.get("critical", 50):
        return "critical"
    if value >= spec.get("warning", 10):
        return "high"
    return "medium"


def bypass_detection_emit(
    *, detector: str, source: str, value: float, details: Mapping[str, Any], now: datetime | None = None
) -> bool:
    """Ingest one ``security``/``auth_failures`` event on ``vigil-platform`` for this detection.

    At most one event per (detector, source, hour): the event id is ``bypass_event_id`` and ingest ignores
    a stored id, so a rerun (or a concurrent scan) counts a duplicate. Details are reduced to the
    allow-list of ``redact_details``. Ingest writes the batch and its ``events.ingested`` audit entry
    atomically and enqueues processing after commit. Returns True when a new event was stored.
    """
    from oversight.services.ingest import ingest_events  # oversight imports governance; keep this one-way

    now = now or timezone.now()
    system = platform_system_ensure()
    item = {
        "event_id": str(bypass_event_id(detector=detector, source=source, now=now)),
        "system": str(system.pk),
        "category": CATEGORY,
        "severity": _severity_for(value),
        "signal": SIGNAL,
        "value": float(value),
        "occurred_at": now.isoformat(),
        "attributes": {"detector": detector, "source": source, "details": redact_details(details)},
    }
    # submitted_by=None: the platform itself is the internal caller (every system is writable to it).
    result = ingest_events(items=[item], submitted_by=None, now=now)
    return result.accepted == 1


# --- detector 1: failed JWT authentications per client IP ------------------------------------------------
def _error_code(error: Exception) -> str:
    detail = getattr(error, "detail", None)
    if isinstance(detail, Mapping):
        code = detail.get("code")
        return str(code) if code is not None else type(error).__name__
    return str(getattr(detail, "code", None) or type(error).__name__)


def auth_failure_record(*, request: Any, error: Exception) -> int:
    """Count one failed authentication against ``ip:<client ip>`` (group ``auth_failures``, 1 h window).

    One atomic upsert (``rate_limit_hit``); never refuses. The last failure's redacted request facts
    (path, method, ip, user agent, error code — never the token or any header) are kept in the cache as a
    best-effort sample for the detection's details. Returns the count in the current window.
    """
    ip = client_ip(request)
    decision = rate_limit_hit(
        key=f"ip:{ip}",
        group=AUTH_FAILURE_GROUP,
        limit=_AUTH_FAILURE_COUNT_ONLY_LIMIT,
        window_seconds=AUTH_FAILURE_WINDOW_SECONDS,
    )
    meta = getattr(request, "META", {})
    sample = redact_details(
        {
            "path": getattr(request, "path", ""),
            "method": getattr(request, "method", ""),
            "ip": ip,
            "user_agent": meta.get("HTTP_USER_AGENT", ""),
            "error": _error_code(error),
        }
    )
    cache.set(f"{_SAMPLE_CACHE_PREFIX}{ip}", sample, AUTH_FAILURE_WINDOW_SECONDS)
    return decision.count


def _live_rows(now: datetime):
    return RateLimit.objects.filter(expires_at__gt=now, window_start__lte=now)


def bypass_scan_invalid_tokens(*, now: datetime | None = None) -> int:
    """Emit an ``invalid_jwt`` detection for each IP whose failures in the current hour window reach the
    ``auth_failures`` warning threshold. One query for the counters; returns how many new events were ingested."""
    now = now or timezone.now()
    warning = registry.get(THRESHOLDS_KEY)[SIGNAL]["warning"]
    rows = (
        _live_rows(now)
        .filter(
            bucket=AUTH_FAILURE_GROUP,
            window_start__gt=now - timedelta(seconds=AUTH_FAILURE_WINDOW_SECONDS),
            count__gte=warning,
        )
        .values_list("key", "count", "window_start")
    )
    emitted = 0
    for key, count, window_start in rows:
        ip = key.removeprefix("ip:")
        details = {**(cache.get(f"{_SAMPLE_CACHE_PREFIX}{ip}") or {}), "ip": ip, "count": count}
        details["window_start"] = window_start.isoformat()
        emitted += bypass_detection_emit(detector="invalid_jwt", source=key, value=count, details=details, now=now)
    return emitted


# --- detector 2: repeated 429s per caller ------------------------------------------------------------------
def bypass_scan_rate_limit_abuse(*, now: datetime | None = None, min_denied: int = RATE_LIMIT_ABUSE_MIN_DENIED) -> int:
    """Emit a ``rate_limit_abuse`` detection per (caller key, group) whose current window has at least
    ``min_denied`` refused requests (count − limit, the limit from ``rate_limit_for(None, group)``).

    Two queries (the live groups, then the offending rows of all groups at once); the ``auth_failures``
    counters are not limits and are skipped. Returns how many new events were ingested.
    """
    now = now or timezone.now()
    groups = set(_live_rows(now).exclude(bucket=AUTH_FAILURE_GROUP).values_list("bucket", flat=True).distinct())
    condition = Q()
    limits: dict[str, int] = {}
    for group in sorted(groups):
        limit, window_seconds = rate_limit_for(None, group)
        limits[group] = limit
        condition |= Q(
            bucket=group,
            window_start__gt=now - timedelta(seconds=window_seconds),
            count__gte=limit + min_denied,
        )
    if not limits:
        return 0
    rows = _live_rows(now).filter(condition).values_list("key", "bucket", "count", "window_start")
    emitted = 0
    for key, group, count, window_start in rows:
        denied = count - limits[group]
        details = {"count": count, "limit": limits[group], "denied": denied, "window_start": window_start.isoformat()}
        if key.startswith("ip:"):
            details["ip"] = key.removeprefix("ip:")
        emitted += bypass_detection_emit(
            detector="rate_limit_abuse", source=f"{key}|{group}", value=denied, details=details, now=now
        )
    return emitted


def bypass_scan(*, now: datetime | None = None) -> dict[str, int]:
    """Run both detectors; ``{detector: new events ingested}``. Idempotent within an hour."""
    now = now or timezone.now()
    return {
        "invalid_jwt": bypass_scan_invalid_tokens(now=now),
        "rate_limit_abuse": bypass_scan_rate_limit_abuse(now=now),
    }
