"""The plan's open-incident scenario: from 218 open incidents to fewer than 30, never by closing a
critical or high incident whose RCA is not complete.

Two steps, each the same service the beat and the admin run, so everything they change has its
timeline and audit entries:

1. one lifecycle tick (``incidents.services.tick.lifecycle_tick``): escalations that are due, the
   auto-close of stale low/info incidents (never one with an open follow-up), follow-ups, regulatory
   warnings;
2. bulk resolution (``incidents.services.bulk.incidents_bulk_resolve``) with one configured reason of
   the incidents that can be resolved without a person's judgement: medium, low and info incidents
   older than a given age, and high or critical ones only when their RCA is complete.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Min, Q, QuerySet
from django.utils import timezone

from governance.choices import Severity
from governance.models import User
from governance.selectors import scope_to_teams
from incidents.models import OPEN_INCIDENT_STATUSES, Incident
from incidents.selectors import past_target_now_q
from incidents.services.bulk import MAX_BULK_INCIDENTS, incidents_bulk_resolve
from incidents.services.lifecycle import RCA_REQUIRED_SEVERITIES
from incidents.services.tick import lifecycle_tick

OPEN_INCIDENTS_TARGET = 30  # the plan's KPI: open incidents 218 → < 30
ROUTINE_SEVERITIES = (Severity.MEDIUM, Severity.LOW, Severity.INFO)


@dataclass(frozen=True)
class IncidentBacklog:
    """Open incidents at one moment: how many, of which severity, how many are past an SLA target and
    how many critical/high ones still lack a complete RCA."""

    as_of: datetime
    open: int
    open_by_severity: dict[str, int]
    sla_breached: int
    without_rca: dict[str, int]  # open critical/high incidents whose RCA is not complete, by severity
    oldest_opened_at: datetime | None

    @property
    def oldest_age(self) -> timedelta | None:
        return self.as_of - self.oldest_opened_at if self.oldest_opened_at else None


@dataclass
class IncidentTriageReport:
    before: IncidentBacklog
    after: IncidentBacklog
    tick: Any = None  # the TickReport of the lifecycle tick, when one ran
    closed_by_tick: int = 0
    selected: int = 0
    resolved: int = 0
    closed: int = 0
    resolved_by_severity: dict[str, int] = field(default_factory=dict)
    unfinished_rca_closed: int = 0  # critical/high incidents resolved or closed without a complete RCA

    @property
    def target_met(self) -> bool:
        return self.after.open < OPEN_INCIDENTS_TARGET


def incident_backlog(*, queryset: QuerySet[Incident], now: datetime | None = None) -> IncidentBacklog:
    """The open backlog of ``queryset`` (already scoped to the caller): four aggregate queries."""
    now = now or timezone.now()
    open_incidents = queryset.filter(status__in=OPEN_INCIDENT_STATUSES)
    by_severity = dict(open_incidents.order_by().values_list("severity").annotate(n=Count("pk")))
    without_rca = dict(
        open_incidents.filter(severity__in=RCA_REQUIRED_SEVERITIES, rca_completed_at__isnull=True)
        .order_by()
        .values_list("severity")
        .annotate(n=Count("pk"))
    )
    return IncidentBacklog(
        as_of=now,
        open=sum(by_severity.values()),
        open_by_severity={severity: by_severity.get(severity, 0) for severity in Severity.values},
        sla_breached=queryset.filter(past_target_now_q(now)).count(),
        without_rca={severity: without_rca.get(severity, 0) for severity in RCA_REQUIRED_SEVERITIES},
        oldest_opened_at=open_incidents.aggregate(oldest=Min("opened_at"))["oldest"],
    )


def bulk_resolution_candidates(*, user: User, older_than: timedelta, now: datetime | None = None) -> QuerySet:
    """Open incidents of ``user``'s teams that may be resolved in bulk: opened more than ``older_than``
    ago, and either of a routine severity (medium, low, info) or critical/high with a complete RCA."""
    now = now or timezone.now()
    routine = Q(severity__in=ROUTINE_SEVERITIES)
    analysed = Q(severity__in=RCA_REQUIRED_SEVERITIES, rca_completed_at__isnull=False)
    return scope_to_teams(Incident.objects.all(), user).filter(
        routine | analysed, status__in=OPEN_INCIDENT_STATUSES, opened_at__lt=now - older_than
    )


def incident_backlog_triage(
    *,
    user: User,
    run_tick: bool = False,
    resolve_older_than: timedelta | None = None,
    resolution_reason: str = "",
    note: str = "",
    close: bool = False,
) -> IncidentTriageReport:
    """Run the scenario as ``user`` (see the module docstring): the lifecycle tick if ``run_tick``, then,
    if ``resolve_older_than`` is given, bulk resolution of :func:`bulk_resolution_candidates` with
    ``resolution_reason`` (and ``close`` them too), in chunks of 1,000 ids — each chunk all-or-nothing
    (``BulkResolveError`` propagates; chunks already done stay done, like separate requests).

    The backlog counted before and after is the one ``user`` may see.
    """
    visible = scope_to_teams(Incident.objects.all(), user)
    started = timezone.now()
    before = incident_backlog(queryset=visible, now=started)
    report = IncidentTriageReport(before=before, after=before)
    if run_tick:
        open_before_tick = visible.filter(status__in=OPEN_INCIDENT_STATUSES).count()
        report.tick = lifecycle_tick()
        report.closed_by_tick = open_before_tick - visible.filter(status__in=OPEN_INCIDENT_STATUSES).count()
    if resolve_older_than is not None:
        candidates = bulk_resolution_candidates(user=user, older_than=resolve_older_than)
        rows = list(candidates.order_by("opened_at", "id").values_list("pk", "severity"))
        ids = [pk for pk, _ in rows]
        report.selected = len(ids)
        for start in range(0, len(ids), MAX_BULK_INCIDENTS):
            outcome = incidents_bulk_resolve(
                user=user,
                ids=ids[start : start + MAX_BULK_INCIDENTS],
                resolution_reason=resolution_reason,
                note=note,
                close=close,
            )
            report.resolved += outcome.resolved
            report.closed += outcome.closed
        report.resolved_by_severity = dict(Counter(severity for _, severity in rows))
    report.unfinished_rca_closed = (
        visible.filter(severity__in=RCA_REQUIRED_SEVERITIES, rca_completed_at__isnull=True)
        .filter(Q(closed_at__gte=started) | Q(resolved_at__gte=started))
        .exclude(status__in=OPEN_INCIDENT_STATUSES)
        .count()
    )
    report.after = incident_backlog(queryset=visible)
    return report
