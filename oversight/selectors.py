"""Read queries of the event pipeline: what the API and the ingest service look up, always team-scoped."""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import groupby
from operator import itemgetter
from uuid import UUID

from django.db import connection
from django.db.models import (
    Avg,
    Count,
    F,
    Max,
    Min,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    UUIDField,
)
from django.db.models.functions import Coalesce

from governance.models import AISystem, User
from governance.selectors import as_uuid, scope_to_teams
from governance.services.audit import text_storage_problem
from hitl.models import ReviewItem
from incidents.models import OPEN_INCIDENT_STATUSES, Incident
from oversight.models import Alert, EventRaw, IngestBatch

_SYSTEM_NAME_MAX_LENGTH = AISystem._meta.get_field("name").max_length


def ai_system_ids_by_ref(*, refs: Iterable[str], user: User | None) -> dict[str, UUID]:
    """``{ref: system id}`` for every reference (an id in any spelling, or a name) that names a system
    ``user`` may write to; ``user=None`` (an internal caller) may use every system. One query for all
    references. The result maps both ``str(id)`` and the name of each system found."""
    ids, names = set(), set()
    for ref in refs:
        with contextlib.suppress(ValueError):
            ids.add(UUID(ref))
        # A reference no name can equal is not worth sending (and a NUL would break the query on PostgreSQL).
        if len(ref) <= _SYSTEM_NAME_MAX_LENGTH and text_storage_problem(ref) is None:
            names.add(ref)
    if not ids and not names:
        return {}
    systems = AISystem.objects.filter(Q(pk__in=ids) | Q(name__in=names))
    if user is not None:
        systems = scope_to_teams(systems, user)
    found: dict[str, UUID] = {}
    for system_id, name in systems.values_list("pk", "name"):
        found[str(system_id)] = system_id
        found[name] = system_id
    return found


def system_ref_filter(ref: str) -> Q:
    """Rows whose ``system`` is named by ``ref``: its id (any spelling) or its unique name."""
    by_name = Q(system__name=ref)
    try:
        return Q(system_id=UUID(ref)) | by_name
    except ValueError:
        return by_name


def events_for_user(*, user: User) -> QuerySet[EventRaw]:
    """Raw events of the user's teams, with ``system_name`` (no per-row system lookups)."""
    return scope_to_teams(EventRaw.objects.annotate(system_name=F("system__name")), user)


def event_get_for_user(*, user: User, event_id: str) -> EventRaw | None:
    """One event by its client ``event_id`` (any UUID spelling), or None (also when outside the user's teams)."""
    try:
        key = UUID(str(event_id))
    except ValueError:
        return None
    return events_for_user(user=user).filter(event_id=key).first()


def alerts_for_user(*, user: User) -> QuerySet[Alert]:
    """Alerts of the user's teams with everything the API shows, in one query: rule name and kind,
    system name, the incident and the review the alert led to.

    ``incident_id``: the incident opened from this alert, else the open incident of its fingerprint
    (a re-fired alert is attached to the incident already open). ``review_id``: the latest review
    queued for it.
    """
    opened_from = Incident.objects.filter(source_alert=OuterRef("pk")).order_by("-opened_at").values("id")[:1]
    open_for_fingerprint = Incident.objects.filter(
        fingerprint=OuterRef("fingerprint"), status__in=OPEN_INCIDENT_STATUSES
    ).values("id")[:1]
    review = ReviewItem.objects.filter(source_alert=OuterRef("pk")).order_by("-created_at").values("id")[:1]
    queryset = Alert.objects.annotate(
        rule_name=F("rule__name"),
        rule_kind=F("rule__kind"),
        system_name=F("system__name"),
        incident_id=Coalesce(Subquery(opened_from), Subquery(open_for_fingerprint), output_field=UUIDField()),
        review_id=Subquery(review, output_field=UUIDField()),
    )
    return scope_to_teams(queryset, user)


def alert_get_for_user(*, user: User, alert_id: str) -> Alert | None:
    try:
        key = UUID(str(alert_id))
    except ValueError:
        return None
    return alerts_for_user(user=user).filter(pk=key).first()


# --- signal aggregates (the policy evaluator's view of telemetry) ------------------------------------------
SIGNAL_AGGREGATES = ("last", "min", "max", "avg", "sum", "count", "p50", "p95", "p99")
_PERCENTILES = {"p50": 0.5, "p95": 0.95, "p99": 0.99}


def signal_aggregates(
    *, system_ids: Iterable[UUID], signal: str, category: str | None, window: timedelta, until: datetime
) -> dict[UUID, dict[str, float | None]]:
    """``{system id: {aggregate: value}}`` of one signal's events with ``until - window < occurred_at ≤ until``,
    for every aggregate of ``SIGNAL_AGGREGATES``; systems without such events get count and sum 0 and
    None for the rest. ``category`` narrows to events of that category when given.

    The portable form, on any database (``signal_aggregates_many`` uses it where it has no single-query
    SQL): three queries whatever the number of systems, each on the ``(system, signal, occurred_at)``
    index: count/sum/avg/min/max together, the latest value (``last``: newest ``occurred_at``, ties broken
    by the newest arrival), and the values themselves, whose percentiles are interpolated as PostgreSQL's
    ``percentile_cont`` does.
    """
    ids = list(dict.fromkeys(system_ids))
    result: dict[UUID, dict[str, float | None]] = {
        system_id: {"count": 0.0, "sum": 0.0, **dict.fromkeys(("last", "min", "max", "avg", "p50", "p95", "p99"))}
        for system_id in ids
    }
    if not ids:
        return result
    events = EventRaw.objects.filter(
        system_id__in=ids, signal=signal, occurred_at__gt=until - window, occurred_at__lte=until
    )
    if category:
        events = events.filter(category=category)
    rows = events.values("system_id").annotate(
        n=Count("event_id"), total=Sum("value"), mean=Avg("value"), low=Min("value"), high=Max("value")
    )
    for row in rows.order_by():
        result[row["system_id"]].update(
            count=float(row["n"]), sum=float(row["total"]), avg=row["mean"], min=row["low"], max=row["high"]
        )
    present = [system_id for system_id in ids if result[system_id]["count"]]
    if not present:
        return result
    latest = events.filter(system_id=OuterRef("pk")).order_by("-occurred_at", "-received_at")
    for system_id, value in (
        AISystem.objects.filter(pk__in=present)
        .annotate(last=Subquery(latest.values("value")[:1]))
        .values_list("pk", "last")
    ):
        result[system_id]["last"] = value
    values: dict[UUID, list[float]] = defaultdict(list)
    for system_id, value in events.filter(system_id__in=present).values_list("system_id", "value"):
        values[system_id].append(value)
    for system_id, series in values.items():
        series.sort()
        result[system_id].update({name: _percentile(series, q) for name, q in _PERCENTILES.items()})
    return result


def _percentile(sorted_values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (what PostgreSQL's ``percentile_cont`` computes)."""
    position = (len(sorted_values) - 1) * q
    lower = int(position)
    upper = min(lower + 1, len(sorted_values) - 1)
    return sorted_values[lower] + (sorted_values[upper] - sorted_values[lower]) * (position - lower)


@dataclass(frozen=True)
class SignalSeries:
    """One signal (of one category, or any when None) over one window, and the aggregates wanted of it."""

    signal: str
    category: str | None
    window: timedelta
    aggregates: frozenset[str]


def signal_aggregates_many(
    *, system_ids: Iterable[UUID], series: Sequence[SignalSeries], until: datetime
) -> dict[UUID, list[dict[str, float | None]]]:
    """``{system id: [ {aggregate: value} for each series ]}`` — ``signal_aggregates`` for many series at once.

    On PostgreSQL ONE query whatever the number of series and systems: the events of the wanted signals in
    the longest window, grouped by system, each aggregate computed with ``FILTER (WHERE signal = … AND
    occurred_at > until − window)`` (``last`` as the first of the values ordered newest first). Elsewhere
    (SQLite, development) one ``signal_aggregates`` call per series. Same values either way: count and
    sum are 0 without events, the other aggregates None.
    """
    ids = list(dict.fromkeys(system_ids))
    empty = {"count": 0.0, "sum": 0.0}
    result = {system_id: [{name: empty.get(name) for name in item.aggregates} for item in series] for system_id in ids}
    if not ids or not series:
        return result
    if connection.vendor != "postgresql":
        for index, item in enumerate(series):
            values = signal_aggregates(system_ids=ids, signal=item.signal, category=item.category,
                                       window=item.window, until=until)  # fmt: skip
            for system_id in ids:
                result[system_id][index] = {name: values[system_id][name] for name in item.aggregates}
        return result
    columns, params = [], []
    for item in series:
        condition = "signal = %s AND occurred_at > %s" + (" AND category = %s" if item.category else "")
        condition_params = [item.signal, until - item.window] + ([item.category] if item.category else [])
        for name in sorted(item.aggregates):
            columns.append(_AGGREGATE_SQL[name].format(where=condition))
            params.extend(condition_params)
    longest = max(item.window for item in series)
    # Only constant SQL fragments are formatted in; every value is a bound parameter.
    sql = (
        f"SELECT system_id, {', '.join(columns)} FROM events_raw "  # noqa: S608
        "WHERE system_id = ANY(%s) AND signal = ANY(%s) AND occurred_at > %s AND occurred_at <= %s GROUP BY system_id"
    )
    params += [ids, sorted({item.signal for item in series}), until - longest, until]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    for system_id, *values in rows:
        position = 0
        for index, item in enumerate(series):
            target = result[as_uuid(system_id)][index]
            for name in sorted(item.aggregates):
                value = values[position]
                position += 1
                target[name] = float(value) if value is not None else empty.get(name)
    return result


# One SQL aggregate per name, each with its own FILTER; ``last`` is the newest value by event time, then arrival.
_AGGREGATE_SQL = {
    "count": "count(*) FILTER (WHERE {where})",
    "sum": "sum(value) FILTER (WHERE {where})",
    "avg": "avg(value) FILTER (WHERE {where})",
    "min": "min(value) FILTER (WHERE {where})",
    "max": "max(value) FILTER (WHERE {where})",
    "last": "(array_agg(value ORDER BY occurred_at DESC, received_at DESC) FILTER (WHERE {where}))[1]",
    **{
        name: f"percentile_cont({q}) WITHIN GROUP (ORDER BY value) FILTER (WHERE {{where}})"
        for name, q in _PERCENTILES.items()
    },
}


def oldest_unprocessed_batch_received_at() -> datetime | None:
    """When the oldest event batch still waiting for processing (``processed_at`` null) was received, or
    None when the outbox is empty. One indexed query (``event_batches_unprocessed``); not team-scoped: it
    is the platform's own health figure."""
    return (
        IngestBatch.objects.filter(processed_at__isnull=True)
        .order_by("received_at")
        .values_list("received_at", flat=True)
        .first()
    )


# --- predictive governance: windowed statistics and breaches of every system at once -------------------------
@dataclass(frozen=True)
class SignalWindowStats:
    """One signal of one system over three sliding windows ending at ``until`` (short ⊂ day ⊂ long).

    Counts and sums per window, the extremes of the day window, and the least-squares sums over the day and
    short windows with x = hours from ``until`` (≤ 0), from which a caller derives levels, slopes and
    their change (acceleration) without another query.
    """

    count_short: int
    count_day: int
    count_long: int
    sum_short: float
    sum_day: float
    sum_long: float
    max_day: float | None
    min_day: float | None
    severe_day: int  # events of severity critical or high in the day window
    sx_day: float
    sxy_day: float
    sxx_day: float
    sx_short: float
    sxy_short: float
    sxx_short: float


SEVERE_SEVERITIES = ("critical", "high")


def signal_window_stats(
    *, system_ids: Iterable[UUID], until: datetime, short: timedelta, day: timedelta, long: timedelta
) -> dict[tuple[UUID, str], SignalWindowStats]:
    """``{(system id, signal): SignalWindowStats}`` of every signal with events in ``(until − long, until]``.

    ONE grouped query over the ``(system, occurred_at)`` index whatever the number of systems and signals;
    every window is a ``FILTER`` of the same scan (a ``CASE`` on databases without ``FILTER``). Nothing
    after ``until`` is read. Not team-scoped: the prediction pass reads the whole estate.
    """
    from governance.sql import HoursFrom

    ids = list(dict.fromkeys(system_ids))
    if not ids:
        return {}
    in_short, in_day = Q(occurred_at__gt=until - short), Q(occurred_at__gt=until - day)
    x = HoursFrom("occurred_at", until)
    rows = (
        EventRaw.objects.filter(system_id__in=ids, occurred_at__gt=until - long, occurred_at__lte=until)
        .values("system_id", "signal")
        .annotate(
            count_short=Count("id", filter=in_short),
            count_day=Count("id", filter=in_day),
            count_long=Count("id"),
            sum_short=Sum("value", filter=in_short),
            sum_day=Sum("value", filter=in_day),
            sum_long=Sum("value"),
            max_day=Max("value", filter=in_day),
            min_day=Min("value", filter=in_day),
            severe_day=Count("id", filter=in_day & Q(severity__in=SEVERE_SEVERITIES)),
            sx_day=Sum(x, filter=in_day),
            sxy_day=Sum(x * F("value"), filter=in_day),
            sxx_day=Sum(x * x, filter=in_day),
            sx_short=Sum(x, filter=in_short),
            sxy_short=Sum(x * F("value"), filter=in_short),
            sxx_short=Sum(x * x, filter=in_short),
        )
        .order_by()
    )
    result = {}
    for row in rows:
        key = (as_uuid(row.pop("system_id")), row.pop("signal"))
        result[key] = SignalWindowStats(
            **{
                name: (value if value is not None or name in ("max_day", "min_day") else 0)
                for name, value in row.items()
            }
        )
    return result


def signal_window_stats_walk(
    *, system_ids: Iterable[UUID], untils: Sequence[datetime], short: timedelta, day: timedelta, long: timedelta
) -> dict[datetime, dict[tuple[UUID, str], SignalWindowStats]]:
    """``{until: signal_window_stats(..., until=until)}`` for many ``untils`` (a walk-forward backtest) from
    ONE read of the events in ``(min(untils) − long, max(untils)]``: the same statistics by the same
    definitions — windows ``(until − w, until]``, x in hours from ``until``, severe = ``SEVERE_SEVERITIES`` —
    computed with prefix sums per (system, signal) instead of one grouped scan per ``until``. The per-``until``
    query stays the production path; a test holds the two to the same numbers on every database."""
    import numpy as np

    ids, untils = list(dict.fromkeys(system_ids)), sorted(set(untils))
    if not ids or not untils:
        return {until: {} for until in untils}
    origin = untils[0] - long
    query = (
        EventRaw.objects.filter(system_id__in=ids, occurred_at__gt=origin, occurred_at__lte=untils[-1])
        .order_by("system_id", "signal", "occurred_at")
        .values_list("system_id", "signal", "occurred_at", "value", "severity")
    )
    # The rows as the driver returns them (no per-row field converters: ~100,000 rows): ids and times are
    # converted once per (system, signal) below.
    sql, params = query.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    # Microseconds from the origin: exact window bounds (as the database compares timestamps).
    at_us = np.array([_micros(u - origin) for u in untils], dtype=np.int64)
    at_h = at_us / 3.6e9
    bounds = {name: at_us - _micros(width) for name, width in (("short", short), ("day", day), ("long", long))}
    result: dict[datetime, dict[tuple[UUID, str], SignalWindowStats]] = {until: {} for until in untils}
    for (system_id, signal), group in groupby(rows, key=itemgetter(0, 1)):
        key = (as_uuid(system_id), signal)
        _, _, times, values, severities = zip(*group, strict=True)
        t_us = _micros_since(times, origin)
        v = np.array(values, dtype=np.float64)
        severe = np.array([s in SEVERE_SEVERITIES for s in severities], dtype=np.float64)
        t = t_us / 3.6e9
        prefix = {
            name: np.concatenate(([0.0], np.cumsum(column)))
            for name, column in (("n", np.ones_like(t)), ("v", v), ("t", t), ("tv", t * v), ("tt", t * t),
                                 ("severe", severe))
        }  # fmt: skip
        hi = np.searchsorted(t_us, at_us, side="right")
        lo = {name: np.searchsorted(t_us, bound, side="right") for name, bound in bounds.items()}

        def window(name, lo_index, hi=hi, prefix=prefix):
            return prefix[name][hi] - prefix[name][lo_index]

        sums = {}
        for w in ("short", "day"):
            n, sv, st = window("n", lo[w]), window("v", lo[w]), window("t", lo[w])
            stv, stt = window("tv", lo[w]), window("tt", lo[w])
            # x = t − until: Σx, Σxy, Σx² from the sums over t.
            sums[w] = (n, sv, st - n * at_h, stv - at_h * sv, stt - 2 * at_h * st + n * at_h * at_h)
        count_long, sum_long, severe_day = window("n", lo["long"]), window("v", lo["long"]), window("severe", lo["day"])
        for i, until in enumerate(untils):
            if not count_long[i]:
                continue
            day_slice = v[lo["day"][i] : hi[i]]
            n_short, sv_short, sx_short, sxy_short, sxx_short = (x[i] for x in sums["short"])
            n_day, sv_day, sx_day, sxy_day, sxx_day = (x[i] for x in sums["day"])
            result[until][key] = SignalWindowStats(
                count_short=int(n_short), count_day=int(n_day), count_long=int(count_long[i]),
                sum_short=float(sv_short), sum_day=float(sv_day), sum_long=float(sum_long[i]),
                max_day=float(day_slice.max()) if day_slice.size else None,
                min_day=float(day_slice.min()) if day_slice.size else None,
                severe_day=int(severe_day[i]),
                sx_day=float(sx_day), sxy_day=float(sxy_day), sxx_day=float(sxx_day),
                sx_short=float(sx_short), sxy_short=float(sxy_short), sxx_short=float(sxx_short),
            )  # fmt: skip
    return result


def _micros(delta: timedelta) -> int:
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _micros_since(times: Sequence[datetime], origin: datetime):
    """Microseconds from ``origin`` of timestamps as the driver returns them: aware datetimes (PostgreSQL),
    or naive UTC ones (SQLite, where Django stores naive UTC text), converted in one numpy pass."""
    import numpy as np

    if times and times[0].tzinfo is None:
        naive_origin = np.datetime64(origin.astimezone(UTC).replace(tzinfo=None), "us")
        return (np.array(times, dtype="datetime64[us]") - naive_origin).astype(np.int64)
    return np.array([_micros(at - origin) for at in times], dtype=np.int64)


def event_history_start(*, system_ids: Iterable[UUID], until: datetime) -> dict[UUID, datetime]:
    """``{system id: occurred_at of its first event up to until}`` for systems with any; one query, one
    index probe per system on ``(system, occurred_at)`` (no scan of the history)."""
    first = EventRaw.objects.filter(system_id=OuterRef("pk"), occurred_at__lte=until).order_by("occurred_at")
    rows = (
        AISystem.objects.filter(pk__in=list(system_ids))
        .annotate(first_event_at=Subquery(first.values("occurred_at")[:1]))
        .values_list("pk", "first_event_at")
    )
    return {system_id: first_at for system_id, first_at in rows if first_at is not None}


def warning_breach_q(thresholds: dict[str, dict]) -> Q:
    """Events past their signal's *warning* level (direction-aware) among the signals of ``thresholds``
    (a ``oversight.thresholds.<category>`` value or part of it). An empty mapping matches nothing."""
    condition = Q(pk__in=[])
    for signal, spec in thresholds.items():
        if spec["direction"] == "below":
            condition |= Q(signal=signal, value__lt=spec["warning"])
        else:
            condition |= Q(signal=signal, value__gt=spec["warning"])
    return condition


def warning_breach_events(*, thresholds_by_category: dict[str, dict[str, dict]]) -> QuerySet[EventRaw]:
    """Every event past its warning level among the given ``{category: {signal: spec}}`` (the onset of a
    drift or compliance risk, for the prediction outcomes and the backtest labels). Not team-scoped."""
    condition = Q(pk__in=[])
    for category, thresholds in thresholds_by_category.items():
        condition |= Q(category=category) & warning_breach_q(thresholds)
    return EventRaw.objects.filter(condition)


def alert_counts(*, system_ids: Iterable[UUID], until: datetime, day: timedelta, long: timedelta) -> dict[UUID, dict]:
    """``{system id: {"day": n, "long": n}}``: alerts that started firing in ``(until − window, until]``."""
    rows = (
        Alert.objects.filter(system_id__in=list(system_ids), detected_at__gt=until - long, detected_at__lte=until)
        .values("system_id")
        .annotate(day=Count("id", filter=Q(detected_at__gt=until - day)), long=Count("id"))
        .order_by()
    )
    return {row["system_id"]: {"day": row["day"], "long": row["long"]} for row in rows}
