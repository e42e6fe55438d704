"""The DB-backed rate limiter: decisions, limits from config, caller keys, headers, 429 envelope, cleanup."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connection
from django.test import RequestFactory, override_settings
from django.utils import timezone
from hypothesis import given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from config import registry
from config.registry import ConfigValidationError
from governance.choices import Role
from governance.models import RateLimit
from governance.services.ratelimit import (
    RATE_LIMIT_EXEMPT,
    caller_key,
    client_ip,
    endpoint_group,
    rate_limit_for,
    rate_limit_hit,
    rate_limits_cleanup,
)
from governance.tasks import ratelimit_cleanup
from tasks.schedules import SCHEDULES

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 2, 9, 0, 0, tzinfo=UTC)


def set_limits(admin, **groups):
    value = registry.get("ratelimit.limits")
    value.update(groups)
    registry.set("ratelimit.limits", value, user=admin, reason="test")


def hit(now=None, *, key="user:a", group="default", limit=3, window=60):
    return rate_limit_hit(key=key, group=group, limit=limit, window_seconds=window, now=now)


# --- the decision -------------------------------------------------------------------------------------
def test_requests_are_admitted_up_to_the_limit_and_refused_after():
    decisions = [hit(T0 + timedelta(seconds=i)) for i in range(5)]

    assert [d.allowed for d in decisions] == [True, True, True, False, False]
    assert [d.count for d in decisions] == [1, 2, 3, 4, 5]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0, 0]
    assert decisions[0].reset_at == T0 + timedelta(seconds=60)
    assert decisions[4].retry_after_seconds == 56
    assert RateLimit.objects.get().count == 5


def test_one_row_per_caller_group_and_window():
    hit(T0, key="user:a")
    hit(T0, key="user:b")
    hit(T0, key="user:a", group="auth")
    hit(T0 + timedelta(seconds=1), key="user:a")

    rows = {(r.key, r.bucket): r.count for r in RateLimit.objects.all()}
    assert rows == {("user:a", "default"): 2, ("user:b", "default"): 1, ("user:a", "auth"): 1}
    row = RateLimit.objects.get(key="user:a", bucket="default")
    assert row.window_start == T0
    assert row.expires_at == T0 + timedelta(seconds=120)


def test_the_window_is_floored_to_its_length():
    decision = hit(T0 + timedelta(seconds=125), window=60)

    assert RateLimit.objects.get().window_start == T0 + timedelta(seconds=120)
    assert decision.reset_at == T0 + timedelta(seconds=180)
    assert decision.retry_after_seconds == 55


def test_a_new_window_starts_a_fresh_count_with_time_travel():
    with time_machine.travel(T0 + timedelta(seconds=10), tick=False):
        assert [hit(timezone.now()).allowed for _ in range(4)] == [True, True, True, False]
    with time_machine.travel(T0 + timedelta(seconds=59, microseconds=999_000), tick=False):
        assert hit(timezone.now()).allowed is False
    with time_machine.travel(T0 + timedelta(seconds=60), tick=False):
        fresh = hit(timezone.now())
    assert fresh.allowed and fresh.count == 1 and fresh.remaining == 2
    assert RateLimit.objects.count() == 2


def test_without_an_override_the_database_clock_decides_the_window():
    """The Python clock is irrelevant: travelling far away still counts into the database's current window."""
    with time_machine.travel(datetime(2001, 1, 1, tzinfo=UTC), tick=False):
        decision = hit(window=3600)
    row = RateLimit.objects.get()
    assert abs((row.window_start - datetime.now(UTC)).total_seconds()) < 3601
    assert decision.reset_at == row.window_start + timedelta(hours=1)


def test_the_database_clock_rolls_the_window_over():
    first = hit(limit=1, window=1)
    second = hit(limit=1, window=1)
    assert first.allowed and not second.allowed
    time.sleep(max(0.0, (second.reset_at - datetime.now(UTC)).total_seconds()) + 0.05)

    assert hit(limit=1, window=1).allowed


@pytest.mark.parametrize(("limit", "window"), [(0, 60), (5, 0)])
def test_non_positive_limits_are_refused(limit, window):
    with pytest.raises(ValueError):
        hit(limit=limit, window=window)


@settings(max_examples=25, deadline=None)
@given(
    limit=st.integers(min_value=1, max_value=8),
    calls=st.integers(min_value=1, max_value=12),
    window=st.integers(min_value=1, max_value=86400),
    offset=st.integers(min_value=0, max_value=86399),
)
def test_admitted_count_is_exactly_min_of_calls_and_limit(limit, calls, window, offset):
    key = f"user:{uuid.uuid4()}"  # examples share the test's transaction: a fresh caller each
    now = T0 + timedelta(seconds=offset % window)
    decisions = [hit(now, key=key, limit=limit, window=window) for _ in range(calls)]

    assert sum(d.allowed for d in decisions) == min(calls, limit)
    assert all(1 <= d.retry_after_seconds <= window for d in decisions)
    assert decisions[-1].remaining == max(0, limit - calls)


# --- limits from config -----------------------------------------------------------------------------------
def test_limits_per_group_come_from_config_with_default_fallback(admin_user):
    assert rate_limit_for(None, "auth") == (30, 60)
    assert rate_limit_for(None, "unknown_group") == (600, 60)

    set_limits(admin_user, auth={"limit": 5, "window_seconds": 10})

    assert rate_limit_for(None, "auth") == (5, 10)


def test_per_caller_overrides_apply_to_that_caller_only(admin_user, make_user):
    ingest = make_user(username="ingest-bot")
    set_limits(admin_user, overrides={"ingest-bot": {"events_ingest": {"limit": 5000, "window_seconds": 60}}})

    assert rate_limit_for(ingest, "events_ingest") == (5000, 60)
    assert rate_limit_for("ingest-bot", "events_ingest") == (5000, 60)
    assert rate_limit_for(ingest, "default") == (600, 60)
    assert rate_limit_for(admin_user, "events_ingest") == (120, 60)
    assert rate_limit_for(None, "events_ingest") == (120, 60)


@pytest.mark.parametrize(
    "bad",
    [
        {"overrides": {"bot": {"default": {"limit": 0, "window_seconds": 60}}}},
        {"overrides": {"bot": {"Bad-Group": {"limit": 1, "window_seconds": 60}}}},
        {"overrides": {"bot": {"default": {"limit": 1}}}},
        {"auth": {"limit": 1, "window_seconds": 86401}},
    ],
)
def test_invalid_limits_are_refused_by_the_schema(admin_user, bad):
    value = registry.get("ratelimit.limits") | bad
    with pytest.raises(ConfigValidationError):
        registry.set("ratelimit.limits", value, user=admin_user)


# --- groups and callers ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "path", "group"),
    [
        ("POST", "/api/v1/auth/token", "auth"),
        ("POST", "/api/v1/auth/token/refresh/", "auth"),
        ("POST", "/api/v1/events", "events_ingest"),
        ("POST", "/api/v1/events/", "events_ingest"),
        ("GET", "/api/v1/events", "default"),
        ("POST", "/api/v1/gateway/ai", "gateway"),
        ("POST", "/api/v1/gateway/llm-generate", "gateway"),
        ("POST", "/api/v1/cicd/gate", "cicd_gate"),
        ("POST", "/api/v1/deployments", "cicd_gate"),
        ("GET", "/api/v1/deployments", "default"),
        ("POST", "/api/v1/eval/safety/run", "eval"),
        ("GET", "/api/v1/evaluation-runs", "default"),
        ("POST", "/admin/governance/team/add/", "admin_write"),
        ("GET", "/admin/governance/team/", "default"),
        ("GET", "/api/v1/incidents", "default"),
    ],
)
def test_endpoint_groups(method, path, group):
    request = RequestFactory().generic(method, path)
    assert endpoint_group(request) == group


def test_caller_key_is_the_user_when_authenticated_else_the_ip(admin_user):
    request = RequestFactory().get("/api/v1/teams", REMOTE_ADDR="203.0.113.7")
    request.user = admin_user
    assert caller_key(request) == f"user:{admin_user.pk}"
    from django.contrib.auth.models import AnonymousUser

    request.user = AnonymousUser()
    assert caller_key(request) == "ip:203.0.113.7"


def test_x_forwarded_for_is_ignored_without_trusted_proxies():
    request = RequestFactory().get("/", REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR="198.51.100.1")
    assert client_ip(request) == "10.0.0.5"


@override_settings(TRUSTED_PROXIES=["10.0.0.0/8"], TRUSTED_PROXY_COUNT=1)
def test_x_forwarded_for_is_honoured_only_from_a_trusted_peer():
    trusted = RequestFactory().get("/", REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR="1.2.3.4, 198.51.100.1")
    untrusted = RequestFactory().get("/", REMOTE_ADDR="192.0.2.9", HTTP_X_FORWARDED_FOR="198.51.100.1")
    garbage = RequestFactory().get("/", REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR="not-an-ip")

    assert client_ip(trusted) == "198.51.100.1"  # the spoofable left part (1.2.3.4) is not believed
    assert client_ip(untrusted) == "192.0.2.9"
    assert client_ip(garbage) == "10.0.0.5"


@override_settings(TRUSTED_PROXIES=["10.0.0.0/8"], TRUSTED_PROXY_COUNT=0)
def test_a_trusted_peer_with_zero_proxy_count_is_not_believed():
    request = RequestFactory().get("/", REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR="198.51.100.1")
    assert client_ip(request) == "10.0.0.5"


# --- enforcement over HTTP ------------------------------------------------------------------------------
def test_limited_responses_carry_ratelimit_headers(client_for, viewer, admin_user):
    set_limits(admin_user, default={"limit": 5, "window_seconds": 60})

    response = client_for(viewer).get("/api/v1/teams")

    assert response.status_code == 200
    assert response["RateLimit-Limit"] == "5"
    assert response["RateLimit-Remaining"] == "4"
    assert 1 <= int(response["RateLimit-Reset"]) <= 60
    assert RateLimit.objects.get(key=f"user:{viewer.pk}", bucket="default").count == 1


def test_over_the_limit_answers_429_in_the_error_envelope(client_for, viewer, admin_user):
    set_limits(admin_user, default={"limit": 2, "window_seconds": 60})
    client = client_for(viewer)

    statuses = [client.get("/api/v1/teams").status_code for _ in range(2)]
    refused = client.get("/api/v1/systems")

    assert statuses == [200, 200]
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["code"] == "rate_limited"
    assert "2 requests per 60 s" in error["message"] and "'default'" in error["message"]
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert refused["RateLimit-Remaining"] == "0"
    assert refused["RateLimit-Limit"] == "2"


def test_callers_are_limited_independently(client_for, viewer, lead, admin_user):
    set_limits(admin_user, default={"limit": 1, "window_seconds": 60})

    assert client_for(viewer).get("/api/v1/teams").status_code == 200
    assert client_for(viewer).get("/api/v1/teams").status_code == 429
    assert client_for(lead).get("/api/v1/teams").status_code == 200


def test_token_endpoints_are_limited_per_ip_under_auth(admin_user, make_user, password):
    make_user(Role.VIEWER, username="tokenuser")
    set_limits(admin_user, auth={"limit": 2, "window_seconds": 60})
    client = APIClient(REMOTE_ADDR="198.51.100.20")
    other_ip = APIClient(REMOTE_ADDR="198.51.100.21")
    body = {"username": "tokenuser", "password": password}

    answers = [client.post("/api/v1/auth/token", body, format="json").status_code for _ in range(3)]

    assert answers == [200, 200, 429]
    assert other_ip.post("/api/v1/auth/token", body, format="json").status_code == 200
    assert RateLimit.objects.get(key="ip:198.51.100.20", bucket="auth").count == 3


def test_a_group_limit_does_not_spend_another_groups_budget(client_for, viewer, admin_user):
    set_limits(admin_user, auth={"limit": 1, "window_seconds": 60}, default={"limit": 3, "window_seconds": 60})
    anonymous = APIClient(REMOTE_ADDR="198.51.100.30")
    anonymous.post("/api/v1/auth/token", {"username": "x", "password": "y"}, format="json")
    assert anonymous.post("/api/v1/auth/token", {"username": "x", "password": "y"}, format="json").status_code == 429

    assert client_for(viewer).get("/api/v1/teams").status_code == 200


def test_health_probes_are_exempt_and_write_no_counter(client):
    for _ in range(3):
        client.get("/healthz")
    response = client.get("/healthz")

    assert "RateLimit-Limit" not in response
    assert not RateLimit.objects.exists()
    assert {"healthz", "readyz", "prometheus-metrics"} == RATE_LIMIT_EXEMPT


def test_admin_writes_count_under_admin_write_and_are_refused_over_the_limit(client, admin_user):
    set_limits(admin_user, admin_write={"limit": 2, "window_seconds": 60})
    client.force_login(admin_user)

    first = client.post("/admin/governance/team/add/", {"name": "Ops", "slug": "ops"})
    read = client.get("/admin/governance/team/")
    client.post("/admin/governance/team/add/", {"name": "Ops 2", "slug": "ops-2"})
    refused = client.post("/admin/governance/team/add/", {"name": "Ops 3", "slug": "ops-3"})

    assert first["RateLimit-Limit"] == "2"
    assert "RateLimit-Limit" not in read  # admin reads are not counted
    assert refused.status_code == 429
    assert "2 requests per 60 s" in refused.content.decode()
    assert int(refused["Retry-After"]) >= 1
    assert RateLimit.objects.get(key=f"user:{admin_user.pk}", bucket="admin_write").count == 3


def test_a_429_is_not_audited(client_for, viewer, admin_user):
    from governance.models import AuditLog

    set_limits(admin_user, default={"limit": 1, "window_seconds": 60})
    before = AuditLog.objects.count()
    client = client_for(viewer)
    client.get("/api/v1/teams")
    assert client.get("/api/v1/teams").status_code == 429

    assert AuditLog.objects.count() == before


# --- cleanup ------------------------------------------------------------------------------------------
def test_cleanup_deletes_only_expired_rows_in_chunks():
    for i in range(7):
        hit(T0, key=f"user:old-{i}", window=60)  # expires at T0 + 120 s
    hit(T0 + timedelta(seconds=100), key="user:live", window=60)  # window T0+60, expires T0 + 180 s

    deleted = rate_limits_cleanup(now=T0 + timedelta(seconds=150), chunk_size=3)

    assert deleted == 7
    assert list(RateLimit.objects.values_list("key", flat=True)) == ["user:live"]
    assert rate_limits_cleanup(now=T0 + timedelta(seconds=150), chunk_size=3) == 0


def test_cleanup_task_uses_the_current_time_and_is_scheduled_every_15_minutes():
    hit(T0, key="user:old")
    hit(key="user:now")  # the database clock: current window, not expired

    with time_machine.travel(T0 + timedelta(days=1), tick=False):
        assert ratelimit_cleanup.apply().get() == {"rate_limits": 1, "governed_changes": 0}
    assert list(RateLimit.objects.values_list("key", flat=True)) == ["user:now"]
    spec = next(s for s in SCHEDULES if s.task == "governance.ratelimit_cleanup")
    assert spec.every_seconds == 900


def test_the_upsert_is_a_single_statement(django_assert_num_queries):
    with django_assert_num_queries(1):
        hit(T0)
    assert connection.vendor in {"sqlite", "postgresql"}
