"""Detector ``unusual_pattern``: each caller's last complete hour judged against its own history.

History: every API request is counted by the rate limiter in ``rate_limits`` (per caller key, endpoint
group and fixed window); ``rate_limits_cleanup`` folds expired windows into ``caller_activity`` (per caller,
group and UTC hour) in the same statement that deletes them. A window row is in exactly one of the two
tables at any moment, so a caller's activity is the union of both (one query reads both, in one snapshot).

The scan judges the last complete UTC hour H (the hour before ``now``'s). Each caller with requests in H
is compared with its baseline: the ``baseline_days`` before H, counted from the hour the caller was first
seen in them, idle hours included as zeros. Callers seen for fewer than ``min_history_hours`` have no
baseline yet and are skipped. Three reasons, any of which makes a detection (one per caller and hour,
listing every reason that holds):

- ``volume``: requests(H) ≥ ``min_requests`` and > mean + ``volume_sigma`` × σ of the hourly totals, where
  σ is floored at √mean (at least 1): the noise of a count with that mean. A perfectly regular caller
  (σ = 0) would otherwise be flagged for a single extra request.
- ``endpoint_mix``: the requests of H to endpoint groups the caller never used in its baseline are at
  least ``new_group_share`` of H's requests and at least ``off_hours_min_requests`` — the floor of the
  behaviour-change reasons: a new group is a change of *kind*, not of volume, so the (higher) volume
  floor ``min_requests`` would hide a caller quietly moving to the gateway or the CI/CD gate.
- ``hours``: the caller was active on ≥ 3 distinct days of its baseline, never in H's hour of day, and
  made at least ``off_hours_min_requests`` requests in H.

The detectors' own counter groups (``auth_failures``, ``identities``) are not requests and are ignored.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.core.cache import cache
from django.db.models import Sum
from django.db.models.functions import TruncHour
from django.utils import timezone

from governance.models import CallerActivity, RateLimit
from governance.services.bypass.auth import COUNTER_GROUPS
from governance.services.bypass.core import bypass_detection_emit, detector_settings, hour_start

__all__ = [
    "MIN_ACTIVE_DAYS",
    "CallerBaseline",
    "bypass_scan_unusual_patterns",
    "caller_activity_between",
]

DETECTOR = "unusual_pattern"
# The hours reason needs a habit to break: activity on at least this many distinct days of the baseline.
MIN_ACTIVE_DAYS = 3
HOUR = timedelta(hours=1)
_JUDGED_CACHE_PREFIX = "bypass:unusual-pattern:judged:"
_JUDGED_CACHE_SECONDS = 3 * 3600  # H is judged during hour H+1; keep the marker a little longer


@dataclass(frozen=True)
class CallerBaseline:
    """One caller's hourly history before the judged hour.

    ``hours``: hours from the first one the caller was seen in (within the baseline window) up to the
    judged hour; ``mean``/``std``: of its hourly request totals over those hours, zeros included;
    ``groups``: the endpoint groups it used; ``hours_of_day``/``days_active``: when it was active (UTC).
    """

    hours: int
    mean: float
    std: float
    groups: frozenset[str]
    hours_of_day: frozenset[int]
    days_active: int

    @property
    def noise(self) -> float:
        """σ floored at √mean (at least 1): a count's own noise, so a flat history is not hair-trigger."""
        return max(self.std, math.sqrt(self.mean), 1.0)


def caller_activity_between(
    *, start: datetime, end: datetime, keys: Iterable[str] | None = None
) -> list[tuple[str, str, datetime, int]]:
    """``(key, bucket, hour, requests)`` of every caller (or only ``keys``) for the hours in [start, end):
    the folded history (``caller_activity``) UNION ALL the not-yet-folded counters (``rate_limits``, summed
    per hour). ONE query, so both tables are read in one snapshot and a window counted in one of them is
    never missed nor counted twice. An hour may appear twice (partly folded): callers add them up.
    The detectors' counter groups are excluded."""
    folded = CallerActivity.objects.filter(hour__gte=start, hour__lt=end).exclude(bucket__in=COUNTER_GROUPS)
    # expires_at > window_start always: the redundant bound lets the planner use the expires_at index.
    live = RateLimit.objects.filter(expires_at__gt=start, window_start__gte=start, window_start__lt=end).exclude(
        bucket__in=COUNTER_GROUPS
    )
    if keys is not None:
        keys = sorted(set(keys))
        folded = folded.filter(key__in=keys)
        live = live.filter(key__in=keys)
    live_hours = (
        live.annotate(hour=TruncHour("window_start", tzinfo=UTC))
        .values("key", "bucket", "hour")
        .annotate(requests=Sum("count"))
        .values_list("key", "bucket", "hour", "requests")
    )
    rows = folded.values_list("key", "bucket", "hour", "requests").union(live_hours, all=True)
    return [(key, bucket, _as_utc(hour), int(requests)) for key, bucket, hour, requests in rows]


def _as_utc(value) -> datetime:
    if isinstance(value, str):  # SQLite may hand back the truncated hour as text
        value = datetime.fromisoformat(value)
    if timezone.is_naive(value):
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _baselines(rows: Iterable[tuple[str, str, datetime, int]], *, judged: datetime) -> dict[str, CallerBaseline]:
    per_hour: dict[str, dict[datetime, int]] = defaultdict(lambda: defaultdict(int))
    groups: dict[str, set[str]] = defaultdict(set)
    for key, bucket, hour, requests in rows:
        per_hour[key][hour] += requests
        groups[key].add(bucket)
    baselines = {}
    for key, totals in per_hour.items():
        hours = int((judged - min(totals)) / HOUR)
        mean = sum(totals.values()) / hours
        # Population variance over ``hours`` values, the idle hours (zeros) included.
        variance = sum((n - mean) ** 2 for n in totals.values()) + (hours - len(totals)) * mean**2
        baselines[key] = CallerBaseline(
            hours=hours,
            mean=mean,
            std=math.sqrt(variance / hours),
            groups=frozenset(groups[key]),
            hours_of_day=frozenset(hour.hour for hour in totals),
            days_active=len({hour.date() for hour in totals}),
        )
    return baselines


def _judge(
    *, requests: int, by_group: dict[str, int], baseline: CallerBaseline, judged: datetime, settings: dict
) -> tuple[list[str], list[str], list[str]]:
    """``(reason codes, their human descriptions, new groups)`` of one caller's hour."""
    reasons: list[str] = []
    texts: list[str] = []
    threshold = baseline.mean + settings["volume_sigma"] * baseline.noise
    if requests >= settings["min_requests"] and requests > threshold:
        reasons.append("volume")
        texts.append(f"{requests} requests against a usual {baseline.mean:.1f} ± {baseline.std:.1f} per hour")
    new_groups = sorted(group for group in by_group if group not in baseline.groups)
    in_new_groups = sum(by_group[group] for group in new_groups)
    if (
        new_groups
        and in_new_groups >= settings["off_hours_min_requests"]
        and in_new_groups >= settings["new_group_share"] * requests
    ):
        reasons.append("endpoint_mix")
        texts.append(f"{in_new_groups / requests:.0%} to endpoint groups never used before ({', '.join(new_groups)})")
    if (
        baseline.days_active >= MIN_ACTIVE_DAYS
        and judged.hour not in baseline.hours_of_day
        and requests >= settings["off_hours_min_requests"]
    ):
        reasons.append("hours")
        texts.append(f"first activity at {judged:%H}:00 UTC in {baseline.days_active} active days")
    return reasons, texts, new_groups


def bypass_scan_unusual_patterns(*, now: datetime | None = None) -> int:
    """An ``unusual_pattern`` detection (severity high) per caller whose last complete UTC hour departs from
    its own baseline by volume, endpoint mix or hour of day (see the module docstring); returns how many
    new detections were recorded.

    Set-based: two queries whatever the number of callers (the judged hour's activity, then the baselines
    of the callers busy enough to matter), then one emit per detection. The judged hour is remembered in
    the Django cache, so the minute scan costs nothing (no query) until the next hour completes; the emit
    is idempotent anyway (one event per caller and hour), so a lost cache only repeats the work.
    """
    now = now or timezone.now()
    judged = hour_start(now) - HOUR
    marker = f"{_JUDGED_CACHE_PREFIX}{judged.isoformat()}"
    if cache.get(marker):
        return 0
    settings = detector_settings(DETECTOR)
    if not settings["enabled"]:
        return 0
    by_group: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for key, bucket, _hour, requests in caller_activity_between(start=judged, end=judged + HOUR):
        by_group[key][bucket] += requests
    # Every reason needs at least this many requests in the hour: quieter callers are not looked up.
    floor = min(settings["min_requests"], settings["off_hours_min_requests"])
    totals = {key: sum(groups.values()) for key, groups in by_group.items()}
    candidates = sorted(key for key, total in totals.items() if total >= floor)
    emitted = 0
    if candidates:
        start = judged - timedelta(days=settings["baseline_days"])
        history = caller_activity_between(start=start, end=judged, keys=candidates)
        baselines = _baselines(history, judged=judged)
        for key in candidates:
            baseline = baselines.get(key)
            if baseline is None or baseline.hours < settings["min_history_hours"]:
                continue
            emitted += _report(key=key, by_group=by_group[key], baseline=baseline, judged=judged, now=now,
                               settings=settings)  # fmt: skip
    cache.set(marker, True, _JUDGED_CACHE_SECONDS)
    return emitted


def _report(
    *, key: str, by_group: dict[str, int], baseline: CallerBaseline, judged: datetime, now: datetime, settings: dict
) -> bool:
    requests = sum(by_group.values())
    reasons, texts, new_groups = _judge(
        requests=requests, by_group=by_group, baseline=baseline, judged=judged, settings=settings
    )
    if not reasons:
        return False
    return bypass_detection_emit(
        detector=DETECTOR,
        source=key,
        period=judged,
        now=now,
        severity="high",
        summary=f"{key}: unusual hour {judged:%Y-%m-%d %H}:00 UTC — {'; '.join(texts)}",
        details={
            "caller": key,
            "hour": judged,
            "requests": requests,
            "baseline": {
                "mean": round(baseline.mean, 2),
                "std": round(baseline.std, 2),
                "hours": baseline.hours,
                "days_active": baseline.days_active,
                "volume_threshold": round(baseline.mean + settings["volume_sigma"] * baseline.noise, 2),
            },
            "reasons": reasons,
            "groups": new_groups,
        },
    )
