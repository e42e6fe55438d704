"""An optional provider that asks any OpenAI-compatible chat endpoint, with the default provider as
the safety net.

Configured by environment only (``VIGIL_ASSIST_LLM_URL``, ``_MODEL``, ``_API_KEY``, ``_TIMEOUT``,
``_RETRIES``): with no URL it sends nothing and every item falls back. Per item it POSTs
``{URL}/chat/completions`` asking for a ``json_schema`` response, retries timeouts, connection errors,
429 and 5xx with exponential backoff, and validates the answer strictly (:func:`parse_answer`). Any
failure or invalid answer falls back to the default provider for that item, with ``fallback_reason``
saying why. The model's self-reported confidence is not calibrated: it is stored capped below the
auto-approval floor (the raw value stays in ``factors``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import requests
from django.conf import settings
from jsonschema import Draft202012Validator

from hitl.assist.base import OPENAI_COMPAT_PROVIDER, UNCALIBRATED_CONFIDENCE_CAP, AssistInput, Suggestion
from hitl.assist.rules import recommend_sla
from hitl.models import ReviewDecision

logger = logging.getLogger(__name__)

ASSIST_RESULT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": [
        "summary",
        "suggested_decision",
        "confidence",
        "risk_score",
        "evidence_refs",
        "reasoning",
        "sla_recommendation",
    ],
    "properties": {
        "summary": {"type": "string", "minLength": 1, "maxLength": 2000},
        "suggested_decision": {"type": "string", "enum": list(ReviewDecision.values)},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "risk_score": {"type": "number", "minimum": 0, "maximum": 100},
        "evidence_refs": {"type": "array", "items": {"type": "string", "maxLength": 200}, "maxItems": 100},
        "reasoning": {"type": "string", "minLength": 1, "maxLength": 5000},
        "sla_recommendation": {
            "type": "object",
            "additionalProperties": False,
            "required": ["hours", "reason"],
            "properties": {
                "hours": {"type": "number", "exclusiveMinimum": 0, "maximum": 720},
                "reason": {"type": "string", "maxLength": 1000},
            },
        },
    },
}
_VALIDATOR = Draft202012Validator(ASSIST_RESULT_SCHEMA)
SYSTEM_PROMPT = (
    "You assist the human reviewers of an AI-governance review queue. For the review item you are given, "
    "answer with one JSON object and nothing else, matching the JSON schema you are given. "
    "suggested_decision: approve (the change or the observed behaviour is acceptable), reject (refused, or "
    "an alert dismissed as a false positive) or escalate (serious enough for an incident). confidence: the "
    "probability (0-1) that a careful reviewer would take that decision. risk_score: 0 (none) to 100. "
    "evidence_refs: only references listed in the item's evidence_refs. reasoning: name the factors "
    "(severity, how far the signal went past its thresholds, the system's risk class, past decisions). "
    "sla_recommendation: hours a human should take at most, and why."
)
RETRY_AFTER_CAP_SECONDS = 5.0


class InvalidAnswer(ValueError):
    """The endpoint answered, but not with a valid assist result."""


class CallFailed(Exception):
    """The endpoint could not be reached or kept failing."""


def _refuse_constant(name: str):
    raise InvalidAnswer(f"{name} is not valid JSON")


def parse_answer(content: Any, *, known_refs: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse and strictly validate a model's answer; ``InvalidAnswer`` says what is wrong.

    The answer must be a JSON object (NaN/Infinity refused) satisfying :data:`ASSIST_RESULT_SCHEMA`;
    with ``known_refs`` every evidence reference must be one of them (no invented evidence).
    """
    if not isinstance(content, str):
        raise InvalidAnswer("the message content is not a string")
    try:
        answer = json.loads(content, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise InvalidAnswer(f"not JSON: {exc.msg} at {exc.pos}") from exc
    if not isinstance(answer, dict):
        raise InvalidAnswer("the answer is not a JSON object")
    error = next(iter(sorted(_VALIDATOR.iter_errors(answer), key=lambda e: list(e.absolute_path))), None)
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "answer"
        raise InvalidAnswer(f"schema violation at {where}: {error.message[:200]}")
    if known_refs is not None:
        unknown = [ref for ref in answer["evidence_refs"] if ref not in set(known_refs)]
        if unknown:
            raise InvalidAnswer(f"evidence_refs names evidence the item does not have: {unknown[:3]}")
    return answer


class OpenAICompatProvider:
    name = OPENAI_COMPAT_PROVIDER

    def __init__(
        self,
        *,
        url: str,
        model: str,
        api_key: str = "",
        timeout: float = 10.0,
        retries: int = 2,
        backoff_seconds: float = 0.5,
        fallback=None,
    ):
        self.url = (url or "").rstrip("/")
        self.model = model
        self.api_key = api_key
        self.timeout = timeout
        self.retries = max(0, retries)
        self.backoff_seconds = backoff_seconds
        self._fallback = fallback
        self._session: requests.Session | None = None

    @classmethod
    def from_settings(cls) -> OpenAICompatProvider:
        return cls(
            url=settings.VIGIL_ASSIST_LLM_URL,
            model=settings.VIGIL_ASSIST_LLM_MODEL,
            api_key=settings.VIGIL_ASSIST_LLM_API_KEY,
            timeout=settings.VIGIL_ASSIST_LLM_TIMEOUT,
            retries=settings.VIGIL_ASSIST_LLM_RETRIES,
        )

    @property
    def model_version(self) -> str:
        return f"llm:{self.model}" if self.model else "llm"

    @property
    def fallback(self):
        if self._fallback is None:
            from hitl.assist.default import DefaultProvider

            self._fallback = DefaultProvider()
        return self._fallback

    def suggest(self, inputs: Sequence[AssistInput], *, now: datetime) -> list[Suggestion]:
        """Ask the endpoint item by item; items it cannot answer validly get the default provider's
        suggestion (computed in one batch) with ``fallback_reason`` set."""
        answered: dict[int, Suggestion] = {}
        failed: dict[int, str] = {}
        for index, item in enumerate(inputs):
            if not self.url:
                failed[index] = "VIGIL_ASSIST_LLM_URL is not set; nothing was sent"
                continue
            try:
                answered[index] = self._suggestion(item, self._ask(item))
            except (CallFailed, InvalidAnswer) as exc:
                failed[index] = f"{self.name}: {exc}"[:300]
                logger.warning("assist LLM answer unusable; falling back", extra={"item": str(item.item_id)})
        if failed:
            order = sorted(failed)
            fallbacks = self.fallback.suggest([inputs[i] for i in order], now=now)
            for index, suggestion in zip(order, fallbacks, strict=True):
                answered[index] = _with_fallback_reason(suggestion, failed[index])
        return [answered[i] for i in range(len(inputs))]

    def _payload(self, item: AssistInput) -> dict[str, Any]:
        evidence = item.evidence
        described = {
            "title": item.title,
            "review_type": item.review_type,
            "severity": item.severity,
            "system": {"name": item.system_name, "risk_class": item.risk_class},
            "rule": item.rule,
            "context": dict(item.context),
            "signal_strength": {"value": evidence.signal.value, "detail": evidence.signal.detail},
            "past_human_decisions": {
                scope: evidence.history.scope(scope).as_dict() for scope in ("fingerprint", "rule", "system")
            },
            "evidence_refs": list(item.evidence_refs),
            "queued_at": item.created_at.isoformat(),
        }
        return {
            "model": self.model,
            "temperature": 0,
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": json.dumps(described, default=str)},
            ],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "assist_result", "strict": True, "schema": ASSIST_RESULT_SCHEMA},
            },
        }

    def _ask(self, item: AssistInput) -> dict[str, Any]:
        if self._session is None:
            self._session = requests.Session()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        payload = self._payload(item)
        reason = ""
        for attempt in range(self.retries + 1):
            wait = self.backoff_seconds * 2**attempt
            try:
                response = self._session.post(
                    f"{self.url}/chat/completions", json=payload, headers=headers, timeout=self.timeout
                )
            except requests.Timeout:
                reason = f"timed out after {self.timeout:g} s"
            except requests.RequestException as exc:
                reason = f"request failed ({type(exc).__name__})"
            else:
                if response.status_code == 429 or response.status_code >= 500:
                    reason = f"HTTP {response.status_code}"
                    wait = max(wait, _retry_after(response))
                elif response.status_code >= 400:
                    raise CallFailed(f"HTTP {response.status_code} (not retried)")
                else:
                    return parse_answer(_message_content(response), known_refs=item.evidence_refs)
            if attempt < self.retries:
                time.sleep(wait)
        raise CallFailed(f"{reason} after {self.retries + 1} attempt(s)")

    def _suggestion(self, item: AssistInput, answer: dict[str, Any]) -> Suggestion:
        reported = float(answer["confidence"])
        risk = float(answer["risk_score"])
        sla = recommend_sla(
            severity=item.severity,
            risk_score=risk,
            created_at=item.created_at,
            sla_due_at=item.sla_due_at,
            sla_hours=self.fallback.sla_hours,
            max_hours=float(answer["sla_recommendation"]["hours"]),
        )
        sla["model_reason"] = answer["sla_recommendation"]["reason"]
        return Suggestion(
            item_id=item.item_id,
            summary=answer["summary"],
            suggested_decision=answer["suggested_decision"],
            confidence=min(reported, UNCALIBRATED_CONFIDENCE_CAP),
            risk_score=risk,
            evidence_refs=list(answer["evidence_refs"]) or list(item.evidence_refs),
            reasoning=answer["reasoning"],
            sla_recommendation=sla,
            provider=self.name,
            model_version=self.model_version,
            factors={
                "llm": {
                    "model": self.model,
                    "reported_confidence": reported,
                    "confidence_capped": reported > UNCALIBRATED_CONFIDENCE_CAP,
                }
            },
        )


def _message_content(response: requests.Response) -> Any:
    try:
        body = response.json()
    except ValueError as exc:
        raise InvalidAnswer("the response body is not JSON") from exc
    try:
        return body["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError) as exc:
        raise InvalidAnswer("the response has no choices[0].message.content") from exc


def _retry_after(response: requests.Response) -> float:
    try:
        return min(RETRY_AFTER_CAP_SECONDS, max(0.0, float(response.headers.get("Retry-After", 0))))
    except ValueError:
        return 0.0


def _with_fallback_reason(suggestion: Suggestion, reason: str) -> Suggestion:
    return replace(suggestion, fallback_reason=reason)
