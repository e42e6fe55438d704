"""Teams, users, service accounts and AI systems: every write audited in the same transaction."""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import Group
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils.text import slugify

from governance.choices import HUMAN_ROLES, SERVICE_ROLES, AuditAction, EntityType, Role
from governance.models import AISystem, Team, User
from governance.services.audit import audit_record

# Fields of an AI system that callers may change; anything else is owned by Vigil.
AI_SYSTEM_MUTABLE_FIELDS = ("entity_type", "team", "risk_class", "owner", "description", "metadata", "is_active")


def _diff(instance: Any, changes: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    diff = {}
    for name, new in changes.items():
        old = getattr(instance, name)
        if old != new:
            diff[name] = {"from": getattr(old, "pk", old), "to": getattr(new, "pk", new)}
    return diff


@transaction.atomic
def team_create(*, name: str, actor: User | None, slug: str = "", description: str = "", email: str = "") -> Team:
    """Create a team and audit it."""
    team = Team.objects.create(name=name, slug=slug or slugify(name), description=description, email=email)
    audit_record(action=AuditAction.TEAM_CREATED, actor=actor, target=team, data={"name": name, "slug": team.slug})
    return team


@transaction.atomic
def ai_system_register(
    *,
    name: str,
    entity_type: str,
    team: Team,
    risk_class: str,
    actor: User | None,
    owner: User | None = None,
    description: str = "",
    metadata: Mapping[str, Any] | None = None,
) -> AISystem:
    """Register an AI system in the inventory and audit it."""
    system = AISystem.objects.create(
        name=name,
        entity_type=entity_type,
        team=team,
        risk_class=risk_class,
        owner=owner,
        description=description,
        metadata=dict(metadata or {}),
    )
    audit_record(
        action=AuditAction.SYSTEM_REGISTERED,
        actor=actor,
        target=system,
        data={"name": name, "entity_type": entity_type, "team": str(team.pk), "risk_class": risk_class},
    )
    return system


def platform_system_ensure(*, name: str, team_slug: str, team_name: str, risk_class: str, description: str) -> AISystem:
    """An AI system the platform reports about itself (``vigil-platform`` for bypass detections,
    ``vigil-operations`` for queue health), owned by team ``team_slug``; both created if missing.

    Idempotent; creation goes through ``team_create`` / ``ai_system_register`` (so it is audited as they
    audit, actor None = the platform). A concurrent creator losing the unique-name race reads the winner's row.
    """
    system = AISystem.objects.select_related("team").filter(name=name).first()
    if system is not None:
        return system
    try:
        with transaction.atomic():
            team = Team.objects.filter(slug=team_slug).first() or team_create(
                name=team_name, slug=team_slug, actor=None
            )
            return ai_system_register(
                name=name,
                entity_type=EntityType.SYSTEM,
                team=team,
                risk_class=risk_class,
                actor=None,
                description=description,
            )
    except IntegrityError:
        return AISystem.objects.select_related("team").get(name=name)


@transaction.atomic
def ai_system_update(*, system: AISystem, actor: User | None, **changes: Any) -> AISystem:
    """Change an AI system's mutable fields; audits the before/after of what actually changed."""
    unknown = set(changes) - set(AI_SYSTEM_MUTABLE_FIELDS)
    if unknown:
        raise ValueError(f"not mutable: {sorted(unknown)}")
    diff = _diff(system, changes)
    if not diff:
        return system
    for name, value in changes.items():
        setattr(system, name, value)
    system.save(update_fields=[*changes, "updated_at"])
    audit_record(action=AuditAction.SYSTEM_UPDATED, actor=actor, target=system, data={"changes": diff})
    return system


def _groups_for(roles: Iterable[str]) -> list[Group]:
    roles = sorted(set(roles))
    unknown = [r for r in roles if r not in Role.values]
    if unknown:
        raise ValidationError({"roles": [f"unknown role {r!r}; choose from {', '.join(Role.values)}" for r in unknown]})
    return list(Group.objects.filter(name__in=roles))


@transaction.atomic
def user_create(
    *,
    username: str,
    password: str,
    roles: Iterable[str],
    teams: Iterable[Team],
    actor: User | None,
    email: str = "",
) -> User:
    """Create a person with roles and teams. The password must pass Django's validators.

    Raises ``ValidationError`` (field ``password`` or ``roles``) and writes nothing on bad input.
    """
    roles, teams = list(roles), list(teams)
    if any(role in SERVICE_ROLES for role in roles):
        raise ValidationError({"roles": ["service-account roles are given by create_service_account"]})
    groups = _groups_for(roles)
    candidate = User(username=username, email=email)
    try:
        validate_password(password, user=candidate)
    except ValidationError as exc:
        raise ValidationError({"password": exc.messages}) from exc
    user = User.objects.create_user(username=username, password=password, email=email)
    user.groups.set(groups)
    user.teams.set(teams)
    audit_record(
        action=AuditAction.USER_CREATED,
        actor=actor,
        target=user,
        data={"username": username, "roles": sorted(roles), "teams": sorted(str(t.pk) for t in teams)},
    )
    return user


@transaction.atomic
def check_roles_fit_account(*, is_service_account: bool, roles: Iterable[str]) -> None:
    """People hold human roles only, service accounts service roles only (an ingest bot must never
    become an admin). Raises ``ValidationError`` on field ``roles``."""
    allowed = SERVICE_ROLES if is_service_account else HUMAN_ROLES
    misfits = sorted((set(roles) & set(Role.values)) - allowed)
    if misfits:
        kind = "a service account" if is_service_account else "a person"
        raise ValidationError({"roles": [f"{', '.join(misfits)} cannot be given to {kind}"]})


@transaction.atomic
def user_set_roles(*, user: User, roles: Iterable[str], teams: Iterable[Team], actor: User | None) -> User:
    """Replace a user's roles and teams; audits the before and after in the same transaction."""
    roles, teams = sorted(set(roles)), list(teams)
    groups = _groups_for(roles)
    check_roles_fit_account(is_service_account=user.is_service_account, roles=roles)
    before = {
        "roles": sorted(user.groups.values_list("name", flat=True)),
        "teams": sorted(str(pk) for pk in user.teams.values_list("pk", flat=True)),
    }
    user.groups.set(groups)
    user.teams.set(teams)
    user.__dict__.pop("_role_names", None)
    after = {"roles": roles, "teams": sorted(str(t.pk) for t in teams)}
    if before != after:
        audit_record(
            action=AuditAction.USER_ROLES_CHANGED, actor=actor, target=user, data={"before": before, "after": after}
        )
    return user


@dataclass(frozen=True)
class ServiceAccountCredentials:
    user: User
    secret: str


@transaction.atomic
def service_account_create(
    *, name: str, role: str, teams: Iterable[Team], actor: User | str | None
) -> ServiceAccountCredentials:
    """Create a machine identity (role ``ingest`` or ``cicd``) with a random 64-byte secret.

    The secret is returned once and stored only as a password hash; the account obtains JWTs from
    ``POST /api/v1/auth/token`` like a person. It can never log into the admin.
    """
    if role not in SERVICE_ROLES:
        raise ValidationError({"role": [f"service accounts take role {' or '.join(sorted(SERVICE_ROLES))}"]})
    if User.objects.filter(username=name).exists():
        raise ValidationError({"name": [f"a user named {name!r} already exists"]})
    secret = secrets.token_urlsafe(48)
    user = User.objects.create_user(username=name, password=secret, is_service_account=True)
    user.groups.set(_groups_for([role]))
    teams = list(teams)
    user.teams.set(teams)
    audit_record(
        action=AuditAction.SERVICE_ACCOUNT_CREATED,
        actor=actor,
        target=user,
        data={"name": name, "role": role, "teams": sorted(str(t.pk) for t in teams)},
    )
    return ServiceAccountCredentials(user=user, secret=secret)


@transaction.atomic
def service_account_rotate(*, user: User, actor: User | str | None) -> ServiceAccountCredentials:
    """Issue a new secret for a service account; the old one stops working at once."""
    if not user.is_service_account:
        raise ValidationError({"name": [f"{user.username!r} is not a service account"]})
    secret = secrets.token_urlsafe(48)
    user.set_password(secret)
    user.save(update_fields=["password"])
    audit_record(action=AuditAction.SERVICE_ACCOUNT_ROTATED, actor=actor, target=user, data={"name": user.username})
    return ServiceAccountCredentials(user=user, secret=secret)
