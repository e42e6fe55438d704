"""The OpenAI-compatible provider against a local fake server: answers, retries, timeouts, fallbacks,
strict validation, and silence when unconfigured."""

from __future__ import annotations

import json
import math
import threading
import time
import uuid
from collections import deque
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from governance.choices import AuditAction
from governance.models import AuditLog
from hitl.assist.base import UNCALIBRATED_CONFIDENCE_CAP, AssistInput, configured_provider_name, get_provider
from hitl.assist.default import DefaultProvider
from hitl.assist.features import History, ItemEvidence, SignalStrength
from hitl.assist.openai_compat import ASSIST_RESULT_SCHEMA, InvalidAnswer, OpenAICompatProvider, parse_answer
from hitl.models import AssistResult
from hitl.services.assist import review_items_assist
from tests.hitl.factories import ReviewItemFactory

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
REFS = ("alert:1", "event:2", "audit:3")
VALID = {
    "summary": "PSI drift on a minimal-risk system, seen and approved before.",
    "suggested_decision": "approve",
    "confidence": 0.97,
    "risk_score": 18,
    "evidence_refs": ["alert:1", "audit:3"],
    "reasoning": "Severity medium, signal just past warning, minimal risk class, 40 past approvals.",
    "sla_recommendation": {"hours": 12, "reason": "routine"},
}


class FakeChatServer:
    """Answers POST /v1/chat/completions from a script of (status, content or raw body, delay)."""

    def __init__(self):
        self.script: deque = deque()
        self.requests: list[dict] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                status, content, delay = fake.script.popleft() if fake.script else (200, VALID, 0)
                time.sleep(delay)
                if isinstance(content, bytes):
                    payload = content
                else:
                    text = content if isinstance(content, str) else json.dumps(content)
                    payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": text}}]}).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def answer(self, *responses):
        self.script.extend(responses)


@pytest.fixture
def chat_server():
    server = FakeChatServer()
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


def assist_input(**overrides) -> AssistInput:
    values = {
        "item_id": uuid.uuid4(),
        "title": "Triage rate:data_quality: psi on churn-propensity",
        "review_type": "alert_triage",
        "severity": "medium",
        "system_name": "churn-propensity",
        "risk_class": "minimal",
        "rule": "rate:data_quality",
        "fingerprint": "a" * 64,
        "context": {"signal": "psi", "breaches": 3, "min_breaches": 3},
        "created_at": NOW - timedelta(hours=1),
        "sla_due_at": NOW + timedelta(hours=23),
        "evidence": ItemEvidence(
            "medium", "alert_triage", "minimal", "rate", SignalStrength(0.3, "3 breaches"), History()
        ),
        "evidence_refs": REFS,
    }
    values.update(overrides)
    return AssistInput(**values)


def provider_for(server, **kwargs) -> OpenAICompatProvider:
    options = {"url": server.url, "model": "vigil-test", "api_key": "sk-test", "timeout": 2.0, "retries": 2}
    options.update(kwargs)
    return OpenAICompatProvider(backoff_seconds=0.01, fallback=DefaultProvider(use_active_model=False), **options)


pytestmark = pytest.mark.django_db


def test_a_valid_answer_becomes_the_suggestion(chat_server):
    item = assist_input()

    [suggestion] = provider_for(chat_server).suggest([item], now=NOW)

    assert suggestion.provider == "openai_compat"
    assert suggestion.model_version == "llm:vigil-test"
    assert suggestion.suggested_decision == "approve"
    assert suggestion.risk_score == 18
    assert suggestion.evidence_refs == ["alert:1", "audit:3"]
    assert suggestion.fallback_reason == ""
    # Self-reported confidence is not calibrated: stored below the auto-approval floor, raw value kept.
    assert suggestion.confidence == UNCALIBRATED_CONFIDENCE_CAP
    assert suggestion.factors["llm"]["reported_confidence"] == 0.97
    assert suggestion.sla_recommendation["hours"] == 12  # shorter than medium's 24 h: accepted
    assert suggestion.sla_recommendation["model_reason"] == "routine"


def test_the_request_asks_for_the_assist_schema_with_the_configured_model_and_key(chat_server):
    provider_for(chat_server).suggest([assist_input()], now=NOW)

    [request] = chat_server.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == "Bearer sk-test"
    body = request["body"]
    assert body["model"] == "vigil-test"
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert json.loads(body["messages"][1]["content"])["evidence_refs"] == list(REFS)
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["schema"] == ASSIST_RESULT_SCHEMA


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("I think you should approve it.", "not JSON"),
        ({**VALID, "suggested_decision": "maybe"}, "schema violation at suggested_decision"),
        ({**VALID, "confidence": 1.5}, "schema violation at confidence"),
        ({k: v for k, v in VALID.items() if k != "reasoning"}, "schema violation"),
        ({**VALID, "evidence_refs": ["incident:made-up"]}, "evidence the item does not have"),
        (b'{"choices": []}', "no choices[0].message.content"),
        (b"<html>gateway</html>", "response body is not JSON"),
    ],
)
def test_an_invalid_answer_falls_back_to_the_default_provider_and_says_why(chat_server, content, reason):
    chat_server.answer((200, content, 0))

    [suggestion] = provider_for(chat_server).suggest([assist_input()], now=NOW)

    assert suggestion.provider == "default"
    assert suggestion.model_version == "rules"
    assert reason in suggestion.fallback_reason
    assert suggestion.fallback_reason.startswith("openai_compat:")
    assert len(chat_server.requests) == 1  # an invalid answer is not retried


def test_a_server_error_is_retried_and_the_next_answer_used(chat_server):
    chat_server.answer((500, VALID, 0), (429, VALID, 0))

    [suggestion] = provider_for(chat_server, retries=2).suggest([assist_input()], now=NOW)

    assert suggestion.provider == "openai_compat"
    assert len(chat_server.requests) == 3


def test_persistent_server_errors_fall_back_after_the_configured_retries(chat_server):
    chat_server.answer(*[(503, VALID, 0)] * 3)

    [suggestion] = provider_for(chat_server, retries=1).suggest([assist_input()], now=NOW)

    assert suggestion.provider == "default"
    assert "HTTP 503 after 2 attempt(s)" in suggestion.fallback_reason
    assert len(chat_server.requests) == 2


def test_a_client_error_is_not_retried(chat_server):
    chat_server.answer((401, VALID, 0))

    [suggestion] = provider_for(chat_server, retries=2).suggest([assist_input()], now=NOW)

    assert "HTTP 401 (not retried)" in suggestion.fallback_reason
    assert len(chat_server.requests) == 1


def test_a_slow_answer_past_the_timeout_falls_back(chat_server):
    chat_server.answer((200, VALID, 1.0))
    started = time.perf_counter()

    [suggestion] = provider_for(chat_server, timeout=0.2, retries=0).suggest([assist_input()], now=NOW)

    assert time.perf_counter() - started < 0.9
    assert suggestion.provider == "default"
    assert "timed out after 0.2 s" in suggestion.fallback_reason


def test_only_the_items_that_failed_fall_back(chat_server):
    chat_server.answer((200, VALID, 0), (200, "nonsense", 0), (200, VALID, 0))
    items = [assist_input(), assist_input(), assist_input()]

    suggestions = provider_for(chat_server).suggest(items, now=NOW)

    assert [s.item_id for s in suggestions] == [i.item_id for i in items]
    assert [s.provider for s in suggestions] == ["openai_compat", "default", "openai_compat"]


def test_nothing_is_sent_when_no_url_is_configured(chat_server, settings, monkeypatch):
    settings.VIGIL_ASSIST_LLM_URL = ""
    sent = []
    monkeypatch.setattr(requests.Session, "request", lambda *args, **kwargs: sent.append(args))

    [suggestion] = get_provider("openai_compat").suggest([assist_input()], now=NOW)

    assert sent == []
    assert chat_server.requests == []
    assert suggestion.provider == "default"
    assert "VIGIL_ASSIST_LLM_URL is not set" in suggestion.fallback_reason


def test_the_configured_provider_is_the_llm_only_when_a_url_is_set(settings):
    settings.VIGIL_ASSIST_LLM_URL = ""
    assert configured_provider_name() == "default"
    assert get_provider().name == "default"

    settings.VIGIL_ASSIST_LLM_URL = "http://127.0.0.1:9/v1"
    assert get_provider().name == "openai_compat"


def test_a_run_through_the_llm_records_its_fallbacks(chat_server, settings, own_system):
    settings.VIGIL_ASSIST_LLM_URL = chat_server.url
    settings.VIGIL_ASSIST_LLM_MODEL = "vigil-test"
    settings.VIGIL_ASSIST_LLM_RETRIES = 0
    first, second = ReviewItemFactory.create_batch(2, system=own_system)
    chat_server.answer((200, {**VALID, "evidence_refs": []}, 0), (200, "{", 0))

    outcome = review_items_assist(item_ids=[first.id, second.id])

    assert (outcome.provider, outcome.model_version, outcome.fallbacks) == ("openai_compat", "llm:vigil-test", 1)
    stored = {r.item_id: r for r in AssistResult.objects.all()}
    assert stored[first.id].provider == "openai_compat"
    assert stored[second.id].provider == "default"
    assert "not JSON" in stored[second.id].fallback_reason
    entry = AuditLog.objects.get(action=AuditAction.REVIEW_ASSISTED)
    assert entry.data["fallbacks"] == 1
    assert entry.data["provider"] == "openai_compat"


# --- the answer validator ------------------------------------------------------------------------------
ANSWER_KEYS = list(VALID)
any_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


def _is_valid(answer) -> bool:
    if not isinstance(answer, dict) or set(answer) != set(ANSWER_KEYS):
        return False
    number = (int, float)
    sla = answer["sla_recommendation"]
    return (
        isinstance(answer["summary"], str)
        and 1 <= len(answer["summary"]) <= 2000
        and answer["suggested_decision"] in ("approve", "reject", "escalate")
        and isinstance(answer["confidence"], number)
        and not isinstance(answer["confidence"], bool)
        and 0 <= answer["confidence"] <= 1
        and isinstance(answer["risk_score"], number)
        and not isinstance(answer["risk_score"], bool)
        and 0 <= answer["risk_score"] <= 100
        and isinstance(answer["evidence_refs"], list)
        and all(isinstance(r, str) and len(r) <= 200 for r in answer["evidence_refs"])
        and len(answer["evidence_refs"]) <= 100
        and isinstance(answer["reasoning"], str)
        and 1 <= len(answer["reasoning"]) <= 5000
        and isinstance(sla, dict)
        and set(sla) == {"hours", "reason"}
        and isinstance(sla["hours"], number)
        and not isinstance(sla["hours"], bool)
        and 0 < sla["hours"] <= 720
        and isinstance(sla["reason"], str)
        and len(sla["reason"]) <= 1000
    )


@given(st.dictionaries(st.sampled_from([*ANSWER_KEYS, "extra"]), any_json, max_size=9) | any_json)
def test_random_answers_are_rejected_unless_they_are_valid(answer):
    if _is_valid(answer):
        assert parse_answer(json.dumps(answer)) == answer
    else:
        with pytest.raises(InvalidAnswer):
            parse_answer(json.dumps(answer))


@given(
    key=st.sampled_from(ANSWER_KEYS),
    value=any_json,
)
def test_replacing_any_field_of_a_valid_answer_is_accepted_only_if_still_valid(key, value):
    answer = {**VALID, key: value}
    if _is_valid(answer):
        assert parse_answer(json.dumps(answer))[key] == value
    else:
        with pytest.raises(InvalidAnswer):
            parse_answer(json.dumps(answer))


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_are_refused_even_though_python_parses_them(constant):
    text = json.dumps(VALID).replace('"confidence": 0.97', f'"confidence": {constant}')
    assert not math.isfinite(json.loads(text)["confidence"])  # Python's json would accept it

    with pytest.raises(InvalidAnswer, match="not valid JSON"):
        parse_answer(text)
