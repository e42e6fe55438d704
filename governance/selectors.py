"""Read-side queries of the governance core, including the one team-scoping helper."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from django.core.exceptions import ImproperlyConfigured
from django.db.models import Count, Model, Prefetch, QuerySet

from governance.choices import AuditAction
from governance.models import AISystem, AuditLog, Policy, PolicyVersion, Team, User

_UNSET = object()


def scope_to_teams(queryset: QuerySet, user: User) -> QuerySet:
    """Limit ``queryset`` to what ``user`` may see; the one helper every API view and admin uses.

    Each model declares ``team_scope_path``: the lookup from the model to its owning ``Team`` (``"team"``,
    ``"system__team"``, ``"pk"`` for Team itself), or ``None`` for platform-wide rows (visibility is then
    decided by role alone). A model that declares nothing is refused: scoping fails closed.
    Admins (the ``admin`` role or superusers) see everything. Objects outside the caller's teams are
    filtered out, so a lookup by id answers 404, not 403.
    """
    model: type[Model] = queryset.model
    path = getattr(model, "team_scope_path", _UNSET)
    if path is _UNSET:
        raise ImproperlyConfigured(f"{model.__name__} declares no team_scope_path; cannot scope it")
    if not getattr(user, "is_authenticated", False):
        return queryset.none()
    if path is None or user.is_admin_role:
        return queryset
    team_ids = list(user.teams.values_list("pk", flat=True))
    scoped = queryset.filter(**{f"{path}__in": team_ids})
    # A many-valued path (a user in two of your teams) would otherwise repeat rows.
    return scoped.distinct() if _is_many_valued(model, path) else scoped


def _is_many_valued(model: type[Model], path: str) -> bool:
    """Whether following ``path`` from ``model`` can reach several teams (a many-to-many or reverse FK)."""
    for name in path.split("__"):
        if name == "pk":
            return False
        field = model._meta.get_field(name)
        if field.many_to_many or field.one_to_many:
            return True
        model = field.related_model
    return False


def as_uuid(value: object) -> UUID:
    """``value`` as a UUID (ids arrive as UUIDs or strings); ValueError when it is not one."""
    return value if isinstance(value, UUID) else UUID(str(value))


def uuid_or_none(value: object) -> UUID | None:
    """``value`` as a UUID, or None when it does not read as one (an id from a URL, a body or a document)."""
    try:
        return as_uuid(value)
    except ValueError:
        return None


def is_uuid(value: object) -> bool:
    """Whether ``value`` reads as a UUID (ids in URLs and bodies are checked before any query)."""
    return uuid_or_none(value) is not None


def team_list(*, user: User) -> QuerySet[Team]:
    return scope_to_teams(Team.objects.all(), user)


def ai_system_list(*, user: User) -> QuerySet[AISystem]:
    return scope_to_teams(AISystem.objects.select_related("team", "owner"), user)


def ai_system_get_by_ref(*, ref: str, user: User | None = None) -> AISystem | None:
    """An AI system by its id or its unique name (events and payloads may use either)."""
    qs = AISystem.objects.select_related("team")
    if user is not None:
        qs = scope_to_teams(qs, user)
    try:
        from uuid import UUID

        return qs.filter(pk=UUID(str(ref))).first() or qs.filter(name=ref).first()
    except ValueError:
        return qs.filter(name=ref).first()


def audit_log_list() -> QuerySet[AuditLog]:
    return AuditLog.objects.all()


def cicd_gate_entry_latest(*, system: AISystem, artifact: str, at: datetime) -> AuditLog | None:
    """The latest ``cicd.gate_decided`` audit entry for ``artifact`` of ``system`` at or before ``at``, or
    None when the gate was never asked. One query on the (object_type, object_id, seq) index, newest first."""
    return (
        AuditLog.objects.filter(
            action=AuditAction.CICD_GATE_DECIDED,
            object_type=AISystem._meta.label_lower,
            object_id=str(system.pk),
            data__artifact=artifact,
            at__lte=at,
        )
        .order_by("-seq")
        .first()
    )


def policy_list() -> QuerySet[Policy]:
    """Policies with their team, active version, version count and latest version, without the versions'
    contents (two queries per page). Every role reads every policy (``Policy.team_scope_path`` is None)."""
    heavy = ("content", "document", "shadow_report")
    latest = (
        PolicyVersion.objects.select_related("created_by", "activated_by")
        .defer(*heavy)
        .order_by("policy_id", "-version")
    )
    return (
        Policy.objects.select_related(
            "team", "created_by", "active_version__created_by", "active_version__activated_by"
        )
        .defer(*(f"active_version__{name}" for name in heavy))
        .annotate(version_count=Count("versions"))
        .prefetch_related(Prefetch("versions", queryset=latest[:1], to_attr="latest_versions"))
    )


def policy_get_by_ref(*, ref: str, queryset: QuerySet[Policy] | None = None) -> Policy | None:
    """A policy by its id or its key (``metadata.id``)."""
    queryset = policy_list() if queryset is None else queryset
    if is_uuid(ref):
        found = queryset.filter(pk=as_uuid(ref)).first()
        if found is not None:
            return found
    return queryset.filter(key=ref).first()
