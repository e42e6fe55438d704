"""The provider protocol, the dataclasses that cross it, and the registry that picks a provider.

A provider turns a chunk of :class:`AssistInput` (everything observable about a pending item,
computed set-based by :mod:`hitl.assist.features`) into one :class:`Suggestion` per input, in order.
It never writes: :func:`hitl.services.assist.review_items_assist` stores what it returns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from django.conf import settings

from hitl.assist.features import ItemEvidence

DEFAULT_PROVIDER = "default"
OPENAI_COMPAT_PROVIDER = "openai_compat"
PROVIDER_NAMES = (DEFAULT_PROVIDER, OPENAI_COMPAT_PROVIDER)
# Only a calibrated confidence (the learned model's) may clear the auto-approval floor; rules and an
# LLM's self-reported confidence are capped below it so they can inform a reviewer but never decide alone.
UNCALIBRATED_CONFIDENCE_CAP = 0.85


@dataclass(frozen=True)
class AssistInput:
    """One pending item as the providers see it (no ORM access needed to suggest)."""

    item_id: UUID
    title: str
    review_type: str
    severity: str
    system_name: str
    risk_class: str
    rule: str
    fingerprint: str
    context: Mapping[str, Any]
    created_at: datetime
    sla_due_at: datetime
    evidence: ItemEvidence
    evidence_refs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Suggestion:
    """What a provider suggests for one item: the fields of ``AssistResult``."""

    item_id: UUID
    summary: str
    suggested_decision: str
    confidence: float
    risk_score: float
    evidence_refs: list[str]
    reasoning: str
    sla_recommendation: dict[str, Any]
    provider: str
    model_version: str = ""
    factors: dict[str, Any] = field(default_factory=dict)
    fallback_reason: str = ""


class AssistProvider(Protocol):
    """Suggests for a whole chunk at once, so a provider can vectorize (the default one does)."""

    name: str

    @property
    def model_version(self) -> str: ...

    def suggest(self, inputs: Sequence[AssistInput], *, now: datetime) -> list[Suggestion]: ...


class UnknownProvider(ValueError):
    """The name is not one of :data:`PROVIDER_NAMES`."""


def configured_provider_name() -> str:
    """``openai_compat`` when an LLM endpoint is configured (``VIGIL_ASSIST_LLM_URL``), else ``default``."""
    return OPENAI_COMPAT_PROVIDER if getattr(settings, "VIGIL_ASSIST_LLM_URL", "") else DEFAULT_PROVIDER


def get_provider(name: str | None = None) -> AssistProvider:
    """A fresh provider (it snapshots config and the active model on creation: one per run).

    ``name=None`` chooses from settings (:func:`configured_provider_name`); an unknown name raises
    :class:`UnknownProvider`.
    """
    from hitl.assist.default import DefaultProvider
    from hitl.assist.openai_compat import OpenAICompatProvider

    chosen = name or configured_provider_name()
    if chosen == DEFAULT_PROVIDER:
        return DefaultProvider()
    if chosen == OPENAI_COMPAT_PROVIDER:
        return OpenAICompatProvider.from_settings()
    raise UnknownProvider(f"unknown assist provider {chosen!r}; use one of: {', '.join(PROVIDER_NAMES)}")
