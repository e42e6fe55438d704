"""Auto-approval policies: create, change, enable/disable and delete, each audited in the same transaction.

Two rules hold whatever the caller:

- high and critical items always stay for a human, so no policy may name those severities;
- only admins switch a policy into deciding (enable it, or change one that decides or would decide after
  the change). The automation-bias monitor may *disable* one on its own (a system actor).

Which role may create or edit a disabled or shadow policy is the API's and the admin's decision; these
functions enforce only what keeps automatic decisions safe.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import Decimal
from typing import Any
from uuid import UUID

from django.db import IntegrityError, transaction
from django.db.models import Count
from django.utils import timezone

from governance.choices import AuditAction, Severity
from governance.models import Team
from governance.selectors import as_uuid
from governance.services.audit import AuditEntry, audit_record, audit_record_many, text_storage_problem
from governance.services.errors import InvalidFields
from hitl.models import AutoApprovalPolicy, ReviewDecision, ReviewType
from hitl.services.triage import SUGGESTION_SEVERITIES

POLICY_NAME_MAX_LENGTH = 120
DISABLED_REASON_MAX_LENGTH = 300
DESCRIPTION_MAX_LENGTH = 5000
# Severities that are never left to a machine, named in the error a policy naming them gets.
HUMAN_ONLY_SEVERITIES = (Severity.CRITICAL, Severity.HIGH)
POLICY_FIELDS = (
    "policy_name",
    "severity_filter",
    "review_type_filter",
    "max_risk_score",
    "auto_action",
    "team",
    "enabled",
    "shadow_mode",
    "description",
    "requires_audit_log",
)
# Fields that change what a policy decides; changing them on a deciding policy is an admin's call.
MATCHING_FIELDS = ("severity_filter", "review_type_filter", "max_risk_score", "auto_action", "team", "shadow_mode")


class PolicyValidationError(InvalidFields):
    """Bad policy data (→ 400); ``fields`` maps each bad field to its messages."""


class PolicyNameTaken(PolicyValidationError):
    """Another policy already has this name (an API may answer 409 instead of 400)."""


class PolicyPermissionDenied(PermissionError):
    """The actor may not make this change (→ 403): only admins enable policies."""


def auto_approval_policy_validate(
    data: Mapping[str, Any], *, partial: bool = False, instance: AutoApprovalPolicy | None = None
) -> dict[str, Any]:
    """Check and normalize policy data; ``PolicyValidationError`` names every bad field.

    ``partial`` (an update) checks only the keys given; otherwise ``policy_name`` is required. The name
    must be unique (ignoring case, and ignoring ``instance`` itself). ``severity_filter`` may hold only
    low, medium and info: high and critical items always stay for a human. ``team`` may be a Team or
    its id. ``requires_audit_log`` is accepted only as true (it cannot be turned off) and is dropped.
    Returns model field values: deduplicated filters in a stable order, a float risk score, a Team or None.
    """
    if not isinstance(data, Mapping):
        raise PolicyValidationError({"non_field_errors": ["policy data must be an object"]})
    errors: dict[str, list[str]] = {}
    cleaned: dict[str, Any] = {}
    for key in data:
        if key not in POLICY_FIELDS:
            errors[str(key)] = [f"unknown field; use: {', '.join(POLICY_FIELDS)}"]
    if not partial and "policy_name" not in data:
        errors["policy_name"] = ["a policy name is required"]
    for key, value in data.items():
        if key not in POLICY_FIELDS:
            continue
        try:
            if key == "requires_audit_log":
                if value is not True:
                    raise ValueError("every automatic decision is audited; this cannot be turned off")
                continue
            cleaned[key] = _CLEANERS[key](value)
        except ValueError as exc:
            errors[key] = [str(exc)]
    if "policy_name" in cleaned and "policy_name" not in errors:
        taken = AutoApprovalPolicy.objects.filter(policy_name__iexact=cleaned["policy_name"])
        if instance is not None:
            taken = taken.exclude(pk=instance.pk)
        if taken.exists():
            if not errors:
                raise PolicyNameTaken({"policy_name": [_name_taken(cleaned["policy_name"])]})
            errors["policy_name"] = [_name_taken(cleaned["policy_name"])]
    if errors:
        raise PolicyValidationError(errors)
    return cleaned


def _name_taken(name: str) -> str:
    return f"a policy named {name!r} already exists"


def _clean_name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("a policy name is required")
    name = value.strip()
    if len(name) > POLICY_NAME_MAX_LENGTH:
        raise ValueError(f"at most {POLICY_NAME_MAX_LENGTH} characters")
    if problem := text_storage_problem(name):
        raise ValueError(problem)
    return name


def _clean_severities(value: Any) -> list[str]:
    values = _string_list(value)
    human_only = [v for v in values if v in HUMAN_ONLY_SEVERITIES]
    if human_only:
        raise ValueError(
            f"{', '.join(human_only)} items always stay for a human; a policy may cover only "
            f"{', '.join(SUGGESTION_SEVERITIES)} (empty: all three)"
        )
    unknown = [v for v in values if v not in SUGGESTION_SEVERITIES]
    if unknown:
        raise ValueError(f"unknown severity {', '.join(map(repr, unknown))}; use {', '.join(SUGGESTION_SEVERITIES)}")
    return [s for s in SUGGESTION_SEVERITIES if s in values]


def _clean_review_types(value: Any) -> list[str]:
    values = _string_list(value)
    unknown = [v for v in values if v not in ReviewType.values]
    if unknown:
        raise ValueError(f"unknown review type {', '.join(map(repr, unknown))}; use {', '.join(ReviewType.values)}")
    return [t for t in ReviewType.values if t in values]


def _string_list(value: Any) -> list[str]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ValueError("must be a list of strings (empty: any)")
    return list(value)


def _clean_risk(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise ValueError("must be a number between 0 and 100")
    number = float(value)
    if math.isnan(number) or not 0 <= number <= 100:
        raise ValueError("must be a number between 0 and 100")
    return number


def _clean_action(value: Any) -> str:
    if value not in ReviewDecision.values:
        raise ValueError(f"unknown action {value!r}; use {', '.join(ReviewDecision.values)}")
    return str(value)


def _clean_team(value: Any) -> Team | None:
    if value in (None, ""):
        return None
    if isinstance(value, Team):
        return value
    try:
        key = as_uuid(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a team id") from None
    team = Team.objects.filter(pk=key).first()
    if team is None:
        raise ValueError(f"no team {key}")
    return team


def _clean_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


def _clean_description(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("must be text")
    if len(value) > DESCRIPTION_MAX_LENGTH:
        raise ValueError(f"at most {DESCRIPTION_MAX_LENGTH} characters")
    if problem := text_storage_problem(value):
        raise ValueError(problem)
    return value.strip()


_CLEANERS = {
    "policy_name": _clean_name,
    "severity_filter": _clean_severities,
    "review_type_filter": _clean_review_types,
    "max_risk_score": _clean_risk,
    "auto_action": _clean_action,
    "team": _clean_team,
    "enabled": _clean_bool,
    "shadow_mode": _clean_bool,
    "description": _clean_description,
}


def is_policy_admin(actor: Any) -> bool:
    """Whether ``actor`` is a person who may enable policies (the admin role or a superuser)."""
    return bool(getattr(actor, "is_authenticated", False) and getattr(actor, "is_admin_role", False))


def _require_may_switch(actor: Any, *, enabled: bool) -> None:
    # A system component (a string actor, e.g. the automation-bias monitor) may stop a policy, never start one.
    if is_policy_admin(actor) or (not enabled and isinstance(actor, str) and actor.strip()):
        return
    verb = "enable" if enabled else "disable"
    raise PolicyPermissionDenied(f"only admins may {verb} auto-approval policies")


def policy_audit_ref(policy: AutoApprovalPolicy) -> dict[str, str]:
    """How every audit entry names a policy: ``data["policy"] = {"id", "name"}``."""
    return {"id": str(policy.pk), "name": policy.policy_name}


def _settings_snapshot(policy: AutoApprovalPolicy) -> dict[str, Any]:
    return {
        "severity_filter": list(policy.severity_filter),
        "review_type_filter": list(policy.review_type_filter),
        "max_risk_score": policy.max_risk_score,
        "auto_action": policy.auto_action,
        "team": str(policy.team_id) if policy.team_id else None,
        "enabled": policy.enabled,
        "shadow_mode": policy.shadow_mode,
        "description": policy.description,
    }


def auto_approval_policy_create(*, actor: Any, data: Mapping[str, Any]) -> AutoApprovalPolicy:
    """Create a policy (disabled unless ``enabled`` is given) and audit ``auto_approval_policy.created``.

    ``enabled=True`` is allowed only for admins (``PolicyPermissionDenied``, nothing written) and adds an
    ``auto_approval_policy.enabled`` entry, so auditors find every enabling under one action. A shadow
    policy (``shadow_mode=True``) records what it would decide without deciding and needs no admin.
    Bad data raises ``PolicyValidationError`` (``PolicyNameTaken`` for a duplicate name, also on a race).
    """
    cleaned = auto_approval_policy_validate(data)
    if cleaned.get("enabled"):
        _require_may_switch(actor, enabled=True)
    created_by = actor if getattr(actor, "is_authenticated", False) else None
    with transaction.atomic():
        try:
            with transaction.atomic():
                policy = AutoApprovalPolicy.objects.create(**cleaned, created_by=created_by)
        except IntegrityError as exc:  # a concurrent create took the name after validation
            raise PolicyNameTaken({"policy_name": [_name_taken(cleaned["policy_name"])]}) from exc
        entries = [
            AuditEntry(
                action=AuditAction.AUTO_APPROVAL_POLICY_CREATED,
                actor=actor,
                target=policy,
                data={"policy": policy_audit_ref(policy), "settings": _settings_snapshot(policy)},
            )
        ]
        if policy.enabled:
            entries.append(
                AuditEntry(
                    action=AuditAction.AUTO_APPROVAL_POLICY_ENABLED,
                    actor=actor,
                    target=policy,
                    data={"policy": policy_audit_ref(policy), "reason": "enabled at creation"},
                )
            )
        audit_record_many(entries=entries)
    return policy


def auto_approval_policy_update(
    *, policy: AutoApprovalPolicy, actor: Any, data: Mapping[str, Any]
) -> AutoApprovalPolicy:
    """Change some fields of a policy (a partial update); audits ``auto_approval_policy.updated`` with
    each changed field's ``from``/``to``, nothing when nothing changes.

    Locks the policy row. A policy that decides (enabled, not in shadow mode) before or after the change
    may have its matching rules (filters, risk, action, team, shadow mode) changed only by an admin:
    widening a live policy is as consequential as enabling one. ``enabled`` goes through
    :func:`auto_approval_policy_set_enabled` (admin only, its own audit entry). All or nothing.
    """
    cleaned = auto_approval_policy_validate(data, partial=True, instance=policy)
    enabled = cleaned.pop("enabled", None)
    with transaction.atomic():
        current = AutoApprovalPolicy.objects.select_for_update().get(pk=policy.pk)
        diff = {
            name: {"from": _audit_value(getattr(current, name)), "to": _audit_value(value)}
            for name, value in cleaned.items()
            if not _same_value(getattr(current, name), value)
        }
        will_be_enabled = current.enabled if enabled is None else enabled
        will_be_shadow = cleaned.get("shadow_mode", current.shadow_mode)
        deciding_now = current.enabled and not current.shadow_mode
        deciding_after = will_be_enabled and not will_be_shadow
        if (
            any(name in MATCHING_FIELDS for name in diff)
            and (deciding_now or deciding_after)
            and not is_policy_admin(actor)
        ):
            raise PolicyPermissionDenied("only admins may change what an enabled auto-approval policy decides")
        if enabled is not None and enabled != current.enabled:
            _require_may_switch(actor, enabled=enabled)
        if diff:
            for name in diff:
                setattr(current, name, cleaned[name])
            current.save(update_fields=[*diff, "updated_at"])
            audit_record(
                action=AuditAction.AUTO_APPROVAL_POLICY_UPDATED,
                actor=actor,
                target=current,
                data={"policy": policy_audit_ref(current), "changed": diff},
            )
        if enabled is not None and enabled != current.enabled:
            auto_approval_policy_set_enabled(policy=current, enabled=enabled, actor=actor)
    policy.refresh_from_db()
    return policy


def _same_value(old: Any, new: Any) -> bool:
    # Filters are sets stored as lists: ["low", "medium"] and ["medium", "low"] are the same policy.
    if isinstance(old, list) and isinstance(new, list):
        return sorted(old) == sorted(new)
    return _audit_value(old) == _audit_value(new)


def _audit_value(value: Any) -> Any:
    if isinstance(value, Team):
        return str(value.pk)
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def auto_approval_policy_set_enabled(
    *,
    policy: AutoApprovalPolicy,
    enabled: bool,
    actor: Any,
    reason: str = "",
    details: Mapping[str, Any] | None = None,
) -> bool:
    """Enable or disable a policy; True when it changed, False when it already was in that state.

    Only admins enable; admins or a system component (a string actor such as
    ``"automation_bias_monitor"``) disable; anyone else gets ``PolicyPermissionDenied``. A guarded
    update (``WHERE enabled = <the other state>``), so two concurrent switches audit once. Disabling
    stores ``disabled_reason``/``disabled_at``; enabling clears them. Audits
    ``auto_approval_policy.enabled`` or ``.disabled`` with the reason (and ``details``, e.g. the
    monitor's agreement figures) in the same transaction. ``policy`` is updated in memory.
    """
    if not isinstance(enabled, bool):
        raise PolicyValidationError({"enabled": ["must be true or false"]})
    _require_may_switch(actor, enabled=enabled)
    reason = (reason or "").strip()
    if problem := text_storage_problem(reason):
        raise PolicyValidationError({"reason": [problem]})
    now = timezone.now()
    disabled_reason = "" if enabled else reason[:DISABLED_REASON_MAX_LENGTH]
    disabled_at = None if enabled else now
    with transaction.atomic():
        changed = AutoApprovalPolicy.objects.filter(pk=policy.pk, enabled=not enabled).update(
            enabled=enabled, disabled_reason=disabled_reason, disabled_at=disabled_at, updated_at=now
        )
        if not changed:
            return False
        data: dict[str, Any] = {"policy": policy_audit_ref(policy), "reason": reason}
        if details:
            data["details"] = dict(details)
        audit_record(
            action=AuditAction.AUTO_APPROVAL_POLICY_ENABLED if enabled else AuditAction.AUTO_APPROVAL_POLICY_DISABLED,
            actor=actor,
            target=policy,
            data=data,
        )
    policy.enabled, policy.disabled_reason, policy.disabled_at = enabled, disabled_reason, disabled_at
    return True


def auto_approval_policy_delete(*, policy: AutoApprovalPolicy, actor: Any) -> None:
    """Delete a policy (admins only) and audit ``auto_approval_policy.deleted`` with its last settings
    and how many items it decided and spot checks it had, in the same transaction.

    Items it decided keep their decision (their ``decided_by_policy`` becomes empty; the
    ``review.decided`` audit entries still name it); its spot checks go with it (the model cascades).
    """
    if not is_policy_admin(actor):
        raise PolicyPermissionDenied("only admins may delete auto-approval policies")
    with transaction.atomic():
        counts = AutoApprovalPolicy.objects.filter(pk=policy.pk).aggregate(
            decided_items=Count("decided_items", distinct=True), spot_checks=Count("spot_checks", distinct=True)
        )
        audit_record(
            action=AuditAction.AUTO_APPROVAL_POLICY_DELETED,
            actor=actor,
            target=policy,
            data={"policy": policy_audit_ref(policy), "settings": _settings_snapshot(policy), **counts},
        )
        policy.delete()
