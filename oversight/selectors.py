"""Read queries of the event pipeline: what the API and the ingest service look up, always team-scoped."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from uuid import UUID

from django.db.models import F, OuterRef, Q, QuerySet, Subquery, UUIDField
from django.db.models.functions import Coalesce

from governance.models import AISystem, User
from governance.selectors import scope_to_teams
from governance.services.audit import text_storage_problem
from hitl.models import ReviewItem
from incidents.models import OPEN_INCIDENT_STATUSES, Incident
from oversight.models import Alert, EventRaw

_SYSTEM_NAME_MAX_LENGTH = AISystem._meta.get_field("name").max_length


def ai_system_ids_by_ref(*, refs: Iterable[str], user: User | None) -> dict[str, UUID]:
    """``{ref: system id}`` for every reference (an id in any spelling, or a name) that names a system
    ``user`` may write to; ``user=None`` (an internal caller) may use every system. One query for all
    references. The result maps both ``str(id)`` and the name of each system found."""
    ids, names = set(), set()
    for ref in refs:
        with contextlib.suppress(ValueError):
            ids.add(UUID(ref))
        # A reference no name can equal is not worth sending (and a NUL would break the query on PostgreSQL).
        if len(ref) <= _SYSTEM_NAME_MAX_LENGTH and text_storage_problem(ref) is None:
            names.add(ref)
    if not ids and not names:
        return {}
    systems = AISystem.objects.filter(Q(pk__in=ids) | Q(name__in=names))
    if user is not None:
        systems = scope_to_teams(systems, user)
    found: dict[str, UUID] = {}
    for system_id, name in systems.values_list("pk", "name"):
        found[str(system_id)] = system_id
        found[name] = system_id
    return found


def system_ref_filter(ref: str) -> Q:
    """Rows whose ``system`` is named by ``ref``: its id (any spelling) or its unique name."""
    by_name = Q(system__name=ref)
    try:
        return Q(system_id=UUID(ref)) | by_name
    except ValueError:
        return by_name


def events_for_user(*, user: User) -> QuerySet[EventRaw]:
    """Raw events of the user's teams, with ``system_name`` (no per-row system lookups)."""
    return scope_to_teams(EventRaw.objects.annotate(system_name=F("system__name")), user)


def event_get_for_user(*, user: User, event_id: str) -> EventRaw | None:
    """One event by its client ``event_id`` (any UUID spelling), or None (also when outside the user's teams)."""
    try:
        key = UUID(str(event_id))
    except ValueError:
        return None
    return events_for_user(user=user).filter(event_id=key).first()


def alerts_for_user(*, user: User) -> QuerySet[Alert]:
    """Alerts of the user's teams with everything the API shows, in one query: rule name and kind,
    system name, the incident and the review the alert led to.

    ``incident_id``: the incident opened from this alert, else the open incident of its fingerprint
    (a re-fired alert is attached to the incident already open). ``review_id``: the latest review
    queued for it.
    """
    opened_from = Incident.objects.filter(source_alert=OuterRef("pk")).order_by("-opened_at").values("id")[:1]
    open_for_fingerprint = Incident.objects.filter(
        fingerprint=OuterRef("fingerprint"), status__in=OPEN_INCIDENT_STATUSES
    ).values("id")[:1]
    review = ReviewItem.objects.filter(source_alert=OuterRef("pk")).order_by("-created_at").values("id")[:1]
    queryset = Alert.objects.annotate(
        rule_name=F("rule__name"),
        rule_kind=F("rule__kind"),
        system_name=F("system__name"),
        incident_id=Coalesce(Subquery(opened_from), Subquery(open_for_fingerprint), output_field=UUIDField()),
        review_id=Subquery(review, output_field=UUIDField()),
    )
    return scope_to_teams(queryset, user)


def alert_get_for_user(*, user: User, alert_id: str) -> Alert | None:
    try:
        key = UUID(str(alert_id))
    except ValueError:
        return None
    return alerts_for_user(user=user).filter(pk=key).first()
