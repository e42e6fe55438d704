"""The DB-backed rate limiter: one atomic upsert per decision, limits per endpoint group from config.

Algorithm: a **fixed-window counter** keyed by (caller, endpoint group, window start). Each request is
one ``INSERT … ON CONFLICT … DO UPDATE SET count = count + 1 RETURNING count`` whose window start is
computed from the *database* clock, so every web process of every host agrees on the window no matter
how their own clocks drift, and concurrent requests are serialized by the row lock of the upsert:
with a limit of N exactly N requests per window are admitted, never N+1 (the issue's exactness test).
Nothing is read first in Python, so there is no read-then-write race to lose.

Why not a sliding window or GCRA: both need the previous state to compute the new one (two windows, or
a theoretical arrival time), which in one statement costs either a second row lookup or floating-point
state that makes "exactly N" hard to prove. The known price of a fixed window is the edge burst: a
caller may spend its whole budget at the end of one window and again at the start of the next, i.e.
up to 2× the limit within one window length straddling the boundary. The limits are sized for that.

Rows expire two windows after their start (the current window must stay readable while it is live);
``rate_limits_cleanup`` (beat, every 15 min) deletes expired rows in chunks and folds their counts into the
callers' hourly history ``caller_activity`` (the unusual-pattern detector's baseline). A 429 is not audited per
request (volume); counting repeated 429s per caller belongs to bypass detection.
"""

from __future__ import annotations

import ipaddress
import math
import re
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from config import registry
from governance.models import CallerActivity, RateLimit

__all__ = [
    "CONFIG_KEY",
    "DEFAULT_GROUP",
    "RATE_LIMIT_EXEMPT",
    "RateDecision",
    "caller_activity_prune",
    "caller_key",
    "client_ip",
    "endpoint_group",
    "rate_limit_for",
    "rate_limit_hit",
    "rate_limits_cleanup",
]

CONFIG_KEY = "ratelimit.limits"
DEFAULT_GROUP = "default"

# URL names that are deliberately NOT rate limited: liveness/readiness probes and the Prometheus scrape
# are called by the orchestrator and the monitoring system every few seconds, must answer even when the
# database is slow or down (a limiter write would make the probe depend on the database), and carry no
# caller identity worth limiting. Everything else is limited; the coverage test and KPI enforce it.
RATE_LIMIT_EXEMPT = frozenset({"healthz", "readyz", "prometheus-metrics"})

_API_PREFIX = "/api/v1/"
# Path prefix (below /api/v1/) → endpoint group. Gateway, CI/CD and eval endpoints are matched by prefix so
# they are covered the moment their views land.
_PREFIX_GROUPS = re.compile(r"^(?P<prefix>auth|gateway|cicd|eval)(?:/|$)")
_PREFIX_TO_GROUP = {"auth": "auth", "gateway": "gateway", "cicd": "cicd_gate", "eval": "eval"}
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


@dataclass(frozen=True)
class RateDecision:
    """The outcome of one counted request.

    ``count`` is this caller's number of requests in the current window including this one;
    ``remaining`` is what is left after it; ``reset_at`` is when the window ends and
    ``retry_after_seconds`` the whole seconds until then (≥ 1).
    """

    allowed: bool
    limit: int
    remaining: int
    reset_at: datetime
    retry_after_seconds: int
    count: int
    group: str = DEFAULT_GROUP
    window_seconds: int = 0


# --- the decision --------------------------------------------------------------------------------------
_POSTGRES_UPSERT = """
INSERT INTO rate_limits (id, key, bucket, window_start, count, expires_at, created_at, updated_at)
SELECT %s, %s, %s, w.start, 1, w.start + 2 * w.len, w.now, w.now
FROM (
    SELECT c.now,
           make_interval(secs => %s) AS len,
           to_timestamp(floor(extract(epoch FROM c.now) / %s) * %s) AS start
    FROM (SELECT COALESCE(%s::timestamptz, clock_timestamp()) AS now) AS c
) AS w
ON CONFLICT (key, bucket, window_start) DO UPDATE
SET count = rate_limits.count + 1, updated_at = EXCLUDED.updated_at
RETURNING count, window_start, updated_at
"""

# SQLite stores datetimes as UTC text; the window start is whole seconds ('YYYY-MM-DD HH:MM:SS'), the same
# text Django writes for a datetime without microseconds, so the unique constraint matches across calls.
# The trailing ``WHERE true`` resolves SQLite's INSERT … SELECT … ON CONFLICT parsing ambiguity.
_SQLITE_UPSERT = """
INSERT INTO rate_limits (id, key, bucket, window_start, count, expires_at, created_at, updated_at)
SELECT %s, %s, %s, datetime(w.start, 'unixepoch'), 1, datetime(w.start + 2 * %s, 'unixepoch'), w.now, w.now
FROM (
    SELECT strftime('%%Y-%%m-%%d %%H:%%M:%%f', c.epoch, 'unixepoch') AS now,
           (CAST(c.epoch AS INTEGER) / %s) * %s AS start
    FROM (SELECT COALESCE(%s, (julianday('now') - 2440587.5) * 86400.0) AS epoch) AS c
) AS w
WHERE true
ON CONFLICT (key, bucket, window_start) DO UPDATE
SET count = rate_limits.count + 1, updated_at = excluded.updated_at
RETURNING count, window_start, updated_at
"""


def _as_aware(value: Any) -> datetime:
    if isinstance(value, str):
        value = parse_datetime(value)
    if timezone.is_naive(value):
        value = value.replace(tzinfo=UTC)
    return value


def rate_limit_hit(
    *, key: str, group: str, limit: int, window_seconds: int, now: datetime | None = None
) -> RateDecision:
    """Count one request of caller ``key`` against endpoint group ``group`` and decide whether it is admitted.

    Guarantees: exactly one SQL statement (an upsert with ``RETURNING``), atomic on its own — safe under
    any concurrency, in or out of a transaction; the window comes from the database clock
    (``clock_timestamp()`` on PostgreSQL, ``julianday('now')`` on SQLite) unless ``now`` overrides it
    (replays and tests). Admitted iff the new count ≤ ``limit``. Refused requests are counted too (the
    counter shows the pressure a caller applies; the window still ends on time). Not audited.
    """
    if limit < 1 or window_seconds < 1:
        raise ValueError("limit and window_seconds must be positive")
    row_id = RateLimit._meta.pk.get_db_prep_value(uuid.uuid4(), connection)
    if connection.vendor == "postgresql":
        sql = _POSTGRES_UPSERT
        params = [row_id, key, group, window_seconds, window_seconds, window_seconds, now]
    elif connection.vendor == "sqlite":
        sql = _SQLITE_UPSERT
        epoch = now.timestamp() if now is not None else None
        params = [row_id, key, group, window_seconds, window_seconds, window_seconds, epoch]
    else:  # pragma: no cover - the project runs on PostgreSQL (SQLite for development)
        raise NotImplementedError(f"rate limiting is not implemented for {connection.vendor}")
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        count, window_start, clock = cursor.fetchone()
    # Outside a transaction the statement commits on its own; inside one (tests, ATOMIC views) the counter
    # row stays locked until commit, which serializes that caller's requests of this group — by design.
    reset_at = _as_aware(window_start) + timedelta(seconds=window_seconds)
    retry_after = max(1, math.ceil((reset_at - _as_aware(clock)).total_seconds()))
    return RateDecision(
        allowed=count <= limit,
        limit=limit,
        remaining=max(0, limit - count),
        reset_at=reset_at,
        retry_after_seconds=retry_after,
        count=count,
        group=group,
        window_seconds=window_seconds,
    )


# --- limits, groups and callers --------------------------------------------------------------------------
def _caller_name(request_or_caller: Any) -> str | None:
    """The username (or service-account name) of an authenticated caller, else None."""
    if request_or_caller is None:
        return None
    if isinstance(request_or_caller, str):
        return request_or_caller
    user = getattr(request_or_caller, "user", request_or_caller)
    if getattr(user, "is_authenticated", False):
        return user.get_username()
    return None


def rate_limit_for(request_or_caller: Any, group: str) -> tuple[int, int]:
    """``(limit, window_seconds)`` for ``group`` and this caller, from the ``ratelimit.limits`` config key.

    Order: the caller's override for the group (``overrides.<username>.<group>``), the group's limit, the
    ``default`` limit. ``request_or_caller`` is a request, a user, a username, or None (anonymous).
    Reads the config registry's per-process snapshot (no query per call).
    """
    limits = registry.get(CONFIG_KEY)
    name = _caller_name(request_or_caller)
    if name is not None:
        override = limits.get("overrides", {}).get(name, {})
        if group in override:
            return override[group]["limit"], override[group]["window_seconds"]
    spec = limits.get(group) or limits[DEFAULT_GROUP]
    return spec["limit"], spec["window_seconds"]


def endpoint_group(request: Any, view: Any = None) -> str:
    """The endpoint group of a request: ``auth`` (/api/v1/auth/…), ``events_ingest`` (POST /api/v1/events),
    ``gateway`` (/api/v1/gateway/…), ``cicd_gate`` (/api/v1/cicd/… and POST /api/v1/deployments),
    ``eval`` (/api/v1/eval/…), ``admin_write`` (non-GET requests to /admin/), else ``default``. ``view`` is
    accepted for DRF's throttle signature; the path decides, so endpoints added later fall into their group
    by URL alone."""
    path = request.path
    method = request.method.upper()
    if path.startswith(_API_PREFIX):
        rest = path[len(_API_PREFIX) :]
        match = _PREFIX_GROUPS.match(rest)
        if match:
            return _PREFIX_TO_GROUP[match["prefix"]]
        if method == "POST" and rest.rstrip("/") == "events":
            return "events_ingest"
        if method == "POST" and rest.rstrip("/") == "deployments":
            return "cicd_gate"  # pipelines report deployments right after asking the gate: one CI budget
        return DEFAULT_GROUP
    if path.startswith("/admin/") and method not in _SAFE_METHODS:
        return "admin_write"
    return DEFAULT_GROUP


def _trusted_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(value, strict=False) for value in getattr(settings, "TRUSTED_PROXIES", [])]


def client_ip(request: Any) -> str:
    """The caller's IP address: ``REMOTE_ADDR``, unless the peer is a trusted proxy.

    ``X-Forwarded-For`` is honoured only when ``REMOTE_ADDR`` is in ``settings.TRUSTED_PROXIES`` and
    ``settings.TRUSTED_PROXY_COUNT`` > 0; the client is then the address ``TRUSTED_PROXY_COUNT`` hops from
    the right of the header (the entries further left are client-supplied and cannot be trusted).
    """
    meta = getattr(request, "META", {})
    remote = meta.get("REMOTE_ADDR") or "unknown"
    hops = int(getattr(settings, "TRUSTED_PROXY_COUNT", 0) or 0)
    forwarded = meta.get("HTTP_X_FORWARDED_FOR", "")
    if not forwarded or hops < 1:
        return remote
    try:
        peer = ipaddress.ip_address(remote)
    except ValueError:
        return remote
    if not any(peer in network for network in _trusted_networks()):
        return remote
    chain = [part.strip() for part in forwarded.split(",") if part.strip()]
    if not chain:
        return remote
    candidate = chain[-hops] if len(chain) >= hops else chain[0]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return remote


def caller_key(request: Any) -> str:
    """``user:<uuid>`` for an authenticated caller, else ``ip:<address>``."""
    user = getattr(request, "user", None)
    if getattr(user, "is_authenticated", False):
        return f"user:{user.pk}"
    return f"ip:{client_ip(request)}"


# --- housekeeping ---------------------------------------------------------------------------------------
# One statement per chunk: pick expired rows (skipping rows another cleanup holds), delete them, and add the
# requests of the deleted rows to their caller's hourly history. Only rows the DELETE really removed are
# RETURNed, so two concurrent cleanups can never fold the same row twice; the statement is atomic, so a
# counted request is always in exactly one of the two tables.
_POSTGRES_FOLD = """
WITH expired AS (
    SELECT id FROM rate_limits WHERE expires_at < %(cutoff)s LIMIT %(chunk)s FOR UPDATE SKIP LOCKED
), gone AS (
    DELETE FROM rate_limits AS r USING expired WHERE r.id = expired.id
    RETURNING r.key, r.bucket, r.window_start, r.count
), folded AS (
    INSERT INTO caller_activity (id, key, bucket, hour, requests, created_at, updated_at)
    SELECT gen_random_uuid(), key, bucket, date_trunc('hour', window_start, 'UTC'), sum(count),
           clock_timestamp(), clock_timestamp()
    FROM gone
    WHERE NOT (bucket = ANY(%(skipped)s))
    GROUP BY key, bucket, date_trunc('hour', window_start, 'UTC')
    ON CONFLICT (key, bucket, hour) DO UPDATE
    SET requests = caller_activity.requests + EXCLUDED.requests, updated_at = EXCLUDED.updated_at
)
SELECT count(*) FROM gone
"""

_SQLITE_FOLD = """
INSERT INTO caller_activity (id, key, bucket, hour, requests, created_at, updated_at)
VALUES (%s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (key, bucket, hour) DO UPDATE
SET requests = caller_activity.requests + excluded.requests, updated_at = excluded.updated_at
"""


# Ids per ``IN (…)`` on SQLite, well under its bound-parameter limit (999 on older builds).
_SQLITE_ID_BATCH = 500


def _hour_start(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _fold_chunk_postgres(*, cutoff: datetime, chunk_size: int, skipped: list[str]) -> int:
    with connection.cursor() as cursor:
        cursor.execute(_POSTGRES_FOLD, {"cutoff": cutoff, "chunk": chunk_size, "skipped": skipped})
        return cursor.fetchone()[0]


def _fold_chunk_sqlite(*, cutoff: datetime, chunk_size: int, skipped: list[str]) -> int:
    # SQLite has one writer at a time: select, delete and upsert in one transaction are just as atomic.
    with transaction.atomic():
        rows = list(
            RateLimit.objects.filter(expires_at__lt=cutoff).values_list("pk", "key", "bucket", "window_start", "count")[
                :chunk_size
            ]
        )
        if not rows:
            return 0
        ids = [row[0] for row in rows]
        for start in range(0, len(ids), _SQLITE_ID_BATCH):
            RateLimit.objects.filter(pk__in=ids[start : start + _SQLITE_ID_BATCH]).delete()
        hours: dict[tuple[str, str, datetime], int] = defaultdict(int)
        for _pk, key, bucket, window_start, count in rows:
            if bucket not in skipped:
                hours[key, bucket, _hour_start(window_start)] += count
        stamp = connection.ops.adapt_datetimefield_value(timezone.now())
        with connection.cursor() as cursor:
            cursor.executemany(
                _SQLITE_FOLD,
                [
                    (uuid.uuid4().hex, key, bucket, connection.ops.adapt_datetimefield_value(hour), n, stamp, stamp)
                    for (key, bucket, hour), n in hours.items()
                ],
            )
        return len(rows)


def rate_limits_cleanup(*, now: datetime | None = None, chunk_size: int = 5000) -> int:
    """Delete counter rows whose ``expires_at`` has passed, folding their requests into the callers' hourly
    history (``caller_activity``); returns how many counter rows were deleted.

    Works in chunks of ``chunk_size`` rows. On PostgreSQL each chunk is ONE statement (``DELETE …
    RETURNING`` feeding an ``INSERT … ON CONFLICT DO UPDATE SET requests = requests + …``), on SQLite one
    transaction: a request is counted in exactly one of the two tables at any moment, and concurrent
    cleanups never fold a row twice (PostgreSQL skips rows another cleanup has locked). The detectors'
    counter groups (``auth_failures``, ``identities``) are deleted but not folded: they are not requests.
    Then history older than the unusual-pattern baseline (``baseline_days`` + 1 day) is deleted, in chunks
    too. Idempotent: a second run finds nothing. Rows of live windows are never expired (they expire one
    full window after their window ended). Not audited (operational counters).
    """
    # The bypass package builds on the limiter (it imports this module): import its facts at call time.
    from governance.services.bypass.auth import COUNTER_GROUPS
    from governance.services.bypass.core import detector_settings

    cutoff = now or timezone.now()
    skipped = sorted(COUNTER_GROUPS)
    fold = _fold_chunk_postgres if connection.vendor == "postgresql" else _fold_chunk_sqlite
    deleted = 0
    while True:
        count = fold(cutoff=cutoff, chunk_size=chunk_size, skipped=skipped)
        deleted += count
        if count < chunk_size:
            break
    retention = timedelta(days=detector_settings("unusual_pattern")["baseline_days"] + 1)
    caller_activity_prune(before=_hour_start(cutoff) - retention, chunk_size=chunk_size)
    return deleted


def caller_activity_prune(*, before: datetime, chunk_size: int = 5000) -> int:
    """Delete caller history of hours before ``before``, in chunks (one short statement each); returns how
    many rows were deleted. Idempotent; not audited (operational history)."""
    pruned = 0
    while True:
        old = CallerActivity.objects.filter(hour__lt=before).values("pk")[:chunk_size]
        count, _ = CallerActivity.objects.filter(pk__in=old).delete()
        pruned += count
        if count < chunk_size:
            return pruned
