"""``POST /gateway/ai`` and ``/gateway/llm-generate`` against a local fake OpenAI-compatible upstream:
forwarding, the API key, audit metadata (prompt text only when configured), upstream failures, scoping,
roles and validation."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from governance.api.gateway import GatewayAISerializer
from governance.choices import AuditAction, Role
from governance.models import AuditLog
from governance.services.gateway import Usage

pytestmark = pytest.mark.django_db

AI_URL = "/api/v1/gateway/ai"
GENERATE_URL = "/api/v1/gateway/llm-generate"
SECRET_PROMPT = "Customer 4711 asked about the overdraft on account DE89 3704 0044"


def chat_answer(content: str, *, model: str = "fake-gpt", prompt_tokens: int = 11, completion_tokens: int = 7):
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


class FakeUpstream:
    """An OpenAI-compatible server on 127.0.0.1:<free port>. ``respond(body) -> (status, payload, delay)``
    decides each answer (payload: a dict sent as JSON, or raw bytes); every request is recorded."""

    def __init__(self):
        self.requests: list[dict[str, Any]] = []
        self.respond: Callable[[dict], tuple[int, Any, float]] = lambda body: (200, chat_answer("All good."), 0)
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                status, payload, delay = fake.respond(body)
                time.sleep(delay)
                raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(raw)))
                    self.end_headers()
                    self.wfile.write(raw)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the gateway gave up waiting (timeout tests)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)


def serve_fake_upstream(settings) -> Iterator[FakeUpstream]:
    """Start a fake upstream and point the gateway settings at it (API key set, prompts not logged)."""
    fake = FakeUpstream()
    fake.thread.start()
    settings.VIGIL_GATEWAY_UPSTREAM_URL = fake.url
    settings.VIGIL_GATEWAY_API_KEY = "sk-gateway-test"
    settings.VIGIL_GATEWAY_TIMEOUT = 5.0
    settings.VIGIL_GATEWAY_LOG_PROMPTS = False
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


@pytest.fixture
def upstream(settings):
    yield from serve_fake_upstream(settings)


@pytest.fixture
def caller(make_user, team):
    return make_user(Role.INGEST, teams=[team], username="svc-chatbot", is_service_account=True)


def gateway_audits():
    return list(AuditLog.objects.filter(action=AuditAction.GATEWAY_CALLED).order_by("seq"))


def ai_body(target, **overrides):
    body = {"system": target.name, "messages": [{"role": "user", "content": SECRET_PROMPT}]}
    body.update(overrides)
    return body


def test_ai_forwards_the_chat_completion_with_the_api_key_and_returns_the_answer(
    upstream, caller, own_system, client_for
):
    response = client_for(caller).post(
        AI_URL,
        ai_body(
            own_system,
            model="gpt-x",
            max_tokens=64,
            temperature=0.3,
            messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": SECRET_PROMPT}],
        ),
    )

    assert response.status_code == 200, response.json()
    [sent] = upstream.requests
    assert sent["path"] == "/v1/chat/completions"
    assert sent["headers"]["Authorization"] == "Bearer sk-gateway-test"
    assert sent["body"] == {
        "model": "gpt-x",
        "max_tokens": 64,
        "temperature": 0.3,
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": SECRET_PROMPT}],
    }
    answer = response.json()
    assert answer["choices"][0]["message"]["content"] == "All good."
    assert answer["usage"] == {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
    assert answer["gateway"]["request_id"] == sent["headers"]["X-Request-ID"]
    assert isinstance(answer["gateway"]["latency_ms"], int)
    assert answer["gateway"]["latency_ms"] >= 0


def test_ai_accepts_the_system_id_and_sends_no_authorization_without_an_api_key(
    upstream, caller, own_system, client_for, settings
):
    settings.VIGIL_GATEWAY_API_KEY = ""

    response = client_for(caller).post(AI_URL, ai_body(own_system, system=str(own_system.pk)))

    assert response.status_code == 200
    assert "Authorization" not in upstream.requests[0]["headers"]
    assert "model" not in upstream.requests[0]["body"]  # the upstream's default model answers


def test_ai_audits_metadata_without_prompt_or_completion_text(upstream, caller, own_system, client_for):
    upstream.respond = lambda body: (200, chat_answer("The overdraft limit is 500 EUR.", model="fake-gpt-2"), 0)

    response = client_for(caller).post(AI_URL, ai_body(own_system))

    [entry] = gateway_audits()
    assert entry.actor == "svc-chatbot"
    assert entry.actor_type == "service"
    assert entry.object_id == str(own_system.pk)
    data = entry.data
    assert data["caller"] == "svc-chatbot"
    assert data["system"] == str(own_system.pk)
    assert data["system_name"] == own_system.name
    assert data["model"] == "fake-gpt-2"
    assert data["endpoint"] == AI_URL
    assert data["request_id"] == response.json()["gateway"]["request_id"]
    assert data["outcome"] == "ok"
    assert data["upstream_status"] == 200
    assert (data["prompt_tokens"], data["completion_tokens"], data["total_tokens"]) == (11, 7, 18)
    assert data["latency_ms"] == response.json()["gateway"]["latency_ms"]
    assert data["message_count"] == 1
    stored = json.dumps(data)
    # Whole phrases of the prompt: a bare "4711" also occurs by chance in random ids and UUIDs.
    assert "Customer 4711" not in stored
    assert "DE89 3704 0044" not in stored
    assert "overdraft" not in stored


def test_ai_audits_prompt_and_completion_text_when_configured(upstream, caller, own_system, client_for, settings):
    settings.VIGIL_GATEWAY_LOG_PROMPTS = True
    upstream.respond = lambda body: (200, chat_answer("The overdraft limit is 500 EUR."), 0)

    client_for(caller).post(AI_URL, ai_body(own_system))

    [entry] = gateway_audits()
    assert entry.data["messages"] == [{"role": "user", "content": SECRET_PROMPT}]
    assert entry.data["completion"] == "The overdraft limit is 500 EUR."


def test_ai_answers_503_and_records_nothing_without_an_upstream(caller, own_system, client_for, settings):
    settings.VIGIL_GATEWAY_UPSTREAM_URL = ""

    response = client_for(caller).post(AI_URL, ai_body(own_system))

    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "upstream_not_configured"
    assert "set VIGIL_GATEWAY_UPSTREAM_URL" in error["message"]
    assert gateway_audits() == []


def test_ai_answers_504_when_the_upstream_times_out_and_audits_the_attempt(
    upstream, caller, own_system, client_for, settings
):
    settings.VIGIL_GATEWAY_TIMEOUT = 0.2
    upstream.respond = lambda body: (200, chat_answer("too late"), 1.0)

    response = client_for(caller).post(AI_URL, ai_body(own_system))

    assert response.status_code == 504
    assert response.json()["error"]["code"] == "upstream_timeout"
    [entry] = gateway_audits()
    assert entry.data["outcome"] == "upstream_timeout"
    assert entry.data["upstream_status"] is None
    assert entry.data["total_tokens"] == 0


def test_ai_answers_502_when_the_upstream_fails(upstream, caller, own_system, client_for):
    upstream.respond = lambda body: (500, {"error": {"message": "overloaded"}}, 0)

    response = client_for(caller).post(AI_URL, ai_body(own_system))

    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "upstream_error"
    assert "HTTP 500" in error["message"]
    [entry] = gateway_audits()
    assert (entry.data["outcome"], entry.data["upstream_status"]) == ("upstream_error", 500)


@pytest.mark.parametrize(
    ("status", "payload", "says"),
    [
        (400, {"error": {"message": "unknown model"}}, "refused the request (HTTP 400)"),
        (200, b"<html>gateway error</html>", "not JSON"),
        (200, {"result": "no choices here"}, "not a chat completion"),
    ],
)
def test_ai_answers_502_when_the_upstream_refuses_or_answers_garbage(
    upstream, caller, own_system, client_for, status, payload, says
):
    upstream.respond = lambda body: (status, payload, 0)

    response = client_for(caller).post(AI_URL, ai_body(own_system))

    assert response.status_code == 502
    assert says in response.json()["error"]["message"]


def test_ai_answers_502_when_the_upstream_is_unreachable(caller, own_system, client_for, settings):
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings.VIGIL_GATEWAY_UPSTREAM_URL = f"http://127.0.0.1:{port}/v1"

    response = client_for(caller).post(AI_URL, ai_body(own_system))

    assert response.status_code == 502
    assert "could not be reached" in response.json()["error"]["message"]
    assert gateway_audits()[0].data["outcome"] == "upstream_error"


def test_ai_answers_404_for_a_system_outside_the_callers_teams_and_sends_nothing(
    upstream, caller, foreign_system, client_for
):
    for ref in (foreign_system.name, str(foreign_system.pk), "no-such-system"):
        response = client_for(caller).post(AI_URL, ai_body(foreign_system, system=ref))
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
    assert upstream.requests == []
    assert gateway_audits() == []


@pytest.mark.parametrize("role", [Role.VIEWER, Role.REVIEWER, Role.SECURITY])
def test_ai_refuses_roles_that_may_not_use_the_gateway(upstream, make_user, team, own_system, client_for, role):
    user = make_user(role, teams=[team])

    response = client_for(user).post(AI_URL, ai_body(own_system))

    assert response.status_code == 403
    assert upstream.requests == []


@pytest.mark.parametrize("role", [Role.ADMIN, Role.GOVERNANCE_LEAD, Role.CICD, Role.INGEST])
def test_ai_serves_admins_leads_and_service_accounts(upstream, make_user, team, own_system, client_for, role):
    user = make_user(role, teams=[team], is_service_account=role in (Role.CICD, Role.INGEST))

    assert client_for(user).post(AI_URL, ai_body(own_system)).status_code == 200


def test_ai_requires_authentication(upstream, anon_client, own_system):
    assert anon_client.post(AI_URL, ai_body(own_system), format="json").status_code == 401


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"messages": [{"role": "user", "content": "hi"}]}, "system"),
        ({"system": "fraud-scorer"}, "messages"),
        ({"system": "fraud-scorer", "messages": []}, "messages"),
        ({"system": "fraud-scorer", "messages": [{"role": "wizard", "content": "hi"}]}, "messages.0.role"),
        ({"system": "fraud-scorer", "messages": [{"role": "user"}]}, "messages.0.content"),
        ({"system": "fraud-scorer", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}, "max_tokens"),
        ({"system": "fraud-scorer", "messages": [{"role": "user", "content": "x"}], "temperature": 3}, "temperature"),
    ],
)
def test_ai_answers_400_naming_the_invalid_field(upstream, caller, own_system, client_for, body, field):
    response = client_for(caller).post(AI_URL, body)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"
    assert field in response.json()["error"]["fields"]
    assert upstream.requests == []


def test_llm_generate_sends_one_user_message_and_answers_text_and_usage(upstream, caller, own_system, client_for):
    upstream.respond = lambda body: (200, chat_answer("Roses are red."), 0)

    response = client_for(caller).post(
        GENERATE_URL, {"system": own_system.name, "prompt": "Write a poem.", "max_tokens": 20, "model": "m1"}
    )

    assert response.status_code == 200
    assert upstream.requests[0]["body"] == {
        "model": "m1",
        "max_tokens": 20,
        "messages": [{"role": "user", "content": "Write a poem."}],
    }
    answer = response.json()
    assert answer["text"] == "Roses are red."
    assert answer["usage"] == {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
    assert answer["gateway"]["request_id"] == upstream.requests[0]["headers"]["X-Request-ID"]
    [entry] = gateway_audits()
    assert entry.data["endpoint"] == GENERATE_URL
    assert "poem" not in json.dumps(entry.data)


def test_llm_generate_answers_400_without_a_prompt_and_503_without_an_upstream(
    caller, own_system, client_for, settings
):
    settings.VIGIL_GATEWAY_UPSTREAM_URL = ""
    client = client_for(caller)

    missing = client.post(GENERATE_URL, {"system": own_system.name})
    unconfigured = client.post(GENERATE_URL, {"system": own_system.name, "prompt": "hi"})

    assert missing.status_code == 400
    assert "prompt" in missing.json()["error"]["fields"]
    assert unconfigured.status_code == 503
    assert unconfigured.json()["error"]["code"] == "upstream_not_configured"


@given(temperature=st.floats(allow_nan=False, allow_infinity=False))
def test_ai_request_accepts_exactly_the_temperatures_from_0_to_2(temperature):
    body = {"system": "s", "messages": [{"role": "user", "content": "x"}], "temperature": temperature}

    assert GatewayAISerializer(data=body).is_valid() == (0.0 <= temperature <= 2.0)


@given(
    usage=st.dictionaries(
        st.sampled_from(["prompt_tokens", "completion_tokens", "total_tokens"]),
        st.one_of(st.integers(), st.floats(), st.text(), st.none(), st.booleans()),
    )
)
def test_usage_from_any_answer_is_non_negative_integer_counts(usage):
    counted = Usage.from_answer({"usage": usage})

    for value in counted.as_dict().values():
        assert type(value) is int
        assert value >= 0
