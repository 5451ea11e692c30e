"""Settings shared by every environment, all read from the environment through one `env`.

Defaults point at the local services that `scripts/services up` starts, so a fresh clone runs
with no `.env`. `.env.example` documents every variable. `test.py` and `production.py` build on
this module.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()
# A developer's .env is read when present; real environment variables win over it.
if (BASE_DIR / ".env").exists():
    env.read_env(str(BASE_DIR / ".env"), overwrite=False)

# --- core ------------------------------------------------------------------------------------

# The default only serves local development; production.py refuses to start without SECRET_KEY.
SECRET_KEY = env("SECRET_KEY", default="") or "django-insecure-local-development-only"
DEBUG = env.bool("DEBUG", default=True)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    # Refresh-token rotation and revocation (logout, password change) for JWT clients.
    "rest_framework_simplejwt.token_blacklist",
    "drf_spectacular",
    # Swagger UI and Redoc assets served from our static files, not a CDN (/api/docs/).
    "drf_spectacular_sidecar",
    # CORS for web clients on other origins (CORS_* settings below).
    "corsheaders",
    # Project apps: the Kafka side first so domain apps can register handlers with it.
    "outbox",
    "relay",
    "accounts",
    "posts",
    "coins",
    "media",
    "notifications",
    "analytics",
    "social",
    "search",
    "feeds",
]

MIDDLEWARE = [
    # First, so its request count and time cover every other middleware (showoff/metrics.py).
    "showoff.metrics.PrometheusMiddleware",
    # Before anything that can answer on its own (redirects, CommonMiddleware), so preflights
    # and every answer to an allowed origin carry the CORS headers.
    "corsheaders.middleware.CorsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "outbox.tracing.TraceparentMiddleware",
    # RateLimit / X-RateLimit-* headers from the throttles' state (showoff/ratelimit.py).
    "showoff.ratelimit.RateLimitHeadersMiddleware",
]

ROOT_URLCONF = "showoff.urls"
WSGI_APPLICATION = "showoff.wsgi.application"
ASGI_APPLICATION = "showoff.asgi.application"

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

# --- database --------------------------------------------------------------------------------

DATABASES = {
    "default": env.db("DATABASE_URL", default="postgres://showoff@127.0.0.1:5432/showoff"),
}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DATABASES["default"].setdefault("OPTIONS", {})
DATABASES["default"]["OPTIONS"].setdefault("connect_timeout", 5)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "accounts.User"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- i18n, static, media ---------------------------------------------------------------------

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / ".local" / "static"
MEDIA_URL = "media/"
MEDIA_ROOT = BASE_DIR / env("MEDIA_ROOT", default=".local/media")  # relative to the repo

# --- cache and Redis -------------------------------------------------------------------------

REDIS_URL = env("REDIS_URL", default="redis://127.0.0.1:6379/0")
# Throttle counters and revoked access tokens live here: one Redis shared by every web worker.
CACHES = {
    "default": {
        "BACKEND": "showoff.cache.PrefixScopedRedisCache",
        "LOCATION": env("CACHE_URL", default=REDIS_URL.rsplit("/", 1)[0] + "/1"),
        # Lets several environments share one Redis database; cache.clear() then clears only
        # this prefix's keys (showoff/cache.py).
        "KEY_PREFIX": env("CACHE_KEY_PREFIX", default=""),
    }
}

# --- Celery (DESIGN.md §5) -------------------------------------------------------------------

CELERY_BROKER_URL = env("CELERY_BROKER_URL", default=REDIS_URL)
CELERY_RESULT_BACKEND = env("CELERY_RESULT_BACKEND", default="") or None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Redis re-delivers a task that is not acknowledged within the visibility timeout; long
# transcodes must fit inside it (tasks are idempotent anyway).
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=4 * 3600)
}
CELERY_TIMEZONE = TIME_ZONE
CELERY_BEAT_SCHEDULE: dict = {}

# --- Kafka (names kept from the seed guide) --------------------------------------------------

KAFKA_ENABLED = env.bool("KAFKA_ENABLED", default=True)
KAFKA_BROKERS = env("KAFKA_BROKERS", default="127.0.0.1:9092")
KAFKA_CONSUMER_GROUP = env("KAFKA_CONSUMER_GROUP", default="showoff-life-consumer-group")
KAFKA_CLIENT_ID = env("KAFKA_CLIENT_ID", default="showoff")
KAFKA_SECURITY_PROTOCOL = env("KAFKA_SECURITY_PROTOCOL", default="PLAINTEXT")
KAFKA_SASL_MECHANISM = env("KAFKA_SASL_MECHANISM", default="")
KAFKA_SASL_USERNAME = env("KAFKA_SASL_USERNAME", default="")
KAFKA_SASL_PASSWORD = env("KAFKA_SASL_PASSWORD", default="")
KAFKA_SSL_CA_LOCATION = env("KAFKA_SSL_CA_LOCATION", default="")
KAFKA_SSL_CERTIFICATE_LOCATION = env("KAFKA_SSL_CERTIFICATE_LOCATION", default="")
KAFKA_SSL_KEY_LOCATION = env("KAFKA_SSL_KEY_LOCATION", default="")
# Prepended to every topic name: lets several environments (or test runs) share one cluster.
KAFKA_TOPIC_PREFIX = env("KAFKA_TOPIC_PREFIX", default="")
KAFKA_TOPIC_PARTITIONS = env.int("KAFKA_TOPIC_PARTITIONS", default=3)
KAFKA_REPLICATION_FACTOR = env.int("KAFKA_REPLICATION_FACTOR", default=1)
KAFKA_MIN_INSYNC_REPLICAS = env.int("KAFKA_MIN_INSYNC_REPLICAS", default=1)
# The largest Kafka record (key + value + headers + record and batch overhead) there is: `publish`
# refuses an event whose record would be larger, the relay's producer uses it as
# message.max.bytes and the topics as max.message.bytes, so that whatever publish accepts Kafka
# accepts too. Raise it on brokers, topics and here together.
KAFKA_MESSAGE_MAX_BYTES = env.int("KAFKA_MESSAGE_MAX_BYTES", default=1_000_000)

# --- CORS (django-cors-headers): web apps on other origins -----------------------------------

# Origins (scheme://host[:port]) whose browser pages may call the API. Development allows the
# usual local frontend dev servers; production allows none unless set (production.py).
CORS_ALLOWED_ORIGINS = env.list("CORS_ALLOWED_ORIGINS", default=[
    "http://localhost:3000", "http://127.0.0.1:3000",
    "http://localhost:5173", "http://127.0.0.1:5173",
])
# Only the API; the admin and its session cookie stay same-origin.
CORS_URLS_REGEX = r"^/api/.*$"
# Clients authenticate with `Authorization: Bearer`, which a page sets itself and CORS allows
# as a request header; cookies are not needed, so credentialed requests are off unless set.
CORS_ALLOW_CREDENTIALS = env.bool("CORS_ALLOW_CREDENTIALS", default=False)
# Request headers a page may send beyond the defaults (accept, authorization, content-type,
# user-agent, x-csrftoken, x-requested-with, ...): the coins Idempotency-Key, the resumable
# upload's Content-Range, Range for media, and the W3C trace context.
CORS_ALLOW_HEADERS = [
    "accept", "accept-encoding", "authorization", "content-type", "dnt", "origin",
    "user-agent", "x-csrftoken", "x-requested-with",
    "idempotency-key", "content-range", "range", "traceparent", "tracestate",
]
# Response headers a page may read: the rate-limit headers (showoff/ratelimit.py) and those
# of idempotent replays and byte ranges.
CORS_EXPOSE_HEADERS = [
    "RateLimit", "RateLimit-Policy", "X-RateLimit-Limit", "X-RateLimit-Remaining",
    "X-RateLimit-Reset", "Retry-After", "Idempotent-Replayed", "Content-Range",
    "Accept-Ranges", "Content-Disposition",
]
# Browsers may cache a preflight this long (seconds; browsers cap it, Chromium at 7200).
CORS_PREFLIGHT_MAX_AGE = env.int("CORS_PREFLIGHT_MAX_AGE", default=7200)

# --- DRF -------------------------------------------------------------------------------------

# Clients authenticate with JWT (mobile and web; refresh tokens rotate and revocation is a
# blacklist, see docs/api.md); the admin and the browsable docs use the session.
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.JWTAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # Write endpoints take JSON, with strict types (showoff.drf.StrictJsonTypes); the file
    # uploads (avatar, video) declare multipart themselves.
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "EXCEPTION_HANDLER": "showoff.drf.exception_handler",
    "NON_FIELD_ERRORS_KEY": "non_field_errors",
    # Every client gets a generous global budget; the sensitive endpoints add their own scope.
    "DEFAULT_THROTTLE_CLASSES": [
        "showoff.drf.AnonRateThrottle",
        "showoff.drf.UserRateThrottle",
        "showoff.drf.ScopedIPThrottle",  # views with a `throttle_scope`, per client IP
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env("API_THROTTLE_ANON", default="600/min"),
        "user": env("API_THROTTLE_USER", default="1200/min"),
        "register": env("API_THROTTLE_REGISTER", default="20/hour"),
        "login": env("API_THROTTLE_LOGIN", default="30/min"),
        "otp": env("API_THROTTLE_OTP", default="20/hour"),
        # Account recovery: reset and verification emails per client IP and per address
        # (any address, an account's or not), and link-token checks per client IP.
        "recovery": env("API_THROTTLE_RECOVERY", default="20/hour"),
        "recovery_email": env("API_THROTTLE_RECOVERY_EMAIL", default="5/hour"),
        "recovery_token": env("API_THROTTLE_RECOVERY_TOKEN", default="60/hour"),
    },
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=env.int("JWT_ACCESS_MINUTES", default=10)),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=env.int("JWT_REFRESH_DAYS", default=30)),
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "UPDATE_LAST_LOGIN": False,  # accounts.services.user_login records it with its event
    # Tokens carry a hash of the password hash: a password change invalidates every token.
    "CHECK_REVOKE_TOKEN": True,
    "SIGNING_KEY": env("JWT_SIGNING_KEY", default="") or SECRET_KEY,
    "AUTH_HEADER_TYPES": ("Bearer",),
}
SPECTACULAR_SETTINGS = {
    "TITLE": "ShowOff.life API",
    "DESCRIPTION": (
        "The ShowOff.life API: accounts and profiles, posts with likes, comments and views, "
        "video uploads and transcoded renditions, coins (wallet, purchases, transfers and "
        "tips, rewards, withdrawals), notifications (in-app, push devices, preferences) and "
        "analytics (client event ingestion, post stats, staff metrics).\n\n"
        "Authenticate with `Authorization: Bearer <access token>` from "
        "`POST /api/auth/login/`.\n\n"
        "Request bodies are JSON (`Content-Type: application/json`), except the file uploads "
        "(`multipart/form-data`). Types are strict: each field must have the JSON type this "
        "schema gives it (a string is never read as a number, nor a number as a string), or "
        "the request is a 400 naming the field. Every error, under `/api/` and whatever the "
        "status, is JSON in the `Error` shape."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/api/",
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "showoff.drf.document_error_responses",
        "showoff.drf.add_links",
    ],
}

# --- logging ---------------------------------------------------------------------------------

LOG_LEVEL = env("LOG_LEVEL", default="INFO")
# readable (one line per record) or json (one JSON object per line; production's default).
# Every record carries the event id, type and trace id it belongs to (showoff/log.py).
LOG_FORMAT = env("LOG_FORMAT", default="readable")
LOG_FORMATS = ("readable", "json")
if LOG_FORMAT not in LOG_FORMATS:
    raise ImproperlyConfigured(
        f"LOG_FORMAT={LOG_FORMAT!r}: choose one of {', '.join(LOG_FORMATS)}.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "pipeline_context": {"()": "showoff.log.PipelineContextFilter"},
    },
    "formatters": {
        "readable": {
            "class": "showoff.log.ReadableFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s: %(message)s",
        },
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(levelname)s %(name)s %(process)d %(message)s",
            "rename_fields": {"levelname": "level", "name": "logger", "process": "pid"},
            "timestamp": "time",  # ISO 8601 in UTC
        },
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT,
                    "filters": ["pipeline_context"]},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
    },
}
# One line per event published, relayed and handled is logged at DEBUG: LOG_LEVEL_EVENTS=DEBUG
# turns these on without debugging everything else.
LOG_LEVEL_EVENTS = env("LOG_LEVEL_EVENTS", default="")
if LOG_LEVEL_EVENTS:
    LOGGING["loggers"].update({name: {"level": LOG_LEVEL_EVENTS}
                               for name in ("outbox.publish", "relay.events", "relay.consumer")})

# --- health ----------------------------------------------------------------------------------

HEALTH_CHECK_TIMEOUT = env.float("HEALTH_CHECK_TIMEOUT", default=2.0)

# --- app settings (one section per app, each owned by its app) -------------------------------
# outbox / relay
OUTBOX_EVENT_SOURCE = env("OUTBOX_EVENT_SOURCE", default="//showoff.life/backend")
OUTBOX_SCHEMA_BASE_URI = env("OUTBOX_SCHEMA_BASE_URI", default="https://showoff.life/schemas/")
# Delivered outbox rows older than this are deleted by `manage.py outbox prune` (and beat).
OUTBOX_RETENTION_HOURS = env.int("OUTBOX_RETENTION_HOURS", default=72)
RELAY_BATCH_SIZE = env.int("RELAY_BATCH_SIZE", default=500)
# Fallback poll when no NOTIFY arrives (seconds).
RELAY_POLL_INTERVAL = env.float("RELAY_POLL_INTERVAL", default=1.0)
RELAY_TRANSACTION_TIMEOUT_MS = env.int("RELAY_TRANSACTION_TIMEOUT_MS", default=60000)
# How long the relay waits for init_transactions, a commit or an abort. A commit not confirmed
# in time has an unknown outcome: the producer is rebuilt and the checkpoint re-read.
RELAY_COMMIT_TIMEOUT_SECONDS = env.float("RELAY_COMMIT_TIMEOUT_SECONDS", default=30.0)
# The shard lock is a lease: PostgreSQL ends the session of a relay silent this long (paused,
# hung host), so a hot standby takes over within about this many seconds.
RELAY_LOCK_LEASE_SECONDS = env.float("RELAY_LOCK_LEASE_SECONDS", default=10.0)
RELAY_SUMMARY_INTERVAL = env.float("RELAY_SUMMARY_INTERVAL", default=60.0)
RELAY_CHECKPOINT_PARTITIONS = env.int("RELAY_CHECKPOINT_PARTITIONS", default=16)
# How often a hot-standby relay retries the shard lock (seconds).
RELAY_STANDBY_POLL_INTERVAL = env.float("RELAY_STANDBY_POLL_INTERVAL", default=1.0)
# Shard layout that `manage.py outbox prune` uses (match the relays you run).
RELAY_SHARDS = env.int("RELAY_SHARDS", default=1)
# Consumers' inbox rows are kept this long: above the topics' retention (7 days) and the DLQs'
# (30 days, so any dead letter can still be replayed), since an
# offset reset can re-read that far back and only the inbox makes the re-read harmless.
INBOX_RETENTION_HOURS = env.int("INBOX_RETENTION_HOURS", default=31 * 24)
CELERY_BEAT_SCHEDULE["relay.prune_inbox"] = {
    "task": "relay.prune_inbox",
    "schedule": env.float("INBOX_PRUNE_INTERVAL_SECONDS", default=3600.0),
}
CELERY_BEAT_SCHEDULE["relay.prune_outbox"] = {
    "task": "relay.prune_outbox",
    "schedule": env.float("OUTBOX_PRUNE_INTERVAL_SECONDS", default=3600.0),
}
# Consumers (`manage.py consume`, relay/consumer.py): one DB transaction per batch of up to
# CONSUMER_BATCH_SIZE records; after a batch's first record, wait at most CONSUMER_BATCH_MS
# milliseconds for the rest (what is already fetched is taken at once). Larger batches mean
# fewer commits (throughput); the wait is latency added when records trickle in.
CONSUMER_BATCH_SIZE = env.int("CONSUMER_BATCH_SIZE", default=100)
CONSUMER_BATCH_MS = env.float("CONSUMER_BATCH_MS", default=10.0)
# How long one poll waits for a first record (seconds).
CONSUMER_POLL_TIMEOUT = env.float("CONSUMER_POLL_TIMEOUT", default=1.0)
# Failed handler attempts before a record is dead-lettered; backoff doubles from
# CONSUMER_RETRY_BACKOFF up to CONSUMER_RETRY_BACKOFF_MAX seconds (the partition is paused,
# the consumer keeps polling, so the wait never trips max.poll.interval.ms).
CONSUMER_RETRY_MAX_ATTEMPTS = env.int("CONSUMER_RETRY_MAX_ATTEMPTS", default=5)
CONSUMER_RETRY_BACKOFF = env.float("CONSUMER_RETRY_BACKOFF", default=0.5)
CONSUMER_RETRY_BACKOFF_MAX = env.float("CONSUMER_RETRY_BACKOFF_MAX", default=30.0)
CONSUMER_SESSION_TIMEOUT_MS = env.int("CONSUMER_SESSION_TIMEOUT_MS", default=45000)
CONSUMER_MAX_POLL_INTERVAL_MS = env.int("CONSUMER_MAX_POLL_INTERVAL_MS", default=300000)
# Where a group with no committed offset starts: earliest, so events published before a
# consumer's first start are not missed.
CONSUMER_AUTO_OFFSET_RESET = env("CONSUMER_AUTO_OFFSET_RESET", default="earliest")
CONSUMER_SUMMARY_INTERVAL = env.float("CONSUMER_SUMMARY_INTERVAL", default=60.0)

# monitoring (showoff/metrics.py, docs/monitoring.md)
# When set, GET /metrics needs `Authorization: Bearer <token>`.
METRICS_AUTH_TOKEN = env("METRICS_AUTH_TOKEN", default="")
# Address the metrics HTTP servers of run_relay/consume (--metrics-port) and Celery listen on.
METRICS_ADDRESS = env("METRICS_ADDRESS", default="127.0.0.1")
# A Celery worker serves its pool's metrics on this port (0: off; needs PROMETHEUS_MULTIPROC_DIR).
CELERY_METRICS_PORT = env.int("CELERY_METRICS_PORT", default=0)
# The Prometheus that scrapes this deployment: the admin's Event pipeline page draws the last
# hour and day from it (empty: no charts, the page says so). The default is the local one of
# `scripts/services up prometheus`.
PROMETHEUS_URL = env("PROMETHEUS_URL", default="http://127.0.0.1:9090")
# Seconds the page waits for Prometheus before drawing without it.
PROMETHEUS_TIMEOUT = env.float("PROMETHEUS_TIMEOUT", default=5.0)

# accounts
# Phone verification codes: lifetime, wrong tries before a lock, and the lock's length.
ACCOUNTS_OTP_TTL_SECONDS = env.int("ACCOUNTS_OTP_TTL_SECONDS", default=600)
ACCOUNTS_OTP_MAX_ATTEMPTS = env.int("ACCOUNTS_OTP_MAX_ATTEMPTS", default=5)
ACCOUNTS_OTP_LOCK_SECONDS = env.int("ACCOUNTS_OTP_LOCK_SECONDS", default=900)
# Codes sent per phone number and per client IP within a sliding window of seconds.
ACCOUNTS_OTP_PER_PHONE = env.int("ACCOUNTS_OTP_PER_PHONE", default=3)
ACCOUNTS_OTP_PER_IP = env.int("ACCOUNTS_OTP_PER_IP", default=10)
ACCOUNTS_OTP_WINDOW_SECONDS = env.int("ACCOUNTS_OTP_WINDOW_SECONDS", default=3600)
ACCOUNTS_AVATAR_MAX_BYTES = env.int("ACCOUNTS_AVATAR_MAX_BYTES", default=2 * 1024 * 1024)
# Fernet keys (comma-separated, newest first) sealing the OTP code inside `sms.requested` and
# the single-use link inside `email.requested`; empty: derived from SECRET_KEY (outbox/sealing.py).
SMS_SEAL_KEYS = env.list("SMS_SEAL_KEYS", default=[])
# Client IP: REMOTE_ADDR, or the address this many proxies back in X-Forwarded-For.
ACCOUNTS_TRUSTED_PROXY_COUNT = env.int("ACCOUNTS_TRUSTED_PROXY_COUNT", default=0)
# Account recovery (README "Accounts"): the links emailed for a password reset and an email
# verification open these pages of the web (or app) frontend, `{token}` replaced by the token;
# the page posts it to /api/auth/password/reset/confirm/ or /api/auth/email/verify/.
# Production needs both set (production.py): a development default there would mail links to
# localhost.


def token_link(name: str, value: str) -> str:
    if "{token}" not in value:
        raise ImproperlyConfigured(
            f"{name}={value!r} has no {{token}}: write where the token goes, for example "
            "https://showoff.life/reset-password?token={token}.")
    return value


ACCOUNTS_PASSWORD_RESET_URL = token_link("ACCOUNTS_PASSWORD_RESET_URL", env(
    "ACCOUNTS_PASSWORD_RESET_URL", default="http://localhost:3000/reset-password?token={token}"))
ACCOUNTS_EMAIL_VERIFICATION_URL = token_link("ACCOUNTS_EMAIL_VERIFICATION_URL", env(
    "ACCOUNTS_EMAIL_VERIFICATION_URL", default="http://localhost:3000/verify-email?token={token}"))
# How long the links work (seconds).
ACCOUNTS_PASSWORD_RESET_TTL_SECONDS = env.int("ACCOUNTS_PASSWORD_RESET_TTL_SECONDS",
                                              default=3600)
ACCOUNTS_EMAIL_VERIFICATION_TTL_SECONDS = env.int("ACCOUNTS_EMAIL_VERIFICATION_TTL_SECONDS",
                                                  default=3 * 24 * 3600)
# Used and expired link tokens are deleted this long after they expire (beat, hourly).
ACCOUNTS_TOKEN_RETENTION_HOURS = env.int("ACCOUNTS_TOKEN_RETENTION_HOURS", default=7 * 24)
CELERY_BEAT_SCHEDULE["accounts-prune-tokens"] = {
    "task": "accounts.prune_tokens",
    "schedule": 3600.0,
}

# posts
# A viewer's views of one post count once per this many seconds (docs/api-accounts-posts.md).
POSTS_VIEW_WINDOW_SECONDS = env.int("POSTS_VIEW_WINDOW_SECONDS", default=24 * 3600)
# Only bench/posts_create.py turns this off, to measure what the outbox write costs; it is not
# read from the environment so that no deployment can drop events by configuration.
POSTS_PUBLISH_EVENTS = True

# feeds (docs/feeds.md)
# Authors with more followers than this are not fanned out: their posts are merged into their
# followers' feeds at read time (they stop being celebrities below 90% of it).
FEEDS_CELEBRITY_FOLLOWERS = env.int("FEEDS_CELEBRITY_FOLLOWERS", default=100_000)
# Fan-outs to at most this many followers are done in the consumer's own transaction; larger
# ones by the fan-out worker (manage.py run_fanout), FEEDS_FANOUT_CHUNK followers per
# transaction, taking turns between posts.
FEEDS_FANOUT_INLINE = env.int("FEEDS_FANOUT_INLINE", default=1000)
FEEDS_FANOUT_CHUNK = env.int("FEEDS_FANOUT_CHUNK", default=5000)
# An idle fan-out worker checks for jobs at least this often (it is woken by NOTIFY anyway).
FEEDS_FANOUT_POLL_SECONDS = env.float("FEEDS_FANOUT_POLL_SECONDS", default=1.0)
# A new follow brings this many of the followee's latest posts into the follower's feed.
FEEDS_BACKFILL_POSTS = env.int("FEEDS_BACKFILL_POSTS", default=50)
# The trending feed: how many posts it ranks, and how often (seconds) it is recomputed.
FEEDS_TRENDING_SIZE = env.int("FEEDS_TRENDING_SIZE", default=500)
CELERY_BEAT_SCHEDULE["feeds-refresh-trending"] = {
    "task": "feeds.refresh_trending",
    "schedule": env.float("FEEDS_TRENDING_REFRESH_SECONDS", default=60.0),
}

# search (search/selectors.py, docs/api-search.md)
# A posts query ranks at most this many of the newest matching posts (bounded work for common
# words); a newer post gains 1 point of score (the whole relevance range) per this many seconds.
SEARCH_POST_CANDIDATES = env.int("SEARCH_POST_CANDIDATES", default=300)
SEARCH_RECENCY_SECONDS = env.int("SEARCH_RECENCY_SECONDS", default=30 * 24 * 3600)

# coins
# Limits of one transfer or tip, in whole coins.
COINS_TRANSFER_MIN_AMOUNT = env.int("COINS_TRANSFER_MIN_AMOUNT", default=1)
COINS_TRANSFER_MAX_AMOUNT = env.int("COINS_TRANSFER_MAX_AMOUNT", default=100_000)
COINS_WITHDRAWAL_MIN_AMOUNT = env.int("COINS_WITHDRAWAL_MIN_AMOUNT", default=1_000)
# Withdrawals need an operator-verified identity (Wallet.kyc_verified_at) when true.
COINS_WITHDRAWAL_REQUIRE_KYC = env.bool("COINS_WITHDRAWAL_REQUIRE_KYC", default=True)
# Fee kept on each withdrawal, in basis points of the amount (100 = 1%), rounded down.
COINS_WITHDRAWAL_FEE_BPS = env.int("COINS_WITHDRAWAL_FEE_BPS", default=0)
# Payment and payout providers by name (coins/payments.py, coins/payouts.py).
COINS_PAYMENT_PROVIDER = env("COINS_PAYMENT_PROVIDER", default="test")
COINS_PAYOUT_PROVIDER = env("COINS_PAYOUT_PROVIDER", default="test")
# HMAC-SHA256 secret shared with the payment provider; the webhook refuses everything unset.
# Development (DEBUG on) has a well-known default so a fresh `make run` can buy coins with the
# test provider; production.py never uses it.
COINS_DEV_WEBHOOK_SECRET = "dev-webhook-secret-not-for-production"
COINS_PAYMENT_WEBHOOK_SECRET = env("COINS_PAYMENT_WEBHOOK_SECRET", default="") or (
    COINS_DEV_WEBHOOK_SECRET if DEBUG else "")
# A signed webhook older (or newer) than this many seconds is refused.
COINS_PAYMENT_WEBHOOK_TOLERANCE = env.int("COINS_PAYMENT_WEBHOOK_TOLERANCE", default=300)
# A post reaching this many likes earns its author the post_engagement reward (once per post).
COINS_REWARD_POPULAR_POST_LIKES = env.int("COINS_REWARD_POPULAR_POST_LIKES", default=10)
# Stored Idempotency-Key results are kept this long, then the key may be reused.
COINS_IDEMPOTENCY_KEY_TTL_HOURS = env.int("COINS_IDEMPOTENCY_KEY_TTL_HOURS", default=24)
SPECTACULAR_SETTINGS.setdefault("ENUM_NAME_OVERRIDES", {}).update({
    "PurchaseStatusEnum": "coins.models.PurchaseOrder.Status",
    "WithdrawalStatusEnum": "coins.models.Withdrawal.Status",
})
CELERY_BEAT_SCHEDULE["coins-prune-idempotency-keys"] = {
    "task": "coins.tasks.idempotency_keys_prune",
    "schedule": 3600.0,
}

# media
# Uploads: limits checked on the probed content, never on the file name.
MEDIA_MAX_UPLOAD_BYTES = env.int("MEDIA_MAX_UPLOAD_BYTES", default=512 * 1024 * 1024)
MEDIA_MAX_DURATION_SECONDS = env.float("MEDIA_MAX_DURATION_SECONDS", default=180.0)
MEDIA_MIN_DURATION_SECONDS = env.float("MEDIA_MIN_DURATION_SECONDS", default=0.5)
MEDIA_MAX_SOURCE_SIDE = env.int("MEDIA_MAX_SOURCE_SIDE", default=4096)
# Resumable uploads: chunks are appended in this folder until completed (shared by web workers).
MEDIA_UPLOAD_CHUNK_DIR = BASE_DIR / env("MEDIA_UPLOAD_CHUNK_DIR", default=".local/uploads")
MEDIA_UPLOAD_SESSION_HOURS = env.int("MEDIA_UPLOAD_SESSION_HOURS", default=24)
# Where sources and renditions live: "local" (FileSystemStorage) or "s3" (any S3-compatible).
MEDIA_STORAGE = env("MEDIA_STORAGE", default="local")
# Local storage folder, relative to the repo unless absolute; empty: MEDIA_ROOT.
MEDIA_STORAGE_LOCATION = env("MEDIA_STORAGE_LOCATION", default="")
MEDIA_S3_BUCKET = env("MEDIA_S3_BUCKET", default="")
MEDIA_S3_ENDPOINT_URL = env("MEDIA_S3_ENDPOINT_URL", default="")
MEDIA_S3_REGION = env("MEDIA_S3_REGION", default="")
MEDIA_S3_ACCESS_KEY_ID = env("MEDIA_S3_ACCESS_KEY_ID", default="")
MEDIA_S3_SECRET_ACCESS_KEY = env("MEDIA_S3_SECRET_ACCESS_KEY", default="")
MEDIA_S3_PREFIX = env("MEDIA_S3_PREFIX", default="")
MEDIA_S3_CUSTOM_DOMAIN = env("MEDIA_S3_CUSTOM_DOMAIN", default="")
# Lifetime of the signed URLs the API hands out (local files and S3 alike).
MEDIA_URL_EXPIRE_SECONDS = env.int("MEDIA_URL_EXPIRE_SECONDS", default=3600)
# Transcoding: ffmpeg from the imageio-ffmpeg wheel unless MEDIA_FFMPEG_BINARY names another.
MEDIA_FFMPEG_BINARY = env("MEDIA_FFMPEG_BINARY", default="")
MEDIA_X264_PRESET = env("MEDIA_X264_PRESET", default="veryfast")
MEDIA_FFMPEG_THREADS = env.int("MEDIA_FFMPEG_THREADS", default=0)  # 0: ffmpeg decides
MEDIA_MAX_FPS = env.int("MEDIA_MAX_FPS", default=60)
# The ladder: rungs above the source's short side are skipped (never upscale). CRF per rung,
# capped by maxrate so a noisy source cannot blow the bitrate up.
MEDIA_RENDITION_LADDER = [
    {"name": "240p", "short_side": 240, "crf": 28, "maxrate_kbps": 400, "audio_kbps": 64},
    {"name": "360p", "short_side": 360, "crf": 26, "maxrate_kbps": 800, "audio_kbps": 96},
    {"name": "480p", "short_side": 480, "crf": 24, "maxrate_kbps": 1400, "audio_kbps": 128},
    {"name": "720p", "short_side": 720, "crf": 23, "maxrate_kbps": 2800, "audio_kbps": 128},
    {"name": "1080p", "short_side": 1080, "crf": 22, "maxrate_kbps": 5000, "audio_kbps": 160},
]
MEDIA_PREVIEW_FRAMES = env.int("MEDIA_PREVIEW_FRAMES", default=4)
MEDIA_PREVIEW_SHORT_SIDE = env.int("MEDIA_PREVIEW_SHORT_SIDE", default=180)
# Jobs: the Celery queue of the transcoding worker, retries, heartbeats and the stuck-job sweep.
MEDIA_CELERY_QUEUE = env("MEDIA_CELERY_QUEUE", default="media")
MEDIA_JOB_MAX_ATTEMPTS = env.int("MEDIA_JOB_MAX_ATTEMPTS", default=3)
MEDIA_JOB_RETRY_BACKOFF_SECONDS = env.float("MEDIA_JOB_RETRY_BACKOFF_SECONDS", default=30.0)
MEDIA_JOB_HEARTBEAT_SECONDS = env.float("MEDIA_JOB_HEARTBEAT_SECONDS", default=10.0)
# A running job without a heartbeat for this long lost its worker: the sweep retries it.
MEDIA_JOB_STALE_SECONDS = env.float("MEDIA_JOB_STALE_SECONDS", default=120.0)
# A pending job not started this long after it was queued is queued again (lost message).
MEDIA_JOB_REQUEUE_SECONDS = env.float("MEDIA_JOB_REQUEUE_SECONDS", default=600.0)
MEDIA_TRANSCODE_TIMEOUT_SECONDS = env.int("MEDIA_TRANSCODE_TIMEOUT_SECONDS", default=3600)
MEDIA_SWEEP_INTERVAL_SECONDS = env.float("MEDIA_SWEEP_INTERVAL_SECONDS", default=60.0)
CELERY_BEAT_SCHEDULE["media-sweep-stuck-jobs"] = {
    "task": "media.sweep_transcode_jobs",
    "schedule": MEDIA_SWEEP_INTERVAL_SECONDS,
}

# notifications
# Push and SMS backends: "console" (log), "memory" (tests), "fcm" / "twilio", or a dotted path.
NOTIFICATIONS_PUSH_BACKEND = env("NOTIFICATIONS_PUSH_BACKEND", default="console")
NOTIFICATIONS_SMS_BACKEND = env("NOTIFICATIONS_SMS_BACKEND", default="console")
# Email goes through Django's backend: console in development, SMTP (or a provider's Django
# backend) by configuration.
EMAIL_BACKEND = env("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = env("EMAIL_HOST", default="localhost")
EMAIL_PORT = env.int("EMAIL_PORT", default=25)
EMAIL_HOST_USER = env("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=False)
EMAIL_USE_SSL = env.bool("EMAIL_USE_SSL", default=False)
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=10)
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="ShowOff <no-reply@showoff.life>")
# Base of links in emails (unsubscribe), e.g. https://api.showoff.life.
NOTIFICATIONS_PUBLIC_URL = env("NOTIFICATIONS_PUBLIC_URL", default="http://127.0.0.1:8000")
# Firebase Cloud Messaging HTTP v1: project and service account key (file path or JSON).
FCM_PROJECT_ID = env("FCM_PROJECT_ID", default="")
FCM_SERVICE_ACCOUNT_FILE = env("FCM_SERVICE_ACCOUNT_FILE", default="")
FCM_SERVICE_ACCOUNT_JSON = env("FCM_SERVICE_ACCOUNT_JSON", default="")
FCM_API_URL = env("FCM_API_URL", default="https://fcm.googleapis.com")
# Twilio Programmable Messaging: account, credentials (auth token or API key), sender.
TWILIO_ACCOUNT_SID = env("TWILIO_ACCOUNT_SID", default="")
TWILIO_AUTH_TOKEN = env("TWILIO_AUTH_TOKEN", default="")
TWILIO_API_KEY_SID = env("TWILIO_API_KEY_SID", default="")
TWILIO_API_KEY_SECRET = env("TWILIO_API_KEY_SECRET", default="")
TWILIO_FROM_NUMBER = env("TWILIO_FROM_NUMBER", default="")
TWILIO_MESSAGING_SERVICE_SID = env("TWILIO_MESSAGING_SERVICE_SID", default="")
TWILIO_API_URL = env("TWILIO_API_URL", default="https://api.twilio.com")
NOTIFICATIONS_PROVIDER_TIMEOUT_SECONDS = env.float("NOTIFICATIONS_PROVIDER_TIMEOUT_SECONDS",
                                                   default=10.0)
# Sending: attempts per delivery, backoff doubling from BACKOFF up to BACKOFF_MAX (seconds),
# and how long one attempt may take before the sweep retries it (a worker died mid-send).
NOTIFICATIONS_MAX_ATTEMPTS = env.int("NOTIFICATIONS_MAX_ATTEMPTS", default=5)
NOTIFICATIONS_RETRY_BACKOFF_SECONDS = env.float("NOTIFICATIONS_RETRY_BACKOFF_SECONDS",
                                                default=30.0)
NOTIFICATIONS_RETRY_BACKOFF_MAX_SECONDS = env.float("NOTIFICATIONS_RETRY_BACKOFF_MAX_SECONDS",
                                                    default=3600.0)
NOTIFICATIONS_SEND_LEASE_SECONDS = env.float("NOTIFICATIONS_SEND_LEASE_SECONDS", default=120.0)
# Celery queue of the sending and fan-out tasks (the Procfile worker reads the default one).
NOTIFICATIONS_CELERY_QUEUE = env("NOTIFICATIONS_CELERY_QUEUE", default="celery")
# The beat sweep: queues deliveries due but not sent (quiet hours over, lost messages)
# older than the grace, and resumes bulk sends stalled for BULK_STALE seconds.
NOTIFICATIONS_SWEEP_INTERVAL_SECONDS = env.float("NOTIFICATIONS_SWEEP_INTERVAL_SECONDS",
                                                 default=60.0)
NOTIFICATIONS_SWEEP_GRACE_SECONDS = env.float("NOTIFICATIONS_SWEEP_GRACE_SECONDS", default=60.0)
NOTIFICATIONS_BULK_BATCH_SIZE = env.int("NOTIFICATIONS_BULK_BATCH_SIZE", default=1000)
NOTIFICATIONS_BULK_STALE_SECONDS = env.float("NOTIFICATIONS_BULK_STALE_SECONDS", default=300.0)
SPECTACULAR_SETTINGS.setdefault("ENUM_NAME_OVERRIDES", {}).update({
    "NotificationChannelEnum": "notifications.kinds.Channel.CHOICES",
    "DevicePlatformEnum": "notifications.models.Device.Platform",
})
CELERY_BEAT_SCHEDULE["notifications-dispatch-due"] = {
    "task": "notifications.dispatch_due",
    "schedule": NOTIFICATIONS_SWEEP_INTERVAL_SECONDS,
}

# analytics
# Client event ingestion (POST /api/analytics/events/): items per batch, and batches per
# minute (or /hour, /day) per signed-in user, or per client IP for anonymous clients.
ANALYTICS_MAX_BATCH_EVENTS = env.int("ANALYTICS_MAX_BATCH_EVENTS", default=500)
ANALYTICS_INGEST_RATE = env("ANALYTICS_INGEST_RATE", default="120/min")
# Lateness horizon: client events older than this are refused; within it, late events land in
# their own hour and day, and the rollup recomputes these days.
ANALYTICS_MAX_LATENESS_HOURS = env.int("ANALYTICS_MAX_LATENESS_HOURS", default=168)
# How far in the future (after the sent_at correction) a client event time may be.
ANALYTICS_MAX_CLOCK_SKEW_SECONDS = env.int("ANALYTICS_MAX_CLOCK_SKEW_SECONDS", default=300)
# Raw performance samples (exact percentiles) and hourly counters are kept this many days.
ANALYTICS_PERF_RETENTION_DAYS = env.int("ANALYTICS_PERF_RETENTION_DAYS", default=30)
ANALYTICS_HOURLY_RETENTION_DAYS = env.int("ANALYTICS_HOURLY_RETENTION_DAYS", default=400)
CELERY_BEAT_SCHEDULE["analytics-rollup"] = {
    "task": "analytics.rollup",
    "schedule": env.float("ANALYTICS_ROLLUP_INTERVAL_SECONDS", default=300.0),
}
CELERY_BEAT_SCHEDULE["analytics-prune"] = {
    "task": "analytics.prune",
    "schedule": env.float("ANALYTICS_PRUNE_INTERVAL_SECONDS", default=3600.0),
}
