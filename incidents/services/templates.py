"""Editing RCA templates: what a root-cause analysis of one incident type must contain.

The API (``PATCH /rca-templates/{id}``) and the admin both change templates through
:func:`rca_template_update`, so every change is validated the same way and audited.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from django.db import transaction

from governance.choices import AuditAction
from governance.services.audit import audit_record
from governance.services.errors import InvalidFields
from incidents.models import RCATemplate

EDITABLE_FIELDS = ("name", "template_content", "required_fields")
NAME_MAX_LENGTH = RCATemplate._meta.get_field("name").max_length
CONTENT_MAX_LENGTH = 50_000
MAX_REQUIRED_FIELDS = 30
# An identifier: always a name ``rca.incident_rca_update`` accepts, so a required field can be filled.
FIELD_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")


class RCATemplateInvalid(InvalidFields):
    """Bad template data; ``fields`` names each problem (API: 400). Nothing changed."""


def required_fields_clean(value: Any) -> list[str]:
    """A list of distinct RCA field names (a letter, then letters, digits, underscores; at least one:
    a high or critical incident must never close without any analysis). Raises ``RCATemplateInvalid`` naming
    ``required_fields`` or ``required_fields.<index>``."""
    if not isinstance(value, list | tuple) or not value:
        raise RCATemplateInvalid({"required_fields": ['a non-empty list of field names, e.g. ["root_cause"]']})
    if len(value) > MAX_REQUIRED_FIELDS:
        raise RCATemplateInvalid({"required_fields": [f"at most {MAX_REQUIRED_FIELDS} fields"]})
    errors: dict[str, list[str]] = {}
    seen: set[str] = set()
    for index, name in enumerate(value):
        if not isinstance(name, str) or not FIELD_NAME.fullmatch(name):
            errors[f"required_fields.{index}"] = ["a field name: a letter, then letters, digits or underscores (≤ 64)"]
        elif name in seen:
            errors[f"required_fields.{index}"] = [f"{name!r} is listed twice"]
        else:
            seen.add(name)
    if errors:
        raise RCATemplateInvalid(errors)
    return list(value)


def _clean(data: Mapping[str, Any]) -> dict[str, Any]:
    errors: dict[str, list[str]] = {}
    unknown = sorted(set(data) - set(EDITABLE_FIELDS))
    for key in unknown:
        errors[key] = [f"not editable; change {', '.join(EDITABLE_FIELDS)}"]
    cleaned: dict[str, Any] = {}
    if "name" in data:
        name = data["name"].strip() if isinstance(data["name"], str) else None
        if not name:
            errors["name"] = ["a non-blank name"]
        elif len(name) > NAME_MAX_LENGTH:
            errors["name"] = [f"at most {NAME_MAX_LENGTH} characters"]
        else:
            cleaned["name"] = name
    if "template_content" in data:
        content = data["template_content"]
        if not isinstance(content, str) or not content.strip():
            errors["template_content"] = ["non-blank guidance text (Markdown)"]
        elif len(content) > CONTENT_MAX_LENGTH:
            errors["template_content"] = [f"at most {CONTENT_MAX_LENGTH:,} characters"]
        else:
            cleaned["template_content"] = content
    if "required_fields" in data:
        try:
            cleaned["required_fields"] = required_fields_clean(data["required_fields"])
        except RCATemplateInvalid as exc:
            errors.update(exc.fields)
    if errors:
        raise RCATemplateInvalid(errors)
    return cleaned


def rca_template_update(*, template: RCATemplate, actor: Any, data: Mapping[str, Any]) -> RCATemplate:
    """Change a template's ``name``, ``template_content`` and/or ``required_fields``.

    Validates everything first (``RCATemplateInvalid`` naming each bad field; nothing written), then
    locks the row and writes only the fields whose value differs, with one ``rca_template.updated``
    audit entry (before/after of name and required fields; for the content only that it changed:
    it can be long) in the same transaction. Idempotent: sending the current values writes and audits
    nothing. Incidents are not touched: closing checks the template's required fields at close time.
    """
    cleaned = _clean(data)
    with transaction.atomic():
        current = RCATemplate.objects.select_for_update().get(pk=template.pk)
        changed = {key: value for key, value in cleaned.items() if getattr(current, key) != value}
        if not changed:
            return current
        audit_data: dict[str, Any] = {"incident_type": current.incident_type, "fields": sorted(changed)}
        for key in ("name", "required_fields"):
            if key in changed:
                audit_data[key] = {"from": getattr(current, key), "to": changed[key]}
        if "template_content" in changed:
            audit_data["template_content"] = {
                "from_length": len(current.template_content),
                "to_length": len(changed["template_content"]),
            }
        for key, value in changed.items():
            setattr(current, key, value)
        current.save(update_fields=[*changed, "updated_at"])
        audit_record(action=AuditAction.RCA_TEMPLATE_UPDATED, actor=actor, target=current, data=audit_data)
    return current
