"""Bypass detection: failed JWTs and repeated 429s counted per caller, reported as security events."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import jwt
import pytest
import time_machine
from django.conf import settings
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from config import registry
from governance.models import AISystem, RateLimit
from governance.services.bypass import (
    AUTH_FAILURE_GROUP,
    PLATFORM_SYSTEM_NAME,
    bypass_event_id,
    bypass_scan,
    bypass_scan_rate_limit_abuse,
    platform_system_ensure,
    redact_details,
)
from governance.tasks import bypass_scan as bypass_scan_task
from incidents.models import Incident
from oversight.models import EventRaw
from tasks.schedules import SCHEDULES

pytestmark = pytest.mark.django_db
IP = "203.0.113.9"
URL = "/api/v1/teams"


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def bad_tokens(user) -> list[str]:
    """A bad signature, an ``alg: none`` token and an expired token, all for a real user."""
    claims = {"token_type": "access", "user_id": str(user.pk), "jti": "x" * 32}
    claims["exp"] = int((timezone.now() + timedelta(minutes=5)).timestamp())
    bad_signature = jwt.encode(claims, "not-the-signing-key-" * 3, algorithm="HS256")
    alg_none = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."
    with time_machine.travel(timezone.now() - timedelta(hours=2), tick=False):
        expired = str(AccessToken.for_user(user))
    return [bad_signature, alg_none, expired]


def call(token: str | None, *, ip: str = IP):
    client = APIClient(REMOTE_ADDR=ip)
    if token is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}", HTTP_USER_AGENT="curl/8")
    return client.get(URL)


def failures(ip: str = IP) -> int:
    return sum(RateLimit.objects.filter(key=f"ip:{ip}", bucket=AUTH_FAILURE_GROUP).values_list("count", flat=True))


def test_every_kind_of_bad_token_is_refused_and_counted(viewer):
    for token in bad_tokens(viewer):
        assert call(token).status_code == 401
    assert call("Bearer two parts").status_code == 401  # malformed header
    assert failures() == 4


def test_valid_and_missing_tokens_are_not_counted(viewer):
    assert call(str(AccessToken.for_user(viewer))).status_code == 200
    assert call(None).status_code in (401, 403)  # missing-but-required is not a failed authentication
    assert failures() == 0


def test_ten_failures_become_one_security_event_and_an_incident(viewer, django_capture_on_commit_callbacks):
    tokens = bad_tokens(viewer)
    for i in range(12):
        assert call(tokens[i % 3]).status_code == 401
    with django_capture_on_commit_callbacks(execute=True):
        assert bypass_scan() == {"invalid_jwt": 1, "rate_limit_abuse": 0}
    platform = AISystem.objects.get(name=PLATFORM_SYSTEM_NAME)
    assert platform.team.slug == "security"
    event = EventRaw.objects.get(system=platform)
    assert (event.category, event.signal, event.value, event.severity) == ("security", "auth_failures", 12.0, "high")
    assert event.attributes["detector"] == "invalid_jwt"
    assert event.attributes["source"] == f"ip:{IP}"
    assert event.attributes["details"]["ip"] == IP
    assert event.attributes["details"]["count"] == 12
    stored = json.dumps(event.attributes)
    assert not any(token in stored or token.split(".")[-1] in stored for token in tokens if token.split(".")[-1])
    assert "Bearer" not in stored and "Authorization" not in stored
    # One warning-level event is not an alert on its own (the rate rule needs repeated breaches).
    assert not Incident.objects.filter(system=platform).exists()
    # A second scan in the same hour ingests nothing new.
    with django_capture_on_commit_callbacks(execute=True):
        assert bypass_scan() == {"invalid_jwt": 0, "rate_limit_abuse": 0}
    assert EventRaw.objects.filter(system=platform).count() == 1


def test_below_the_warning_threshold_nothing_is_emitted(viewer):
    for token in bad_tokens(viewer)[:3]:
        call(token)
    assert bypass_scan()["invalid_jwt"] == 0
    assert not EventRaw.objects.exists()


def test_critical_at_the_critical_threshold_opens_a_security_incident(viewer, django_capture_on_commit_callbacks):
    tokens = bad_tokens(viewer)
    # The engine's threshold rule fires strictly above critical (50): 51 failures.
    for i in range(51):
        call(tokens[i % 3])
    now = timezone.now()
    with django_capture_on_commit_callbacks(execute=True):
        assert bypass_scan(now=now)["invalid_jwt"] == 1
    event = EventRaw.objects.get()
    assert event.severity == "critical"
    incident = Incident.objects.get(system=event.system)
    assert incident.team.slug == "security"
    assert bypass_scan(now=now)["invalid_jwt"] == 0  # same hour: the event id is already stored


def test_repeated_429s_become_a_rate_limit_abuse_detection(viewer, admin_user, client_for):
    limits = registry.get("ratelimit.limits")
    limits["default"] = {"limit": 2, "window_seconds": 60}
    registry.set("ratelimit.limits", limits, user=admin_user, reason="test")
    client = client_for(viewer)
    answers = [client.get(URL).status_code for _ in range(11)]
    assert answers.count(429) == 9
    assert bypass_scan_rate_limit_abuse() == 0  # 9 refused: below the 10 that count as abuse
    assert client.get(URL).status_code == 429
    assert bypass_scan_rate_limit_abuse() == 1
    event = EventRaw.objects.get()
    assert event.attributes["detector"] == "rate_limit_abuse"
    assert event.attributes["source"] == f"user:{viewer.pk}|default"
    assert event.attributes["details"]["denied"] == 10
    assert bypass_scan_rate_limit_abuse() == 0


def test_platform_system_is_created_once_and_audited():
    first = platform_system_ensure()
    assert platform_system_ensure().pk == first.pk
    assert (first.entity_type, first.risk_class, first.team.name) == ("system", "limited", "Security")


def test_event_id_is_per_detector_source_and_hour():
    now = timezone.now().replace(minute=5)
    same = bypass_event_id(detector="invalid_jwt", source="ip:a", now=now.replace(minute=55))
    assert bypass_event_id(detector="invalid_jwt", source="ip:a", now=now) == same
    assert bypass_event_id(detector="invalid_jwt", source="ip:b", now=now) != same
    assert bypass_event_id(detector="rate_limit_abuse", source="ip:a", now=now) != same
    assert bypass_event_id(detector="invalid_jwt", source="ip:a", now=now + timedelta(hours=1)) != same


@given(st.dictionaries(st.text(min_size=1, max_size=20), st.text(max_size=50)))
def test_redaction_keeps_only_the_allow_list(details):
    details = {**details, "authorization": "Bearer secret", "token": "t", "password": "p"}
    kept = redact_details(details)
    assert set(kept) <= {"path", "method", "ip", "user_agent", "error", "count", "limit", "denied", "window_start"}


def test_task_and_schedule():
    assert bypass_scan_task() == {"invalid_jwt": 0, "rate_limit_abuse": 0}
    spec = next(s for s in SCHEDULES if s.task == "governance.bypass_scan")
    assert (spec.every_seconds, spec.queue, spec.expires_seconds) == (60, "default", 55)
    assert settings.REST_FRAMEWORK["DEFAULT_AUTHENTICATION_CLASSES"][0].endswith("CountingJWTAuthentication")
