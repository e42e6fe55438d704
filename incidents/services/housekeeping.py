"""The lifecycle engine's housekeeping: auto-closing stale incidents, follow-ups, regulatory warnings.

Each job runs in chunks of ≤ 1,000 rows, each chunk in its own transaction, and claims its rows with
``SELECT … FOR UPDATE SKIP LOCKED`` before re-reading what decides the outcome in a *new* statement
(so it sees whatever a concurrent run committed before releasing the rows). That makes every job
safe to run twice at once: a follow-up is announced once, escalated once, a regulatory threshold is
warned about once, and an incident is auto-closed only if it is still stale when its lock is held.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, NamedTuple

from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from config import registry
from governance.choices import AuditAction, Role
from governance.services.audit import AuditEntry, audit_record, audit_record_many, describe_actor
from incidents.models import (
    OPEN_INCIDENT_STATUSES,
    FollowUp,
    FollowUpStatus,
    Incident,
    IncidentEvent,
    IncidentEventKind,
    IncidentStatus,
    NotificationChannel,
)
from incidents.services.lifecycle import IncidentInvalid, IncidentTransitionError, incident_close
from incidents.services.notifications import (
    Directory,
    Person,
    dedupe_key,
    directory_load,
    notification_build,
    notifications_store,
)

logger = logging.getLogger(__name__)

HOUSEKEEPING_ACTOR = "incidents.lifecycle"
CHUNK_SIZE = 1000
TITLE_MAX_LENGTH = FollowUp._meta.get_field("title").max_length
INCIDENT_LABEL = Incident._meta.label_lower


class FollowUpNotOpen(Exception):
    """The follow-up is not open (done, cancelled or gone): nothing changed (API: 409)."""

    def __init__(self, follow_up_id: Any, current: str | None):
        self.follow_up_id, self.current = follow_up_id, current
        super().__init__(f"follow-up {follow_up_id} is {current or 'gone'}, not open")


# --- auto-close ----------------------------------------------------------------------------------
def _stale_incidents(*, cutoff: datetime, severities: Sequence[str]):
    open_follow_ups = FollowUp.objects.filter(incident=OuterRef("pk"), status=FollowUpStatus.OPEN)
    return (
        Incident.objects.filter(
            severity__in=list(severities), status__in=[*OPEN_INCIDENT_STATUSES, IncidentStatus.RESOLVED]
        )
        .filter(Q(last_activity_at__lt=cutoff) | Q(last_activity_at__isnull=True, opened_at__lt=cutoff))
        .exclude(Exists(open_follow_ups))
    )


def _auto_close_one(
    *, incident_id: Any, cutoff: datetime, severities: Sequence[str], reason: str, now: datetime
) -> bool:
    with transaction.atomic():
        # Lock first, then re-check in a new statement: a note or a follow-up committed meanwhile counts.
        if not Incident.objects.select_for_update().filter(pk=incident_id).values_list("id").first():
            return False
        if not _stale_incidents(cutoff=cutoff, severities=severities).filter(pk=incident_id).exists():
            return False
        try:
            with transaction.atomic():
                incident_close(
                    incident_id=incident_id, actor=HOUSEKEEPING_ACTOR, reason=reason, now=now, automatic=True
                )
        except (IncidentInvalid, IncidentTransitionError) as exc:  # e.g. a configured severity that needs an RCA
            logger.warning("auto-close skipped: %s", exc, extra={"incident_id": str(incident_id)})
            return False
    return True


def auto_close_stale_incidents(*, now: datetime | None = None) -> int:
    """Close incidents of ``incidents.auto_close.severities`` (low, info) that are open or resolved and
    saw no activity (``last_activity_at``, else ``opened_at``) for ``days`` — never one with an open
    follow-up. Each goes through ``lifecycle.incident_close(automatic=True)`` with the reason "Auto-closed:
    no activity for N days", so it gets the usual timeline and ``incident.closed`` audit entry. Each
    incident is re-checked under its row lock, so activity or a follow-up committed meanwhile keeps it
    open. Idempotent. Returns how many were closed."""
    now = now or timezone.now()
    policy = registry.get("incidents.auto_close")
    days, severities = policy["days"], policy["severities"]
    cutoff = now - timedelta(days=days)
    reason = f"Auto-closed: no activity for {days} days"
    closed, after = 0, None
    while True:
        candidates = _stale_incidents(cutoff=cutoff, severities=severities)
        if after is not None:
            candidates = candidates.filter(pk__gt=after)
        ids = list(candidates.order_by("pk").values_list("pk", flat=True)[:CHUNK_SIZE])
        for incident_id in ids:
            closed += _auto_close_one(incident_id=incident_id, cutoff=cutoff, severities=severities, reason=reason,
                                      now=now)  # fmt: skip
        if len(ids) < CHUNK_SIZE:
            return closed
        after = ids[-1]


# --- follow-ups ----------------------------------------------------------------------------------
def _owner_problem(owner: Any, *, team_id: Any) -> str | None:
    if owner is None:
        return None
    if getattr(owner, "is_admin_role", False) or owner.teams.filter(pk=team_id).exists():
        return None
    return f"{owner.get_username()} is not on the incident's team"


def follow_up_create(
    *,
    incident_id: Any,
    title: str,
    owner: Any,
    actor: Any,
    due_date: date | None = None,
    now: datetime | None = None,
) -> FollowUp:
    """Schedule follow-up work on an incident, owned by someone of its team (or an admin; ``None``
    leaves it to the team's leads). ``due_date`` defaults to ``incidents.follow_ups.default_days`` from
    today. Locks the incident row (so auto-close, which re-checks under the same lock, cannot close it
    at the same moment), writes the follow-up, a timeline entry and a ``follow_up.created`` audit entry
    on the incident, and counts as activity. ``IncidentInvalid`` names bad fields; a missing incident
    raises ``Incident.DoesNotExist``."""
    now = now or timezone.now()
    today = timezone.localdate(now)
    text = (title or "").strip()
    problems: dict[str, list[str]] = {}
    if not text:
        problems["title"] = ["say what has to be done"]
    elif len(text) > TITLE_MAX_LENGTH:
        problems["title"] = [f"longer than {TITLE_MAX_LENGTH} characters"]
    if due_date is None:
        due_date = today + timedelta(days=registry.get("incidents.follow_ups")["default_days"])
    elif due_date < today:
        problems["due_date"] = [f"{due_date} is in the past"]
    with transaction.atomic():
        incident = Incident.objects.select_for_update().get(pk=incident_id)
        if problem := _owner_problem(owner, team_id=incident.team_id):
            problems["owner"] = [problem]
        if problems:
            raise IncidentInvalid(problems)
        follow_up = FollowUp.objects.create(incident=incident, title=text, owner=owner, due_date=due_date)
        Incident.objects.filter(pk=incident.pk).update(last_activity_at=now, updated_at=now)
        owner_name = owner.get_username() if owner else None
        data = {"follow_up_id": str(follow_up.pk), "title": text, "owner": owner_name, "due_date": due_date}
        IncidentEvent.objects.create(
            incident=incident,
            kind=IncidentEventKind.FOLLOW_UP,
            at=now,
            actor=describe_actor(actor)[0],
            message=f"Follow-up scheduled for {due_date}: {text}" + (f" (owner {owner_name})." if owner_name else "."),
            data={**data, "due_date": due_date.isoformat(), "event": "created"},
        )
        audit_record(action=AuditAction.FOLLOW_UP_CREATED, actor=actor, target=incident, data=data)
    return follow_up


def follow_up_complete(*, follow_up_id: Any, actor: Any, now: datetime | None = None) -> FollowUp:
    """open → done (a guarded update: ``FollowUpNotOpen`` when it is not open, nothing written), with a
    timeline entry and a ``follow_up.completed`` audit entry on the incident; counts as activity."""
    now = now or timezone.now()
    with transaction.atomic():
        changed = FollowUp.objects.filter(pk=follow_up_id, status=FollowUpStatus.OPEN).update(
            status=FollowUpStatus.DONE, completed_at=now, updated_at=now
        )
        if not changed:
            current = FollowUp.objects.filter(pk=follow_up_id).values_list("status", flat=True).first()
            raise FollowUpNotOpen(follow_up_id, current)
        follow_up = FollowUp.objects.select_related("incident").get(pk=follow_up_id)
        Incident.objects.filter(pk=follow_up.incident_id).update(last_activity_at=now, updated_at=now)
        IncidentEvent.objects.create(
            incident_id=follow_up.incident_id,
            kind=IncidentEventKind.FOLLOW_UP,
            at=now,
            actor=describe_actor(actor)[0],
            message=f"Follow-up done: {follow_up.title}",
            data={"follow_up_id": str(follow_up.pk), "event": "completed"},
        )
        audit_record(
            action=AuditAction.FOLLOW_UP_COMPLETED,
            actor=actor,
            target=follow_up.incident,
            data={"follow_up_id": str(follow_up.pk), "title": follow_up.title},
        )
    return follow_up


def follow_ups_schedule_on_resolve(*, now: datetime | None = None) -> int:
    """Turn the ``follow_up_date`` set when an incident was resolved into a follow-up row, owned by the
    incident's assignee: one per resolved or closed incident whose date is today or later and that
    has no follow-up due that day yet. Timeline + ``follow_up.created`` audit entry each. Idempotent
    and safe to run concurrently (rows claimed with SKIP LOCKED, existing follow-ups re-read after the
    claim). Returns how many were created."""
    now = now or timezone.now()
    today = timezone.localdate(now)
    scheduled = FollowUp.objects.filter(incident=OuterRef("pk"), due_date=OuterRef("follow_up_date"))
    created, after = 0, None
    while True:
        with transaction.atomic():
            candidates = Incident.objects.filter(
                status__in=(IncidentStatus.RESOLVED, IncidentStatus.CLOSED), follow_up_date__gte=today
            ).exclude(Exists(scheduled))
            if after is not None:
                candidates = candidates.filter(pk__gt=after)
            rows = list(
                candidates.select_for_update(skip_locked=True, of=("self",))
                .order_by("pk")
                .values("id", "title", "assignee_id", "follow_up_date")[:CHUNK_SIZE]
            )
            if not rows:
                return created
            after = rows[-1]["id"]
            # Re-read under the claim: a concurrent run that held these rows has committed by now.
            existing = set(
                FollowUp.objects.filter(incident_id__in=[row["id"] for row in rows]).values_list(
                    "incident_id", "due_date"
                )
            )
            created += _follow_ups_insert(
                [row for row in rows if (row["id"], row["follow_up_date"]) not in existing], now=now
            )
        if len(rows) < CHUNK_SIZE:
            return created


def _follow_ups_insert(rows: Sequence[Mapping[str, Any]], *, now: datetime) -> int:
    follow_ups = [
        FollowUp(
            incident_id=row["id"],
            title=f"Follow-up review: {row['title']}"[:TITLE_MAX_LENGTH],
            owner_id=row["assignee_id"],
            due_date=row["follow_up_date"],
        )
        for row in rows
    ]
    FollowUp.objects.bulk_create(follow_ups, batch_size=CHUNK_SIZE)
    IncidentEvent.objects.bulk_create(
        [
            IncidentEvent(
                incident_id=follow_up.incident_id,
                kind=IncidentEventKind.FOLLOW_UP,
                at=now,
                actor=HOUSEKEEPING_ACTOR,
                message=f"Follow-up scheduled for {follow_up.due_date} (the follow-up date set on resolve).",
                data={
                    "follow_up_id": str(follow_up.pk),
                    "due_date": follow_up.due_date.isoformat(),
                    "event": "created",
                },
            )
            for follow_up in follow_ups
        ],
        batch_size=CHUNK_SIZE,
    )
    audit_record_many(
        entries=[
            AuditEntry(
                action=AuditAction.FOLLOW_UP_CREATED,
                actor=HOUSEKEEPING_ACTOR,
                object_type=INCIDENT_LABEL,
                object_id=str(follow_up.incident_id),
                data={
                    "follow_up_id": str(follow_up.pk),
                    "title": follow_up.title,
                    "due_date": follow_up.due_date,
                    "scheduled_on_resolve": True,
                },
            )  # fmt: skip
            for follow_up in follow_ups
        ]
    )
    return len(follow_ups)


class FollowUpRun(NamedTuple):
    notified: int
    escalated: int


_FOLLOW_UP_FIELDS = ("id", "title", "due_date", "owner_id", "incident_id", "incident__team_id", "incident__title")


def _leads_or_admins(directory: Directory, *, team_id: Any) -> tuple[Person, ...]:
    """The team's governance leads; the admins when the team has none (someone must hear of it)."""
    return directory.with_role(Role.GOVERNANCE_LEAD, team_id=team_id) or directory.admins


def _claim_follow_ups(*, condition: Q, limit: int) -> list[dict[str, Any]]:
    return list(
        FollowUp.objects.select_for_update(skip_locked=True, of=("self",))
        .filter(condition, status=FollowUpStatus.OPEN)
        .order_by("due_date", "id")
        .values(*_FOLLOW_UP_FIELDS)[:limit]
    )


def _follow_ups_announce(*, today: date, now: datetime) -> int:
    """Due follow-ups not announced yet → ``notified_at`` + one email to the owner (the team's leads
    when it has no owner or the owner no address) + a timeline entry."""
    announced = 0
    while True:
        with transaction.atomic():
            rows = _claim_follow_ups(condition=Q(due_date__lte=today, notified_at__isnull=True), limit=CHUNK_SIZE)
            if not rows:
                return announced
            FollowUp.objects.filter(pk__in=[row["id"] for row in rows]).update(notified_at=now, updated_at=now)
            directory = directory_load(
                team_ids={row["incident__team_id"] for row in rows}, user_ids={row["owner_id"] for row in rows}
            )
            notices, timeline = [], []
            for row in rows:
                owner = directory.people.get(row["owner_id"])
                people = (
                    [owner] if owner and owner.email else _leads_or_admins(directory, team_id=row["incident__team_id"])
                )
                message = f"Follow-up due {row['due_date']}: {row['title']}"
                notices += _emails(
                    row, people, kind="follow_up_due", key=f"follow_up_due:{row['id']}", message=message,
                    subject=f"Follow-up due: {row['title']}",
                )  # fmt: skip
                timeline.append(
                    _follow_up_event(row, now=now, message=f"{message} — notified {_names(people)}.", event="due")
                )
            IncidentEvent.objects.bulk_create(timeline, batch_size=CHUNK_SIZE)
            notifications_store(notices)
            announced += len(rows)


def _follow_ups_escalate(*, overdue_since: date, now: datetime) -> int:
    """Follow-ups overdue since ``overdue_since`` not escalated yet → ``escalated_at`` + an email to the
    team's governance leads + a ``follow_up.escalated`` audit entry and a timeline entry."""
    escalated = 0
    while True:
        with transaction.atomic():
            rows = _claim_follow_ups(condition=Q(due_date__lte=overdue_since, escalated_at__isnull=True),
                                     limit=CHUNK_SIZE)  # fmt: skip
            if not rows:
                return escalated
            FollowUp.objects.filter(pk__in=[row["id"] for row in rows]).update(escalated_at=now, updated_at=now)
            directory = directory_load(team_ids={row["incident__team_id"] for row in rows})
            notices, timeline, audit = [], [], []
            for row in rows:
                people = _leads_or_admins(directory, team_id=row["incident__team_id"])
                days = (timezone.localdate(now) - row["due_date"]).days
                message = f"Follow-up overdue by {days} days (due {row['due_date']}): {row['title']}"
                notices += _emails(
                    row, people, kind="follow_up_overdue", key=f"follow_up_overdue:{row['id']}", message=message,
                    subject=f"Overdue follow-up: {row['title']}",
                )  # fmt: skip
                timeline.append(
                    _follow_up_event(row, now=now, message=f"{message} — escalated to {_names(people)}.",
                                     event="escalated")
                )  # fmt: skip
                audit.append(
                    AuditEntry(
                        action=AuditAction.FOLLOW_UP_ESCALATED,
                        actor=HOUSEKEEPING_ACTOR,
                        object_type=INCIDENT_LABEL,
                        object_id=str(row["incident_id"]),
                        data={
                            "follow_up_id": str(row["id"]),
                            "due_date": row["due_date"],
                            "overdue_days": days,
                            "notified": [person.username for person in people],
                        },
                    )  # fmt: skip
                )
            IncidentEvent.objects.bulk_create(timeline, batch_size=CHUNK_SIZE)
            notifications_store(notices)
            audit_record_many(entries=audit)
            escalated += len(rows)


def _names(people: Sequence[Person]) -> str:
    return ", ".join(person.username for person in people) or "nobody (no lead or admin has an address)"


def _emails(row: Mapping[str, Any], people: Sequence[Person], *, kind: str, key: str, message: str, subject: str):
    payload = {
        "event": kind,
        "message": message,
        "follow_up": {"id": str(row["id"]), "title": row["title"], "due_date": row["due_date"].isoformat()},
        "incident": {"id": str(row["incident_id"]), "title": row["incident__title"]},
    }
    return [
        notification_build(
            incident_id=row["incident_id"],
            channel=NotificationChannel.EMAIL,
            target=person.email,
            kind=kind,
            subject=subject,
            payload=payload,
            key=dedupe_key(key, NotificationChannel.EMAIL, person.email),
        )
        for person in people
        if person.email
    ]


def _follow_up_event(row: Mapping[str, Any], *, now: datetime, message: str, event: str) -> IncidentEvent:
    return IncidentEvent(
        incident_id=row["incident_id"],
        kind=IncidentEventKind.FOLLOW_UP,
        at=now,
        actor=HOUSEKEEPING_ACTOR,
        message=message,
        data={"follow_up_id": str(row["id"]), "due_date": row["due_date"].isoformat(), "event": event},
    )


def follow_ups_process(*, now: datetime | None = None) -> FollowUpRun:
    """Announce due follow-ups to their owners (once each: ``notified_at``) and escalate those overdue
    by ``incidents.follow_ups.escalate_overdue_after_days`` to the team's governance leads (once each:
    ``escalated_at``; audited as ``follow_up.escalated``). Rows are claimed with SKIP LOCKED and
    marked in the same transaction as their notices, so concurrent runs never repeat one. Returns
    ``(notified, escalated)``."""
    now = now or timezone.now()
    today = timezone.localdate(now)
    after_days = registry.get("incidents.follow_ups")["escalate_overdue_after_days"]
    notified = _follow_ups_announce(today=today, now=now)
    escalated = _follow_ups_escalate(overdue_since=today - timedelta(days=after_days), now=now)
    return FollowUpRun(notified=notified, escalated=escalated)


# --- regulatory deadlines ------------------------------------------------------------------------
@dataclass(frozen=True)
class _Warning:
    threshold_hours: int
    newly_crossed: list[int]


def regulatory_thresholds() -> list[int]:
    """Hours before an Art. 73 deadline at which its owners are warned (``warn_before_hours``), plus 0:
    a deadline that passed unreported is announced once more."""
    return sorted({int(hours) for hours in registry.get("incidents.regulatory")["warn_before_hours"]} | {0},
                  reverse=True)  # fmt: skip


def _regulatory_warning(*, deadline: datetime, now: datetime, thresholds: Sequence[int], warned: set[int]):
    crossed = [hours for hours in thresholds if deadline - timedelta(hours=hours) <= now]
    new = [hours for hours in crossed if hours not in warned]
    if not new:
        return None
    # Several thresholds crossed at once (marked serious late, a missed tick): one warning, the closest.
    return _Warning(threshold_hours=min(new), newly_crossed=new)


def regulatory_deadlines_warn(*, now: datetime | None = None) -> int:
    """Warn the team's governance leads and every admin as an unreported serious incident's EU AI Act
    Art. 73 deadline (``regulatory_deadline_at``) nears: once per ``warn_before_hours`` threshold (and
    once when it passes). Several thresholds crossed at the same time give one warning, the closest
    one, and count as warned. Each warning is a timeline entry (kind ``regulatory``, recording the
    thresholds it covers — the marker that makes it once) and an email per recipient (dedupe key per
    incident and threshold). Concurrent runs are safe (SKIP LOCKED, markers re-read after the claim).
    Returns how many warnings were issued."""
    now = now or timezone.now()
    thresholds = regulatory_thresholds()
    horizon = now + timedelta(hours=thresholds[0])
    warnings, after = 0, None
    while True:
        with transaction.atomic():
            candidates = Incident.objects.filter(
                serious=True, regulatory_reported_at__isnull=True, regulatory_deadline_at__lte=horizon
            )
            if after is not None:
                candidates = candidates.filter(pk__gt=after)
            rows = list(
                candidates.select_for_update(skip_locked=True, of=("self",))
                .order_by("pk")
                .values("id", "title", "severity", "team_id", "regulatory_deadline_at", "regulatory_basis")[:CHUNK_SIZE]
            )
            if not rows:
                return warnings
            after = rows[-1]["id"]
            warnings += _regulatory_warn_rows(rows, now=now, thresholds=thresholds)
        if len(rows) < CHUNK_SIZE:
            return warnings


def _regulatory_warn_rows(rows: Sequence[Mapping[str, Any]], *, now: datetime, thresholds: Sequence[int]) -> int:
    warned: dict[Any, set[int]] = {}
    for incident_id, data in IncidentEvent.objects.filter(
        incident_id__in=[row["id"] for row in rows], kind=IncidentEventKind.REGULATORY
    ).values_list("incident_id", "data"):
        warned.setdefault(incident_id, set()).update((data or {}).get("warned_hours", []))
    directory = directory_load(team_ids={row["team_id"] for row in rows})
    timeline, notices = [], []
    for row in rows:
        deadline = row["regulatory_deadline_at"]
        warning = _regulatory_warning(
            deadline=deadline, now=now, thresholds=thresholds, warned=warned.get(row["id"], set())
        )
        if warning is None:
            continue
        people = directory.leads_and_admins(team_id=row["team_id"])
        left = deadline - now
        when = (
            f"passed on {deadline:%Y-%m-%d %H:%M} UTC"
            if left <= timedelta(0)
            else f"due in {_hours(left)} (by {deadline:%Y-%m-%d %H:%M} UTC)"
        )
        message = f"EU AI Act Art. 73 report {when}, not reported yet: {row['title']}"
        timeline.append(
            IncidentEvent(
                incident_id=row["id"],
                kind=IncidentEventKind.REGULATORY,
                at=now,
                actor=HOUSEKEEPING_ACTOR,
                message=f"{message} — warned {_names(people)}.",
                data={
                    "threshold_hours": warning.threshold_hours,
                    "warned_hours": warning.newly_crossed,
                    "deadline_at": deadline.isoformat(),
                    "notified": [person.username for person in people],
                },
            )
        )
        payload = {
            "event": "regulatory_deadline",
            "message": message,
            "threshold_hours": warning.threshold_hours,
            "deadline_at": deadline.isoformat(),
            "basis": row["regulatory_basis"],
            "incident": {"id": str(row["id"]), "title": row["title"], "severity": row["severity"]},
        }
        key = f"regulatory:{row['id']}:{warning.threshold_hours}h"
        notices += [
            notification_build(
                incident_id=row["id"],
                channel=NotificationChannel.EMAIL,
                target=person.email,
                kind="regulatory",
                subject=f"[Art. 73] Report {when}: {row['title']}",
                payload=payload,
                key=dedupe_key(key, NotificationChannel.EMAIL, person.email),
            )
            for person in people
            if person.email
        ]
    IncidentEvent.objects.bulk_create(timeline, batch_size=CHUNK_SIZE)
    notifications_store(notices)
    return len(timeline)


def _hours(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:.0f} h" if hours >= 1 else f"{max(delta.total_seconds() // 60, 1):.0f} min"
