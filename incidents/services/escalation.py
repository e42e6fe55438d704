"""SLA escalation: each step of an incident's frozen escalation policy happens exactly once.

An incident carries its escalation policy as it was when it opened (``escalation_snapshot``), the
time of its next step (``next_escalation_at``) and a token (``escalation_token``) that changes with
every step and every transition (OnCall's pattern). While it is not acknowledged, the breached target
is the acknowledge target (``sla_due_at``); once acknowledged, the resolve target (``resolve_due_at``).
Step *k* is due at ``breach_at + steps[k].after_minutes``; after the last step the last one repeats
every ``repeat_last_every_minutes`` (none: escalation stops, ``next_escalation_at`` becomes NULL).

The tick (:func:`escalate_due_incidents`) is set-based. Per chunk of ≤ 1,000 incidents, in one
transaction:

1. claim due rows in index order with ``SELECT … FOR UPDATE SKIP LOCKED`` (a concurrent tick takes
   other rows instead of waiting), reading the values the plan is computed from under the lock;
2. one guarded ``UPDATE … WHERE id = v.id AND escalation_token = v.expected_token AND status IN
   (open…) AND next_escalation_at <= now RETURNING`` that bumps the level, sets the next step's time,
   a new token, ``last_escalated_at`` and any reassignment — a compare-and-swap on the token, so a
   row someone else escalated, acknowledged or resolved meanwhile is left alone;
3. side effects only for the rows the UPDATE returned: timeline entries, ``incident.escalated``
   audit entries and notification outbox rows (unique ``dedupe_key``), all bulk inserts.

Two ticks at once therefore escalate each incident once per step. A missed tick catches up: every
step whose time passed fires, in order (missed repeats are skipped, not replayed). An acknowledgement
that comes after the resolve target already passed starts at the step that time warrants.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import TextField
from django.db.models.functions import Cast
from django.utils import timezone

from config import registry
from governance.choices import AuditAction, Role
from governance.services.audit import AuditEntry, audit_record_many
from incidents.models import OPEN_INCIDENT_STATUSES, Incident, IncidentEvent, IncidentEventKind
from incidents.services.notifications import (
    Directory,
    IncidentRef,
    directory_load,
    notification_build,
    notification_targets,
    notifications_store,
    notify_usernames,
    rows_insert,
)
from incidents.services.notifications import dedupe_key as notification_dedupe_key

logger = logging.getLogger(__name__)

ESCALATION_ACTOR = "incidents.lifecycle"
MAX_CHUNK_SIZE = 1000
# A snapshot without steps still escalates (level, timeline, audit) at the breach, notifying nobody.
DEFAULT_STEPS = ({"after_minutes": 0},)

_ROW_FIELDS = (
    "id",
    "title",
    "severity",
    "status",
    "team_id",
    "assignee_id",
    "system__name",
    "acknowledged_at",
    "sla_due_at",
    "resolve_due_at",
    "next_escalation_at",
    "escalation_token",
    "escalation_level",
    "reopened_count",
)


@dataclass(frozen=True)
class EscalationRun:
    escalated: int  # escalations (an incident catching up on missed steps counts once per step)
    notifications: int  # outbox rows queued
    incident_ids: tuple[Any, ...] = ()  # one entry per escalation


# --- the policy arithmetic (pure) ------------------------------------------------------------------
@dataclass(frozen=True)
class StepDue:
    index: int  # 0-based position in the snapshot's steps
    step: Mapping[str, Any]
    repeat: bool  # a repetition of the last step
    next_at: datetime | None  # when the following step (or repetition) is due; None = escalation ends


def breach_of(row: Mapping[str, Any]) -> tuple[str, datetime | None]:
    """Which SLA target an incident is escalating on: ``("ack", sla_due_at)`` until it is acknowledged,
    ``("resolve", resolve_due_at)`` afterwards."""
    if row["acknowledged_at"] is None:
        return "ack", row["sla_due_at"]
    return "resolve", row["resolve_due_at"]


def step_due(*, snapshot: Mapping[str, Any], breach_at: datetime, scheduled_at: datetime, now: datetime) -> StepDue:
    """The step that fires when the escalation scheduled at ``scheduled_at`` runs, and when the next
    one is due. The step is the last one whose time (``breach_at + after_minutes``) is at or before
    ``scheduled_at`` (the first step when none is, e.g. an escalation run early on demand)."""
    steps = list(snapshot.get("steps") or DEFAULT_STEPS)
    times = [breach_at + timedelta(minutes=step["after_minutes"]) for step in steps]
    index = max((k for k, at in enumerate(times) if at <= scheduled_at), default=0)
    last = len(steps) - 1
    if index < last:
        return StepDue(index=index, step=steps[index], repeat=False, next_at=times[index + 1])
    repeat = scheduled_at > times[last]
    every = snapshot.get("repeat_last_every_minutes")
    if not every:
        return StepDue(index=last, step=steps[last], repeat=repeat, next_at=None)
    period = timedelta(minutes=every)
    next_at = max(scheduled_at, times[last]) + period
    if next_at <= now:  # repetitions missed while no tick ran are skipped, not replayed
        next_at += period * ((now - next_at) // period + 1)
    return StepDue(index=last, step=steps[last], repeat=repeat, next_at=next_at)


# --- reassignment ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Reassignment:
    assignee_id: Any
    team_id: Any
    changed: bool  # whether the UPDATE sets assignee/team
    label: str | None  # "lena", "team:credit-risk", or None
    unresolved: str | None = None  # the reassign_to value nobody matched


def reassignment_for(spec: str | None, *, team_id: Any, assignee_id: Any, directory: Directory) -> Reassignment:
    """Where ``reassign_to`` sends an incident: ``team_lead`` (a governance lead of its team),
    ``role:<r>`` (a member of its team with that role; any admin for ``role:admin``), ``user:<name>``
    (that user, if on the team or an admin), ``team:<slug>`` (moves it to that team, unassigned).
    The current assignee is kept when they already qualify; nobody matching keeps the incident as
    it is (``unresolved`` says what failed)."""
    unchanged = Reassignment(assignee_id=assignee_id, team_id=team_id, changed=False, label=None)
    if not spec:
        return unchanged
    kind, _, name = spec.partition(":")
    if kind == "team":
        team = directory.team_by_slug(name)
        if team is None:
            return Reassignment(assignee_id, team_id, False, None, unresolved=spec)
        if team.id == team_id:
            return unchanged
        return Reassignment(assignee_id=None, team_id=team.id, changed=True, label=f"team:{team.slug}")
    if spec == "team_lead":
        candidates = directory.with_role(Role.GOVERNANCE_LEAD, team_id=team_id)
    elif kind == "role":
        candidates = directory.with_role(name, team_id=team_id)
    elif kind == "user":
        person = directory.person_by_username(name)
        on_team = person is not None and (person in directory.members.get(team_id, ()) or person.is_admin)
        candidates = (person,) if on_team else ()
    else:
        candidates = ()
    if not candidates:
        return Reassignment(assignee_id, team_id, False, None, unresolved=spec)
    current = next((person for person in candidates if person.id == assignee_id), None)
    chosen = current or candidates[0]
    return Reassignment(assignee_id=chosen.id, team_id=team_id, changed=current is None, label=chosen.username)


# --- the set-based escalation of claimed rows ---------------------------------------------------------
@dataclass(frozen=True)
class _Plan:
    row: Mapping[str, Any]
    due: StepDue
    breach: str
    breach_at: datetime
    new_token: str
    reassignment: Reassignment


def _plan(row: Mapping[str, Any], *, now: datetime, directory: Directory) -> _Plan:
    breach, breach_at = breach_of(row)
    scheduled_at = row["next_escalation_at"] or now
    breach_at = breach_at or scheduled_at
    due = step_due(snapshot=row["escalation_snapshot"] or {}, breach_at=breach_at, scheduled_at=scheduled_at, now=now)
    reassignment = reassignment_for(
        due.step.get("reassign_to"), team_id=row["team_id"], assignee_id=row["assignee_id"], directory=directory
    )
    return _Plan(row, due, breach, breach_at, uuid.uuid4().hex, reassignment)


def _directory_for(rows: Sequence[Mapping[str, Any]]) -> Directory:
    steps = [step for row in rows for step in (row["escalation_snapshot"] or {}).get("steps", [])]
    slugs = {
        step["reassign_to"].partition(":")[2] for step in steps if (step.get("reassign_to") or "").startswith("team:")
    }
    return directory_load(
        team_ids={row["team_id"] for row in rows},
        user_ids={row["assignee_id"] for row in rows},
        usernames=notify_usernames(steps),
        team_slugs=slugs,
    )


# The chunk travels as one JSON array of [id, expected token, next time, new token, reassign?, assignee,
# team] (binding one text parameter is far cheaper than quoting thousands of values client-side).
_POSTGRES_UPDATE = """
UPDATE incidents AS i SET
    escalation_level = i.escalation_level + 1,
    next_escalation_at = (v.value ->> 2)::timestamptz,
    escalation_token = v.value ->> 3,
    last_escalated_at = %s,
    updated_at = %s,
    assignee_id = CASE WHEN (v.value ->> 4)::boolean THEN (v.value ->> 5)::uuid ELSE i.assignee_id END,
    team_id = COALESCE((v.value ->> 6)::uuid, i.team_id)
FROM jsonb_array_elements(%s::jsonb) AS v(value)
WHERE i.id = (v.value ->> 0)::uuid AND i.escalation_token = v.value ->> 1 AND i.status IN (%s, %s, %s) {due}
RETURNING i.id, i.escalation_level
"""

# SQLite (development): the same statement (UPDATE … FROM and RETURNING need SQLite ≥ 3.35).
_SQLITE_UPDATE = """
UPDATE incidents SET
    escalation_level = escalation_level + 1,
    next_escalation_at = json_extract(v.value, '$[2]'),
    escalation_token = json_extract(v.value, '$[3]'),
    last_escalated_at = %s,
    updated_at = %s,
    assignee_id = CASE WHEN json_extract(v.value, '$[4]') THEN json_extract(v.value, '$[5]')
                       ELSE incidents.assignee_id END,
    team_id = COALESCE(json_extract(v.value, '$[6]'), incidents.team_id)
FROM json_each(%s) AS v
WHERE incidents.id = json_extract(v.value, '$[0]') AND incidents.escalation_token = json_extract(v.value, '$[1]')
    AND incidents.status IN (%s, %s, %s) {due}
RETURNING incidents.id, incidents.escalation_level
"""


def _guarded_update(plans: Sequence[_Plan], *, now: datetime, require_due: bool) -> dict[Any, int]:
    """The one UPDATE of a chunk; returns ``{incident id: new level}`` for the rows it changed."""
    postgres = connection.vendor == "postgresql"
    # Values as each database stores them: PostgreSQL parses ISO times and dashed UUIDs; Django keeps
    # SQLite datetimes as naive UTC text and UUIDs as 32 hex digits.
    if postgres:
        moment, ident = (lambda value: value and value.isoformat()), (lambda value: value and str(value))
    else:
        moment, ident = connection.ops.adapt_datetimefield_value, (lambda value: value and uuid.UUID(str(value)).hex)
    batch = [
        [
            ident(plan.row["id"]),
            plan.row["escalation_token"],
            moment(plan.due.next_at),
            plan.new_token,
            plan.reassignment.changed,
            ident(plan.reassignment.assignee_id),
            ident(plan.reassignment.team_id) if plan.reassignment.changed else None,
        ]
        for plan in plans
    ]
    sql = (_POSTGRES_UPDATE if postgres else _SQLITE_UPDATE).format(
        due=f"AND {'i' if postgres else 'incidents'}.next_escalation_at <= %s" if require_due else ""
    )
    now_value = now if postgres else connection.ops.adapt_datetimefield_value(now)
    params = [now_value, now_value, json.dumps(batch), *[str(status) for status in OPEN_INCIDENT_STATUSES]]
    if require_due:
        params.append(now_value)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return {uuid.UUID(str(incident_id)): level for incident_id, level in cursor.fetchall()}


def _describe(plan: _Plan, *, level: int, notified: int) -> str:
    steps = len((plan.row["escalation_snapshot"] or {}).get("steps") or DEFAULT_STEPS)
    what = "acknowledge" if plan.breach == "ack" else "resolve"
    text = (
        f"Escalated to level {level}: {what} target breached at {plan.breach_at:%Y-%m-%d %H:%M} UTC, "
        f"step {plan.due.index + 1} of {steps}{' (repeated)' if plan.due.repeat else ''}."
    )
    if plan.reassignment.label:
        text += f" Reassigned to {plan.reassignment.label}."
    if notified:
        text += f" {notified} notification{'s' if notified != 1 else ''} queued."
    if plan.due.next_at is None:
        text += " Escalation policy exhausted."
    return text


def _rows_escalate(rows: Sequence[Mapping[str, Any]], *, now: datetime, require_due: bool) -> tuple[list[Any], int]:
    """Escalate claimed rows (call inside ``transaction.atomic`` with the rows locked): the guarded
    UPDATE, then timeline, audit and notifications for the rows it returned. Returns (ids, notices)."""
    if not rows:
        return [], 0
    directory = _directory_for(rows)
    plans = [_plan(row, now=now, directory=directory) for row in rows]
    levels = _guarded_update(plans, now=now, require_due=require_due)
    if not levels:
        return [], 0
    notification_settings = registry.get("incidents.notifications")
    timeline, audit, notices = [], [], []
    for plan in plans:
        incident_id = plan.row["id"]
        level = levels.get(incident_id)
        if level is None:  # changed meanwhile (acknowledged, resolved, escalated): not ours any more
            continue
        team_id = plan.reassignment.team_id
        incident = IncidentRef(id=incident_id, team_id=team_id, assignee_id=plan.reassignment.assignee_id)
        targets = notification_targets(
            incident, plan.due.step, directory=directory, notification_settings=notification_settings
        )
        data = {
            "level": level,
            "step": plan.due.index + 1,
            "repeat": plan.due.repeat,
            "breach": plan.breach,
            "breach_at": plan.breach_at.isoformat(),
            "reassigned_to": plan.reassignment.label,
            "next_escalation_at": plan.due.next_at.isoformat() if plan.due.next_at else None,
            "notified": len(targets),
        }
        if plan.reassignment.unresolved:
            data["reassign_unresolved"] = plan.reassignment.unresolved
        message = _describe(plan, level=level, notified=len(targets))
        timeline.append(
            {
                "incident_id": incident_id,
                "kind": IncidentEventKind.ESCALATED,
                "at": now,
                "actor": ESCALATION_ACTOR,
                "message": message,
                "data": data,
            }
        )
        audit.append(
            AuditEntry(
                action=AuditAction.INCIDENT_ESCALATED,
                actor=ESCALATION_ACTOR,
                object_type=Incident._meta.label_lower,
                object_id=str(incident_id),
                data=data,
            )
        )
        team = directory.teams.get(team_id)
        payload = {
            "event": "incident.escalated",
            "message": message,
            "level": level,
            "step": plan.due.index + 1,
            "breach": plan.breach,
            "incident": {
                "id": str(incident_id),
                "title": plan.row["title"],
                "severity": plan.row["severity"],
                "status": plan.row["status"],
                "team": team.slug if team else None,
                "system": plan.row["system__name"],
                "assignee": plan.reassignment.label if plan.reassignment.changed else None,
            },
        }
        subject = f"[{plan.row['severity']}] Incident escalated to level {level}: {plan.row['title']}"
        # Reopening restarts the levels at 1, so the reopen count keeps the keys of each life apart.
        reopened = f"/r{plan.row['reopened_count']}" if plan.row["reopened_count"] else ""
        prefix = f"escalation:{incident_id}{reopened}:{level}"
        notices += [
            notification_build(
                incident_id=incident_id,
                channel=channel,
                target=target,
                kind="escalation",
                subject=subject,
                payload=payload,
                key=notification_dedupe_key(prefix, channel, target),
            )
            for channel, target in targets
        ]
    rows_insert(IncidentEvent, timeline)
    stored = notifications_store(notices)
    audit_record_many(entries=audit)  # last: the audit chain lock is then held only until commit
    return list(levels), stored


def _claim(*, due_before: datetime, limit: int, incident_ids: Sequence[Any] | None = None) -> list[dict[str, Any]]:
    """Lock up to ``limit`` open incidents whose next escalation is due by ``due_before``, in the order
    of the ``incident_escalation_due`` index, skipping rows another transaction holds."""
    query = Incident.objects.filter(status__in=OPEN_INCIDENT_STATUSES, next_escalation_at__lte=due_before)
    if incident_ids is not None:
        query = query.filter(pk__in=list(incident_ids))
    locked = query.select_for_update(skip_locked=True, of=("self",)).order_by("next_escalation_at", "id")
    return _with_snapshots(locked, limit=limit)


def _with_snapshots(query, *, limit: int) -> list[dict[str, Any]]:
    """The rows' ``_ROW_FIELDS`` plus ``escalation_snapshot``, read as text and parsed once per distinct
    policy (a chunk of 1,000 incidents usually shares one or two; decoding each row's copy was a
    tenth of the tick)."""
    as_text = query.annotate(snapshot_json=Cast("escalation_snapshot", TextField()))
    rows = list(as_text.values(*_ROW_FIELDS, "snapshot_json")[:limit])
    parsed: dict[str, dict[str, Any]] = {}
    for row in rows:
        text = row.pop("snapshot_json") or "{}"
        if text not in parsed:
            parsed[text] = json.loads(text)
        row["escalation_snapshot"] = parsed[text]
    return rows


def _escalate_in_chunks(
    *, now: datetime, due_before: datetime, chunk_size: int, incident_ids: Sequence[Any] | None = None
) -> EscalationRun:
    chunk_size = max(1, min(chunk_size, MAX_CHUNK_SIZE))
    escalated: list[Any] = []
    notifications = 0
    while True:
        with transaction.atomic():
            rows = _claim(due_before=due_before, limit=chunk_size, incident_ids=incident_ids)
            ids, stored = _rows_escalate(rows, now=now, require_due=True)
        escalated += ids
        notifications += stored
        # Nothing claimed (all done, or the rest is locked by a concurrent tick that escalates it).
        if not ids:
            break
    return EscalationRun(escalated=len(escalated), notifications=notifications, incident_ids=tuple(escalated))


def escalate_due_incidents(*, now: datetime | None = None, chunk_size: int = MAX_CHUNK_SIZE) -> EscalationRun:
    """Escalate every open incident whose next step is due (the lifecycle tick's core).

    Guarantees: each step of each incident fires exactly once, also with several ticks running at
    once (rows are claimed with ``FOR UPDATE SKIP LOCKED`` and changed by a token compare-and-swap);
    each escalation writes one timeline entry, one ``incident.escalated`` audit entry and its
    notification outbox rows in the transaction of its chunk (≤ 1,000 incidents, a fixed number of
    queries per chunk). Steps missed while no tick ran fire now, in order. Does not send anything:
    the outbox rows are delivered after commit (:mod:`incidents.services.notifications`).
    """
    now = now or timezone.now()
    return _escalate_in_chunks(now=now, due_before=now, chunk_size=chunk_size)


def incident_escalation_step(*, incident_id: Any, token: str, now: datetime | None = None) -> bool:
    """Run the next escalation step of one incident now, if ``token`` is still its escalation token
    (the OnCall pattern for a per-incident task: a stale or duplicate delivery finds another token and
    does nothing). Locks the row (``select_for_update``); does nothing when the incident is gone, not
    open, or its policy is exhausted. Same writes as the tick. Returns whether it escalated."""
    now = now or timezone.now()
    with transaction.atomic():
        found = _with_snapshots(Incident.objects.select_for_update(of=("self",)).filter(pk=incident_id), limit=1)
        row = found[0] if found else None
        reason = None
        if row is None:
            reason = "incident not found"
        elif row["escalation_token"] != token:
            reason = "stale token (escalated, acknowledged or resolved since)"
        elif row["status"] not in OPEN_INCIDENT_STATUSES:
            reason = f"incident is {row['status']}"
        elif row["next_escalation_at"] is None:
            reason = "escalation policy exhausted"
        if reason is not None:
            logger.info("escalation step skipped: %s", reason, extra={"incident_id": str(incident_id)})
            return False
        ids, _ = _rows_escalate([row], now=now, require_due=False)
    return bool(ids)


def audit_active_escalations(*, now: datetime | None = None, grace_seconds: int = 120) -> list[Any]:
    """The auditor sweep (OnCall's ``check_escalation_finished``): open incidents whose next step is
    more than ``grace_seconds`` overdue — a missed tick, a dead worker — are escalated now through the
    same guarded path (so a tick running at the same moment cannot double them), each logged with a
    warning. Returns the ids escalated."""
    now = now or timezone.now()
    overdue_before = now - timedelta(seconds=grace_seconds)
    overdue = list(
        Incident.objects.filter(status__in=OPEN_INCIDENT_STATUSES, next_escalation_at__lt=overdue_before)
        .order_by("next_escalation_at", "id")
        .values_list("id", "next_escalation_at")[:MAX_CHUNK_SIZE]
    )
    if not overdue:
        return []
    for incident_id, due_at in overdue:
        logger.warning(
            "escalation overdue by %d s: re-kicking it", (now - due_at).total_seconds(),
            extra={"incident_id": str(incident_id)},
        )  # fmt: skip
    run = _escalate_in_chunks(
        now=now, due_before=now, chunk_size=MAX_CHUNK_SIZE, incident_ids=[incident_id for incident_id, _ in overdue]
    )
    return list(dict.fromkeys(run.incident_ids))  # an incident that caught up on two steps is listed once
