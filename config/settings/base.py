"""Settings shared by every environment. Everything that differs between machines comes from the
environment; see `.env.example` for the full list."""

import importlib.util
import json
import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from core.redis_client import sentinel_kwargs

BASE_DIR = Path(__file__).resolve().parent.parent.parent


def env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(name, default)


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from exc


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return default if raw in (None, "") else float(raw)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in (env(name, default) or "").split(",") if item.strip()]


SECRET_KEY = env("SECRET_KEY", "")
DEBUG = False
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_simplejwt",
    "rest_framework_api_key",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI and ReDoc as static files: the docs pages work offline
    "django_celery_results",
    "core",
    "ledger",
    "catalog",
    "notifications",
    "workers",
    "ops",
]
# The development launcher (`manage.py runstack`, devstack/) wherever the checkout has it, under
# any settings (`make up` may run the production ones); the image leaves it out (.dockerignore).
if importlib.util.find_spec("devstack") is not None:
    INSTALLED_APPS.append("devstack")

MIDDLEWARE = [
    # Outermost: under /api/, Django's own HTML error pages (debug pages included) become JSON.
    "core.api.handlers.ApiErrorPagesMiddleware",
    # Whether the request may have written, for the answer to a lost database connection.
    "core.db.writes.DatabaseWritesMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Serves the admin's static files from gunicorn itself (no separate web server needed).
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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

DATABASE_URL = env("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/ledger")
# CONN_HEALTH_CHECKS: a reused connection is checked before the first query of each request and
# replaced if its backend is gone (a restart, a failover), so a request does not fail on it.
DATABASES = {
    "default": dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 60), conn_health_checks=True)
}
# The project's prepared statements (core/db/prepared.py) are planned once per session. Left to
# choose, PostgreSQL plans a statement with array parameters again at every execution, a custom plan
# for the values at hand, since its generic plan guesses ten elements per array. Each of them finds
# its rows by primary key whatever the arrays hold (tests/fulfilment/test_plans.py reads both
# plans). It applies to prepared statements only; `?options=` in the URL is kept, before it.
_OPTIONS = DATABASES["default"].setdefault("OPTIONS", {})
_OPTIONS["options"] = f"{_OPTIONS.get('options', '')} -c plan_cache_mode=force_generic_plan".strip()
# A streaming replica of DATABASE_URL for the heavy reads (lists, the transaction export): see
# core/db/replica.py for which reads go there and when they fall back. Unset: no replica, every read
# on the primary. In tests it mirrors the default database (a standby cannot create one of its own:
# the primary's test database reaches it by replication).
DATABASE_REPLICA_URL = env("DATABASE_REPLICA_URL", "")
if DATABASE_REPLICA_URL:
    DATABASES["replica"] = dj_database_url.parse(
        DATABASE_REPLICA_URL,
        conn_max_age=env_int("DB_CONN_MAX_AGE", 60),
        conn_health_checks=True,
        test_options={"MIRROR": "default"},
    )
    # An unreachable replica must cost seconds, not the kernel's TCP timeout (the reads wait for it
    # once per process before falling back); `?connect_timeout=` in the URL overrides.
    DATABASES["replica"].setdefault("OPTIONS", {}).setdefault("connect_timeout", 2)
# Heavy reads go to the primary while the replica is further behind than this (seconds).
DATABASE_REPLICA_MAX_LAG = env_float("DATABASE_REPLICA_MAX_LAG", 5.0)
# Writes and migrations always on the primary, whatever database a read came from.
DATABASE_ROUTERS = ["core.db.router.PrimaryReplicaRouter"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# Without collectstatic (development, tests) WhiteNoise finds the files in the apps; production
# collects them into the image and turns this off.
WHITENOISE_USE_FINDERS = env_bool("WHITENOISE_USE_FINDERS", True)

# --- REST framework -------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "core.authentication.JWTAuthentication",
        "core.authentication.ApiKeyAuthentication",
    ],
    "DEFAULT_THROTTLE_CLASSES": ["core.throttling.SellerRateThrottle"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # JSON only (a body that cannot be loaded is 400 parse_error); the charge list upload is the
    # one view that declares multipart. The schema advertises exactly these media types.
    "DEFAULT_PARSER_CLASSES": ["core.parsers.JSONParser"],
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
    "DEFAULT_PAGINATION_CLASS": "core.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "core.errors.api_exception_handler",
    "UNAUTHENTICATED_USER": None,
    # Proxies in front of gunicorn that append to X-Forwarded-For: the client's address is the one
    # the outermost of them saw. 1 behind the project's nginx (runstack and Compose set it), 2 with
    # a TLS proxy in front of that nginx; 0 when clients reach gunicorn directly. Too high a number
    # lets clients pick their address; too low makes every client share the proxy's.
    "NUM_PROXIES": env_int("NUM_PROXIES", 0),
}

SIMPLE_JWT = {
    "AUTH_HEADER_TYPES": ("Bearer",),
    # simplejwt's defaults, stated because docs/api.md promises them to clients.
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=5),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=1),
    # Tokens carry a digest of the password hash; a password change revokes every token issued
    # before it (core.authentication, and core.api.auth for refresh tokens).
    "CHECK_REVOKE_TOKEN": True,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Seller credit ledger API",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema and its pages need no credentials and ignore any sent (a stale token is no 401).
    "SERVE_AUTHENTICATION": [],
    # Separate request and response components, so read-only fields (`access`, `id`) are not
    # demanded of requests nor write-only ones (`password`) of answers by generated clients.
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "core.schema.add_error_responses"],
    "PATH_CONVERTER_OVERRIDES": {"id": {"type": "integer", "format": "int64", "minimum": 1}},
    "ENUM_NAME_OVERRIDES": {
        "StaffRoleEnum": "core.api.serializers.ROLE_CHOICES",
        "RoleEnum": "core.api.serializers.ALL_ROLE_CHOICES",
        # Entries and products both have a `kind`: the entries' keeps the name clients were generated with.
        "KindEnum": "ledger.models.Entry.Kind",
    },
}

# --- Rate limits (counted in Redis, shared by every web process; see core/throttling.py) -----
# Per seller, whichever token or API key it uses. High by default: it guards against a runaway
# integrator, not against the legitimate load.
SELLER_THROTTLE_RATE = env("SELLER_THROTTLE_RATE", "200000/m")
# Failed logins, API and admin site alike (the rule: core/throttling.py). Refused per (username,
# client address) and per client address; slowed, never refused, per username.
LOGIN_THROTTLE_RATE = env("LOGIN_THROTTLE_RATE", "10/15m")
LOGIN_THROTTLE_ADDRESS_RATE = env("LOGIN_THROTTLE_ADDRESS_RATE", "100/15m")
LOGIN_THROTTLE_USERNAME_RATE = env("LOGIN_THROTTLE_USERNAME_RATE", "10/15m")
LOGIN_THROTTLE_DELAY = env_float("LOGIN_THROTTLE_DELAY", 30.0)
THROTTLE_REDIS_URL = env("THROTTLE_REDIS_URL")  # default: REDIS_URL

# --- Ledger ---------------------------------------------------------------------------------
# Money is an integer count of the smallest currency unit everywhere.
LEDGER_SHARDS = env_int("LEDGER_SHARDS", 4)
LEDGER_MAX_AMOUNT = env_int("LEDGER_MAX_AMOUNT", 1_000_000_000_000)
LEDGER_SETTLE_BATCH_SIZE = env_int("LEDGER_SETTLE_BATCH_SIZE", 5000)
# How long one settle_seller task keeps draining a seller before it re-enqueues itself, so one hot
# seller cannot starve the other sellers on its shard.
LEDGER_SETTLE_TIME_BUDGET = env_float("LEDGER_SETTLE_TIME_BUDGET", 2.0)
# Under load, a shard's settles start at most this often (workers/dispatch.py): more intents per
# batch, fewer tasks and publishes, at the price of at most this much added latency. The first
# LEDGER_WAKE_BURST settles of a shard in each second start at once: at low rates nothing waits.
LEDGER_WAKE_COOLDOWN = env_float("LEDGER_WAKE_COOLDOWN", 0.1)
LEDGER_WAKE_BURST = env_int("LEDGER_WAKE_BURST", 10)
LEDGER_SWEEP_INTERVAL = env_float("LEDGER_SWEEP_INTERVAL", 10.0)
LEDGER_SWEEP_AFTER = env_float("LEDGER_SWEEP_AFTER", 15.0)
# ops/queues and the metrics call a shard stalled when its oldest waiting intent is older than this
# and the shard has settled nothing for as long (ops/report.py).
LEDGER_STALL_AFTER = env_float("LEDGER_STALL_AFTER", 10.0)
LEDGER_AUDIT_INTERVAL = env_float("LEDGER_AUDIT_INTERVAL", 3600.0)
# A shard worker renews its group's lease every second; a standby takes the group over once the
# lease has gone this long without renewal (workers/leases.py): takeover takes this plus a start.
LEDGER_SHARD_LEASE_SECONDS = env_float("LEDGER_SHARD_LEASE_SECONDS", 5.0)
# Each periodic audit also re-verifies this many sellers' whole ledgers (those verified in full
# longest ago), so every seller is read in full at least once per ceil(sellers / N) runs.
LEDGER_AUDIT_FULL_SELLERS_PER_RUN = env_int("LEDGER_AUDIT_FULL_SELLERS_PER_RUN", 100)
# An import that showed no progress for this long (its worker was killed) is started again.
LEDGER_IMPORT_RESUME_AFTER = env_float("LEDGER_IMPORT_RESUME_AFTER", 60.0)

# Who hears each of the ledger's events (ledger/events.py), called in the transaction of the change
# with its keyword arguments: the ledger imports neither the workers nor the notifications.
LEDGER_EVENT_SUBSCRIBERS = {
    # Wake the seller's shard worker after commit (workers/dispatch.py).
    "intents_recorded": ["workers.dispatch.wake_seller_on_commit"],
    # Start a stored charge list's import on `ledger.imports` after commit.
    "batch_uploaded": ["workers.tasks.import_batch_on_commit"],
    # Send the charges the settle reserved to the provider on `ledger.fulfil` after commit.
    "charges_reserved": ["workers.dispatch.fulfil_on_commit"],
    # Record the sellers' public events in the notifications' outbox, in the same transaction.
    "intents_settled": ["notifications.subscribers.intents_settled"],
    "batch_completed": ["notifications.subscribers.batch_completed"],
    "deposit_rejected": ["notifications.subscribers.deposit_rejected"],
    # Build a requested statement on `ledger.imports` after commit; tell the seller when it is ready.
    "statement_requested": ["workers.statement_tasks.build_statement_on_commit"],
    "statement_ready": ["notifications.subscribers.statement_ready"],
    # Apply a provider's callback on `ledger.fulfil.reconcile`, published before the web answers it.
    "callback_received": ["workers.dispatch.apply_callback_later"],
}


def _providers(value: str) -> dict | None:
    if not value.strip():
        return None
    try:
        parsed = json.loads(value)
    except ValueError as exc:
        raise ImproperlyConfigured(f"PROVIDERS is not JSON: {exc}") from exc
    if not isinstance(parsed, dict) or not all(isinstance(options, dict) for options in parsed.values()):
        raise ImproperlyConfigured("PROVIDERS must map each provider's name to its settings")
    return parsed


# The top-up provider (docs/provider.md, docs/operations.md). The sandbox of `make up` by default.
# PROVIDER_KIND names the adapter: `sandbox` (the sandbox's own dialect), `dvs` (DT One) or
# `reloadly`; PROVIDER_URL is its API root (DT One's ends in /v1).
PROVIDER_KIND = env("PROVIDER_KIND") or "sandbox"
PROVIDER_URL = env("PROVIDER_URL", "http://127.0.0.1:8090")
# The sandbox: an optional bearer key. DT One: the API key and secret (basic auth). Reloadly: the
# client id and secret; its tokens come from PROVIDER_AUTH_URL for PROVIDER_AUDIENCE (default
# PROVIDER_URL).
PROVIDER_API_KEY = env("PROVIDER_API_KEY", "")
PROVIDER_API_SECRET = env("PROVIDER_API_SECRET", "")
PROVIDER_AUTH_URL = env("PROVIDER_AUTH_URL", "https://auth.reloadly.com/oauth/token")
PROVIDER_AUDIENCE = env("PROVIDER_AUDIENCE", "")
PROVIDER_CALLBACK_SECRET = env("PROVIDER_CALLBACK_SECRET", "")
# Several providers at once (routing, docs/provider.md "Routing"): a JSON object mapping each
# provider's name to {kind, url, key, secret, callback_secret, auth_url, audience}, e.g.
# {"dtone": {"kind": "dvs", "url": "https://dvs-api.dtone.com/v1", "key": "...", "secret": "..."}}.
# Empty: the one provider of the settings above, named by its kind. PROVIDER_DEFAULT (default: the
# first) serves products no route names.
PROVIDERS = _providers(env("PROVIDERS", ""))
PROVIDER_DEFAULT = env("PROVIDER_DEFAULT", "")
# Where the provider posts its callbacks (our /api/v1/provider/callbacks/); empty: no callbacks,
# pending top-ups are resolved by lookups alone.
PROVIDER_CALLBACK_URL = env("PROVIDER_CALLBACK_URL", "")
PROVIDER_CONNECT_TIMEOUT = env_float("PROVIDER_CONNECT_TIMEOUT", 1.0)
PROVIDER_READ_TIMEOUT = env_float("PROVIDER_READ_TIMEOUT", 5.0)
# Our external id of charge N is this prefix, the database's installation token and N
# (ledger/fulfilment/identity.py): unique for the provider account whatever happens to the database.
PROVIDER_EXTERNAL_ID_PREFIX = env("PROVIDER_EXTERNAL_ID_PREFIX", "chg_")
# How far the provider's clock may run behind ours: a transaction it says it created earlier than
# our charge, by more than this, is an earlier database's, not ours (a mismatch).
PROVIDER_CLOCK_SKEW = env_float("PROVIDER_CLOCK_SKEW", 60.0)
# Requests in flight at once to each provider from one fulfilment worker process (its keep-alive
# connections; providers/transfers.py): at a provider's 50 ms, 128 keep PROVIDER_RATE_LIMIT's
# 2,000/s within reach. And charges per fulfil task: a settle that reserves thousands publishes a
# task per PROVIDER_BATCH after its commit, before its next batch, and at 50 those publishes were
# a third of a hot seller's settle (docs/performance.md).
PROVIDER_CONCURRENCY = env_int("PROVIDER_CONCURRENCY", 128)
PROVIDER_BATCH = env_int("PROVIDER_BATCH", 100)
# Across all workers (ledger/fulfilment/gate.py): requests per second, at most per take, and the breaker.
PROVIDER_RATE_LIMIT = env_float("PROVIDER_RATE_LIMIT", 2000.0)
PROVIDER_RATE_BURST = env_int("PROVIDER_RATE_BURST", 200)
PROVIDER_BREAKER_FAILURES = env_int("PROVIDER_BREAKER_FAILURES", 5)
PROVIDER_BREAKER_RESET = env_float("PROVIDER_BREAKER_RESET", 5.0)
# A sent charge is first looked up this long after it was sent (and no sooner than its request can
# be over), then, while the provider says it is pending, with doubling delays up to the max.
PROVIDER_LOOKUP_AFTER = env_float("PROVIDER_LOOKUP_AFTER", 10.0)
PROVIDER_LOOKUP_BACKOFF_MAX = env_float("PROVIDER_LOOKUP_BACKOFF_MAX", 300.0)
# A charge whose answer was lost is looked up this long after, and sent again under its external id
# whenever the provider has no record of it; a lost answer again, or a lookup that cannot be made,
# is tried again after doubling delays up to the max. It fails only on the provider's refusal.
PROVIDER_RESEND_AFTER = env_float("PROVIDER_RESEND_AFTER", 1.0)
PROVIDER_RESEND_BACKOFF_MAX = env_float("PROVIDER_RESEND_BACKOFF_MAX", 8.0)
# Reserved charges not sent for this long (a lost publish) are sent again.
PROVIDER_REDISPATCH_AFTER = env_float("PROVIDER_REDISPATCH_AFTER", 15.0)
# Unknown outcomes older than this are reported (ops/queues, metrics): someone should look.
PROVIDER_UNKNOWN_ALERT_AFTER = env_float("PROVIDER_UNKNOWN_ALERT_AFTER", 300.0)
PROVIDER_RECONCILE_INTERVAL = env_float("PROVIDER_RECONCILE_INTERVAL", 2.0)
# The float, our balance at the provider (ledger/provider_account/floats.py): polled every
# PROVIDER_FLOAT_INTERVAL seconds; below PROVIDER_FLOAT_LOW (smallest unit of the balance's
# currency) it is low: one WARNING, shown in ops/queues and the metrics. One amount for every
# provider ("5000000") or per provider ("dtone=5000000,reloadly=200000"); empty: no alert.
PROVIDER_FLOAT_INTERVAL = env_float("PROVIDER_FLOAT_INTERVAL", 60.0)


def _float_low(value: str) -> int | dict[str, int] | None:
    if not value.strip():
        return None
    if "=" not in value:
        return int(value)
    pairs = [item.partition("=") for item in value.split(",") if item.strip()]
    if any(not name.strip() or not amount.strip().isdigit() for name, _, amount in pairs):
        raise ImproperlyConfigured(f"PROVIDER_FLOAT_LOW: {value!r} is neither an amount nor name=amount,...")
    return {name.strip(): int(amount) for name, _, amount in pairs}


PROVIDER_FLOAT_LOW = _float_low(env("PROVIDER_FLOAT_LOW", ""))

# The catalog, prices and quotes (docs/api.md, "Catalog, prices and quotes"; docs/operations.md).
# Every price and cost is an integer of this currency's smallest unit (ISO 4217 code); a provider
# product whose cost is in another currency is not synced.
PLATFORM_CURRENCY = env("PLATFORM_CURRENCY", "USD")
# How long a quote holds its price, in seconds.
QUOTE_TTL = env_int("QUOTE_TTL", 300)
# Seconds between two syncs of the provider's catalog (`catalog.sync`, beat).
CATALOG_SYNC_INTERVAL = env_float("CATALOG_SYNC_INTERVAL", 3600.0)
# How long the provider's answer to a number lookup is trusted, in seconds.
NUMBER_LOOKUP_TTL = env_int("NUMBER_LOOKUP_TTL", 7 * 24 * 3600)

# Statements a seller can verify (docs/api.md, "Statements"). The checkpoints' Ed25519 key: the
# base64 of its 32 raw bytes, or a PEM file; no default (development generates one into .env).
STATEMENT_SIGNING_KEY = env("STATEMENT_SIGNING_KEY", "")
STATEMENT_SIGNING_KEY_FILE = env("STATEMENT_SIGNING_KEY_FILE", "")
# Public keys of retired signing keys (base64 of their raw 32 bytes), still published so the
# checkpoints they signed verify.
STATEMENT_RETIRED_PUBLIC_KEYS = env_list("STATEMENT_RETIRED_PUBLIC_KEYS")
# Seconds between two signings of every active seller's chain head (at least daily).
STATEMENT_CHECKPOINT_INTERVAL = env_float("STATEMENT_CHECKPOINT_INTERVAL", 24 * 3600.0)
# Seconds between two looks for sellers whose last month has no statement yet.
STATEMENT_MONTHLY_INTERVAL = env_float("STATEMENT_MONTHLY_INTERVAL", 3600.0)
# A statement with more entries than this is built as JSON and CSV only (a PDF would be thousands of pages).
STATEMENT_PDF_MAX_ENTRIES = env_int("STATEMENT_PDF_MAX_ENTRIES", 5000)

# Seller notifications (docs/notifications.md).
NOTIFICATIONS_EVENTS = env_bool("NOTIFICATIONS_EVENTS", True)
NOTIFICATIONS_EVENTS_RECORDED = "notifications.tasks.fan_out_on_commit"
NOTIFICATIONS_EVENT_RETENTION_DAYS = env_int("NOTIFICATIONS_EVENT_RETENTION_DAYS", 30)
NOTIFICATIONS_SWEEP_INTERVAL = env_float("NOTIFICATIONS_SWEEP_INTERVAL", 10.0)
# How often an open event stream looks for the seller's new events.
NOTIFICATIONS_STREAM_POLL = env_float("NOTIFICATIONS_STREAM_POLL", 0.5)
# Seconds before each attempt: the first at once, then Svix's schedule (each delay +-10 % jitter).
WEBHOOK_RETRY_SCHEDULE = [
    float(s) for s in env("WEBHOOK_RETRY_SCHEDULE", "0,5,300,1800,7200,18000,36000,36000").split(",")
]
WEBHOOK_TIMEOUT = env_float("WEBHOOK_TIMEOUT", 15.0)
# Requests in flight at once to one endpoint (by the one task that sends its deliveries).
WEBHOOK_ENDPOINT_CONCURRENCY = env_int("WEBHOOK_ENDPOINT_CONCURRENCY", 8)
# An attempt's claim on a delivery: past it, the delivery is due again (a worker died mid-send).
WEBHOOK_LEASE = env_float("WEBHOOK_LEASE", 60.0)
WEBHOOK_DISABLE_AFTER = env_float("WEBHOOK_DISABLE_AFTER", 5 * 24 * 3600.0)
WEBHOOK_SECRET_OVERLAP = env_float("WEBHOOK_SECRET_OVERLAP", 24 * 3600.0)
# Endpoint URLs resolving to loopback, private or link-local addresses: refused unless allowed
# (local.py allows them, so a developer can point an endpoint at a receiver on their machine).
WEBHOOK_ALLOW_PRIVATE_URLS = env_bool("WEBHOOK_ALLOW_PRIVATE_URLS", False)
PHONE_DEFAULT_REGION = env("PHONE_DEFAULT_REGION", "IR")
# Charge list imports: uploads above this many bytes are refused with 413 (100 MiB is about
# three million rows). Uploads above FILE_UPLOAD_MAX_MEMORY_SIZE are spooled to a temporary file
# by Django and copied from there into PostgreSQL, so a large upload never sits in the web
# process's memory.
LEDGER_BATCH_MAX_BYTES = env_int("LEDGER_BATCH_MAX_BYTES", 100 * 1024 * 1024)
FILE_UPLOAD_MAX_MEMORY_SIZE = env_int("FILE_UPLOAD_MAX_MEMORY_SIZE", 2 * 1024 * 1024)

# --- Celery (broker: Redis; results: PostgreSQL through django-celery-results) ----------------
# redis://... or, for a Sentinel-managed Redis, Celery's sentinel://host:port[/db];sentinel://...
# (every Redis client of the project reads it through core/redis_client.py).
REDIS_URL = env("REDIS_URL", "redis://127.0.0.1:6379/0")
REDIS_SENTINEL_MASTER = env("REDIS_SENTINEL_MASTER", "mymaster")
REDIS_SENTINEL_PASSWORD = env("REDIS_SENTINEL_PASSWORD", "")  # the sentinels' own, if they have one
CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = "django-db"
CELERY_RESULT_EXTENDED = True
CELERY_TASK_IGNORE_RESULT = True
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_TIMEZONE = "UTC"
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = 60
CELERY_TASK_TIME_LIMIT = 90
CELERY_TASK_DEFAULT_QUEUE = "ledger.default"
CELERY_WORKER_SEND_TASK_EVENTS = True
# No "task-sent" event: it cost the web a second publish per wake-up (half of the publish's CPU
# in the charge POST's profile). Flower still sees every task from the workers' received, started
# and succeeded events, and reads queue depths from the broker itself.
CELERY_TASK_SEND_SENT_EVENT = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Plain values only (numbers, strings, dicts of them): every worker sends these as JSON in its
# `stats` reply (`celery inspect stats`, Flower's worker pages), and a value JSON cannot hold makes
# every worker drop every `stats` request (`Control command error: EncodeError(...)`).
CELERY_BROKER_TRANSPORT_OPTIONS = {
    # Far above the task time limits, so a running task is never handed to a second worker.
    "visibility_timeout": 600,
    "socket_timeout": 5,
    "socket_connect_timeout": 5,
    "health_check_interval": 10,
    # Read only by kombu's Sentinel transport (and Flower's) when the URL is sentinel://; the
    # redis:// transport ignores them, so they are set whatever REDIS_URL is.
    "master_name": REDIS_SENTINEL_MASTER,
    "sentinel_kwargs": sentinel_kwargs(password=REDIS_SENTINEL_PASSWORD, socket_timeout=5, socket_connect_timeout=5),
}
CELERY_RESULT_EXPIRES = 7 * 24 * 3600
CELERY_TASK_ROUTES = ("workers.routing.route_task",)
# Celery's Django fixup closes the database connection around every task unless this is set, so
# each wake-up paid a new PostgreSQL session (what reuse gains: docs/performance.md).
# workers/tasks.py still drops a broken or expired connection before each task.
CELERY_DB_REUSE_MAX = env_int("CELERY_DB_REUSE_MAX", 1000)
CELERY_BEAT_SCHEDULE = {
    "ledger.sweep_stale_sellers": {
        "task": "ledger.sweep_stale_sellers",
        "schedule": LEDGER_SWEEP_INTERVAL,
        "options": {"expires": LEDGER_SWEEP_INTERVAL},
    },
    "ledger.audit": {"task": "ledger.audit", "schedule": LEDGER_AUDIT_INTERVAL},
    "ledger.resume_stalled_imports": {
        "task": "ledger.resume_stalled_imports",
        "schedule": LEDGER_SWEEP_INTERVAL,
        "options": {"expires": LEDGER_SWEEP_INTERVAL},
    },
    "ledger.reconcile_fulfilment": {
        "task": "ledger.reconcile_fulfilment",
        "schedule": PROVIDER_RECONCILE_INTERVAL,
        "options": {"expires": PROVIDER_RECONCILE_INTERVAL},
    },
    "ledger.poll_provider_float": {
        "task": "ledger.poll_provider_float",
        "schedule": PROVIDER_FLOAT_INTERVAL,
        "options": {"expires": PROVIDER_FLOAT_INTERVAL},
    },
    "catalog.sync": {
        "task": "catalog.sync",
        "schedule": CATALOG_SYNC_INTERVAL,
        # The import worker's queue: long work, one task at a time, never a shard's (catalog/tasks.py).
        "options": {"expires": CATALOG_SYNC_INTERVAL, "queue": "ledger.imports"},
    },
    "notifications.sweep": {
        "task": "notifications.sweep",
        "schedule": NOTIFICATIONS_SWEEP_INTERVAL,
        "options": {"expires": NOTIFICATIONS_SWEEP_INTERVAL, "queue": "ledger.webhooks"},
    },
    "ledger.sign_checkpoints": {
        "task": "ledger.sign_checkpoints",
        "schedule": STATEMENT_CHECKPOINT_INTERVAL,
        "options": {"expires": STATEMENT_CHECKPOINT_INTERVAL},
    },
    "ledger.monthly_statements": {
        "task": "ledger.monthly_statements",
        "schedule": STATEMENT_MONTHLY_INTERVAL,
        "options": {"expires": STATEMENT_MONTHLY_INTERVAL},
    },
    "notifications.prune_events": {
        "task": "notifications.prune_events",
        "schedule": 3600.0,
        "options": {"queue": "ledger.webhooks"},
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        # One JSON object per line; `extra=` fields (seller_id, charge_id, deposit_id, ...) become keys.
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger", "process": "pid"},
        },
    },
    "filters": {
        # Celery's INFO lines about the beat-scheduled tasks (beat's "Sending due task", the
        # workers' "received" and "succeeded in") count as DEBUG: an idle stack prints nothing,
        # and what a periodic task did is logged by its own code (workers/log_filters.py).
        "periodic_tasks": {
            "()": "workers.log_filters.PeriodicTaskLines",
            "tasks": sorted({entry["task"] for entry in CELERY_BEAT_SCHEDULE.values()}),
        },
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": env("LOG_FORMAT") or "plain"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        **{
            name: {"filters": ["periodic_tasks"]}
            for name in ("celery.beat", "celery.worker.strategy", "celery.app.trace")
        },
    },
}
# LOG_LEVELS="logger=LEVEL,...": the level of named loggers, over the root's. The Celery processes
# take their root level from their command (`--loglevel INFO`, workers/commands.py), not LOG_LEVEL:
# e.g. LOG_LEVELS=celery.app.trace=DEBUG,celery.worker.strategy=DEBUG shows the workers' lines about
# the periodic tasks again, celery.beat=DEBUG beat's (docs/operations.md, "Logs").
for _item in env_list("LOG_LEVELS"):
    _name, _, _level = (part.strip() for part in _item.partition("="))
    if not _name or _level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ImproperlyConfigured(f"LOG_LEVELS: {_item!r} is not logger=LEVEL (DEBUG, INFO, WARNING, ERROR, CRITICAL)")
    LOGGING["loggers"].setdefault(_name, {})["level"] = _level.upper()
