"""KPIs and the capability measured by the event pipeline (registered with the KPI service)."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from config import registry
from governance.choices import Severity
from governance.services.kpis import (
    ENFORCED,
    NOT_ENFORCED,
    CapabilityStatus,
    Measurement,
    capability_check,
    kpi_provider,
)
from incidents.models import Incident
from oversight.metrics import alert_detection_seconds, fired_alert_rows, outbox_lag, percentile
from oversight.models import DetectionRule, EventRaw, IngestBatch

EVENTS_TARGET = 10_000
MTTD_WINDOW = timedelta(days=7)
MTTR_WINDOW = timedelta(days=30)
MONITORING_RECENT = timedelta(hours=24)
OUTBOX_MAX_LAG = timedelta(minutes=5)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min"


@kpi_provider("events_ingested")
def events_ingested() -> Measurement:
    count = EventRaw.objects.count()
    return Measurement(
        value=count,
        display=f"{count:,}",
        met=count >= EVENTS_TARGET,
        detail=f"{count:,} telemetry events stored in events_raw",
    )


@kpi_provider("mttd_critical")
def mttd_critical() -> Measurement:
    """p95 time to detect critical alerts that fired in the last 7 days, against ``slo.mttd_seconds``."""
    target = registry.get("slo.mttd_seconds")[Severity.CRITICAL]
    target_text = f"≤ {_duration(target)} (p95)"
    now = timezone.now()
    alerts = fired_alert_rows(since=now - MTTD_WINDOW, until=now, severity=Severity.CRITICAL)
    p95 = percentile([seconds for _, seconds in alert_detection_seconds(alerts)], 0.95)
    if p95 is None:
        return Measurement(
            value=None,
            display="not measured",  # the scorecard shows a None value as not measured
            met=False,
            detail="no critical alert fired in the last 7 days: nothing to measure",
            target=target_text,
        )
    return Measurement(
        value=round(p95, 3),
        display=_duration(p95),
        met=p95 <= target,
        detail=f"p95 over {len(alerts)} critical alerts fired in the last 7 days",
        target=target_text,
    )


@kpi_provider("mttr_critical")
def mttr_critical() -> Measurement:
    """p95 time to resolve critical incidents resolved in the last 30 days, against
    ``slo.incident_resolve_minutes``."""
    target_minutes = registry.get("slo.incident_resolve_minutes")[Severity.CRITICAL]
    target_text = f"≤ {target_minutes} min (p95)"
    now = timezone.now()
    rows = Incident.objects.filter(
        severity=Severity.CRITICAL, resolved_at__gte=now - MTTR_WINDOW, resolved_at__lte=now
    ).values_list("opened_at", "resolved_at")
    durations = [(resolved - opened).total_seconds() for opened, resolved in rows]
    p95 = percentile(durations, 0.95)
    if p95 is None:
        return Measurement(
            value=None,
            display="not measured",  # the scorecard shows a None value as not measured
            met=False,
            detail="no critical incident resolved in the last 30 days: nothing to measure",
            target=target_text,
        )
    return Measurement(
        value=round(p95 / 60, 2),
        display=_duration(p95),
        met=p95 <= target_minutes * 60,
        detail=f"p95 over {len(durations)} critical incidents resolved in the last 30 days",
        target=target_text,
    )


@capability_check("continuous_monitoring")
def continuous_monitoring_status() -> CapabilityStatus:
    """Enforced while detection is actually running: enabled rules, events processed in the last 24 h,
    and no batch left unprocessed for more than 5 minutes."""
    now = timezone.now()
    rules = DetectionRule.objects.filter(enabled=True).count()
    if not rules:
        return CapabilityStatus(NOT_ENFORCED, "every detection rule is disabled")
    recent = IngestBatch.objects.filter(processed_at__gte=now - MONITORING_RECENT).count()
    if not recent:
        return CapabilityStatus(NOT_ENFORCED, "no telemetry was processed in the last 24 h")
    lag = outbox_lag(now=now)
    age = lag["oldest_unprocessed_age_seconds"]
    if age is not None and age > OUTBOX_MAX_LAG.total_seconds():
        return CapabilityStatus(
            NOT_ENFORCED,
            f"{lag['unprocessed_batches']} batch(es) waiting; the oldest for {_duration(age)} (limit 5 min)",
        )
    return CapabilityStatus(
        ENFORCED, f"{rules} detection rules enabled; {recent} batches processed in the last 24 h; outbox current"
    )
