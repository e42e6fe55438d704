"""Detectors over the rate limiter's counters: failed JWT authentications per address, repeated 429s per
caller, and many identities from one address.

All three read ``rate_limits`` rows (one atomic upsert each to record, never read-then-write): failed
authentications are counted under group ``auth_failures`` (key ``ip:<address>``), identities seen from an
address under group ``identities`` (key ``ip:<address>|<identity>``), both in one-hour windows and with a
limit nobody reaches (they count, never refuse).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from django.core.cache import cache
from django.db.models import Q
from django.utils import timezone

from governance.models import RateLimit
from governance.services.bypass.core import bypass_detection_emit, detector_settings, redact_details
from governance.services.ratelimit import client_ip, rate_limit_for, rate_limit_hit

__all__ = [
    "AUTH_FAILURE_GROUP",
    "AUTH_FAILURE_WINDOW_SECONDS",
    "COUNTER_GROUPS",
    "IDENTITY_GROUP",
    "auth_failure_record",
    "bypass_scan_identity_rotation",
    "bypass_scan_invalid_tokens",
    "bypass_scan_rate_limit_abuse",
    "identity_seen_record",
]

AUTH_FAILURE_GROUP = "auth_failures"
IDENTITY_GROUP = "identities"
AUTH_FAILURE_WINDOW_SECONDS = 3600
# Counters of the detectors, not limits: the rate-limit abuse detector and the baselines skip them.
COUNTER_GROUPS = frozenset({AUTH_FAILURE_GROUP, IDENTITY_GROUP})
# The counters must never refuse anything: they only count. ``rate_limit_hit`` needs a positive limit.
_COUNT_ONLY_LIMIT = 10**9
_SAMPLE_CACHE_PREFIX = "bypass:auth-failure-sample:"
_MAX_IDENTITY_LENGTH = 150


def _error_code(error: Exception) -> str:
    detail = getattr(error, "detail", None)
    if isinstance(detail, Mapping):
        code = detail.get("code")
        return str(code) if code is not None else type(error).__name__
    return str(getattr(detail, "code", None) or type(error).__name__)


def _count(*, key: str, group: str) -> int:
    return rate_limit_hit(
        key=key, group=group, limit=_COUNT_ONLY_LIMIT, window_seconds=AUTH_FAILURE_WINDOW_SECONDS
    ).count


def auth_failure_record(*, request: Any, error: Exception) -> int:
    """Count one failed authentication against ``ip:<client ip>`` (group ``auth_failures``, 1 h window).

    One atomic upsert; never refuses. The last failure's redacted request facts (path, method, ip, user
    agent, error code — never the token or any header) are kept in the cache as a best-effort sample for
    the detection's details. Returns the count in the current window.
    """
    ip = client_ip(request)
    count = _count(key=f"ip:{ip}", group=AUTH_FAILURE_GROUP)
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
    return count


def identity_seen_record(*, ip: str, identity: str) -> int:
    """Count one sighting of ``identity`` (``user:<id>`` or ``name:<username>``) from address ``ip`` in the
    current hour (group ``identities``). Recorded on every token request (granted or refused) and every
    429, the moments an address rotating identities to evade the limiter shows itself. One atomic upsert.
    """
    return _count(key=f"ip:{ip}|{identity[:_MAX_IDENTITY_LENGTH]}", group=IDENTITY_GROUP)


def _live_rows(now: datetime):
    return RateLimit.objects.filter(expires_at__gt=now, window_start__lte=now)


def _current_hour_rows(group: str, now: datetime):
    return _live_rows(now).filter(bucket=group, window_start__gt=now - timedelta(seconds=AUTH_FAILURE_WINDOW_SECONDS))


# --- failed JWT authentications per client IP ------------------------------------------------------------
def bypass_scan_invalid_tokens(*, now: datetime | None = None) -> int:
    """An ``invalid_jwt`` detection for each address whose failed authentications in the current hour
    window reach ``min_failures`` (critical from ``critical_failures``). One query for the counters;
    returns how many new detections were recorded."""
    now = now or timezone.now()
    settings = detector_settings("invalid_jwt")
    if not settings["enabled"]:
        return 0
    rows = _current_hour_rows(AUTH_FAILURE_GROUP, now).filter(count__gte=settings["min_failures"])
    emitted = 0
    for key, count, window_start in rows.values_list("key", "count", "window_start"):
        ip = key.removeprefix("ip:")
        details = {**(cache.get(f"{_SAMPLE_CACHE_PREFIX}{ip}") or {}), "ip": ip, "count": count}
        details["window_start"] = window_start
        emitted += bypass_detection_emit(
            detector="invalid_jwt",
            source=key,
            summary=f"{count} failed JWT authentications from {ip} within the hour",
            severity="critical" if count >= settings["critical_failures"] else "high",
            details=details,
            now=now,
        )
    return emitted


# --- repeated 429s per caller --------------------------------------------------------------------------------
def bypass_scan_rate_limit_abuse(*, now: datetime | None = None, min_denied: int | None = None) -> int:
    """A ``rate_limit_abuse`` detection per (caller key, group) whose current window has at least
    ``min_denied`` refused requests (count − limit, the limit from ``rate_limit_for(None, group)``).

    Two queries (the live groups, then the offending rows of all groups at once); the detectors' own
    counters are not limits and are skipped. Returns how many new detections were recorded.
    """
    now = now or timezone.now()
    settings = detector_settings("rate_limit_abuse")
    if not settings["enabled"]:
        return 0
    min_denied = settings["min_denied"] if min_denied is None else min_denied
    groups = set(_live_rows(now).exclude(bucket__in=COUNTER_GROUPS).values_list("bucket", flat=True).distinct())
    condition = Q()
    limits: dict[str, int] = {}
    for group in sorted(groups):
        limit, window_seconds = rate_limit_for(None, group)
        limits[group] = limit
        condition |= Q(
            bucket=group, window_start__gt=now - timedelta(seconds=window_seconds), count__gte=limit + min_denied
        )
    if not limits:
        return 0
    rows = _live_rows(now).filter(condition).values_list("key", "bucket", "count", "window_start")
    emitted = 0
    for key, group, count, window_start in rows:
        denied = count - limits[group]
        details = {"caller": key, "groups": [group], "count": count, "limit": limits[group], "denied": denied,
                   "window_start": window_start}  # fmt: skip
        if key.startswith("ip:"):
            details["ip"] = key.removeprefix("ip:")
        emitted += bypass_detection_emit(
            detector="rate_limit_abuse",
            source=f"{key}|{group}",
            summary=f"{key} refused {denied} times by the '{group}' limit ({limits[group]}) in one window",
            severity="high",
            details=details,
            now=now,
        )
    return emitted


# --- many identities from one address ------------------------------------------------------------------------
def bypass_scan_identity_rotation(*, now: datetime | None = None) -> int:
    """An ``identity_rotation`` detection per address from which at least ``min_identities`` distinct
    identities asked for tokens or were refused by the limiter in the current hour. One query; returns
    how many new detections were recorded."""
    now = now or timezone.now()
    settings = detector_settings("identity_rotation")
    if not settings["enabled"]:
        return 0
    identities: dict[str, set[str]] = defaultdict(set)
    sightings: dict[str, int] = defaultdict(int)
    for key, count in _current_hour_rows(IDENTITY_GROUP, now).values_list("key", "count"):
        address, _, identity = key.partition("|")
        identities[address].add(identity)
        sightings[address] += count
    emitted = 0
    for address, seen in sorted(identities.items()):
        if len(seen) < settings["min_identities"]:
            continue
        ip = address.removeprefix("ip:")
        emitted += bypass_detection_emit(
            detector="identity_rotation",
            source=address,
            summary=f"{len(seen)} identities from {ip} within the hour (logins and refused requests)",
            severity="high",
            details={"ip": ip, "identities": sorted(seen), "count": sightings[address]},
            now=now,
        )
    return emitted
