"""Read-side queries of incidents: scoping, the one SLA-breach definition, and the incident metrics."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.db.models import BooleanField, Case, Count, F, Q, QuerySet, Value, When

from governance.choices import Severity
from governance.models import User
from governance.selectors import scope_to_teams
from incidents.models import OPEN_INCIDENT_STATUSES, FollowUp, Incident, IncidentStatus
from oversight.metrics import latency_by_severity

METRICS_WINDOW = timedelta(days=30)


def incidents_for_user(*, user: User) -> QuerySet[Incident]:
    """The incidents of the caller's teams (admins: all), with what the list shows joined in."""
    return scope_to_teams(Incident.objects.select_related("system", "team", "assignee", "rca_template"), user)


def incident_get_for_user(*, user: User, incident_id: Any) -> Incident | None:
    """One incident of the caller's teams, or None (unknown, malformed id, or another team's)."""
    try:
        key = UUID(str(incident_id))
    except ValueError:
        return None
    return incidents_for_user(user=user).filter(pk=key).first()


def follow_ups_for_user(*, user: User) -> QuerySet[FollowUp]:
    """Follow-ups of the incidents of the caller's teams."""
    return scope_to_teams(FollowUp.objects.select_related("incident", "owner"), user)


def past_target_now_q(now: datetime) -> Q:
    """An open incident past a target right now: not acknowledged by ``sla_due_at``, or not resolved by
    ``resolve_due_at`` (the admin filter and the backlog report)."""
    return Q(status=IncidentStatus.OPEN, acknowledged_at__isnull=True, sla_due_at__lt=now) | Q(
        status__in=OPEN_INCIDENT_STATUSES, resolve_due_at__lt=now
    )


def sla_breached_q(now: datetime) -> Q:
    """An incident missed a target: past one right now (:func:`past_target_now_q`), or acknowledged
    after ``sla_due_at``, or resolved after ``resolve_due_at``. The one definition the list shows,
    filters on, and the metrics count."""
    return past_target_now_q(now) | Q(acknowledged_at__gt=F("sla_due_at")) | Q(resolved_at__gt=F("resolve_due_at"))


def with_sla_breached(queryset: QuerySet[Incident], *, now: datetime) -> QuerySet[Incident]:
    breached = Case(When(sla_breached_q(now), then=Value(True)), default=Value(False), output_field=BooleanField())
    return queryset.annotate(sla_breached=breached)


@dataclass(frozen=True)
class IncidentMetrics:
    open_by_severity: dict[str, int]
    mtta_seconds: dict[str, dict[str, Any]]
    mttr_seconds: dict[str, dict[str, Any]]
    breached_sla: int
    serious_open: int
    window_days: int
    as_of: datetime


def incident_metrics(*, queryset: QuerySet[Incident], now: datetime) -> IncidentMetrics:
    """Open incidents by severity, MTTA and MTTR per severity (DESIGN §6: ``acknowledged_at −
    opened_at`` / ``resolved_at − opened_at``) of incidents acknowledged / resolved in the last 30
    days, open incidents that missed an SLA target, and open serious incidents.

    ``queryset`` is already scoped to the caller. Four queries whatever the volume; percentiles are
    nearest-rank (``oversight.metrics``), so MTTR here and on the KPI scorecard agree."""
    since = now - METRICS_WINDOW
    open_incidents = queryset.filter(status__in=OPEN_INCIDENT_STATUSES)
    by_severity = dict(open_incidents.values_list("severity").annotate(n=Count("pk")).order_by())
    counts = open_incidents.aggregate(
        breached=Count("pk", filter=sla_breached_q(now)), serious=Count("pk", filter=Q(serious=True))
    )
    acknowledged = queryset.filter(acknowledged_at__gte=since, acknowledged_at__lte=now).values_list(
        "severity", "opened_at", "acknowledged_at"
    )
    resolved = queryset.filter(resolved_at__gte=since, resolved_at__lte=now).values_list(
        "severity", "opened_at", "resolved_at"
    )
    return IncidentMetrics(
        open_by_severity={severity: by_severity.get(severity, 0) for severity in Severity.values},
        mtta_seconds=latency_by_severity(_durations(acknowledged)),
        mttr_seconds=latency_by_severity(_durations(resolved)),
        breached_sla=counts["breached"],
        serious_open=counts["serious"],
        window_days=METRICS_WINDOW.days,
        as_of=now,
    )


def _durations(rows) -> list[tuple[str, float]]:
    # A clock skew between opening and acting must not produce a negative duration.
    return [(severity, max((done - opened).total_seconds(), 0.0)) for severity, opened, done in rows]


def incident_counts(*, system_ids, until: datetime, recent: timedelta, long: timedelta) -> dict[UUID, dict[str, int]]:
    """``{system id: {"recent": n, "long": n, "open": n}}``: incidents of each system opened in
    ``(until − window, until]`` and, of those opened up to ``until``, the ones still open at ``until``
    (not resolved by then). One grouped query; not team-scoped (the prediction pass reads the estate)."""
    rows = (
        Incident.objects.filter(system_id__in=list(system_ids), opened_at__lte=until)
        .filter(Q(opened_at__gt=until - long) | Q(resolved_at__isnull=True) | Q(resolved_at__gt=until))
        .values("system_id")
        .annotate(
            recent=Count("id", filter=Q(opened_at__gt=until - recent)),
            long=Count("id", filter=Q(opened_at__gt=until - long)),
            open=Count("id", filter=Q(resolved_at__isnull=True) | Q(resolved_at__gt=until)),
        )
        .order_by()
    )
    return {row["system_id"]: {"recent": row["recent"], "long": row["long"], "open": row["open"]} for row in rows}


def incidents_with_system() -> QuerySet[Incident]:
    """Every incident attached to an AI system (an incident's onset, for prediction outcomes). Not scoped."""
    return Incident.objects.filter(system__isnull=False)
