"""Read-side queries of the review queue: scoping, the bulk-triage filter and backlog health."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.db.models import BooleanField, Case, Count, F, Min, Q, QuerySet, Value, When
from django.db.models.functions import TruncHour
from django.utils import timezone

from governance.choices import Role, Severity
from governance.models import User
from governance.selectors import is_uuid, scope_to_teams
from governance.services.errors import InvalidFields
from hitl.models import DecisionSource, ReviewDecision, ReviewItem, ReviewStatus, ReviewType

HEALTH_WINDOW = timedelta(hours=24)
NO_SUGGESTION = "none"


def review_items_for_user(*, user: User) -> QuerySet[ReviewItem]:
    """The review items of the caller's teams (admins: all), with what the list shows joined in."""
    return scope_to_teams(
        ReviewItem.objects.select_related("system", "system__team", "assignee", "decided_by", "decided_by_policy"),
        user,
    )


def review_item_get_for_user(*, user: User, item_id: Any) -> ReviewItem | None:
    try:
        key = UUID(str(item_id))
    except ValueError:
        return None
    return review_items_for_user(user=user).filter(pk=key).first()


# Roles that may decide review items; the assignee of an item holds one of them.
DECIDING_ROLES = (Role.ADMIN, Role.GOVERNANCE_LEAD, Role.REVIEWER)


def assignable_reviewers(*, item: ReviewItem) -> QuerySet[User]:
    """People who may be assigned ``item``: active, human, on its team, holding a deciding role."""
    return (
        User.objects.filter(
            teams=item.system.team_id, is_active=True, is_service_account=False, groups__name__in=DECIDING_ROLES
        )
        .distinct()
        .order_by("username")
    )


def pending_past_due_q(now: datetime) -> Q:
    """A pending item past its SLA due time right now (the admin filter and backlog health)."""
    return Q(status=ReviewStatus.PENDING, sla_due_at__lt=now)


def sla_breached_q(now: datetime) -> Q:
    """Pending past its due time, or decided after it (the one definition the API shows and filters)."""
    return pending_past_due_q(now) | (~Q(status=ReviewStatus.PENDING) & Q(decided_at__gt=F("sla_due_at")))


def with_sla_breached(queryset: QuerySet[ReviewItem], *, now: datetime) -> QuerySet[ReviewItem]:
    breached = Case(When(sla_breached_q(now), then=Value(True)), default=Value(False), output_field=BooleanField())
    return queryset.annotate(sla_breached=breached)


class FilterError(InvalidFields):
    """A bulk-triage filter that names an unknown key or an invalid value; ``fields`` names them."""


def _as_list(value: Any) -> list:
    return list(value) if isinstance(value, list | tuple) else [value]


def _choice_list(key: str, value: Any, choices: list[str], errors: dict) -> list[str]:
    values = [str(v) for v in _as_list(value)]
    unknown = [v for v in values if v not in choices]
    if unknown or not values:
        errors[f"filter.{key}"] = [f"unknown value(s) {unknown or values}; use: {', '.join(choices)}"]
    return values


def _number(key: str, value: Any, low: float, high: float, errors: dict) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        errors[f"filter.{key}"] = [f"must be a number between {low:g} and {high:g}"]
        return None
    return float(value)


def review_items_matching(queryset: QuerySet[ReviewItem], filters: dict[str, Any], *, now: datetime) -> QuerySet:
    """Apply a bulk-triage filter (the JSON body's ``filter``) to pending items.

    Keys: ``severity``, ``review_type``, ``suggestion`` (a decision or ``"none"``), ``system`` (id or
    name), ``team`` (id), ``sla_breached`` (bool), ``max_risk_score``, ``min_confidence``, and
    ``status`` (only ``"pending"``: decided items cannot be decided again). Every key narrows; an
    unknown key or a bad value raises ``FilterError`` naming ``filter.<key>``.
    """
    if not isinstance(filters, dict) or not filters:
        raise FilterError({"filter": ['must be a non-empty object, e.g. {"severity": ["low"]}']})
    errors: dict[str, list[str]] = {}
    q = Q(status=ReviewStatus.PENDING)
    for key, value in filters.items():
        if key == "status":
            if value != ReviewStatus.PENDING:
                errors["filter.status"] = ['only pending items can be decided; use "pending" or leave it out']
        elif key == "severity":
            q &= Q(severity__in=_choice_list(key, value, Severity.values, errors))
        elif key == "review_type":
            q &= Q(review_type__in=_choice_list(key, value, ReviewType.values, errors))
        elif key == "suggestion":
            values = _choice_list(key, value, [*ReviewDecision.values, NO_SUGGESTION], errors)
            named = [v for v in values if v != NO_SUGGESTION]
            q &= Q(suggested_decision__in=named) | (Q(suggested_decision="") if NO_SUGGESTION in values else Q())
        elif key == "system":
            refs = [str(v) for v in _as_list(value)]
            ids = [r for r in refs if is_uuid(r)]
            q &= Q(system_id__in=ids) | Q(system__name__in=refs)
        elif key == "team":
            refs = [str(v) for v in _as_list(value)]
            if not all(is_uuid(r) for r in refs):
                errors["filter.team"] = ["must be team ids"]
            else:
                q &= Q(system__team_id__in=refs)
        elif key == "sla_breached":
            if not isinstance(value, bool):
                errors["filter.sla_breached"] = ["must be true or false"]
            else:
                q &= Q(sla_due_at__lt=now) if value else Q(sla_due_at__gte=now)
        elif key == "max_risk_score":
            if (number := _number(key, value, 0, 100, errors)) is not None:
                q &= Q(risk_score__lte=number)
        elif key == "min_confidence":
            if (number := _number(key, value, 0, 1, errors)) is not None:
                q &= Q(assist_confidence__gte=number)
        else:
            errors[f"filter.{key}"] = [
                "unknown filter; use severity, review_type, suggestion, system, team, sla_breached, "
                "max_risk_score, min_confidence or status"
            ]
    if errors:
        raise FilterError(errors)
    return queryset.filter(q)


@dataclass(frozen=True)
class BacklogHealth:
    pending: int
    oldest_pending_at: datetime | None
    oldest_age_seconds: float | None
    sla_breached: int
    pending_by_severity: dict[str, int]
    inflow_24h: int
    outflow_24h: int
    decided_24h_by_source: dict[str, int]
    hourly: list[dict[str, Any]]
    as_of: datetime

    @property
    def net_flow_24h(self) -> int:
        return self.inflow_24h - self.outflow_24h


def backlog_health(*, queryset: QuerySet[ReviewItem], now: datetime | None = None) -> BacklogHealth:
    """Pending count, oldest age, SLA-breached count and inflow vs outflow per hour over the last 24 h.

    ``queryset`` is already scoped to the caller. Four aggregate queries whatever the backlog size.
    """
    now = now or timezone.now()
    # 24 hourly buckets: the current (partial) hour and the 23 before it.
    first_hour = now.replace(minute=0, second=0, microsecond=0) - (HEALTH_WINDOW - timedelta(hours=1))
    since = first_hour
    pending = queryset.filter(status=ReviewStatus.PENDING)
    summary = pending.aggregate(
        total=Count("pk"), oldest=Min("created_at"), breached=Count("pk", filter=pending_past_due_q(now))
    )
    by_severity = dict(pending.values_list("severity").annotate(n=Count("pk")).order_by())
    inflow = dict(
        queryset.filter(created_at__gte=since)
        .annotate(hour=TruncHour("created_at"))
        .values_list("hour")
        .annotate(n=Count("pk"))
        .order_by()
    )
    decided = queryset.filter(decided_at__gte=since).exclude(status=ReviewStatus.PENDING)
    outflow_rows = list(
        decided.annotate(hour=TruncHour("decided_at"))
        .values_list("hour", "decision_source")
        .annotate(n=Count("pk"))
        .order_by()
    )
    outflow: dict[datetime, int] = {}
    by_source = dict.fromkeys(DecisionSource.values, 0)
    for hour, source, n in outflow_rows:
        outflow[hour] = outflow.get(hour, 0) + n
        by_source[source or DecisionSource.HUMAN] = by_source.get(source or DecisionSource.HUMAN, 0) + n
    hourly = []
    for offset in range(24):
        hour = first_hour + timedelta(hours=offset)
        hourly.append({"hour": hour, "inflow": _at_hour(inflow, hour), "outflow": _at_hour(outflow, hour)})
    oldest = summary["oldest"]
    return BacklogHealth(
        pending=summary["total"],
        oldest_pending_at=oldest,
        oldest_age_seconds=(now - oldest).total_seconds() if oldest else None,
        sla_breached=summary["breached"],
        pending_by_severity={severity: by_severity.get(severity, 0) for severity in Severity.values},
        inflow_24h=sum(inflow.values()),
        outflow_24h=sum(outflow.values()),
        decided_24h_by_source=by_source,
        hourly=hourly,
        as_of=now,
    )


def _at_hour(counts: dict[datetime, int], hour: datetime) -> int:
    # TruncHour returns aware datetimes on PostgreSQL and SQLite alike (USE_TZ); compare by instant.
    return sum(n for at, n in counts.items() if at is not None and at == hour)
