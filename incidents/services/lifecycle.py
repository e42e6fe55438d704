"""Incident lifecycle: every status change is a guarded transition with a timeline and an audit entry.

``open → acknowledged → mitigated → resolved → closed``, and reopen from resolved or closed. The allowed
source states live in ``incidents.models.ALLOWED_FROM``; a transition is ``UPDATE … WHERE id = … AND
status IN (allowed)`` and its side effects (timeline entry, audit entry, escalation timers) happen only
when that UPDATE changed the row, in the same transaction (Sentry / OnCall style). A lost race or an
illegal move raises :class:`IncidentTransitionError` and writes nothing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from config import registry
from governance.choices import AuditAction, Severity
from governance.services.audit import audit_record, describe_actor
from governance.services.errors import InvalidFields
from incidents.models import (
    ALLOWED_FROM,
    OPEN_INCIDENT_STATUSES,
    Incident,
    IncidentEvent,
    IncidentEventKind,
    IncidentStatus,
    IncidentType,
)
from incidents.services import rca

# Escalation stops once an incident is resolved or closed; the token value says so.
STOPPED_TOKEN = "stopped"  # noqa: S105 (an escalation marker, not a secret)
RCA_REQUIRED_SEVERITIES = (Severity.CRITICAL, Severity.HIGH)
NOTE_MAX_LENGTH = 5000


class IncidentTransitionError(Exception):
    """The incident is not in a state this transition may start from (API: 409); nothing changed."""

    def __init__(self, incident_id: Any, current: str | None, to: str):
        self.incident_id, self.current, self.to = incident_id, current, to
        verb = {IncidentStatus.OPEN: "reopen"}.get(to, f"move to {to}")
        super().__init__(f"cannot {verb} incident {incident_id}: it is {current or 'gone'}")


class IncidentInvalid(InvalidFields):
    """Bad input for a transition; ``fields`` names each problem (API: 400). Nothing changed."""


# --- what an incident carries from the moment it opens --------------------------------------------
@dataclass(frozen=True)
class Timers:
    sla_due_at: datetime  # acknowledge target
    resolve_due_at: datetime
    next_escalation_at: datetime


def escalation_policy_snapshot() -> dict[str, Any]:
    """The escalation policy as it is now, frozen onto an incident (editing the policy later never
    changes what happens to incidents already open)."""
    return registry.get("incidents.escalation_policy")


def first_escalation_at(*, breach_at: datetime, snapshot: dict[str, Any]) -> datetime:
    steps = snapshot.get("steps") or [{"after_minutes": 0}]
    return breach_at + timedelta(minutes=steps[0]["after_minutes"])


def timers_for(*, severity: str, start: datetime, snapshot: dict[str, Any]) -> Timers:
    """Acknowledge and resolve deadlines from the SLO registry keys, and the first escalation time."""
    ack = start + timedelta(minutes=registry.get("slo.incident_ack_minutes")[severity])
    resolve = start + timedelta(minutes=registry.get("slo.incident_resolve_minutes")[severity])
    return Timers(sla_due_at=ack, resolve_due_at=resolve, next_escalation_at=first_escalation_at(
        breach_at=ack, snapshot=snapshot))  # fmt: skip


def lifecycle_fields(
    *,
    severity: str,
    incident_type: str,
    opened_at: datetime,
    snapshot: dict[str, Any] | None = None,
    template_ids: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Field values every new incident gets (intake uses this for alerts and review escalations; a
    caller opening many passes ``snapshot`` and ``template_ids`` loaded once)."""
    snapshot = snapshot if snapshot is not None else escalation_policy_snapshot()
    timers = timers_for(severity=severity, start=opened_at, snapshot=snapshot)
    return {
        "incident_type": incident_type,
        "sla_due_at": timers.sla_due_at,
        "resolve_due_at": timers.resolve_due_at,
        "next_escalation_at": timers.next_escalation_at,
        "escalation_snapshot": snapshot,
        "escalation_token": uuid.uuid4().hex,
        "last_activity_at": opened_at,
        "rca_template_id": rca.template_id_for(incident_type, template_ids),
    }


def incident_type_for_alert(*, category: str | None, rule: str | None) -> str:
    """The incident type of an alert: its category (``oversight.models.Category`` values match), or
    availability for a lost heartbeat."""
    if rule and rule.startswith("absence:"):
        return IncidentType.AVAILABILITY
    if category in IncidentType.values:
        return category
    return IncidentType.OTHER


# --- transitions ----------------------------------------------------------------------------------
def _note(note: str | None) -> str:
    text = (note or "").strip()
    if len(text) > NOTE_MAX_LENGTH:
        raise IncidentInvalid({"note": [f"longer than {NOTE_MAX_LENGTH} characters"]})
    return text


def _transition(
    *,
    incident_id: Any,
    to: str,
    actor: Any,
    kind: str,
    action: str,
    message: str,
    updates: dict[str, Any],
    data: dict[str, Any],
    now: datetime,
) -> Incident:
    """The guarded UPDATE + timeline + audit shared by every transition (call inside atomic)."""
    changed = Incident.objects.filter(pk=incident_id, status__in=ALLOWED_FROM[to]).update(
        status=to, last_activity_at=now, updated_at=now, **updates
    )
    if not changed:
        current = Incident.objects.filter(pk=incident_id).values_list("status", flat=True).first()
        raise IncidentTransitionError(incident_id, current, to)
    incident = Incident.objects.select_related("system", "team", "rca_template").get(pk=incident_id)
    IncidentEvent.objects.create(
        incident=incident, kind=kind, at=now, actor=describe_actor(actor)[0], message=message, data=data
    )
    audit_record(action=action, actor=actor, target=incident, data={"status": to, **data})
    return incident


def incident_acknowledge(*, incident_id: Any, actor: Any, note: str = "", now: datetime | None = None) -> Incident:
    """open → acknowledged. The acknowledge timer stops; escalation now watches the resolve target."""
    now = now or timezone.now()
    note = _note(note)
    with transaction.atomic():
        current = Incident.objects.filter(pk=incident_id).values("resolve_due_at", "escalation_snapshot").first()
        if current is None:
            raise IncidentTransitionError(incident_id, None, IncidentStatus.ACKNOWLEDGED)
        resolve_due = current["resolve_due_at"] or now
        updates = {
            "acknowledged_at": now,
            "next_escalation_at": max(
                first_escalation_at(breach_at=resolve_due, snapshot=current["escalation_snapshot"]), now
            ),
            "escalation_token": uuid.uuid4().hex,
        }
        user = actor if getattr(actor, "is_authenticated", False) else None
        incident = _transition(
            incident_id=incident_id,
            to=IncidentStatus.ACKNOWLEDGED,
            actor=actor,
            kind=IncidentEventKind.ACKNOWLEDGED,
            action=AuditAction.INCIDENT_ACKNOWLEDGED,
            message=note or "Acknowledged.",
            updates=updates,
            data={"note": note} if note else {},
            now=now,
        )
        if user is not None and incident.assignee_id is None:
            Incident.objects.filter(pk=incident.pk).update(assignee=user)  # whoever acknowledges owns it
            incident.assignee = user
    return incident


def incident_mitigate(*, incident_id: Any, actor: Any, note: str = "", now: datetime | None = None) -> Incident:
    """open/acknowledged → mitigated (impact contained, cause not fixed yet); the resolve timer runs on."""
    now = now or timezone.now()
    note = _note(note)
    with transaction.atomic():
        return _transition(
            incident_id=incident_id,
            to=IncidentStatus.MITIGATED,
            actor=actor,
            kind=IncidentEventKind.MITIGATED,
            action=AuditAction.INCIDENT_MITIGATED,
            message=note or "Mitigated.",
            updates={"mitigated_at": now},
            data={"note": note} if note else {},
            now=now,
        )


def resolution_reason_clean(value: str | None, *, required: bool) -> str:
    """A resolution reason from ``incidents.resolution_reasons`` (IncidentInvalid otherwise)."""
    text = (value or "").strip()
    allowed = registry.get("incidents.resolution_reasons")
    if not text:
        if required:
            raise IncidentInvalid({"resolution_reason": [f"required; one of: {', '.join(allowed)}"]})
        return ""
    if text not in allowed:
        raise IncidentInvalid({"resolution_reason": [f"{text!r} is not a configured reason; use one of: "
                                                     f"{', '.join(allowed)}"]})  # fmt: skip
    return text


def incident_resolve(
    *,
    incident_id: Any,
    actor: Any,
    resolution_reason: str = "",
    note: str = "",
    follow_up_date: Any = None,
    now: datetime | None = None,
) -> Incident:
    """open/acknowledged/mitigated → resolved. Escalation stops. ``resolution_reason`` (optional here,
    required in bulk) must be one of ``incidents.resolution_reasons``; ``follow_up_date`` schedules
    the incident's follow-up review."""
    now = now or timezone.now()
    reason = resolution_reason_clean(resolution_reason, required=False)
    note = _note(note)
    if follow_up_date is not None and follow_up_date < timezone.localdate(now):
        raise IncidentInvalid({"follow_up_date": ["must be today or later"]})
    with transaction.atomic():
        updates: dict[str, Any] = {
            "resolved_at": now,
            "resolution_reason": reason,
            "next_escalation_at": None,
            "escalation_token": STOPPED_TOKEN,
        }
        if follow_up_date is not None:
            updates["follow_up_date"] = follow_up_date
        data = {k: v for k, v in {"resolution_reason": reason, "note": note}.items() if v}
        if follow_up_date is not None:
            data["follow_up_date"] = str(follow_up_date)
        return _transition(
            incident_id=incident_id,
            to=IncidentStatus.RESOLVED,
            actor=actor,
            kind=IncidentEventKind.RESOLVED,
            action=AuditAction.INCIDENT_RESOLVED,
            message=note or (f"Resolved: {reason}." if reason else "Resolved."),
            updates=updates,
            data=data,
            now=now,
        )


def incident_close(
    *, incident_id: Any, actor: Any, reason: str = "", now: datetime | None = None, automatic: bool = False
) -> Incident:
    """Any open status or resolved → closed. A high or critical incident closes only with its RCA
    complete: ``IncidentInvalid`` names each missing field as ``rca.<field>``. An incident closed
    without being resolved first gets ``resolved_at`` too (MTTR counts it)."""
    now = now or timezone.now()
    reason = _note(reason)
    with transaction.atomic():
        incident = Incident.objects.select_related("rca_template").filter(pk=incident_id).first()
        if incident is None:
            raise IncidentTransitionError(incident_id, None, IncidentStatus.CLOSED)
        if incident.severity in RCA_REQUIRED_SEVERITIES:
            missing = rca.missing_fields(incident)
            if missing:
                raise IncidentInvalid(
                    {f"rca.{field}": [f"required to close a {incident.severity} incident"] for field in missing}
                )
        updates: dict[str, Any] = {
            "closed_at": now,
            "next_escalation_at": None,
            "escalation_token": STOPPED_TOKEN,
        }
        if incident.resolved_at is None:
            updates["resolved_at"] = now
        if reason and not incident.resolution_reason:
            updates["resolution_reason"] = reason[:200]
        return _transition(
            incident_id=incident_id,
            to=IncidentStatus.CLOSED,
            actor=actor,
            kind=IncidentEventKind.CLOSED,
            action=AuditAction.INCIDENT_CLOSED,
            message=reason or "Closed.",
            updates=updates,
            data={"reason": reason, "automatic": automatic} if reason or automatic else {},
            now=now,
        )


def incident_reopen(*, incident_id: Any, actor: Any, reason: str, now: datetime | None = None) -> Incident:
    """resolved/closed → open, keeping the whole timeline. Fresh acknowledge/resolve targets and a new
    escalation token; ``IncidentTransitionError`` if another incident of the same fingerprint is open."""
    now = now or timezone.now()
    reason = _note(reason)
    if not reason:
        raise IncidentInvalid({"reason": ["say why the incident is reopened"]})
    with transaction.atomic():
        incident = Incident.objects.filter(pk=incident_id).first()
        if incident is None:
            raise IncidentTransitionError(incident_id, None, IncidentStatus.OPEN)
        snapshot = incident.escalation_snapshot or escalation_policy_snapshot()
        timers = timers_for(severity=incident.severity, start=now, snapshot=snapshot)
        updates = {
            "acknowledged_at": None,
            "mitigated_at": None,
            "resolved_at": None,
            "closed_at": None,
            "resolution_reason": "",
            "sla_due_at": timers.sla_due_at,
            "resolve_due_at": timers.resolve_due_at,
            "next_escalation_at": timers.next_escalation_at,
            "escalation_token": uuid.uuid4().hex,
            "escalation_level": 0,
            "reopened_count": incident.reopened_count + 1,
        }
        try:
            with transaction.atomic():
                return _transition(
                    incident_id=incident_id,
                    to=IncidentStatus.OPEN,
                    actor=actor,
                    kind=IncidentEventKind.REOPENED,
                    action=AuditAction.INCIDENT_REOPENED,
                    message=reason,
                    updates=updates,
                    data={"reason": reason, "previous_status": incident.status},
                    now=now,
                )
        except IntegrityError as exc:  # incident_one_open_per_fingerprint: a newer one is open
            raise IncidentTransitionError(incident_id, "superseded by an open incident of the same fingerprint",
                                          IncidentStatus.OPEN) from exc  # fmt: skip


def incident_assign(*, incident_id: Any, assignee: Any, actor: Any, now: datetime | None = None) -> Incident:
    """Give an open incident to someone of its team (``None`` unassigns); timeline and audit."""
    now = now or timezone.now()
    with transaction.atomic():
        incident = Incident.objects.select_for_update(of=("self",)).select_related("team").filter(pk=incident_id)
        incident = incident.first()
        if incident is None:
            raise IncidentTransitionError(incident_id, None, "assigned")
        if (
            assignee is not None
            and not assignee.teams.filter(pk=incident.team_id).exists()
            and not getattr(assignee, "is_admin_role", False)
        ):
            raise IncidentInvalid({"assignee": [f"{assignee.get_username()} is not on team {incident.team.name}"]})
        if incident.assignee_id == (assignee.pk if assignee else None):
            return incident
        Incident.objects.filter(pk=incident.pk).update(assignee=assignee, last_activity_at=now, updated_at=now)
        name = assignee.get_username() if assignee else None
        IncidentEvent.objects.create(
            incident=incident,
            kind=IncidentEventKind.ASSIGNED,
            at=now,
            actor=describe_actor(actor)[0],
            message=f"Assigned to {name}." if name else "Unassigned.",
            data={"assignee": name},
        )
        audit_record(action=AuditAction.INCIDENT_ASSIGNED, actor=actor, target=incident, data={"assignee": name})
        incident.refresh_from_db()
    return incident


def incident_note(*, incident_id: Any, actor: Any, message: str, now: datetime | None = None) -> IncidentEvent:
    """Add a note to the timeline (counts as activity: a noted incident is not stale)."""
    now = now or timezone.now()
    message = _note(message)
    if not message:
        raise IncidentInvalid({"message": ["a note needs text"]})
    with transaction.atomic():
        if not Incident.objects.filter(pk=incident_id).update(last_activity_at=now, updated_at=now):
            raise IncidentTransitionError(incident_id, None, "noted")
        return IncidentEvent.objects.create(
            incident_id=incident_id, kind=IncidentEventKind.NOTE, at=now, actor=describe_actor(actor)[0],
            message=message,
        )  # fmt: skip


def is_open(incident: Incident) -> bool:
    return incident.status in OPEN_INCIDENT_STATUSES
