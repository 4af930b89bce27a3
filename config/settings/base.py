"""Settings shared by every environment; local/test/production only override."""

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from apps.core import embedded_db

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()
if (BASE_DIR / ".env").exists():
    environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

SECRET_KEY = env("SECRET_KEY", default="")
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list(
    "ALLOWED_HOSTS", default=[".localhost", "localhost", "127.0.0.1"]
)

# --- tenancy (django-tenants); the two lists are fixed: see docs/architecture.md ---
SHARED_APPS = [
    "django_tenants",
    "apps.tenants",
    "django_q",
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.admin",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_filters",
    "django_htmx",
    "apps.core",
]
TENANT_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.admin",
    "django.contrib.sessions",
    "rest_framework_api_key",
    "apps.accounts",
    "apps.audit",
    "apps.providers",
    "apps.registry",
    "apps.groups",
    "apps.jobs",
    "apps.inference",
    "apps.notifications",
]
# apps.tenants precedes django_tenants so that its create_tenant/delete_tenant
# commands take precedence over the library's interactive ones.
INSTALLED_APPS = (
    ["apps.tenants"]
    + [app for app in SHARED_APPS if app != "apps.tenants"]
    + [app for app in TENANT_APPS if app not in SHARED_APPS]
)

TENANT_MODEL = "tenants.Organization"
TENANT_DOMAIN_MODEL = "tenants.Domain"
PUBLIC_SCHEMA_URLCONF = "config.urls_public"
ROOT_URLCONF = "config.urls_tenants"
SHOW_PUBLIC_IF_NO_TENANT_FOUND = False
# An unknown host is a 404 (JSON envelope on API paths), never the public site.
DEFAULT_NOT_FOUND_TENANT_VIEW = "apps.core.errors.tenant_not_found"
# A stale search_path after a failed transaction is worse than one SET per query.
TENANT_LIMIT_SET_CALLS = False
PUBLIC_DOMAIN = env("PUBLIC_DOMAIN", default="public.localhost")
TENANT_DOMAIN_SUFFIX = env("TENANT_DOMAIN_SUFFIX", default="localhost")
# New tenant schemas are copies of this migrated template schema (kept current by
# `tenant_template` and before every clone); empty: each new schema runs every
# migration. The two django-tenants settings below follow it.
TENANT_TEMPLATE_SCHEMA = env("TENANT_TEMPLATE_SCHEMA", default="tenant_template")
TENANT_BASE_SCHEMA = TENANT_TEMPLATE_SCHEMA or None
TENANT_CREATION_FAKES_MIGRATIONS = bool(TENANT_TEMPLATE_SCHEMA)
# migrate_schemas leaves out tenant schemas that already have every migration.
GET_EXECUTOR_FUNCTION = "apps.tenants.migration_executor.executor_for"

MIDDLEWARE = [
    "apps.core.middleware.RequestIdMiddleware",
    "apps.core.middleware.HealthMiddleware",
    "apps.core.middleware.MetricsMiddleware",
    "apps.core.middleware.TenantByHostMiddleware",
    "apps.core.middleware.TenantLogContextMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "apps.core.exceptions_middleware.ApplicationErrorMiddleware",
]

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
                "apps.core.context_processors.shell",
                "apps.notifications.context_processors.bell",
            ],
        },
    },
]

WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

# --- database: DATABASE_URL, else the embedded cluster in .pgdata ---
DATABASES = {
    "default": env.db_url("DATABASE_URL", default=embedded_db.database_url()),
}
# `?host=/socket/dir` lands in OPTIONS; Django and libpq expect it as HOST.
if not DATABASES["default"].get("HOST") and "host" in DATABASES["default"]["OPTIONS"]:
    DATABASES["default"]["HOST"] = DATABASES["default"]["OPTIONS"].pop("host")
DATABASES["default"]["ENGINE"] = "django_tenants.postgresql_backend"
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# --- read replica: DATABASE_REPLICA_URL, a streaming replica of the primary ---
# Analytics reads (comparisons, the version Analytics tab, the dashboard's groups at a
# glance, the inference browser's list and CSV export) go there; every write and the
# promotion decisions stay on the primary. Unset: everything reads the primary.
if env("DATABASE_REPLICA_URL", default=""):
    _replica = env.db_url("DATABASE_REPLICA_URL")
    if not _replica.get("HOST") and "host" in _replica["OPTIONS"]:
        _replica["HOST"] = _replica["OPTIONS"].pop("host")
    DATABASES["replica"] = {
        **DATABASES["default"],
        **{
            key: _replica[key]
            for key in ("NAME", "USER", "PASSWORD", "HOST", "PORT")
            if key in _replica
        },
        "OPTIONS": {**DATABASES["default"]["OPTIONS"], **_replica["OPTIONS"]},
    }
ANALYTICS_DB_ALIAS = "replica" if "replica" in DATABASES else "default"
# Migrations run on the default alias only (the router refuses every other alias).
DATABASE_ROUTERS = ["django_tenants.routers.TenantSyncRouter"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- cache: per process, tenant-aware keys. Nothing shared lives here: throttles,
# rate limits and circuit breakers count in PostgreSQL (docs/scaling.md). ---
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "KEY_FUNCTION": "django_tenants.cache.make_key",
    }
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_ROOT = Path(env("MEDIA_ROOT", default=str(BASE_DIR / "var" / "media")))
ARCHIVE_ROOT = Path(env("ARCHIVE_ROOT", default=str(BASE_DIR / "var" / "archive")))

# --- secrets at rest: MultiFernet key ring, newest first, separate from SECRET_KEY ---
FIELD_ENCRYPTION_KEYS = env.list("FIELD_ENCRYPTION_KEYS", default=[])

# --- API ---
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "apps.accounts.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["apps.accounts.permissions.TenantRolePermission"],
    "DEFAULT_PARSER_CLASSES": [
        "apps.core.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "apps.core.parsers.ContentNegotiation",
    "DEFAULT_PAGINATION_CLASS": "apps.core.pagination.Pagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "apps.core.errors.api_exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_THROTTLE_RATES": {
        "predict": env("PREDICT_THROTTLE_RATE", default="6000/min")
    },
}
SPECTACULAR_SETTINGS = {
    "TITLE": "ModelHub API",
    "DESCRIPTION": (
        "Import, serve, explain, compare and promote models. Every tenant has its "
        "own host; machines authenticate with `Authorization: Api-Key <key>`."
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "ENUM_NAME_OVERRIDES": {
        "VersionStatusEnum": "apps.registry.models.ModelVersion.Status",
        "GroupStatusEnum": "apps.groups.models.ModelGroup.Status",
    },
}

# --- background work: django-q2 on the ORM broker (public schema) ---
Q_CLUSTER = {
    "name": "modelhub",
    "orm": "default",
    "workers": env.int("Q_WORKERS", default=2),
    "timeout": env.int("Q_TIMEOUT", default=600),
    "retry": env.int("Q_RETRY", default=660),  # must exceed timeout
    "max_attempts": env.int("Q_MAX_ATTEMPTS", default=3),
    "ack_failures": True,
    "catch_up": False,
    "save_limit": 1000,
    "poll": 0.5,
    "label": "Background tasks",
}

# --- logging: one JSON object per line with request_id and tenant ---
LOG_LEVEL = env("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "apps.core.logging.ContextFilter"}},
    "formatters": {
        "json": {
            "()": "apps.core.logging.JsonFormatter",
            "fmt": "%(levelname)s %(name)s %(message)s",
            "rename_fields": {"levelname": "level", "name": "logger"},
            "timestamp": "time",
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "filters": ["context"],
        },
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "django-q": {"level": env("Q_LOG_LEVEL", default="WARNING")},
        # One line per outbound request is noise; failures surface as provider errors.
        "httpx2": {"level": "WARNING"},
        "httpcore2": {"level": "WARNING"},
    },
}

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True

# Port printed in URLs by commands (make run serves on 8000); 0 = none.
SITE_PORT = env.int("SITE_PORT", default=0)
# Password of the demo tenant's admin (`seed_demo`); generated into .env locally.
DEMO_ADMIN_PASSWORD = env("DEMO_ADMIN_PASSWORD", default="")
# Outside production, static files are served straight from the app folders.
WHITENOISE_USE_FINDERS = DEBUG

# Addresses or networks outbound provider calls may reach although not public
# (e.g. "10.0.0.5/32" for an in-house model server). Everything else non-global is refused.
SSRF_ALLOW_LIST = env.list("SSRF_ALLOW_LIST", default=[])

# Provider connectors by kind, resolved lazily by dotted path.
PROVIDER_CONNECTORS = {
    "openai": "apps.providers.connectors.openai.OpenAIConnector",
    "anthropic": "apps.providers.connectors.anthropic.AnthropicConnector",
    "google": "apps.providers.connectors.google.GoogleConnector",
    "huggingface": "apps.providers.connectors.huggingface.HuggingFaceConnector",
    "custom_http": "apps.providers.connectors.custom_http.CustomHTTPConnector",
}
# Circuit breaker: this many consecutive failures open it for this many seconds.
PROVIDER_BREAKER_THRESHOLD = env.int("PROVIDER_BREAKER_THRESHOLD", default=5)
PROVIDER_BREAKER_COOLDOWN = env.int("PROVIDER_BREAKER_COOLDOWN", default=30)
# Backoff between retries: base * 2**attempt, full jitter, capped.
PROVIDER_BACKOFF_BASE = env.float("PROVIDER_BACKOFF_BASE", default=0.5)
PROVIDER_BACKOFF_MAX = env.float("PROVIDER_BACKOFF_MAX", default=20.0)

# Inference logs: a stored input or output above this many bytes (as JSON) is replaced
# by a flagged preview.
INFERENCE_MAX_PAYLOAD_BYTES = env.int("INFERENCE_MAX_PAYLOAD_BYTES", default=64 * 1024)
# "off": the log row's commit does not wait for the WAL flush (a killed web process
# loses nothing; a PostgreSQL crash may lose the last fraction of a second of logs).
INFERENCE_LOG_SYNCHRONOUS_COMMIT = env(
    "INFERENCE_LOG_SYNCHRONOUS_COMMIT", default="off"
)
# Largest accepted prediction request body (413 above it).
PREDICT_MAX_BODY_BYTES = env.int("PREDICT_MAX_BODY_BYTES", default=1024 * 1024)

# Uploaded model artifacts: largest accepted file, and loaded models kept per process.
ARTIFACT_MAX_BYTES = env.int("ARTIFACT_MAX_BYTES", default=200 * 1024 * 1024)
ARTIFACT_CACHE_SIZE = env.int("ARTIFACT_CACHE_SIZE", default=16)

# Metadata transformation: below this overall confidence a result waits for a person;
# size limits of accepted and stored inputs; parallel LLM calls in a batch.
TRANSFORM_REVIEW_THRESHOLD = env.float("TRANSFORM_REVIEW_THRESHOLD", default=0.7)
TRANSFORM_MAX_INPUT_BYTES = env.int("TRANSFORM_MAX_INPUT_BYTES", default=512 * 1024)
TRANSFORM_STORED_INPUT_BYTES = env.int(
    "TRANSFORM_STORED_INPUT_BYTES", default=64 * 1024
)
TRANSFORM_LLM_CONCURRENCY = env.int("TRANSFORM_LLM_CONCURRENCY", default=4)

# Successful predictions are logged (write-through). Off only to measure what logging
# costs (bench/bench_predict.py, item 2); failed attempts are always logged.
INFERENCE_LOGGING = env.bool("INFERENCE_LOGGING", default=True)
# How a prediction's row reaches its table (docs/serving.md, "Durability"):
# "direct" commits it before the answer is sent; "spool" appends it to a file of the
# web process's own before the answer and copies the file into the tables in batches
# a few milliseconds later (apps/inference/spool.py). The spool directory must be on
# the host's local, persistent disk.
INFERENCE_LOG_MODE = env("INFERENCE_LOG_MODE", default="direct")
if INFERENCE_LOG_MODE not in ("direct", "spool"):
    raise ImproperlyConfigured(
        f'INFERENCE_LOG_MODE must be "direct" or "spool", not {INFERENCE_LOG_MODE!r}'
    )
INFERENCE_SPOOL_DIR = env(
    "INFERENCE_SPOOL_DIR", default=str(BASE_DIR / "var" / "spool")
)
# The drain waits this long after a row arrives, so that a batch gathers several.
INFERENCE_SPOOL_LINGER_MS = env.float("INFERENCE_SPOOL_LINGER_MS", default=25.0)
# Files of processes that are gone are looked for (and replayed) this often.
INFERENCE_SPOOL_ADOPT_SECONDS = env.float("INFERENCE_SPOOL_ADOPT_SECONDS", default=5.0)
# Under gunicorn (config/gunicorn.conf.py): the web workers only append, and one
# drain process of the server copies their files (`drain_inference_spool --follow`,
# started and restarted by gunicorn's master), so that no worker spends its requests'
# interpreter on the copying. False: each worker drains its own file in a thread.
INFERENCE_SPOOL_HOST_DRAIN = env.bool("INFERENCE_SPOOL_HOST_DRAIN", default=True)
# A provider call's usage counter travels in its row's spool line and is committed
# with the row by the drain (no round trip on the request). False: committed on the
# request. Off for the one zero-downtime upgrade from a release whose drain does not
# read such lines (docs/operations.md, "Upgrades").
INFERENCE_SPOOL_CARRY_USAGE = env.bool("INFERENCE_SPOOL_CARRY_USAGE", default=True)

# The predict hot path trusts what a process read this recently without asking the
# database again: a group's route (a promotion or weight change reaches every process
# within this time) and a verified API key (a revocation reaches every other process
# within this time; the revoking process forgets the key at once). 0 turns either off.
GROUP_ROUTE_TRUST_SECONDS = env.float("GROUP_ROUTE_TRUST_SECONDS", default=1.0)
API_KEY_CACHE_SECONDS = env.float("API_KEY_CACHE_SECONDS", default=5.0)
# Which tenant a host name selects, remembered per process for this long (a new,
# changed or removed domain or tenant reaches every other process within it; the
# process that changed it forgets at once). 0 looks it up on every request.
TENANT_HOST_CACHE_SECONDS = env.float("TENANT_HOST_CACHE_SECONDS", default=1.0)

# /metrics (Prometheus): off unless a bearer token or source networks are set. The
# scrape with neither `?tenant=` sees every tenant; `?tenant=<slug>` only that one.
METRICS_TOKEN = env("METRICS_TOKEN", default="")
METRICS_ALLOWED_NETWORKS = env.list("METRICS_ALLOWED_NETWORKS", default=[])
