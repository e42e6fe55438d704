"""Incident notifications: who is told (targets), whether a webhook target may be called, and delivery.

A notification is an outbox row (``incidents.Notification``) written in the transaction of the step
that caused it, with a unique ``dedupe_key`` so a step that runs twice cannot notify twice. Delivery
happens after commit, one row at a time (``incidents.deliver_notification``): email through Django's
email backend, webhooks as a JSON POST signed with HMAC-SHA256 (``X-Vigil-Signature``).

Webhook targets are checked before every send (not only when configured, because DNS can change):
http(s) only, no credentials in the URL, and the host must resolve to public addresses only, unless
``incidents.notifications.allow_private_targets`` is set or the host is in ``allowed_hosts``. A
refused row never sends and is not retried.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import smtplib
import socket
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, NamedTuple
from urllib.parse import urlsplit
from uuid import UUID, uuid4

import requests
from django.conf import settings as django_settings
from django.core.mail import send_mail
from django.db import connection, transaction
from django.db.models import F, Model, Q
from django.utils import timezone

from config import registry
from governance.choices import Role
from governance.models import Team, User
from incidents.models import (
    Incident,
    IncidentEvent,
    IncidentEventKind,
    Notification,
    NotificationChannel,
    NotificationStatus,
)

logger = logging.getLogger(__name__)

NOTIFIER_ACTOR = "incidents.notifications"
DEDUPE_KEY_MAX_LENGTH = Notification._meta.get_field("dedupe_key").max_length
LAST_ERROR_MAX_LENGTH = Notification._meta.get_field("last_error").max_length
SUBJECT_MAX_LENGTH = Notification._meta.get_field("subject").max_length
# HTTP answers worth another attempt; any other non-2xx answer is final (the receiver said no).
RETRYABLE_HTTP_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
DELIVERY_BATCH_SIZE = 100


class NotificationTransientError(Exception):
    """Delivery failed in a way a later attempt may fix (network error, timeout, 5xx/429). Raised by
    :func:`notification_deliver` *after* the failure is recorded, so the task can retry with backoff."""


# --- who is told ------------------------------------------------------------------------------------
class IncidentRef(NamedTuple):
    """What targeting needs of an incident, without building a model instance per row."""

    id: Any
    team_id: Any
    assignee_id: Any


@dataclass(frozen=True)
class Person:
    id: UUID
    username: str
    email: str
    roles: frozenset[str]

    @property
    def is_admin(self) -> bool:
        return Role.ADMIN in self.roles


@dataclass(frozen=True)
class TeamInfo:
    id: UUID
    slug: str
    email: str


@dataclass
class Directory:
    """The people and teams a batch of incidents may notify or be reassigned to, loaded in four
    queries whatever the batch size (so the escalation tick never queries per incident)."""

    teams: dict[UUID, TeamInfo] = field(default_factory=dict)
    members: dict[UUID, tuple[Person, ...]] = field(default_factory=dict)  # team id -> members by username
    people: dict[UUID, Person] = field(default_factory=dict)
    admins: tuple[Person, ...] = ()

    def team_by_slug(self, slug: str) -> TeamInfo | None:
        return next((team for team in self.teams.values() if team.slug == slug), None)

    def person_by_username(self, username: str) -> Person | None:
        return next((person for person in self.people.values() if person.username == username), None)

    def with_role(self, role: str, *, team_id: Any) -> tuple[Person, ...]:
        """Members of the team holding ``role``; for ``admin`` every admin (admins are not team-scoped:
        they see every team, so an escalation to admins reaches all of them)."""
        if role == Role.ADMIN:
            return self.admins
        return tuple(person for person in self.members.get(team_id, ()) if role in person.roles)

    def leads_and_admins(self, *, team_id: Any) -> tuple[Person, ...]:
        leads = self.with_role(Role.GOVERNANCE_LEAD, team_id=team_id)
        return leads + tuple(admin for admin in self.admins if admin not in leads)


def directory_load(
    *,
    team_ids: Iterable[Any] = (),
    user_ids: Iterable[Any] = (),
    usernames: Iterable[str] = (),
    team_slugs: Iterable[str] = (),
) -> Directory:
    """Active human users of these teams (with their roles and emails), the named users, every admin,
    and the teams themselves (by id or slug). Service accounts are never notified."""
    team_ids = {team_id for team_id in team_ids if team_id is not None}
    team_slugs = set(team_slugs)
    teams = {
        row["id"]: TeamInfo(id=row["id"], slug=row["slug"], email=row["email"])
        for row in Team.objects.filter(Q(pk__in=team_ids) | Q(slug__in=team_slugs)).values("id", "slug", "email")
    }
    memberships = list(User.teams.through.objects.filter(team_id__in=list(teams)).values_list("team_id", "user_id"))
    wanted_ids = {user_id for _, user_id in memberships} | {user_id for user_id in user_ids if user_id is not None}
    users = list(
        User.objects.filter(is_active=True, is_service_account=False)
        .filter(
            Q(pk__in=wanted_ids) | Q(username__in=set(usernames)) | Q(groups__name=Role.ADMIN) | Q(is_superuser=True)
        )
        .distinct()
        .values("id", "username", "email", "is_superuser")
    )
    roles: dict[UUID, set[str]] = {row["id"]: set() for row in users}
    for user_id, role in User.groups.through.objects.filter(user_id__in=list(roles)).values_list(
        "user_id", "group__name"
    ):
        roles[user_id].add(role)
    people = {
        row["id"]: Person(
            id=row["id"],
            username=row["username"],
            email=row["email"] or "",
            roles=frozenset(roles[row["id"]] | ({Role.ADMIN} if row["is_superuser"] else set())),
        )
        for row in users
    }
    members: dict[UUID, list[Person]] = {team_id: [] for team_id in teams}
    for team_id, user_id in memberships:
        if user_id in people:
            members[team_id].append(people[user_id])
    return Directory(
        teams=teams,
        members={team_id: tuple(sorted(found, key=lambda p: p.username)) for team_id, found in members.items()},
        people=people,
        admins=tuple(sorted((p for p in people.values() if p.is_admin), key=lambda p: p.username)),
    )


def notify_entry_people(entry: str, *, team_id: Any, assignee_id: Any, directory: Directory) -> list[Person]:
    """The people one ``notify`` entry of an escalation step names: ``assignee``, ``team`` (every
    member), ``role:<role>`` (members with that role; every admin for ``role:admin``), ``user:<name>``."""
    if entry == "assignee":
        person = directory.people.get(assignee_id)
        return [person] if person else []
    if entry == "team":
        return list(directory.members.get(team_id, ()))
    kind, _, name = entry.partition(":")
    if kind == "role":
        return list(directory.with_role(name, team_id=team_id))
    if kind == "user":
        person = directory.person_by_username(name)
        return [person] if person else []
    logger.warning("unknown notify entry %r in an escalation step: ignored", entry)
    return []


def notify_usernames(steps: Iterable[Mapping[str, Any]]) -> set[str]:
    """Usernames that ``user:<name>`` entries (notify or reassign) of these steps mention."""
    names = set()
    for step in steps:
        for entry in [*step.get("notify", []), step.get("reassign_to") or ""]:
            kind, _, name = entry.partition(":")
            if kind == "user" and name:
                names.add(name)
    return names


def notification_targets(
    incident: Incident | IncidentRef,
    step: Mapping[str, Any],
    *,
    directory: Directory | None = None,
    notification_settings: Mapping[str, Any] | None = None,
) -> list[tuple[str, str]]:
    """``[(channel, target)]`` for one escalation step of one incident (an ``Incident`` or anything with
    its ``team_id`` and ``assignee_id``), without duplicates: the email
    addresses of the people its ``notify`` entries name (plus the team's own address for ``team``)
    when the step's channels include email, and every configured webhook URL when they include
    webhook. ``directory``/``notification_settings`` let a batch caller load them once."""
    channels = step.get("channels") or [NotificationChannel.EMAIL]
    if directory is None:
        directory = directory_load(
            team_ids=[incident.team_id], user_ids=[incident.assignee_id], usernames=notify_usernames([step])
        )
    targets: list[tuple[str, str]] = []
    if NotificationChannel.EMAIL in channels:
        emails: list[str] = []
        for entry in step.get("notify", []):
            if entry == "team" and (team := directory.teams.get(incident.team_id)) and team.email:
                emails.append(team.email)
            people = notify_entry_people(
                entry, team_id=incident.team_id, assignee_id=incident.assignee_id, directory=directory
            )
            emails += [person.email for person in people if person.email]
        targets += [(NotificationChannel.EMAIL, email) for email in dict.fromkeys(emails)]
    if NotificationChannel.WEBHOOK in channels:
        config = notification_settings if notification_settings is not None else registry.get("incidents.notifications")
        targets += [(NotificationChannel.WEBHOOK, url) for url in dict.fromkeys(config.get("webhook_urls", []))]
    return targets


# --- outbox rows ---------------------------------------------------------------------------------
def dedupe_key(prefix: str, channel: str, target: str) -> str:
    """``f"{prefix}:{channel}:{target}"``; a target too long for the column (a long webhook URL) is
    replaced by its SHA-256, so the key stays unique and fits."""
    key = f"{prefix}:{channel}:{target}"
    if len(key) <= DEDUPE_KEY_MAX_LENGTH:
        return key
    return f"{prefix}:{channel}:sha256:{hashlib.sha256(target.encode()).hexdigest()}"


def notification_build(
    *, incident_id: Any, channel: str, target: str, kind: str, subject: str, payload: Mapping[str, Any], key: str
) -> dict[str, Any]:
    """One outbox row (field values) for :func:`notifications_store`."""
    return {
        "incident_id": incident_id,
        "channel": channel,
        "target": target,
        "kind": kind,
        "subject": subject[:SUBJECT_MAX_LENGTH],
        "payload": dict(payload),
        "dedupe_key": key,
    }


def rows_insert(model: type[Model], rows: Sequence[Mapping[str, Any]], *, skip_conflicts_on: str | None = None) -> int:
    """Insert new rows (``{field attname: value}``; omitted fields get their model defaults, the
    primary key a fresh UUID, auto-now timestamps the current time), 1,000 per statement; returns how
    many rows were inserted.

    On PostgreSQL the batch travels as one JSON document (``INSERT … SELECT … FROM jsonb_to_recordset``):
    binding one text parameter costs a fraction of building model instances and quoting thousands of
    values client-side, which made ``bulk_create`` the slowest part of an escalation tick.
    ``skip_conflicts_on`` names a unique column: rows that collide on it are skipped (``ON CONFLICT DO
    NOTHING``). Elsewhere this is ``bulk_create`` (with ``ignore_conflicts``; the count is then the
    number offered)."""
    if not rows:
        return 0
    if connection.vendor != "postgresql":
        objects = [model(**row) for row in rows]
        model.objects.bulk_create(objects, batch_size=1000, ignore_conflicts=skip_conflicts_on is not None)
        return len(objects)
    fields = model._meta.concrete_fields
    quote = connection.ops.quote_name
    columns = ", ".join(quote(field.column) for field in fields)
    record = ", ".join(f"{quote(field.column)} {field.db_type(connection)}" for field in fields)
    conflict = f"ON CONFLICT ({quote(skip_conflicts_on)}) DO NOTHING" if skip_conflicts_on else ""
    # Only model metadata (quoted identifiers and column types) is formatted in; the rows are a parameter.
    sql = (
        f"INSERT INTO {quote(model._meta.db_table)} ({columns}) "  # noqa: S608
        f"SELECT {columns} FROM jsonb_to_recordset(%s::jsonb) AS v({record}) {conflict}"
    )
    now = timezone.now().isoformat()
    defaults: dict[str, Any] = {}
    for model_field in fields:
        if getattr(model_field, "auto_now", False) or getattr(model_field, "auto_now_add", False):
            defaults[model_field.attname] = now
        elif not model_field.primary_key:
            defaults[model_field.attname] = _json_value(model_field.get_default())
    pk_name, inserted = model._meta.pk.attname, 0  # Vigil's primary keys are UUIDs (VigilModel)
    with connection.cursor() as cursor:
        for start in range(0, len(rows), 1000):
            batch = []
            for row in rows[start : start + 1000]:
                document = {**defaults, pk_name: str(uuid4())}
                document.update((name, _json_value(value)) for name, value in row.items())
                batch.append(document)
            cursor.execute(sql, [json.dumps(batch, ensure_ascii=False)])
            inserted += cursor.rowcount
    return inserted


def _json_value(value: Any) -> Any:
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def notifications_store(rows: Sequence[Mapping[str, Any]]) -> int:
    """Insert outbox rows (:func:`notification_build`), skipping any whose ``dedupe_key`` exists
    already (in the batch or the table). Returns how many were inserted (on SQLite: how many were
    offered after de-duplicating the batch)."""
    unique = list({row["dedupe_key"]: row for row in rows}.values())
    return rows_insert(Notification, unique, skip_conflicts_on="dedupe_key")


def notifications_pending(*, limit: int = 1000) -> list[UUID]:
    """Ids of notifications waiting to be sent, oldest first (at most ``limit``; reads only)."""
    return list(
        Notification.objects.filter(status=NotificationStatus.PENDING)
        .order_by("created_at")
        .values_list("id", flat=True)[:limit]
    )


def notifications_enqueue_delivery(
    notification_ids: Sequence[Any], *, expires_seconds: int = 300, batch_size: int = DELIVERY_BATCH_SIZE
) -> None:
    """Deliver these notifications once the current transaction commits, in batches of ``batch_size``
    per ``incidents.deliver_notifications`` task (one broker message per row costs ~1 ms each; a
    batch of 100 costs the same as one). A row whose delivery fails transiently is handed on to
    ``incidents.deliver_notification``, which retries it alone with backoff. A message that waited
    longer than ``expires_seconds`` is dropped: its rows are still pending, so the next tick enqueues
    them again (delivery is idempotent)."""
    ids = [str(notification_id) for notification_id in notification_ids]
    if not ids:
        return

    def send() -> None:
        from incidents.tasks import deliver_notifications  # tasks import the services, not the reverse

        for start in range(0, len(ids), batch_size):
            deliver_notifications.apply_async(args=[ids[start : start + batch_size]], expires=expires_seconds)

    transaction.on_commit(send)


# --- webhook target check ------------------------------------------------------------------------
def _address_problem(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:10.0.0.1 reaches 10.0.0.1
    for attribute, label in (
        ("is_loopback", "loopback"),
        ("is_link_local", "link-local"),
        ("is_multicast", "multicast"),
        ("is_unspecified", "unspecified"),
        ("is_reserved", "reserved"),
        ("is_private", "private"),
    ):
        if getattr(address, attribute):
            return f"{address} is a {label} address"
    if not address.is_global:  # shared (100.64/10), documentation and other special-purpose ranges
        return f"{address} is not a public address"
    return None


@dataclass(frozen=True)
class _UrlProblem:
    reason: str
    transient: bool = False


def _webhook_url_problem(url: str, config: Mapping[str, Any]) -> _UrlProblem | None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return _UrlProblem(f"not a valid URL: {exc}")
    if parts.scheme not in ("https", "http"):
        return _UrlProblem(f"scheme {parts.scheme or '(none)'!r} is not allowed (use https or http)")
    if parts.username is not None or parts.password is not None:
        return _UrlProblem("credentials in the URL are not allowed (the receiver verifies X-Vigil-Signature)")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        return _UrlProblem("the URL has no host")
    allowed_hosts = {name.rstrip(".").lower() for name in config.get("allowed_hosts", [])}
    if config.get("allow_private_targets") or host in allowed_hosts:
        return None
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [literal]
    else:
        try:
            infos = socket.getaddrinfo(host, port or (443 if parts.scheme == "https" else 80), type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            return _UrlProblem(f"host {host!r} does not resolve: {exc}", transient=True)
        addresses = [ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos]
    for address in addresses:
        if problem := _address_problem(address):
            return _UrlProblem(f"{host} resolves to a non-public address: {problem}" if literal is None else problem)
    return None


def webhook_url_check(url: str, *, settings: Mapping[str, Any] | None = None) -> str | None:
    """Why ``url`` may not be called (a sentence), or None when it may. ``settings`` is the
    ``incidents.notifications`` value (read from the registry when omitted).

    Refused: schemes other than https/http, credentials in the URL, and hosts that are or resolve
    to private, loopback, link-local, multicast, reserved, unspecified or otherwise non-public
    addresses (IPv4-mapped IPv6 included) — unless ``allow_private_targets`` is set or the host is
    listed in ``allowed_hosts``. Resolves the host (``socket.getaddrinfo``); writes nothing."""
    config = settings if settings is not None else registry.get("incidents.notifications")
    problem = _webhook_url_problem(url, config)
    return problem.reason if problem else None


# --- delivery ------------------------------------------------------------------------------------
def email_body(payload: Mapping[str, Any]) -> str:
    lines = [str(payload.get("message", ""))]
    incident = payload.get("incident") or {}
    for label, key in (("Incident", "title"), ("Severity", "severity"), ("Status", "status"), ("Team", "team"),
                       ("AI system", "system"), ("Id", "id")):  # fmt: skip
        if incident.get(key):
            lines.append(f"{label}: {incident[key]}")
    return "\n".join(line for line in lines if line) + "\n"


def webhook_signature(body: bytes, *, secret: str) -> str:
    """``sha256=<hex HMAC-SHA256 of the exact request body>``, as sent in ``X-Vigil-Signature``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class _Attempt:
    status: str
    error: str = ""
    transient: bool = False


# Delivery channels, by NotificationChannel value: a new channel (chat, pager) is one function
# registered here plus its choice in NotificationChannel; the outbox, dedupe and retries stay as they are.
ChannelSender = Callable[[Notification], _Attempt]
CHANNEL_SENDERS: dict[str, ChannelSender] = {}


def notification_channel(name: str) -> Callable[[ChannelSender], ChannelSender]:
    """Register the function that delivers one notification row of channel ``name``."""

    def register(sender: ChannelSender) -> ChannelSender:
        CHANNEL_SENDERS[name] = sender
        return sender

    return register


@notification_channel(NotificationChannel.EMAIL)
def _send_email(notification: Notification) -> _Attempt:
    try:
        send_mail(
            notification.subject,
            email_body(notification.payload),
            django_settings.VIGIL_EMAIL_FROM,
            [notification.target],
            fail_silently=False,
        )
    except (smtplib.SMTPException, OSError) as exc:
        permanent = isinstance(exc, smtplib.SMTPRecipientsRefused)
        return _Attempt(NotificationStatus.FAILED, f"email: {type(exc).__name__}: {exc}", transient=not permanent)
    return _Attempt(NotificationStatus.SENT)


@notification_channel(NotificationChannel.WEBHOOK)
def _deliver_webhook(notification: Notification) -> _Attempt:
    return _send_webhook(notification, registry.get("incidents.notifications"))


def _send_webhook(notification: Notification, config: Mapping[str, Any]) -> _Attempt:
    problem = _webhook_url_problem(notification.target, config)
    if problem is not None:
        if problem.transient:
            return _Attempt(NotificationStatus.FAILED, problem.reason, transient=True)
        return _Attempt(NotificationStatus.REFUSED, problem.reason)
    timestamp = str(int(time.time()))
    # The timestamp is inside the signed body too, so a receiver can reject replays of old messages.
    document = {
        "id": str(notification.id),
        "kind": notification.kind,
        "subject": notification.subject,
        "timestamp": int(timestamp),
        **notification.payload,
    }
    body = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Vigil-Notifications/1",
        "X-Vigil-Signature": webhook_signature(body, secret=django_settings.VIGIL_WEBHOOK_SECRET),
        "X-Vigil-Timestamp": timestamp,
    }
    try:
        # Redirects are not followed: a redirect could lead to a target the check above refuses.
        response = requests.post(
            notification.target,
            data=body,
            headers=headers,
            timeout=float(config.get("timeout_seconds", 5)),
            allow_redirects=False,
        )
    except requests.RequestException as exc:
        return _Attempt(NotificationStatus.FAILED, f"webhook: {type(exc).__name__}: {exc}", transient=True)
    if 200 <= response.status_code < 300:
        return _Attempt(NotificationStatus.SENT)
    return _Attempt(
        NotificationStatus.FAILED,
        f"webhook: HTTP {response.status_code}",
        transient=response.status_code in RETRYABLE_HTTP_STATUSES,
    )


def notification_deliver(*, notification_id: Any, now: datetime | None = None) -> str:
    """Send one notification and record the outcome; returns its status afterwards.

    Idempotent: a row already ``sent`` or ``refused`` is returned as is (never sent again); a
    ``pending`` or ``failed`` row is attempted. The row is locked (``select_for_update(skip_locked)``)
    for the attempt, so two deliveries of the same row cannot both send: the second sees it locked
    and returns ``pending`` without sending. The status update is guarded (pending/failed → sent,
    failed or refused), ``attempts`` counts every attempt and ``last_error`` keeps the last reason.
    A refused webhook target makes no request. Sent and refused rows add a ``notified`` timeline
    entry. Raises :class:`NotificationTransientError` after recording a failure worth retrying.
    Unknown ids return ``"missing"``.
    """
    attempt: _Attempt | None = None
    with transaction.atomic():
        notification = Notification.objects.select_for_update(skip_locked=True).filter(pk=notification_id).first()
        if notification is None:
            current = Notification.objects.filter(pk=notification_id).values_list("status", flat=True).first()
            return current or "missing"  # locked by another delivery (or gone)
        if notification.status in (NotificationStatus.SENT, NotificationStatus.REFUSED):
            return notification.status
        sender = CHANNEL_SENDERS.get(notification.channel)
        if sender is None:
            attempt = _Attempt(NotificationStatus.REFUSED, f"no delivery channel {notification.channel!r} is installed")
        else:
            attempt = sender(notification)
        now = now or timezone.now()
        Notification.objects.filter(
            pk=notification.pk, status__in=(NotificationStatus.PENDING, NotificationStatus.FAILED)
        ).update(
            status=attempt.status,
            attempts=F("attempts") + 1,
            last_error=attempt.error[:LAST_ERROR_MAX_LENGTH],
            sent_at=now if attempt.status == NotificationStatus.SENT else None,
            updated_at=now,
        )
        if attempt.status in (NotificationStatus.SENT, NotificationStatus.REFUSED):
            _record_on_timeline(notification, attempt, now=now)
    log = logger.warning if attempt.status != NotificationStatus.SENT else logger.debug
    log(
        "notification %s %s to %s: %s %s",
        notification.pk,
        notification.channel,
        notification.target,
        attempt.status,
        attempt.error,
        extra={"incident_id": str(notification.incident_id), "notification_id": str(notification.pk)},
    )
    if attempt.transient:
        raise NotificationTransientError(attempt.error)
    return attempt.status


def _record_on_timeline(notification: Notification, attempt: _Attempt, *, now: datetime) -> None:
    verb = "Notified" if attempt.status == NotificationStatus.SENT else "Refused to notify"
    message = f"{verb} {notification.target} by {notification.channel}: {notification.subject}"
    if attempt.error:
        message += f" ({attempt.error})"
    IncidentEvent.objects.create(
        incident_id=notification.incident_id,
        kind=IncidentEventKind.NOTIFIED,
        at=now,
        actor=NOTIFIER_ACTOR,
        message=message[:2000],
        data={
            "notification_id": str(notification.pk),
            "channel": notification.channel,
            "target": notification.target,
            "kind": notification.kind,
            "status": attempt.status,
        },
    )


@dataclass(frozen=True)
class DeliveryBatch:
    statuses: dict[str, int]  # status after the attempt -> how many
    to_retry: list[str]  # ids whose attempt failed transiently


def notifications_deliver(*, notification_ids: Sequence[Any]) -> DeliveryBatch:
    """:func:`notification_deliver` for each id in turn; a transient failure does not stop the batch,
    its id is returned in ``to_retry`` (the failure is recorded on the row)."""
    statuses: dict[str, int] = {}
    to_retry: list[str] = []
    for notification_id in notification_ids:
        try:
            status = notification_deliver(notification_id=notification_id)
        except NotificationTransientError:
            status = NotificationStatus.FAILED
            to_retry.append(str(notification_id))
        statuses[status] = statuses.get(status, 0) + 1
    return DeliveryBatch(statuses=statuses, to_retry=to_retry)
