"""Operator changes to detection rules: what the admin (and any future API) may switch on a rule.

A rule's numbers live in the config registry (``DetectionRule.config_key``); the row holds only
whether it is enabled, its severity floor and its description, and only those change here.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from governance.choices import AuditAction, Severity
from governance.services.audit import audit_record
from oversight.models import DetectionRule

EDITABLE_FIELDS = ("enabled", "severity", "description")


class DetectionRuleChanged(Exception):
    """The rule was changed by someone else between reading and writing it; nothing was written."""


def detection_rule_update(
    *,
    rule: DetectionRule,
    actor: Any,
    enabled: bool | None = None,
    severity: str | None = None,
    description: str | None = None,
) -> DetectionRule:
    """Change a rule's ``enabled`` flag, severity floor or description (``None``: leave as is).

    Guarded update: the row is updated only if it still holds the values just read, so two operators
    never overwrite each other silently (``DetectionRuleChanged`` instead). One
    ``detection_rule.updated`` audit entry with each changed field's before and after values, in the
    same transaction; nothing is written or audited when nothing changes. The processing engine reads
    rules per batch, so a change applies to the next batch. Returns the rule as stored.
    """
    if severity is not None and severity not in Severity.values:
        raise ValidationError({"severity": [f"Unknown severity {severity!r}."]})
    if enabled is not None and not isinstance(enabled, bool):
        raise ValidationError({"enabled": ["Must be true or false."]})
    requested = {"enabled": enabled, "severity": severity, "description": description}
    with transaction.atomic():
        current = DetectionRule.objects.filter(pk=rule.pk).values(*EDITABLE_FIELDS).get()
        changes = {field: value for field, value in requested.items() if value is not None and value != current[field]}
        if changes:
            now = timezone.now()
            guard = {field: current[field] for field in changes}
            updated = DetectionRule.objects.filter(pk=rule.pk, **guard).update(**changes, updated_at=now)
            if updated != 1:
                raise DetectionRuleChanged(f"Rule {rule.name} was changed meanwhile; reload it and try again.")
            audit_record(
                action=AuditAction.DETECTION_RULE_UPDATED,
                actor=actor,
                target=rule,
                data={
                    "rule": rule.name,
                    "changed": {field: {"from": current[field], "to": value} for field, value in changes.items()},
                },
            )
    rule.refresh_from_db()
    return rule
