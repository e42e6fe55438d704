"""Incident writes used by other apps (the oversight engine, review escalations). The lifecycle engine
(SLA escalation, auto-close, RCA) builds on these with issue 5."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from governance.choices import AuditAction
from governance.services.audit import AuditEntry, audit_record_many, describe_actor
from incidents.models import OPEN_INCIDENT_STATUSES, Incident, IncidentEvent, IncidentEventKind, IncidentType
from incidents.services import rca
from incidents.services.graph import incident_links_on_open
from incidents.services.lifecycle import escalation_policy_snapshot, incident_type_for_alert, lifecycle_fields

ALERT_ACTOR = "oversight"


def incidents_open_for_alerts(*, alerts: Sequence, now: datetime) -> list[Incident]:
    """One open incident per alert fingerprint: open new ones, attach to the ones already open.

    Set-based (a fixed number of queries and bulk inserts whatever the number of alerts, plus the
    knowledge-graph links of what was opened or touched). Idempotent: an alert
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
    snapshot, template_ids = escalation_policy_snapshot(), rca.template_ids()
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
                description=incident_description(alert),
                **lifecycle_fields(
                    severity=alert.severity,
                    incident_type=incident_type_for_alert(category=alert.category, rule=alert.labels.get("rule")),
                    opened_at=now,
                    snapshot=snapshot,
                    template_ids=template_ids,
                ),
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
    # Knowledge-graph edges of what was opened or touched: system, alerts, recurrences, audit entries.
    incident_links_on_open(incidents=list({event.incident.pk: event.incident for event in timeline}.values()))
    return opened


def incident_title(alert) -> str:
    what = alert.signal or ", ".join(alert.annotations.get("signals", [])) or alert.category
    return f"[{alert.severity}] {alert.labels.get('rule')}: {what} on {alert.system.name}"[:300]


def incident_description(alert) -> str:
    return (
        f"Rule {alert.labels.get('rule')} fired on {alert.system.name}; first breach at "
        f"{alert.first_event_at.isoformat()}, {alert.count} contributing event(s)."
    )


def incident_type_for_review(item) -> str:
    """An escalated alert-triage review keeps its alert's category; other reviews are oversight matters."""
    category = (item.context or {}).get("category")
    if category in IncidentType.values:
        return category
    return IncidentType.HUMAN_OVERSIGHT


def review_fingerprint(item) -> str:
    """The incident fingerprint a review escalates into: its alert's (so it joins the alert's incident),
    else one derived from what the review is about, so repeated escalations of the same thing join."""
    if item.fingerprint:
        return item.fingerprint
    basis = f"review:{item.system_id}:{item.review_type}:{item.rule or item.title}"
    return hashlib.sha256(basis.encode()).hexdigest()


def incidents_open_or_join_for_reviews(*, items: Sequence, actor: Any, now: datetime) -> dict:
    """Escalate review items: each opens an incident, or joins the open incident of its fingerprint.

    Set-based (a fixed number of queries whatever the number of items). The caller holds the per-system
    locks (``governance.services.locks.lock_systems``) that serialize writers of these fingerprints and
    runs this in its transaction. Every incident opened is audited (``incident.opened``), every join
    too (``incident.joined``), and each appears on the incident's timeline. Returns
    ``{item_id: incident}``.
    """
    if not items:
        return {}
    fingerprints = {item.id: review_fingerprint(item) for item in items}
    open_incidents = {
        incident.fingerprint: incident
        for incident in Incident.objects.filter(
            fingerprint__in=set(fingerprints.values()), status__in=OPEN_INCIDENT_STATUSES
        )
    }
    snapshot, template_ids = escalation_policy_snapshot(), rca.template_ids()
    actor_name = describe_actor(actor)[0]
    opened: list[Incident] = []
    joined: list[tuple[Incident, Any]] = []
    timeline: list[IncidentEvent] = []
    result = {}
    for item in items:
        fingerprint = fingerprints[item.id]
        incident = open_incidents.get(fingerprint)
        if incident is None:
            incident = Incident(
                title=f"[{item.severity}] Escalated review: {item.title}"[:300],
                system_id=item.system_id,
                team_id=item.system.team_id,
                severity=item.severity,
                fingerprint=fingerprint,
                source_alert_id=item.source_alert_id,
                opened_at=now,
                description=f"Escalated from the {item.get_review_type_display().lower()} review {item.title!r}.",
                **lifecycle_fields(
                    severity=item.severity,
                    incident_type=incident_type_for_review(item),
                    opened_at=now,
                    snapshot=snapshot,
                    template_ids=template_ids,
                ),
            )
            open_incidents[fingerprint] = incident
            opened.append(incident)
            kind, message = IncidentEventKind.OPENED, f"Opened by escalating review {item.title!r}."
        else:
            joined.append((incident, item))
            kind, message = IncidentEventKind.NOTE, f"Review {item.title!r} escalated into this incident."
        timeline.append(
            IncidentEvent(
                incident=incident,
                kind=kind,
                at=now,
                actor=actor_name,
                message=message,
                data={"review_item_id": str(item.id)},
            )
        )
        result[item.id] = incident
    Incident.objects.bulk_create(opened)
    IncidentEvent.objects.bulk_create(timeline)
    audit_record_many(
        entries=[
            *(
                AuditEntry(
                    action=AuditAction.INCIDENT_OPENED,
                    actor=actor,
                    target=incident,
                    data={"severity": incident.severity, "fingerprint": incident.fingerprint, "via": "review"},
                )
                for incident in opened
            ),
            *(
                AuditEntry(
                    action=AuditAction.INCIDENT_JOINED,
                    actor=actor,
                    target=incident,
                    data={"review_item": str(item.id)},
                )
                for incident, item in joined
            ),
        ]
    )
    incident_links_on_open(incidents=list({incident.pk: incident for incident in result.values()}.values()))
    return result
