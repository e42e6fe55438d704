"""Shared fixtures: users with roles, authenticated API clients, isolation of process-local state."""

from __future__ import annotations

import os
from urllib.parse import quote

import pytest
from django.core.cache import cache
from django.db import connection
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import RefreshToken

from config import registry
from governance.choices import Role
from tasks import metrics
from tests.factories import DEFAULT_PASSWORD, AISystemFactory, TeamFactory, UserFactory

# CI runs two test processes on two cores next to PostgreSQL, Redis and Celery workers: example generation
# can be slow there without anything being wrong, so neither a deadline nor the too-slow check applies.
hypothesis_settings.register_profile("vigil", deadline=None, suppress_health_check=[HealthCheck.too_slow])
hypothesis_settings.load_profile("vigil")

REQUIRE_POSTGRES = os.environ.get("VIGIL_REQUIRE_POSTGRES") == "1"
REQUIRE_REDIS = os.environ.get("VIGIL_REQUIRE_REDIS") == "1"
REQUIRE_BROWSER = os.environ.get("VIGIL_REQUIRE_BROWSER") == "1"
CHROMIUM_PATH = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
POSTGRES_ENGINE = "django.db.backends.postgresql"


def pytest_runtest_setup(item):
    """``postgres``/``redis``/``browser`` tests skip without those services, and fail instead when CI
    demands them (``VIGIL_REQUIRE_POSTGRES=1``, ``VIGIL_REQUIRE_REDIS=1``, ``VIGIL_REQUIRE_BROWSER=1``,
    all set by ``.ci/run``)."""
    from django.conf import settings

    if item.get_closest_marker("postgres") and settings.DATABASES["default"]["ENGINE"] != POSTGRES_ENGINE:
        _unavailable("needs PostgreSQL: set DATABASE_URL=postgres://…", required=REQUIRE_POSTGRES)
    if item.get_closest_marker("redis") and not os.environ.get("CELERY_BROKER_URL", "").startswith("redis://"):
        _unavailable("needs Redis: set CELERY_BROKER_URL=redis://…", required=REQUIRE_REDIS)
    if item.get_closest_marker("browser") and not os.access(CHROMIUM_PATH, os.X_OK):
        _unavailable(f"needs Chromium at {CHROMIUM_PATH}: run `make browser-deps`", required=REQUIRE_BROWSER)


def _unavailable(reason: str, *, required: bool) -> None:
    if required:
        pytest.fail(f"{reason} (required in this run)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(autouse=True)
def _isolate_process_state():
    """Config snapshots, metric buffers and the cache never leak between tests."""
    registry.invalidate()
    metrics.recorder.forget_process_state()
    cache.clear()
    yield
    registry.invalidate()
    metrics.recorder.forget_process_state()


@pytest.fixture
def team(db):
    return TeamFactory(name="Fraud ML", slug="fraud-ml")


@pytest.fixture
def other_team(db):
    return TeamFactory(name="Credit Risk", slug="credit-risk")


@pytest.fixture
def make_user(db):
    def make(*roles: str, teams=(), **kwargs):
        return UserFactory(roles=list(roles), teams=list(teams), **kwargs)

    return make


@pytest.fixture
def admin_user(make_user):
    return make_user(Role.ADMIN, username="ada")


@pytest.fixture
def lead(make_user, team):
    return make_user(Role.GOVERNANCE_LEAD, teams=[team], username="lena")


@pytest.fixture
def viewer(make_user, team):
    return make_user(Role.VIEWER, teams=[team], username="vic")


def subprocess_database_url() -> str:
    """A DATABASE_URL pointing at the database this test run uses, for subprocesses (workers, watchers)."""
    s = connection.settings_dict
    credentials = quote(s["USER"] or "", safe="")
    if s.get("PASSWORD"):
        credentials += ":" + quote(s["PASSWORD"], safe="")
    return f"postgres://{credentials}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


@pytest.fixture
def own_system(team):
    return AISystemFactory(name="fraud-scorer", team=team)


@pytest.fixture
def foreign_system(other_team):
    return AISystemFactory(name="credit-limit-model", team=other_team)


def bearer_client(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(user).access_token}")
    return client


@pytest.fixture
def client_for():
    """``client_for(user)``: an API client carrying a fresh JWT access token for ``user``."""
    return bearer_client


@pytest.fixture
def anon_client():
    return APIClient()


@pytest.fixture
def password():
    return DEFAULT_PASSWORD


@pytest.fixture
def is_postgres():
    return connection.vendor == "postgresql"
