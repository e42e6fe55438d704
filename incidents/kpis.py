"""The open-incidents KPI and the incident-management capability (registered with the KPI service)."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Count, Q
from django.utils import timezone

from governance.choices import Severity
from governance.services.kpis import (
    ENFORCED,
    NOT_ENFORCED,
    CapabilityStatus,
    Measurement,
    capability_check,
    kpi_provider,
    response_times_provider,
)
from incidents.models import OPEN_INCIDENT_STATUSES, Incident
from incidents.selectors import incident_metrics

OPEN_TARGET = 30  # the plan's "< 30 open incidents"
ESCALATION_LAG_LIMIT = timedelta(minutes=5)  # a due escalation older than this means the tick is not running
ACTIVITY_WINDOW = timedelta(days=30)


@kpi_provider("open_incidents")
def open_incidents() -> Measurement:
    """Incidents not yet resolved (open, acknowledged or mitigated), against the plan's target of < 30."""
    now = timezone.now()
    counts = Incident.objects.filter(status__in=OPEN_INCIDENT_STATUSES).aggregate(
        total=Count("pk"),
        critical=Count("pk", filter=Q(severity=Severity.CRITICAL)),
        high=Count("pk", filter=Q(severity=Severity.HIGH)),
        breached=Count("pk", filter=Q(resolve_due_at__lt=now)),
    )
    return Measurement(
        value=counts["total"],
        display=f"{counts['total']:,}",
        met=counts["total"] < OPEN_TARGET,
        detail=f"{counts['critical']} critical, {counts['high']} high; {counts['breached']} past their resolve target",
        target=f"< {OPEN_TARGET}",
    )


@capability_check("incident_management")
def incident_management_status() -> CapabilityStatus:
    """Enforced while the lifecycle engine is running and its obligations are kept: incidents were handled
    in the last 30 days, no escalation is overdue by more than 5 minutes (the tick runs), and no serious
    incident is past its EU AI Act Art. 73 reporting deadline unreported."""
    now = timezone.now()
    handled = Incident.objects.filter(
        Q(acknowledged_at__gte=now - ACTIVITY_WINDOW) | Q(resolved_at__gte=now - ACTIVITY_WINDOW)
    ).count()
    if not handled:
        return CapabilityStatus(NOT_ENFORCED, "no incident acknowledged or resolved in the last 30 days")
    stuck = Incident.objects.filter(
        status__in=OPEN_INCIDENT_STATUSES, next_escalation_at__lt=now - ESCALATION_LAG_LIMIT
    ).count()
    if stuck:
        return CapabilityStatus(
            NOT_ENFORCED, f"{stuck} escalation(s) overdue by more than 5 minutes: is the lifecycle tick running?"
        )
    late = Incident.objects.filter(
        serious=True, regulatory_reported_at__isnull=True, regulatory_deadline_at__lt=now
    ).count()
    if late:
        return CapabilityStatus(NOT_ENFORCED, f"{late} serious incident(s) past the Art. 73 deadline, unreported")
    open_count = Incident.objects.filter(status__in=OPEN_INCIDENT_STATUSES).count()
    return CapabilityStatus(
        ENFORCED,
        f"{handled} incidents handled in 30 days; {open_count} open; escalations on time; "
        "serious incidents within their reporting deadlines",
    )


@response_times_provider
def incident_response_times() -> list[dict]:
    """MTTA and MTTR (p50/p95 seconds) per severity over the last 30 days (DESIGN §6)."""
    metrics = incident_metrics(queryset=Incident.objects.all(), now=timezone.now())
    rows = []
    for severity in Severity.values:
        mtta = metrics.mtta_seconds.get(severity) or {}
        mttr = metrics.mttr_seconds.get(severity) or {}
        rows.append(
            {
                "severity": severity,
                "mtta_p50": mtta.get("p50"),
                "mtta_p95": mtta.get("p95"),
                "mttr_p50": mttr.get("p50"),
                "mttr_p95": mttr.get("p95"),
                "acknowledged": mtta.get("count", 0),
                "resolved": mttr.get("count", 0),
            }
        )
    return rows
