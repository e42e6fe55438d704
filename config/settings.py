"""Vigil settings, driven by the environment (django-environ).

Two modes, chosen by ``VIGIL_ENV``:

* ``development`` (default): runs on a bare machine. No ``DATABASE_URL`` means SQLite in the project
  folder; no ``CELERY_BROKER_URL`` means Celery runs tasks eagerly in-process. Development secrets are
  generated per checkout so nothing secret is committed.
* ``production``: refuses to start without ``SECRET_KEY``, ``JWT_SIGNING_KEY`` and ``ALLOWED_HOSTS`` and
  turns on every hardening flag that ``manage.py check --deploy`` looks for.

Every variable is listed, with its default, in ``.env.example`` and the README.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured
from kombu import Exchange, Queue

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
if (BASE_DIR / ".env").is_file() and not os.environ.get("VIGIL_IGNORE_DOTENV"):
    environ.Env.read_env(BASE_DIR / ".env")

VIGIL_ENV = env.str("VIGIL_ENV", default="development")
if VIGIL_ENV not in {"development", "production"}:
    raise ImproperlyConfigured(f"VIGIL_ENV must be 'development' or 'production', not {VIGIL_ENV!r}")
PRODUCTION = VIGIL_ENV == "production"


def _required_secret(name: str) -> str:
    value = env.str(name, default="")
    if not value:
        raise ImproperlyConfigured(
            f"{name} is not set. Production settings refuse to start without it; "
            f"generate one with: python -c 'import secrets; print(secrets.token_urlsafe(64))'"
        )
    if len(value) < 50:
        raise ImproperlyConfigured(f"{name} must be at least 50 characters long in production.")
    return value


def _development_secret(name: str) -> str:
    """A per-checkout random secret kept in ``.dev-secrets/`` (git-ignored), so dev never shares keys."""
    value = env.str(name, default="")
    if value:
        return value
    secret_dir = BASE_DIR / ".dev-secrets"
    path = secret_dir / name.lower()
    if not path.exists():
        import secrets

        secret_dir.mkdir(exist_ok=True)
        path.write_text(secrets.token_urlsafe(64))
    return path.read_text().strip()


if PRODUCTION:
    SECRET_KEY = _required_secret("SECRET_KEY")
    JWT_SIGNING_KEY = _required_secret("JWT_SIGNING_KEY")
    DEBUG = False
    ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=[])
    if not ALLOWED_HOSTS:
        raise ImproperlyConfigured("ALLOWED_HOSTS is not set (comma-separated host names).")
else:
    SECRET_KEY = _development_secret("SECRET_KEY")
    JWT_SIGNING_KEY = _development_secret("JWT_SIGNING_KEY")
    DEBUG = env.bool("DEBUG", default=True)
    ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])

if JWT_SIGNING_KEY == SECRET_KEY:
    raise ImproperlyConfigured("JWT_SIGNING_KEY must differ from SECRET_KEY.")

CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "config.apps.VigilAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_simplejwt.token_blacklist",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "config.apps.PlatformConfigApp",
    "governance",
    "oversight",
    "hitl",
    "incidents",
    "tasks",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "tasks.middleware.FunctionMetricsMiddleware",
    "config.middleware.RequestBodyLimitMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "governance.api.throttling.RateLimitMiddleware",  # RateLimit headers; admin writes (needs request.user)
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
AUTH_USER_MODEL = "governance.User"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------------------------
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the dev server and an eager demo read while a write is in flight; the timeout turns
    # "database is locked" into a short wait.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
USING_POSTGRES = DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
if USING_POSTGRES:
    # Names Vigil's own sessions in pg_stat_activity and in governed-change detections (readability
    # only: a client chooses its application_name, so it never decides whether a write was audited).
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("application_name", "vigil")

# --- Cache --------------------------------------------------------------------------------------
CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://vigil")}

# --- Auth ---------------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "admin:login"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "governance.roles.RolePermissionBackend",
]

SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=env.int("JWT_ACCESS_MINUTES", default=15)),
    "REFRESH_TOKEN_LIFETIME": timedelta(hours=env.int("JWT_REFRESH_HOURS", default=24)),
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "UPDATE_LAST_LOGIN": True,
    "ALGORITHM": "HS256",
    "SIGNING_KEY": JWT_SIGNING_KEY,
    "AUDIENCE": "vigil-api",
    "ISSUER": "vigil",
    "LEEWAY": 0,
    "AUTH_HEADER_TYPES": ("Bearer",),
    "USER_ID_FIELD": "id",
    "USER_ID_CLAIM": "user_id",
}

# --- API ----------------------------------------------------------------------------------------
API_PAGE_SIZE = env.int("API_PAGE_SIZE", default=50)
API_MAX_PAGE_SIZE = 500
# Bodies above this answer 413 before anything is parsed (the events endpoint documents 10 MB).
# Rate limiting keys anonymous callers by IP. X-Forwarded-For is honoured only when the peer (REMOTE_ADDR)
# is one of TRUSTED_PROXIES (addresses or CIDR networks) and TRUSTED_PROXY_COUNT (proxies in front of
# Vigil) is > 0; otherwise any client could pick its own address and dodge its limit.
TRUSTED_PROXIES = env.list("VIGIL_TRUSTED_PROXIES", default=[])
TRUSTED_PROXY_COUNT = env.int("VIGIL_TRUSTED_PROXY_COUNT", default=0)
API_MAX_BODY_BYTES = env.int("API_MAX_BODY_BYTES", default=10 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = API_MAX_BODY_BYTES

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # simplejwt's JWTAuthentication, counting failed authentications per IP for bypass detection.
        "governance.api.authentication.CountingJWTAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["governance.api.permissions.RolePermission"],
    "DEFAULT_PARSER_CLASSES": ["governance.api.parsers.VigilJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PAGINATION_CLASS": "governance.api.pagination.VigilCursorPagination",
    "PAGE_SIZE": API_PAGE_SIZE,
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "governance.api.errors.vigil_exception_handler",
    # Every DRF endpoint passes the DB-backed limiter (governance.services.ratelimit); limits live in config.
    "DEFAULT_THROTTLE_CLASSES": ["governance.api.throttling.VigilRateThrottle"],
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
if DEBUG:
    REST_FRAMEWORK["DEFAULT_RENDERER_CLASSES"].append("rest_framework.renderers.BrowsableAPIRenderer")

SPECTACULAR_SETTINGS = {
    "TITLE": "Vigil API",
    "DESCRIPTION": (
        "AI-governance operations: telemetry ingest, detection, human review, incidents, config and audit. "
        'Errors use the envelope {"error": {"code", "message", "fields"}}.'
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI assets are served from our static files, never a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "governance.api.schema.drop_trailing_slashes",
    ],
    "ENUM_NAME_OVERRIDES": {
        "SeverityEnum": "governance.choices.Severity",
        "EventCategoryEnum": "oversight.models.Category",
        "ConfigCategoryEnum": "config.models.ConfigCategory",
        "ReviewDecisionEnum": "hitl.models.ReviewDecision",
        "DecisionSourceEnum": "hitl.models.DecisionSource",
        "ReviewStatusEnum": "hitl.models.ReviewStatus",
        "SpotCheckStatusEnum": "hitl.models.SpotCheckStatus",
        "IncidentStatusEnum": "incidents.models.IncidentStatus",
        "FollowUpStatusEnum": "incidents.models.FollowUpStatus",
        "RegulatoryBasisEnum": "incidents.models.RegulatoryBasis",
        "PredictionOutcomeEnum": "governance.choices.PredictionOutcome",
        "PredictorSourceEnum": "governance.choices.PredictorSource",
        "DemoCategoryEnum": "governance.choices.DemoCategory",
    },
}

# --- Security (production hardening; all checked by `check --deploy`) ----------------------------
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_HTTPONLY = True
if PRODUCTION:
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    # Probes and scrapers inside the cluster talk plain HTTP to these paths.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True

# --- Static files -------------------------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# In development static files come straight from the apps (no collectstatic needed).
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if PRODUCTION
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Celery -------------------------------------------------------------------------------------
# No broker configured → run tasks eagerly in-process, so `make demo` works on a bare machine.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="")
if PRODUCTION and not CELERY_BROKER_URL:
    # Eager mode would run every task inside web requests and silently drop beat: never in production.
    raise ImproperlyConfigured("CELERY_BROKER_URL is not set (e.g. redis://redis:6379/0).")
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=not CELERY_BROKER_URL)
if not CELERY_BROKER_URL:
    CELERY_BROKER_URL = "memory://localhost/"
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default="") or None
CELERY_TASK_IGNORE_RESULT = True
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
# A task is acknowledged only after it ran, and re-queued if its worker process died mid-task; every
# task is idempotent so a second delivery is harmless.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=240)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=300)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Must exceed the longest countdown/ETA we schedule, or Redis redelivers the message early.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=7200)}
CELERY_WORKER_SEND_TASK_EVENTS = True
CELERY_TASK_SEND_SENT_EVENT = True
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_QUEUES = tuple(
    Queue(name, Exchange(name, type="direct"), routing_key=name)
    for name in ("default", "events", "assist", "lifecycle", "predict")
)
# Routing by task-name prefix; config/celery.py documents the queues. The explicit per-task entries
# win over the prefix patterns.
CELERY_TASK_ROUTES = (
    [
        ("governance.predict*", {"queue": "predict"}),
        ("oversight.*", {"queue": "events"}),
        ("hitl.*", {"queue": "assist"}),
        ("incidents.*", {"queue": "lifecycle"}),
        ("*", {"queue": "default"}),
    ],
)
# One queue for everything (a single small worker, or an isolated test worker on a shared broker).
if CELERY_ROUTE_ALL_TO_QUEUE := env.str("CELERY_ROUTE_ALL_TO_QUEUE", default=""):
    CELERY_TASK_ROUTES = ([("*", {"queue": CELERY_ROUTE_ALL_TO_QUEUE})],)

# --- HITL auto-assist: optional OpenAI-compatible LLM provider ---------------------------------
# Nothing is ever sent unless VIGIL_ASSIST_LLM_URL is set; without it the offline default provider runs.
VIGIL_ASSIST_LLM_URL = env.str("VIGIL_ASSIST_LLM_URL", default="")
VIGIL_ASSIST_LLM_MODEL = env.str("VIGIL_ASSIST_LLM_MODEL", default="")
VIGIL_ASSIST_LLM_API_KEY = env.str("VIGIL_ASSIST_LLM_API_KEY", default="")  # secret
VIGIL_ASSIST_LLM_TIMEOUT = env.float("VIGIL_ASSIST_LLM_TIMEOUT", default=10.0)  # seconds per request
VIGIL_ASSIST_LLM_RETRIES = env.int("VIGIL_ASSIST_LLM_RETRIES", default=2)  # on timeouts, 429 and 5xx

# --- Incident notifications ---------------------------------------------------------------------
# Webhook bodies carry X-Vigil-Signature: HMAC-SHA256 of the body with this secret (set it wherever
# incidents.notifications lists webhook URLs; receivers verify it).
VIGIL_WEBHOOK_SECRET = env.str("VIGIL_WEBHOOK_SECRET", default="")  # secret
VIGIL_EMAIL_FROM = env.str("VIGIL_EMAIL_FROM", default="vigil@localhost")

# --- AI gateway ---------------------------------------------------------------------------------
# /gateway/ai, /gateway/llm-generate and /eval/{suite}/run forward to this OpenAI-compatible API base
# (requests go to {URL}/chat/completions); unset, they answer 503 and send nothing. Audit entries carry
# metadata only; prompt and completion text only with VIGIL_GATEWAY_LOG_PROMPTS=true.
VIGIL_GATEWAY_UPSTREAM_URL = env.str("VIGIL_GATEWAY_UPSTREAM_URL", default="")
VIGIL_GATEWAY_API_KEY = env.str("VIGIL_GATEWAY_API_KEY", default="")  # secret
VIGIL_GATEWAY_TIMEOUT = env.float("VIGIL_GATEWAY_TIMEOUT", default=30.0)  # seconds per upstream request
VIGIL_GATEWAY_LOG_PROMPTS = env.bool("VIGIL_GATEWAY_LOG_PROMPTS", default=False)

# --- Function metrics ---------------------------------------------------------------------------
# Per-process aggregation window and how often a process flushes what it aggregated (one upsert per
# function per window). Lower the flush interval in tests; raise it to cut DB writes.
FUNCTION_METRICS_WINDOW_SECONDS = env.int("FUNCTION_METRICS_WINDOW_SECONDS", default=60)
FUNCTION_METRICS_FLUSH_SECONDS = env.float("FUNCTION_METRICS_FLUSH_SECONDS", default=10.0)
FUNCTION_METRICS_ENABLED = env.bool("FUNCTION_METRICS_ENABLED", default=True)
METRICS_BEARER_TOKEN = env.str("METRICS_BEARER_TOKEN", default="")

# --- Config registry ----------------------------------------------------------------------------
# How often a process re-checks the config version stamp; bounds how stale a worker can be.
CONFIG_REFRESH_SECONDS = env.float("CONFIG_REFRESH_SECONDS", default=1.0)

# --- Email --------------------------------------------------------------------------------------
# Development writes mail to files under .dev-mail/ (escalations of a seeded demo send hundreds; a
# console backend would bury the demo's output); production sends through SMTP.
EMAIL_BACKEND = env.str(
    "EMAIL_BACKEND",
    default="django.core.mail.backends.smtp.EmailBackend"
    if PRODUCTION
    else "django.core.mail.backends.filebased.EmailBackend",
)
EMAIL_FILE_PATH = env.str("EMAIL_FILE_PATH", default=str(BASE_DIR / ".dev-mail"))
EMAIL_HOST = env.str("EMAIL_HOST", default="localhost")
EMAIL_PORT = env.int("EMAIL_PORT", default=25)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="vigil@localhost")

# --- Logging ------------------------------------------------------------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOG_FORMAT = env.str("LOG_FORMAT", default="json" if PRODUCTION else "text")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "config.logging.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "celery": {"level": LOG_LEVEL},
    },
}
