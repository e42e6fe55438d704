"""EU AI Act Art. 73: serious incidents on high-risk AI systems, their reporting deadline and the report.

A provider must report a serious incident to the market-surveillance authority within 15 days of
becoming aware of it (Art. 73(2)), 2 days for a widespread infringement or a serious disruption of
critical infrastructure (73(3)), 10 days in case of a death (73(4)). The day counts live in the config
registry (``incidents.regulatory``). Here the deadline is computed and stored on the incident, the
report is marked as filed, and the report itself is assembled (JSON, and a printable HTML page). The
warnings as a deadline nears are the lifecycle engine's (``regulatory_deadline_at`` is what it reads).

The awareness time and the authority's reference have no columns of their own: each marking and each
filing is a ``regulatory`` timeline entry whose ``data`` carries them (``action`` = ``marked_serious``
or ``reported``), and the audit entry repeats them.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Min
from django.template.loader import render_to_string
from django.utils import timezone

from config import registry
from governance.choices import AuditAction, RiskClass
from governance.services.audit import audit_record, describe_actor, text_storage_problem
from incidents.models import (
    Incident,
    IncidentEvent,
    IncidentEventKind,
    IncidentLink,
    LinkTarget,
    RegulatoryBasis,
)
from incidents.services import rca
from incidents.services.lifecycle import NOTE_MAX_LENGTH, IncidentInvalid, IncidentTransitionError
from oversight.models import Alert

# RegulatoryBasis -> its day count in ``incidents.regulatory``.
DAYS_KEY = {
    RegulatoryBasis.STANDARD: "standard_days",
    RegulatoryBasis.WIDESPREAD: "widespread_days",
    RegulatoryBasis.DEATH: "death_days",
}
MARKED_SERIOUS = "marked_serious"
REPORTED = "reported"
REFERENCE_MAX_LENGTH = 200
REPORT_TITLE = "Serious incident report (EU AI Act Art. 73)"
REPORT_TEMPLATE = "incidents/report.html"
# RCA fields that name who was harmed; the first one filled is the report's "affected persons".
AFFECTED_FIELDS = ("affected_persons", "affected_groups", "affected_data")


def regulatory_deadline(*, basis: str, aware_at: datetime) -> datetime:
    """``aware_at`` plus the days ``incidents.regulatory`` gives ``basis``."""
    days = registry.get("incidents.regulatory")[DAYS_KEY[basis]]
    return aware_at + timedelta(days=days)


def _moment(name: str, value: datetime | None, *, now: datetime, errors: dict[str, list[str]]) -> datetime:
    if value is None:
        return now
    if not isinstance(value, datetime) or timezone.is_naive(value):
        errors[name] = ["must be a date and time with a time zone"]
    elif value > now:
        errors[name] = ["cannot be in the future"]
    return value


def _locked_incident(incident_id: Any, to: str) -> Incident:
    incident = Incident.objects.select_for_update(of=("self",)).select_related("system").filter(pk=incident_id).first()
    if incident is None:
        raise IncidentTransitionError(incident_id, None, to)
    return incident


def _last_regulatory_entry(incident_id: Any, action: str) -> dict[str, Any] | None:
    """``data`` of the incident's latest ``regulatory`` timeline entry for ``action``."""
    return (
        IncidentEvent.objects.filter(incident_id=incident_id, kind=IncidentEventKind.REGULATORY, data__action=action)
        .order_by("-at", "-created_at")
        .values_list("data", flat=True)
        .first()
    )


def _parse(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None


def incident_mark_serious(
    *,
    incident_id: Any,
    basis: str,
    actor: Any,
    aware_at: datetime | None = None,
    note: str = "",
) -> Incident:
    """Mark an incident on a high-risk AI system as serious: its Art. 73 deadline is ``aware_at``
    (default: now) plus the days ``incidents.regulatory`` gives ``basis``.

    Only for systems of risk class high: otherwise ``IncidentInvalid`` naming ``serious`` (and
    ``regulatory_basis`` / ``aware_at`` / ``note`` for bad input). Marking again with another basis
    recomputes the deadline from the awareness time first recorded (unless ``aware_at`` is given);
    marking again with nothing changed writes nothing. Locks the incident row; writes the incident, a
    ``regulatory`` timeline entry and an ``incident.marked_serious`` audit entry in one transaction.
    Any status may be marked (an incident is often known to be serious only after it is resolved).
    """
    now = timezone.now()
    errors: dict[str, list[str]] = {}
    if basis not in RegulatoryBasis.values:
        errors["regulatory_basis"] = [f"{basis!r} is not a basis; use one of: {', '.join(RegulatoryBasis.values)}"]
    given_aware_at = aware_at
    aware_at = _moment("aware_at", aware_at, now=now, errors=errors)
    note = (note or "").strip()
    if len(note) > NOTE_MAX_LENGTH:
        errors["note"] = [f"longer than {NOTE_MAX_LENGTH} characters"]
    elif problem := text_storage_problem(note):
        errors["note"] = [problem]
    if errors:
        raise IncidentInvalid(errors)
    basis = RegulatoryBasis(basis)
    with transaction.atomic():
        incident = _locked_incident(incident_id, "serious")
        system = incident.system
        if system is None or system.risk_class != RiskClass.HIGH:
            what = f"{system.name} is {system.get_risk_class_display()}" if system else "it has no AI system"
            raise IncidentInvalid(
                {"serious": [f"only incidents on high-risk AI systems carry an Art. 73 reporting deadline; {what}"]}
            )
        previous_basis = incident.regulatory_basis if incident.serious else ""
        if given_aware_at is None and incident.serious:
            earlier = _last_regulatory_entry(incident.pk, MARKED_SERIOUS) or {}
            aware_at = _parse(earlier.get("aware_at")) or aware_at
        deadline = regulatory_deadline(basis=basis, aware_at=aware_at)
        if incident.serious and previous_basis == basis and incident.regulatory_deadline_at == deadline:
            return incident
        Incident.objects.filter(pk=incident.pk).update(
            serious=True,
            regulatory_basis=basis,
            regulatory_deadline_at=deadline,
            last_activity_at=now,
            updated_at=now,
        )
        data = {
            "action": MARKED_SERIOUS,
            "basis": basis.value,
            "previous_basis": previous_basis,
            "aware_at": aware_at.isoformat(),
            "deadline_at": deadline.isoformat(),
        }
        if note:
            data["note"] = note
        changed = f" (was {RegulatoryBasis(previous_basis).label})" if previous_basis else ""
        IncidentEvent.objects.create(
            incident=incident,
            kind=IncidentEventKind.REGULATORY,
            at=now,
            actor=describe_actor(actor)[0],
            message=f"Marked serious: {basis.label}{changed}; report due by {deadline:%Y-%m-%d %H:%M} UTC.",
            data=data,
        )
        audit_record(action=AuditAction.INCIDENT_MARKED_SERIOUS, actor=actor, target=incident, data=data)
        incident.refresh_from_db()
    return incident


def incident_mark_reported(
    *, incident_id: Any, actor: Any, reference: str, reported_at: datetime | None = None
) -> Incident:
    """Record that a serious incident was reported to the authority (``reference``: the authority's
    case number or the submission id; ``reported_at`` default now). ``IncidentInvalid`` for a missing
    reference, a future time or an incident not marked serious; ``IncidentTransitionError`` (409) if it
    was reported already. Locks the row; incident, ``regulatory`` timeline entry and
    ``incident.reported`` audit entry in one transaction."""
    now = timezone.now()
    errors: dict[str, list[str]] = {}
    reference = (reference or "").strip()
    if not reference:
        errors["reference"] = ["the authority's reference (case or submission number) is required"]
    elif len(reference) > REFERENCE_MAX_LENGTH:
        errors["reference"] = [f"longer than {REFERENCE_MAX_LENGTH} characters"]
    elif problem := text_storage_problem(reference):
        errors["reference"] = [problem]
    reported_at = _moment("reported_at", reported_at, now=now, errors=errors)
    if errors:
        raise IncidentInvalid(errors)
    with transaction.atomic():
        incident = _locked_incident(incident_id, REPORTED)
        if not incident.serious:
            raise IncidentInvalid({"serious": ["the incident is not marked serious: there is nothing to report"]})
        if incident.regulatory_reported_at is not None:
            raise IncidentTransitionError(
                incident_id, f"already reported on {incident.regulatory_reported_at:%Y-%m-%d %H:%M} UTC", REPORTED
            )
        Incident.objects.filter(pk=incident.pk).update(
            regulatory_reported_at=reported_at, last_activity_at=now, updated_at=now
        )
        deadline = incident.regulatory_deadline_at
        on_time = deadline is None or reported_at <= deadline
        data = {
            "action": REPORTED,
            "reference": reference,
            "reported_at": reported_at.isoformat(),
            "deadline_at": deadline.isoformat() if deadline else None,
            "on_time": on_time,
        }
        IncidentEvent.objects.create(
            incident=incident,
            kind=IncidentEventKind.REGULATORY,
            at=now,
            actor=describe_actor(actor)[0],
            message=f"Reported to the authority ({reference}){'' if on_time else ' after the deadline'}.",
            data=data,
        )
        audit_record(action=AuditAction.INCIDENT_REPORTED, actor=actor, target=incident, data=data)
        incident.refresh_from_db()
    return incident


def regulatory_countdown(incident: Incident, *, now: datetime | None = None) -> dict[str, Any] | None:
    """Where a serious incident stands against its deadline, or None when it carries none.

    ``remaining_seconds`` runs to the deadline from now, or from the filing once reported (so a late
    report stays visibly late); negative and ``overdue`` once past. Reads nothing but the incident."""
    if not incident.serious or incident.regulatory_deadline_at is None:
        return None
    reported_at = incident.regulatory_reported_at
    reference_time = reported_at or now or timezone.now()
    remaining = int((incident.regulatory_deadline_at - reference_time).total_seconds())
    return {
        "deadline_at": incident.regulatory_deadline_at,
        "basis": incident.regulatory_basis,
        "basis_label": RegulatoryBasis(incident.regulatory_basis).label if incident.regulatory_basis else "",
        "remaining_seconds": remaining,
        "overdue": remaining < 0,
        "reported": reported_at is not None,
        "reported_at": reported_at,
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def incident_report(*, incident: Incident, now: datetime | None = None) -> dict[str, Any]:
    """The Art. 73 report of one incident as JSON-ready data (datetimes as ISO 8601 strings).

    Provider/deployer (the owning team), the AI system, the incident, when it occurred (the first event
    of its earliest alert, else when it opened) and when the provider became aware, the serious basis,
    deadline and filing, the description, impact, root cause, corrective actions and affected persons
    (from the RCA), the whole timeline, and the incident's knowledge-graph links (incidents of other
    teams left out: a report names one provider's incidents only). Reads only; six queries.
    """
    now = now or timezone.now()
    incident = Incident.objects.select_related("team", "system", "rca_template").get(pk=incident.pk)
    links = list(IncidentLink.objects.filter(incident_id=incident.pk).order_by("target_type", "relation", "label"))
    other_incidents = [link.target_id for link in links if link.target_type == LinkTarget.INCIDENT]
    same_team = {
        str(pk) for pk in Incident.objects.filter(
            pk__in=other_incidents, team_id=incident.team_id).values_list("pk", flat=True)
    } if other_incidents else set()  # fmt: skip
    alert_ids = {link.target_id for link in links if link.target_type == LinkTarget.ALERT}
    if incident.source_alert_id:
        alert_ids.add(str(incident.source_alert_id))
    first_event_at = (
        Alert.objects.filter(pk__in=alert_ids).aggregate(first=Min("first_event_at"))["first"] if alert_ids else None
    )
    timeline = list(incident.timeline.order_by("at", "created_at").values("kind", "at", "actor", "message", "data"))
    marking = _latest(timeline, MARKED_SERIOUS)
    filing = _latest(timeline, REPORTED)
    aware_at = _parse(marking.get("aware_at")) if marking else None
    answers = incident.rca or {}
    countdown = regulatory_countdown(incident, now=now)
    system = incident.system
    return {
        "title": REPORT_TITLE,
        "generated_at": now.isoformat(),
        "provider": {"name": incident.team.name, "team_id": str(incident.team_id), "contact": incident.team.email},
        "ai_system": {
            "id": str(system.pk),
            "name": system.name,
            "risk_class": system.risk_class,
            "risk_class_label": system.get_risk_class_display(),
            "entity_type": system.entity_type,
        }
        if system
        else None,
        "incident": {
            "id": str(incident.pk),
            "title": incident.title,
            "type": incident.incident_type,
            "type_label": incident.get_incident_type_display(),
            "severity": incident.severity,
            "status": incident.status,
            "opened_at": _iso(incident.opened_at),
            "acknowledged_at": _iso(incident.acknowledged_at),
            "mitigated_at": _iso(incident.mitigated_at),
            "resolved_at": _iso(incident.resolved_at),
            "closed_at": _iso(incident.closed_at),
            "resolution_reason": incident.resolution_reason,
        },
        "occurred_at": _iso(min(filter(None, (first_event_at, incident.opened_at)))),
        "aware_at": _iso(aware_at or incident.opened_at),
        "serious": incident.serious,
        "regulatory": {
            "basis": incident.regulatory_basis,
            "basis_label": countdown["basis_label"] if countdown else "",
            "deadline_at": _iso(incident.regulatory_deadline_at),
            "remaining_seconds": countdown["remaining_seconds"] if countdown else None,
            "overdue": countdown["overdue"] if countdown else False,
            "reported_at": _iso(incident.regulatory_reported_at),
            "reference": (filing or {}).get("reference", ""),
        },
        "description": incident.description,
        "impact": answers.get("impact", ""),
        "root_cause": answers.get("root_cause", ""),
        "corrective_actions": answers.get("corrective_actions", ""),
        "affected_persons": next((answers[f] for f in AFFECTED_FIELDS if answers.get(f)), ""),
        "rca": {
            "template": incident.rca_template.name if incident.rca_template else "",
            "required_fields": rca.required_fields(incident),
            "missing_fields": rca.missing_fields(incident),
            "completed_at": _iso(incident.rca_completed_at),
            "fields": dict(sorted(answers.items())),
        },
        "timeline": [
            {"kind": row["kind"], "at": _iso(row["at"]), "actor": row["actor"], "message": row["message"]}
            for row in timeline
        ],
        "links": [
            {"type": link.target_type, "id": link.target_id, "relation": link.relation, "label": link.label}
            for link in links
            if link.target_type != LinkTarget.INCIDENT or link.target_id in same_team
        ],
    }


def _latest(timeline: list[dict[str, Any]], action: str) -> dict[str, Any] | None:
    entries = [row["data"] for row in timeline if row["kind"] == IncidentEventKind.REGULATORY
               and (row["data"] or {}).get("action") == action]  # fmt: skip
    return entries[-1] if entries else None


def incident_report_html(report: dict[str, Any]) -> str:
    """The report as one self-contained, printable HTML page (no scripts, no external assets; every
    text autoescaped)."""
    return render_to_string(REPORT_TEMPLATE, {"report": report})
