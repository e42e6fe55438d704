"""Production settings refuse to start without their secrets and pass Django's deploy checks with them.

Each test starts ``manage.py`` in a subprocess with a clean environment (no inherited variables, no
``.env``), because settings are read once per process.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def production_env(**overrides: str | None) -> dict[str, str]:
    """A minimal production environment; ``NAME=None`` leaves NAME out."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "VIGIL_ENV": "production",
        "VIGIL_IGNORE_DOTENV": "1",
        "SECRET_KEY": secrets.token_urlsafe(64),
        "JWT_SIGNING_KEY": secrets.token_urlsafe(64),
        "ALLOWED_HOSTS": "vigil.example.com",
        "CELERY_BROKER_URL": "redis://127.0.0.1:6379/0",
    }
    env.update(overrides)
    return {name: value for name, value in env.items() if value is not None}


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("variable", ["SECRET_KEY", "JWT_SIGNING_KEY", "ALLOWED_HOSTS", "CELERY_BROKER_URL"])
def test_production_refuses_to_start_without_a_required_variable(variable):
    result = manage("check", env=production_env(**{variable: None}))

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert f"{variable} is not set" in result.stderr


def test_production_refuses_a_short_signing_key():
    result = manage("check", env=production_env(JWT_SIGNING_KEY="x" * 49))

    assert result.returncode != 0
    assert "JWT_SIGNING_KEY must be at least 50 characters long in production" in result.stderr


def test_production_settings_pass_the_deploy_checks_with_warnings_as_failures():
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=production_env())

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_production_refuses_a_signing_key_equal_to_the_secret_key():
    shared = secrets.token_urlsafe(64)

    result = manage("check", env=production_env(SECRET_KEY=shared, JWT_SIGNING_KEY=shared))

    assert result.returncode != 0
    assert "JWT_SIGNING_KEY must differ from SECRET_KEY" in result.stderr
