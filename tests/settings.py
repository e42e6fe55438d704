"""Test settings: the project's settings with fast hashing, eager Celery and explicit metric flushes."""

from config.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # speed; production uses PBKDF2
CELERY_TASK_ALWAYS_EAGER = True  # tests that need a real worker start one (tests/e2e)
FUNCTION_METRICS_FLUSH_SECONDS = 0  # no background thread; tests call tasks.metrics.flush()
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
LOGGING["root"]["level"] = "WARNING"  # noqa: F405
STATIC_ROOT = None  # static files come from the app finders in tests
