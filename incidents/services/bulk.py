"""Bulk resolution: up to 1,000 incidents with one configured reason, all or nothing.

Every incident gets its own guarded transition, timeline entry and audit entry (through the same
set-based statements for all of them); the RCA template of its type is linked if it had none. With
``close``, each is closed too — and a high or critical incident without its complete RCA fails the
whole request, naming it, so a bulk action never closes a serious incident nobody analysed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from governance.choices import AuditAction, Severity
from governance.models import User
from governance.selectors import as_uuid, is_uuid, scope_to_teams
from governance.services.audit import AuditEntry, audit_record_many, describe_actor
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
from incidents.services.lifecycle import (
    RCA_REQUIRED_SEVERITIES,
    STOPPED_TOKEN,
    IncidentInvalid,
    resolution_reason_clean,
)

MAX_BULK_INCIDENTS = 1000
FILTER_KEYS = ("severity", "status", "system", "older_than_hours", "opened_before", "incident_type", "team")


class BulkResolveError(InvalidFields):
    """Bad bulk request; ``fields`` names each problem (``ids.3``, ``filter.severity``,
    ``resolution_reason``). ``too_many`` → the API answers 413. Nothing was changed."""


@dataclass(frozen=True)
class BulkResolveOutcome:
    resolved: int
    closed: int
    ids: list


def _as_list(value: Any) -> list:
    return list(value) if isinstance(value, list | tuple) else [value]


def incidents_matching(queryset, filters: dict[str, Any], *, now: datetime):
    """Open incidents (or resolved, with ``status``) narrowed by a bulk filter; ``BulkResolveError``
    names an unknown key or a bad value as ``filter.<key>``."""
    if not isinstance(filters, dict) or not filters:
        raise BulkResolveError({"filter": ['must be a non-empty object, e.g. {"severity": ["low"]}']})
    errors: dict[str, list[str]] = {}
    q = Q(status__in=OPEN_INCIDENT_STATUSES)
    for key, value in filters.items():
        values = [str(v) for v in _as_list(value)]
        if key == "severity":
            if bad := [v for v in values if v not in Severity.values]:
                errors["filter.severity"] = [f"unknown {bad}; use {', '.join(Severity.values)}"]
            q &= Q(severity__in=values)
        elif key == "status":
            allowed = [str(s) for s in OPEN_INCIDENT_STATUSES]
            if bad := [v for v in values if v not in allowed]:
                errors["filter.status"] = [f"only open incidents can be resolved; use {', '.join(allowed)} ({bad})"]
            q &= Q(status__in=values)
        elif key == "incident_type":
            if bad := [v for v in values if v not in IncidentType.values]:
                errors["filter.incident_type"] = [f"unknown {bad}; use {', '.join(IncidentType.values)}"]
            q &= Q(incident_type__in=values)
        elif key == "system":
            q &= Q(system_id__in=[v for v in values if is_uuid(v)]) | Q(system__name__in=values)
        elif key == "team":
            if not all(is_uuid(v) for v in values):
                errors["filter.team"] = ["must be team ids"]
            else:
                q &= Q(team_id__in=values)
        elif key == "older_than_hours":
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                errors["filter.older_than_hours"] = ["must be a number of hours ≥ 0"]
            else:
                q &= Q(opened_at__lte=now - timedelta(hours=value))
        elif key == "opened_before":
            parsed = _parse_datetime(value)
            if parsed is None:
                errors["filter.opened_before"] = ["must be an ISO 8601 date-time with a timezone"]
            else:
                q &= Q(opened_at__lt=parsed)
        else:
            errors[f"filter.{key}"] = [f"unknown filter; use {', '.join(FILTER_KEYS)}"]
    if errors:
        raise BulkResolveError(errors)
    return queryset.filter(q)


def _parse_datetime(value: Any) -> datetime | None:
    from django.utils.dateparse import parse_datetime

    parsed = parse_datetime(str(value)) if isinstance(value, str) else None
    return parsed if parsed is not None and parsed.tzinfo is not None else None


def incidents_bulk_resolve(
    *,
    user: User,
    resolution_reason: str,
    ids: Sequence | None = None,
    filters: dict[str, Any] | None = None,
    note: str = "",
    close: bool = False,
    now: datetime | None = None,
) -> BulkResolveOutcome:
    """Resolve (and with ``close``, close) the listed incidents or those a filter matches, ≤ 1,000.

    All or nothing: every id must be an open incident of the caller's teams, and with ``close`` every
    high/critical one needs its RCA complete; any problem raises ``BulkResolveError`` naming it. Locks
    the rows, then one guarded UPDATE per step, one bulk insert of timeline entries and one audit entry
    per incident and step.
    """
    now = now or timezone.now()
    errors: dict[str, list[str]] = {}
    try:
        reason = resolution_reason_clean(resolution_reason, required=True)
    except IncidentInvalid as exc:
        errors.update(exc.fields)
    note = (note or "").strip()
    if len(note) > 5000:
        errors["note"] = ["longer than 5000 characters"]
    if (ids is None) == (filters is None):
        errors["ids"] = ["give either ids or filter (exactly one)"]
    if errors:
        raise BulkResolveError(errors)
    scoped = scope_to_teams(Incident.objects.all(), user)
    with transaction.atomic():
        incidents = _by_ids(scoped, ids) if ids is not None else _by_filter(scoped, filters or {}, now=now)
        if close:
            blocked = {
                f"ids.{index}" if ids is not None else f"incident.{incident.id}": [
                    f"{incident.id} is {incident.severity}: its RCA lacks {', '.join(missing)}; "
                    "complete the RCA before closing"
                ]
                for index, incident in enumerate(incidents)
                if incident.severity in RCA_REQUIRED_SEVERITIES and (missing := rca.missing_fields(incident))
            }
            if blocked:
                raise BulkResolveError(blocked)
        keys = [incident.id for incident in incidents]
        template_ids = rca.template_ids()
        unlinked: dict[Any, list] = {}  # template id -> incidents of that type without a template
        for incident in incidents:
            if incident.rca_template_id is None:
                template_id = rca.template_id_for(incident.incident_type, template_ids)
                unlinked.setdefault(template_id, []).append(incident.id)
        changed = Incident.objects.filter(pk__in=keys, status__in=ALLOWED_FROM[IncidentStatus.RESOLVED]).update(
            status=IncidentStatus.RESOLVED,
            resolved_at=now,
            resolution_reason=reason,
            next_escalation_at=None,
            escalation_token=STOPPED_TOKEN,
            last_activity_at=now,
            updated_at=now,
        )
        if changed != len(keys):  # impossible under the row locks; never half-write
            raise BulkResolveError({"ids": ["an incident changed while resolving; nothing was changed, retry"]})
        for template_id, group in unlinked.items():  # one UPDATE per incident type, at most
            if template_id is not None:
                Incident.objects.filter(pk__in=group).update(rca_template_id=template_id)
        actor_name = describe_actor(user)[0]
        message = f"Resolved in bulk: {reason}." + (f" {note}" if note else "")
        events = [
            IncidentEvent(
                incident_id=key,
                kind=IncidentEventKind.RESOLVED,
                at=now,
                actor=actor_name,
                message=message,
                data={"resolution_reason": reason, "bulk": True},
            )  # fmt: skip
            for key in keys
        ]
        entries = [
            AuditEntry(
                action=AuditAction.INCIDENT_RESOLVED,
                actor=user,
                object_type=Incident._meta.label_lower,
                object_id=str(key),
                data={"status": "resolved", "resolution_reason": reason, "bulk": True, "note": note[:500]},
            )  # fmt: skip
            for key in keys
        ]
        closed = 0
        if close:
            closed = Incident.objects.filter(pk__in=keys, status=IncidentStatus.RESOLVED).update(
                status=IncidentStatus.CLOSED, closed_at=now, updated_at=now
            )
            events += [
                IncidentEvent(
                    incident_id=key,
                    kind=IncidentEventKind.CLOSED,
                    at=now,
                    actor=actor_name,
                    message=f"Closed in bulk: {reason}.",
                    data={"bulk": True},
                )  # fmt: skip
                for key in keys
            ]
            entries += [
                AuditEntry(
                    action=AuditAction.INCIDENT_CLOSED,
                    actor=user,
                    object_type=Incident._meta.label_lower,
                    object_id=str(key),
                    data={"status": "closed", "reason": reason, "bulk": True},
                )  # fmt: skip
                for key in keys
            ]
        IncidentEvent.objects.bulk_create(events, batch_size=MAX_BULK_INCIDENTS)
        audit_record_many(entries=entries)
    return BulkResolveOutcome(resolved=len(keys), closed=closed, ids=keys)


def _by_ids(scoped, ids: Sequence) -> list[Incident]:
    if not ids:
        raise BulkResolveError({"ids": ["give at least one id"]})
    if len(ids) > MAX_BULK_INCIDENTS:
        raise BulkResolveError(
            {"ids": [f"{len(ids):,} ids; at most {MAX_BULK_INCIDENTS:,} per request"]}, too_many=True
        )
    valid = [str(i) for i in ids if is_uuid(i)]
    found = {
        str(incident.id): incident
        for incident in scoped.select_for_update(of=("self",)).select_related("rca_template").filter(pk__in=valid)
    }
    errors: dict[str, list[str]] = {}
    seen: set[str] = set()
    for index, raw in enumerate(ids):
        key = str(as_uuid(raw)) if is_uuid(raw) else str(raw)
        incident = found.get(key)
        if key in seen:
            errors[f"ids.{index}"] = [f"{key} is listed twice"]
        elif incident is None:
            errors[f"ids.{index}"] = [f"no incident {key} in your teams"]
        elif incident.status not in OPEN_INCIDENT_STATUSES:
            errors[f"ids.{index}"] = [f"{key} is already {incident.status}; only open incidents can be resolved"]
        seen.add(key)
    if errors:
        raise BulkResolveError(errors)
    return [found[str(as_uuid(raw))] for raw in ids]


def _by_filter(scoped, filters: dict[str, Any], *, now: datetime) -> list[Incident]:
    matching = incidents_matching(scoped, filters, now=now)
    keys = list(matching.order_by("opened_at", "id").values_list("id", flat=True)[: MAX_BULK_INCIDENTS + 1])
    if len(keys) > MAX_BULK_INCIDENTS:
        raise BulkResolveError(
            {"filter": [f"matches {matching.count():,} incidents; at most {MAX_BULK_INCIDENTS:,} per request"]}
        )
    if not keys:
        raise BulkResolveError({"filter": ["matches no open incident you may resolve"]})
    locked = Incident.objects.select_for_update(of=("self",)).select_related("rca_template").filter(pk__in=keys)
    incidents = [i for i in locked if i.status in OPEN_INCIDENT_STATUSES]
    if len(incidents) != len(keys):
        raise BulkResolveError({"filter": ["incidents changed while selecting; nothing was changed, retry"]})
    return sorted(incidents, key=lambda i: (i.opened_at, i.id))
