"""Tether settings: one file, every value from the environment.

With no DATABASE_URL / REDIS_URL the embedded default runs: SQLite, an in-memory channel layer
and a file-system Celery broker, so a laptop needs nothing but the project. Production sets
DATABASE_URL, REDIS_URL, SECRET_KEY, ALLOWED_HOSTS and DEBUG=false.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url

from apps.common.env import envbool, envfloat, envint, envlist, envstr

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(envstr("TETHER_VAR_DIR", str(BASE_DIR / "var")))

DEBUG = envbool("DEBUG", False)
SECRET_KEY = envstr("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured("SECRET_KEY is required when DEBUG is false")
    SECRET_KEY = "tether-insecure-development-key-do-not-use-in-production-0123456789"

ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "servestatic.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "django_celery_beat",
    "apps.common",
    "apps.accounts",
    "apps.audit",
    "apps.registry",
    "apps.policy",
    "apps.runtime",
    "apps.traces",
    "apps.approvals",
    "apps.killswitch",
    "apps.costs",
    "apps.drift",
    "apps.releases",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Async-capable (WhiteNoise is sync-only, which would make every ASGI request hop threads).
    "servestatic.middleware.ServeStaticMiddleware",
    "apps.common.middleware.RequestIdMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "controlplane.urls"
ASGI_APPLICATION = "controlplane.asgi.application"
WSGI_APPLICATION = None

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
                "apps.accounts.context_processors.navigation",
            ],
        },
    },
]

# --- Data stores -----------------------------------------------------------------------------
DATABASE_URL = envstr("DATABASE_URL", "")
if DATABASE_URL:
    DATABASES = {
        "default": dj_database_url.parse(DATABASE_URL, conn_max_age=envint("DB_CONN_MAX_AGE", 60))
    }
    _db = DATABASES["default"]
    if _db["ENGINE"] == "django.db.backends.postgresql":
        options = _db.setdefault("OPTIONS", {})
        # Django turns psycopg's statement cache off; the few hot statements that ask to be
        # prepared (apps.common.db) need it on. Django's own queries are unaffected.
        options["prepare_threshold"] = 5
        if envbool("DB_POOL", True):
            # Under ASGI every request runs its sync code in a fresh thread, and a thread-local
            # connection would be opened (and leaked) per request: psycopg's pool lends one.
            _db["CONN_MAX_AGE"] = 0
            options["pool"] = {
                "min_size": envint("DB_POOL_MIN", 2),
                "max_size": envint("DB_POOL_MAX", 20),
                # Short: while PostgreSQL is down a request waits this long before failing.
                "timeout": envint("DB_POOL_TIMEOUT", 2),
            }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(VAR_DIR / "tether.sqlite3"),
            "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE"},
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = envstr("REDIS_URL", "")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # A consumer waits for messages with a 5 s BZPOPMIN; redis-py's default read timeout
            # is also 5 s, so without a longer one every idle socket's receive loop would die
            # with a TimeoutError. Connecting still gives up after 5 s.
            "CONFIG": {
                "hosts": [{"address": REDIS_URL, "socket_timeout": 15, "socket_connect_timeout": 5}]
            },
        }
    }
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    }
    CELERY_BROKER_URL = REDIS_URL
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    # The file-system transport ships with kombu: worker, beat and web share a folder.
    _broker_dir = VAR_DIR / "broker"
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir),
        "data_folder_out": str(_broker_dir),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }

CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_TIME_LIMIT = envint("CELERY_TASK_TIME_LIMIT", 300)
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE = {
    "expire-grants": {"task": "registry.expire_grants", "schedule": 60.0},
    "expire-runs": {"task": "runtime.expire_runs", "schedule": 30.0},
    "replay-decision-spool": {"task": "runtime.replay_decision_spool", "schedule": 30.0},
    "seal-decisions": {"task": "runtime.seal_decisions", "schedule": 15.0},
    "expire-approvals": {"task": "approvals.expire", "schedule": 15.0},
    "escalate-approvals": {"task": "approvals.escalate", "schedule": 30.0},
    "verify-audit-chain": {"task": "audit.verify_chain", "schedule": 6 * 3600.0},
    # A tick not started within its interval is dropped: the next one reads the same window.
    "kill-triggers": {"task": "killswitch.triggers", "schedule": 10.0, "options": {"expires": 10}},
    "count-finished-runs": {
        "task": "costs.count_finished_runs",
        "schedule": 60.0,
        "options": {"expires": 60},
    },
    "budget-alerts": {"task": "costs.budget_alerts", "schedule": 60.0, "options": {"expires": 60}},
    "drift-cycle": {
        "task": "drift.cycle",
        "schedule": float(envint("DRIFT_CYCLE_SECONDS", 300)),
        "options": {"expires": 300},
    },
}

# --- Auth ------------------------------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- Security (check --deploy clean when DEBUG is false) --------------------------------------
SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", not DEBUG)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = envbool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = envbool("CSRF_COOKIE_SECURE", not DEBUG)
SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True

# Bodies over this are refused with 413/400 before any parsing.
DATA_UPLOAD_MAX_MEMORY_SIZE = envint("DATA_UPLOAD_MAX_MEMORY_SIZE", 2 * 1024 * 1024)
DATA_UPLOAD_MAX_NUMBER_FIELDS = 2000
# The OTLP receiver reads its own body (exports are bigger than forms): refused with 413 over
# this, on the wire and again after gzip inflating.
OTLP_MAX_BODY_BYTES = envint("OTLP_MAX_BODY_BYTES", 8 * 1024 * 1024)
# Exports one web process decodes and stores at a time; one more is answered 429 with
# Retry-After (OTLP_RETRY_AFTER_SECONDS) so the exporter retries it. Keep it below DB_POOL_MAX.
OTLP_MAX_IN_FLIGHT = envint("OTLP_MAX_IN_FLIGHT", 4)
OTLP_RETRY_AFTER_SECONDS = envint("OTLP_RETRY_AFTER_SECONDS", 2)

# Spans are kept TRACE_RETENTION_DAYS (0: forever), or TRACE_RETENTION_DAYS_<ENVIRONMENT> for
# spans of that environment (e.g. TRACE_RETENTION_DAYS_PROD=90, TRACE_RETENTION_DAYS_DEV=7);
# spans under a legal hold are kept whatever these say. docs/traces.md#retention
TRACE_RETENTION_DAYS = envint("TRACE_RETENTION_DAYS", 30)
_RETENTION_PREFIX = "TRACE_RETENTION_DAYS_"
TRACE_RETENTION_DAYS_BY_ENVIRONMENT = {
    name.removeprefix(_RETENTION_PREFIX).lower(): envint(name, 0)
    for name in sorted(os.environ)
    if name.startswith(_RETENTION_PREFIX) and os.environ[name].strip()
}
if TRACE_RETENTION_DAYS < 0 or any(d < 0 for d in TRACE_RETENTION_DAYS_BY_ENVIRONMENT.values()):
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured("TRACE_RETENTION_DAYS* must be 0 (keep forever) or more days")
# Day partitions of the span table are made this many days ahead (PostgreSQL).
TRACE_PARTITIONS_AHEAD_DAYS = envint("TRACE_PARTITIONS_AHEAD_DAYS", 7)

# --- I18N / static ---------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = envstr("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "servestatic.storage.CompressedManifestStaticFilesStorage"
        )
    },
}

# --- API -------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "apps.accounts.authentication.PersonalTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "apps.common.errors.api_exception_handler",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 100,
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # Bounded in size and refusing what PostgreSQL cannot store (NUL, lone surrogates, inf).
    "DEFAULT_PARSER_CLASSES": ["apps.common.parsers.JSONParser"],
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Tether API",
    "DESCRIPTION": "The control plane for AI agents in production: registry, runtime, audit.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI served from our own static files, never a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SCHEMA_PATH_PREFIX": r"/api/v[0-9]+",
    "ENUM_NAME_OVERRIDES": {
        "EnvironmentEnum": "apps.registry.constants.Environment",
        "ApprovalStatusEnum": "apps.approvals.constants.ApprovalStatus",
        "AgentStatusEnum": "apps.registry.constants.AgentStatus",
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "apps.common.api_schema.add_error_responses",
    ],
}

# How often (ms) each process checks that its parsed Cedar policies are current (Redis
# generation + a fingerprint of the registry); its own writes are seen at once. docs/policy.md
POLICY_REFRESH_MS = envint("POLICY_REFRESH_MS", 1000)
# Threads per web process that answer decisions, each keeping a database connection
# (apps.common.hotpath); with DB_POOL_MAX per process, leave room for the console's requests.
HOT_PATH_THREADS = envint("HOT_PATH_THREADS", 3)

# Token digests are keyed by this, so a database dump alone cannot verify a token.
TOKEN_HMAC_KEY = envstr("TOKEN_HMAC_KEY", "") or SECRET_KEY

# --- Costs (docs/costs.md) ---------------------------------------------------------------------
# A model the price catalogue does not know (and no admin priced) is never free: it is charged
# at this worst case, in US dollars per million tokens (apps/costs/prices.py).
TETHER_UNPRICED_INPUT_PER_MTOK = envint("TETHER_UNPRICED_INPUT_PER_MTOK", 150)
TETHER_UNPRICED_OUTPUT_PER_MTOK = envint("TETHER_UNPRICED_OUTPUT_PER_MTOK", 600)

# --- Drift detection (docs/drift.md) ----------------------------------------------------------
# A version's automatic baseline: its first N runs in an environment, or its first K days.
DRIFT_BASELINE_RUNS = envint("DRIFT_BASELINE_RUNS", 500)
DRIFT_BASELINE_DAYS = envint("DRIFT_BASELINE_DAYS", 7)
DRIFT_BASELINE_SAMPLE_MAX = envint("DRIFT_BASELINE_SAMPLE_MAX", 5000)  # values kept per metric
# A run is sampled once it ended this long ago (its last spans have arrived); a cycle samples at
# most this many runs (a backlog is caught up over the next cycles) and looks back this far.
DRIFT_SETTLE_SECONDS = envint("DRIFT_SETTLE_SECONDS", 60)
DRIFT_COLLECT_BATCH = envint("DRIFT_COLLECT_BATCH", 500_000)
DRIFT_LOOKBACK_DAYS = envint("DRIFT_LOOKBACK_DAYS", 30)
# When a difference is a drift (docs/drift.md#detectors): significant and material, with enough
# samples on both sides; and when it is critical.
DRIFT_P_VALUE = envfloat("DRIFT_P_VALUE", 0.001)
DRIFT_CRITICAL_P_VALUE = envfloat("DRIFT_CRITICAL_P_VALUE", 1e-6)
DRIFT_MIN_BASELINE_SAMPLES = envint("DRIFT_MIN_BASELINE_SAMPLES", 100)
DRIFT_MIN_CURRENT_SAMPLES = envint("DRIFT_MIN_CURRENT_SAMPLES", 50)
DRIFT_MIN_SHIFT = envfloat("DRIFT_MIN_SHIFT", 0.03)  # a rate or a share, in points (0.03 = 3)
DRIFT_CRITICAL_SHIFT = envfloat("DRIFT_CRITICAL_SHIFT", 0.10)
DRIFT_PSI = envfloat("DRIFT_PSI", 0.10)
DRIFT_CRITICAL_PSI = envfloat("DRIFT_CRITICAL_PSI", 0.25)
DRIFT_MIN_RELATIVE = envfloat("DRIFT_MIN_RELATIVE", 0.15)  # a median, relative (0.15 = 15 %)
DRIFT_CRITICAL_RELATIVE = envfloat("DRIFT_CRITICAL_RELATIVE", 0.50)

# --- Approval notifications (docs/approvals-notifications.md) ---------------------------------
# Emails and webhooks link to {TETHER_PUBLIC_URL}/approvals/<id>/: the console as people reach it.
TETHER_PUBLIC_URL = envstr("TETHER_PUBLIC_URL", "http://127.0.0.1:8000").strip().rstrip("/")
# A webhook (or Slack) receiver that has not answered in this many seconds is retried later.
APPROVAL_WEBHOOK_TIMEOUT_SECONDS = envint("APPROVAL_WEBHOOK_TIMEOUT_SECONDS", 5)
DEFAULT_FROM_EMAIL = envstr("DEFAULT_FROM_EMAIL", "Tether <tether@localhost>")
# Mail goes through SMTP when EMAIL_HOST is set; otherwise each message is written to a file
# under $TETHER_VAR_DIR/mail, so the demo's notifications can be read without a mail server.
EMAIL_HOST = envstr("EMAIL_HOST", "")
if EMAIL_HOST:
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_PORT = envint("EMAIL_PORT", 587)
    EMAIL_HOST_USER = envstr("EMAIL_HOST_USER", "")
    EMAIL_HOST_PASSWORD = envstr("EMAIL_HOST_PASSWORD", "")
    EMAIL_USE_TLS = envbool("EMAIL_USE_TLS", True)
    EMAIL_TIMEOUT = envint("EMAIL_TIMEOUT", 30)
else:
    EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    EMAIL_FILE_PATH = str(VAR_DIR / "mail")
_public = urlsplit(TETHER_PUBLIC_URL)
if _public.scheme not in ("http", "https") or not _public.netloc or _public.query:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(
        f"TETHER_PUBLIC_URL={TETHER_PUBLIC_URL!r} is not an http(s) address such as "
        "https://tether.example.com"
    )
if not 1 <= APPROVAL_WEBHOOK_TIMEOUT_SECONDS <= 60:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured("APPROVAL_WEBHOOK_TIMEOUT_SECONDS must be 1 to 60 seconds")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "apps.common.logging.RequestIdFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s"}
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["request_id"],
        }
    },
    "root": {"handlers": ["console"], "level": envstr("LOG_LEVEL", "INFO")},
    # httpx logs every request's full URL at INFO; a Slack webhook's URL is its credential.
    "loggers": {"httpx": {"level": "WARNING"}},
}
