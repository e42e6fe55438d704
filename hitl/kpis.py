"""The HITL backlog KPI and the human-oversight capability (registered with the KPI service)."""

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
)
from hitl.models import AutoApprovalPolicy, DecisionSource, ReviewItem, ReviewStatus
from hitl.selectors import backlog_health

BACKLOG_TARGET = 50  # the plan's "< 50 pending reviews"
HUMAN_ACTIVITY_WINDOW = timedelta(days=30)
HUMAN_ONLY_SEVERITIES = (Severity.CRITICAL, Severity.HIGH)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "none"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


@kpi_provider("hitl_backlog")
def hitl_backlog() -> Measurement:
    """Pending review items right now, against the plan's target of fewer than 50."""
    health = backlog_health(queryset=ReviewItem.objects.all())
    return Measurement(
        value=health.pending,
        display=f"{health.pending:,}",
        met=health.pending < BACKLOG_TARGET,
        detail=(
            f"oldest pending {_age(health.oldest_age_seconds)}; {health.sla_breached} past SLA; "
            f"last 24 h: {health.inflow_24h} in, {health.outflow_24h} out"
        ),
        target=f"< {BACKLOG_TARGET}",
    )


@capability_check("human_oversight")
def human_oversight_status() -> CapabilityStatus:
    """Enforced while humans are demonstrably in the loop and automation stays inside its bounds:
    a human decided something in the last 30 days and no high or critical item was ever decided by a
    policy."""
    since = timezone.now() - HUMAN_ACTIVITY_WINDOW
    decided = ReviewItem.objects.filter(decided_at__gte=since).aggregate(
        human=Count("pk", filter=Q(decision_source__in=[DecisionSource.HUMAN, DecisionSource.BULK])),
        auto=Count("pk", filter=Q(decision_source=DecisionSource.AUTO_POLICY)),
    )
    automated_serious = ReviewItem.objects.filter(
        decision_source=DecisionSource.AUTO_POLICY, severity__in=HUMAN_ONLY_SEVERITIES
    ).count()
    if automated_serious:
        return CapabilityStatus(
            NOT_ENFORCED, f"{automated_serious} high/critical review item(s) were decided by a policy, not a human"
        )
    if not decided["human"]:
        return CapabilityStatus(NOT_ENFORCED, "no human review decision in the last 30 days")
    pending = ReviewItem.objects.filter(status=ReviewStatus.PENDING).count()
    policies = AutoApprovalPolicy.objects.filter(enabled=True, shadow_mode=False).count()
    return CapabilityStatus(
        ENFORCED,
        f"{decided['human']} human and {decided['auto']} policy decisions in 30 days; {pending} pending; "
        f"{policies} auto-approval policies enabled; high/critical always decided by people",
    )
