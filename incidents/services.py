"""Incident writes used by other apps. The lifecycle engine (SLA escalation, auto-close, RCA) builds on
these with issue 5."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from config import registry
from governance.choices import AuditAction
from governance.services.audit import AuditEntry, audit_record_many
from incidents.models import OPEN_INCIDENT_STATUSES, Incident, IncidentEvent, IncidentEventKind

ALERT_ACTOR = "oversight"


def incidents_open_for_alerts(*, alerts: Sequence, now: datetime) -> list[Incident]:
    """One open incident per alert fingerprint: open new ones, attach to the ones already open.

    Set-based (three queries and two bulk inserts whatever the number of alerts). Idempotent: an alert
    already attached to the open incident of its fingerprint adds nothing. The caller holds the lock
    that serializes writers of these fingerprints (the oversight engine's per-system lock); the partial
    unique constraint ``incident_one_open_per_fingerprint`` backs it. Audits every incident opened.
    Returns the incidents opened.
    """
    if not alerts:
        return []
    by_fingerprint = {alert.fingerprint: alert for alert in alerts}
    open_incidents = {
        incident.fingerprint: incident
        for incident in Incident.objects.filter(fingerprint__in=list(by_fingerprint), status__in=OPEN_INCIDENT_STATUSES)
    }
    attached_pairs = set(
        IncidentEvent.objects.filter(
            incident__in=list(open_incidents.values()), kind=IncidentEventKind.ALERT_ATTACHED
        ).values_list("incident_id", "data__alert_id")
    )
    ack_minutes = registry.get("slo.incident_ack_minutes")
    opened: list[Incident] = []
    timeline: list[IncidentEvent] = []
    for fingerprint, alert in by_fingerprint.items():
        incident = open_incidents.get(fingerprint)
        if incident is None:
            incident = Incident(
                title=incident_title(alert),
                system_id=alert.system_id,
                team_id=alert.system.team_id,
                severity=alert.severity,
                fingerprint=fingerprint,
                source_alert=alert,
                opened_at=now,
                sla_due_at=now + timedelta(minutes=ack_minutes[alert.severity]),
                description=incident_description(alert),
            )
            opened.append(incident)
            timeline.append(
                IncidentEvent(
                    incident=incident,
                    kind=IncidentEventKind.OPENED,
                    at=now,
                    actor=ALERT_ACTOR,
                    message=f"Opened from alert {alert.labels.get('rule')} ({alert.severity}).",
                    data={"alert_id": str(alert.id)},
                )
            )
        elif incident.source_alert_id != alert.id and (incident.id, str(alert.id)) not in attached_pairs:
            timeline.append(
                IncidentEvent(
                    incident=incident,
                    kind=IncidentEventKind.ALERT_ATTACHED,
                    at=now,
                    actor=ALERT_ACTOR,
                    message=f"Alert {alert.labels.get('rule')} fired again ({alert.severity}).",
                    data={"alert_id": str(alert.id)},
                )
            )
    Incident.objects.bulk_create(opened)
    IncidentEvent.objects.bulk_create(timeline)
    audit_record_many(
        entries=[
            AuditEntry(
                action=AuditAction.INCIDENT_OPENED,
                target=incident,
                data={
                    "severity": incident.severity,
                    "fingerprint": incident.fingerprint,
                    "alert": str(incident.source_alert_id),
                    "system": str(incident.system_id),
                },
            )
            for incident in opened
        ]
    )
    return opened


def incident_title(alert) -> str:
    what = alert.signal or ", ".join(alert.annotations.get("signals", [])) or alert.category
    return f"[{alert.severity}] {alert.labels.get('rule')}: {what} on {alert.system.name}"[:300]


def incident_description(alert) -> str:
    return (
        f"Rule {alert.labels.get('rule')} fired on {alert.system.name}; first breach at "
        f"{alert.first_event_at.isoformat()}, {alert.count} contributing event(s)."
    )
