"""Bypass detection: failed JWTs and repeated 429s counted per caller, reported as security events."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import jwt
import pytest
import time_machine
from django.apps import apps as django_apps
from django.conf import settings
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from config import registry
from config.keys import BYPASS_SIGNALS
from config.models import PlatformConfig
from config.seeding import add_bypass_signals
from governance.choices import AuditAction
from governance.models import AISystem, AuditLog, RateLimit, User
from governance.services.bypass import (
    AUTH_FAILURE_GROUP,
    BYPASS_CONFIG_KEY,
    PERIODIC_DETECTORS,
    PLATFORM_SYSTEM_NAME,
    bypass_event_id,
    bypass_scan,
    bypass_scan_identity_rotation,
    bypass_scan_rate_limit_abuse,
    platform_system_ensure,
    redact_details,
)
from governance.tasks import bypass_scan as bypass_scan_task
from incidents.models import Incident, IncidentLink
from oversight.models import EventRaw
from tasks.schedules import SCHEDULES
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db
IP = "203.0.113.9"
NOTHING = dict.fromkeys(PERIODIC_DETECTORS, 0)
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


def test_ten_failures_become_one_detection_and_a_security_incident(viewer, django_capture_on_commit_callbacks):
    tokens = bad_tokens(viewer)
    for i in range(12):
        assert call(tokens[i % 3]).status_code == 401
    with django_capture_on_commit_callbacks(execute=True):
        assert bypass_scan() == NOTHING | {"invalid_jwt": 1}
    platform = AISystem.objects.get(name=PLATFORM_SYSTEM_NAME)
    assert platform.team.slug == "security"
    event = EventRaw.objects.get(system=platform)
    assert (event.category, event.signal, event.value, event.severity) == (
        "security",
        "bypass_invalid_jwt",
        1.0,
        "high",
    )
    assert event.attributes["detector"] == "invalid_jwt"
    assert event.attributes["source"] == f"ip:{IP}"
    assert event.attributes["details"]["ip"] == IP
    assert event.attributes["details"]["count"] == 12
    assert event.attributes["details"]["error"] == "token_not_valid"
    stored = json.dumps(event.attributes)
    assert not any(token in stored or token.split(".")[-1] in stored for token in tokens if token.split(".")[-1])
    assert "Bearer" not in stored and "Authorization" not in stored
    # The detection itself is audited, and the event cites that entry.
    entry = AuditLog.objects.get(action=AuditAction.BYPASS_DETECTED)
    assert entry.data["detector"] == "invalid_jwt" and entry.data["event_id"] == str(event.event_id)
    assert event.attributes["audit_refs"] == [str(entry.pk)]
    # A warning-level detection is an incident of its own, for the security team, linked to the entry.
    incident = Incident.objects.get(system=platform)
    assert (incident.team.slug, incident.severity) == ("security", "high")
    assert IncidentLink.objects.filter(
        incident=incident, target_type="audit", target_id=str(entry.pk), relation="evidenced_by"
    ).exists()
    # A second scan in the same hour records nothing new: no event, no audit entry.
    with django_capture_on_commit_callbacks(execute=True):
        assert bypass_scan() == NOTHING
    assert EventRaw.objects.filter(system=platform).count() == 1
    assert AuditLog.objects.filter(action=AuditAction.BYPASS_DETECTED).count() == 1


def test_below_the_detection_threshold_nothing_is_emitted(viewer):
    for token in bad_tokens(viewer)[:3]:
        call(token)
    assert bypass_scan()["invalid_jwt"] == 0
    assert not EventRaw.objects.exists()


def test_critical_from_the_critical_count(viewer, django_capture_on_commit_callbacks):
    tokens = bad_tokens(viewer)
    for i in range(50):
        call(tokens[i % 3])
    now = timezone.now()
    with django_capture_on_commit_callbacks(execute=True):
        assert bypass_scan(now=now)["invalid_jwt"] == 1
    event = EventRaw.objects.get()
    assert event.severity == "critical"
    incident = Incident.objects.get(system=event.system)
    assert (incident.team.slug, incident.severity) == ("security", "critical")
    assert bypass_scan(now=now)["invalid_jwt"] == 0  # same hour: the event id is already stored


def test_a_switched_off_detector_reports_nothing(viewer, admin_user):
    value = registry.get(BYPASS_CONFIG_KEY)
    value["invalid_jwt"]["enabled"] = False
    registry.set(BYPASS_CONFIG_KEY, value, user=admin_user, reason="test")
    for i in range(12):
        call(bad_tokens(viewer)[i % 3])
    assert bypass_scan()["invalid_jwt"] == 0


def test_critical_count_below_the_detection_count_is_refused(admin_user):
    value = registry.get(BYPASS_CONFIG_KEY)
    value["invalid_jwt"].update(min_failures=20, critical_failures=5)
    with pytest.raises(registry.ConfigValidationError) as caught:
        registry.set(BYPASS_CONFIG_KEY, value, user=admin_user, reason="test")
    assert "value.invalid_jwt.critical_failures" in caught.value.errors


def test_many_identities_from_one_address_are_a_rotation_detection(django_capture_on_commit_callbacks):
    client = APIClient(REMOTE_ADDR=IP)
    for i in range(4):
        answer = client.post("/api/v1/auth/token", {"username": f"probe-{i}", "password": "guess"}, format="json")
        assert answer.status_code == 401
    assert bypass_scan_identity_rotation() == 0  # four identities: below the five that count
    UserFactory(username="real-user", password="a-Strong-passw0rd!")
    good = client.post("/api/v1/auth/token", {"username": "real-user", "password": "a-Strong-passw0rd!"}, format="json")
    assert good.status_code == 200
    # Other addresses do not add up with this one.
    APIClient(REMOTE_ADDR="198.51.100.7").post("/api/v1/auth/token", {"username": "x", "password": "y"}, format="json")
    with django_capture_on_commit_callbacks(execute=True):
        assert bypass_scan_identity_rotation() == 1
    event = EventRaw.objects.get()
    assert (event.signal, event.attributes["source"]) == ("bypass_identity_rotation", f"ip:{IP}")
    user_id = User.objects.get(username="real-user").pk
    assert event.attributes["details"]["identities"] == sorted(
        [f"name:probe-{i}" for i in range(4)] + [f"user:{user_id}"]
    )
    assert "guess" not in json.dumps(event.attributes)
    assert Incident.objects.get(system=event.system).team.slug == "security"


def test_users_refused_by_the_limiter_count_as_identities_of_their_address(admin_user):
    limits = registry.get("ratelimit.limits")
    limits["default"] = {"limit": 1, "window_seconds": 60}
    registry.set("ratelimit.limits", limits, user=admin_user, reason="test")
    for _ in range(5):
        user = UserFactory(roles=["viewer"])
        client = APIClient(REMOTE_ADDR=IP)
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {AccessToken.for_user(user)}")
        assert [client.get(URL).status_code for _ in range(2)] == [200, 429]
    assert bypass_scan_identity_rotation() == 1
    assert len(EventRaw.objects.get().attributes["details"]["identities"]) == 5


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
    assert event.signal == "bypass_rate_limit_abuse"
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
    assert not {"authorization", "token", "password"} & set(kept)
    assert set(kept) <= set(details) - {"authorization", "token", "password"}
    assert all(len(value) <= 300 for value in kept.values())


def test_redaction_bounds_nested_details():
    kept = redact_details(
        {"reasons": [f"r{i}" * 200 for i in range(50)], "baseline": {"mean": 1.5, "deep": {"x": [1]}}}
    )
    assert len(kept["reasons"]) == 20 and all(len(reason) <= 300 for reason in kept["reasons"])
    assert kept["baseline"]["mean"] == 1.5 and isinstance(kept["baseline"]["deep"]["x"], str)


def test_upgrade_adds_the_bypass_signals_to_tuned_security_thresholds():
    row = PlatformConfig.objects.get(key="oversight.thresholds.security")
    tuned = {"auth_failures": {"direction": "above", "warning": 3, "critical": 9, "unit": "count"}}
    PlatformConfig.objects.filter(pk=row.pk).update(value=tuned)
    add_bypass_signals(django_apps, None)
    row.refresh_from_db()
    assert row.value["auth_failures"]["warning"] == 3  # the operator's tuning is kept
    assert set(BYPASS_SIGNALS) <= set(row.value)
    assert row.history.filter(version=row.version, reason__contains="bypass").exists()


def test_task_and_schedule():
    assert bypass_scan_task() == NOTHING
    spec = next(s for s in SCHEDULES if s.task == "governance.bypass_scan")
    assert (spec.every_seconds, spec.queue, spec.expires_seconds) == (60, "default", 55)
    assert settings.REST_FRAMEWORK["DEFAULT_AUTHENTICATION_CLASSES"][0].endswith("CountingJWTAuthentication")
