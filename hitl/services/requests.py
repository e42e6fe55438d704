"""Requesting a review: a person or a service account asks for a model change, a policy exception or
data access to be judged. Alert triage is not requestable: the oversight engine queues it from alerts
(``hitl.services.queue``)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from config import registry
from governance.choices import AuditAction, Severity
from governance.models import AISystem
from governance.selectors import ai_system_get_by_ref
from governance.services.audit import audit_record, text_storage_problem
from governance.services.errors import InvalidFields
from hitl.models import REQUESTABLE_REVIEW_TYPES, ReviewItem, ReviewType

__all__ = [
    "CONTEXT_MAX_BYTES",
    "DESCRIPTION_MAX_LENGTH",
    "MAX_SLA_HOURS",
    "ReviewRequestInvalid",
    "review_item_request",
]

TITLE_MAX_LENGTH = ReviewItem._meta.get_field("title").max_length
DESCRIPTION_MAX_LENGTH = 5000
CONTEXT_MAX_BYTES = 16 * 1024
MAX_SLA_HOURS = 24 * 90
DESCRIPTION_KEY = "description"  # where the request's description is kept in the item's context


class ReviewRequestInvalid(InvalidFields):
    """A review request with bad fields (``fields`` names each); nothing was written."""


def review_item_request(
    *,
    review_type: str,
    system: AISystem | str,
    title: str,
    actor: Any,
    severity: str = Severity.MEDIUM,
    description: str = "",
    context: Mapping[str, Any] | None = None,
    sla_hours: float | None = None,
    now: datetime | None = None,
) -> ReviewItem:
    """Queue a pending review of a model change, a policy exception or data access, asked for by ``actor``.

    ``system`` is an AI system, its id or its unique name; it must be one of the actor's teams' systems
    (admins: any; ``actor=None``, an internal caller: any). Every bad field is reported at once
    (``ReviewRequestInvalid``; an unknown system and one outside the actor's teams read alike) and
    nothing is written. The SLA is ``hitl.sla_hours`` for the severity unless ``sla_hours`` is given. The
    description is kept in the item's context (``context["description"]``). The item records the actor
    as ``requested_by``; it is created and audited (``review.requested``) in one transaction. The
    requester may not be the one to approve it: such an approval is reported as a governance bypass
    (``hitl.services.self_approval``).
    """
    errors: dict[str, list[str]] = {}
    cleaned_type = _check(errors, "review_type", _clean_review_type, review_type)
    found = _check(errors, "system", _resolve_system, system, actor)
    cleaned_title = _check(errors, "title", _clean_text, title, max_length=TITLE_MAX_LENGTH, required=True)
    cleaned_severity = _check(errors, "severity", _clean_severity, severity)
    cleaned_description = _check(errors, "description", _clean_text, description, max_length=DESCRIPTION_MAX_LENGTH)
    cleaned_context = _check(errors, "context", _clean_context, context)
    hours = _check(errors, "sla_hours", _clean_sla_hours, sla_hours)
    if cleaned_description and isinstance(cleaned_context, dict) and DESCRIPTION_KEY in cleaned_context:
        errors[f"context.{DESCRIPTION_KEY}"] = ["give the description once: in description or in context"]
    if errors:
        raise ReviewRequestInvalid(errors)
    if cleaned_description:
        cleaned_context[DESCRIPTION_KEY] = cleaned_description
    now = now or timezone.now()
    if hours is None:
        hours = registry.get("hitl.sla_hours")[cleaned_severity]
    requester = actor if getattr(actor, "is_authenticated", False) else None
    with transaction.atomic():
        item = ReviewItem.objects.create(
            review_type=cleaned_type,
            title=cleaned_title,
            system=found,
            severity=cleaned_severity,
            sla_due_at=now + timedelta(hours=hours),
            context=cleaned_context,
            requested_by=requester,
        )
        audit_record(
            action=AuditAction.REVIEW_REQUESTED,
            actor=actor,
            target=item,
            data={
                "review_type": cleaned_type,
                "title": cleaned_title,
                "system": str(found.pk),
                "system_name": found.name,
                "severity": cleaned_severity,
                "sla_due_at": item.sla_due_at,
                "requested_by": str(requester.pk) if requester else None,
            },
        )
    return item


def _check(errors: dict[str, list[str]], field: str, clean, *args, **kwargs) -> Any:
    try:
        return clean(*args, **kwargs)
    except ValueError as exc:
        errors[field] = [str(exc)]
        return None


def _clean_review_type(value: Any) -> str:
    if value == ReviewType.ALERT_TRIAGE:
        raise ValueError("alert_triage reviews are queued from alerts only; request one of: " + _requestable())
    if value not in REQUESTABLE_REVIEW_TYPES:
        raise ValueError(f"{value!r} is not a review type you can request; use one of: {_requestable()}")
    return str(ReviewType(value))


def _requestable() -> str:
    return ", ".join(str(review_type) for review_type in REQUESTABLE_REVIEW_TYPES)


def _resolve_system(value: Any, actor: Any) -> AISystem:
    ref = str(value.pk) if isinstance(value, AISystem) else value
    if not isinstance(ref, str) or not ref.strip():
        raise ValueError("an AI system id or name is required")
    # user=None (an internal caller) may name any system; a text no name can equal names none.
    found = ai_system_get_by_ref(ref=ref.strip(), user=actor) if text_storage_problem(ref) is None else None
    if found is None:
        raise ValueError(f"no AI system {ref[:200]!r} in your teams")
    return found


def _clean_text(value: Any, *, max_length: int, required: bool = False) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise ValueError("must be text")
    text = value.strip()
    if required and not text:
        raise ValueError("this field is required")
    if len(text) > max_length:
        raise ValueError(f"at most {max_length} characters")
    if problem := text_storage_problem(text):
        raise ValueError(problem)
    return text


def _clean_severity(value: Any) -> str:
    if value not in Severity.values:
        raise ValueError(f"{value!r} is not a severity; use one of: {', '.join(Severity.values)}")
    return str(Severity(value))


def _clean_context(value: Any) -> dict[str, Any]:
    """A JSON object any JSON column stores: finite numbers, text without NUL or lone surrogates, ≤ 16 KB."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError("must be an object")
    pending: list[Any] = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise ValueError("must not contain NaN or Infinity")
        if isinstance(item, str) and (problem := text_storage_problem(item)):
            raise ValueError(problem)
        if isinstance(item, Mapping):
            for key, child in item.items():
                if not isinstance(key, str) or text_storage_problem(key):
                    raise ValueError("keys must be text without NUL characters")
                pending.append(child)
        elif isinstance(item, list | tuple):
            pending.extend(item)
        elif not isinstance(item, str | int | float | bool | type(None)):
            raise ValueError("must contain only JSON values")
    try:
        size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())
    except (TypeError, ValueError, RecursionError):
        raise ValueError("must contain only JSON values") from None
    if size > CONTEXT_MAX_BYTES:
        raise ValueError(f"is {size} bytes serialized; the limit is {CONTEXT_MAX_BYTES}")
    return dict(value)


def _clean_sla_hours(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError("must be a number of hours")
    if not 0 < value <= MAX_SLA_HOURS:
        raise ValueError(f"must be more than 0 and at most {MAX_SLA_HOURS} hours")
    return float(value)
