"""Settings for pytest: the real PostgreSQL, Kafka and Redis, with fast password hashing."""

from __future__ import annotations

import secrets

from .base import *  # noqa: F403
from .base import env

DEBUG = False
# As in production: no webhook secret unless a test sets one.
COINS_PAYMENT_WEBHOOK_SECRET = env("COINS_PAYMENT_WEBHOOK_SECRET", default="")
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
# The real Redis cache, as in production (throttles and logout revocation shared by every
# worker process). Runs sharing the one Redis stay apart by their key prefix: the test
# database's name and a random part, unless CACHE_KEY_PREFIX names one (the subprocesses a test
# starts get the run's prefix that way). The root conftest clears the run's keys after each
# test, so no throttle counter leaks into the next.
CACHES = {
    "default": {
        **CACHES["default"],  # noqa: F405
        "KEY_PREFIX": env("CACHE_KEY_PREFIX", default="")
        or f"test:{env('TEST_DATABASE_NAME', default='test_showoff')}:{secrets.token_hex(4)}",
    }
}
MEDIA_ROOT = BASE_DIR / ".local" / "test-media"  # noqa: F405
# Each run gets its own topics; fixtures narrow this further per test.
KAFKA_TOPIC_PREFIX = env("KAFKA_TOPIC_PREFIX", default="test.")
LOGGING["root"]["level"] = env("LOG_LEVEL", default="WARNING")  # noqa: F405
# Several pytest runs may share one PostgreSQL (parallel developers): each names its own.
DATABASES["default"]["TEST"] = {  # noqa: F405
    "NAME": env("TEST_DATABASE_NAME", default="test_showoff"),
}
# The global API budgets would count requests across the whole session (one cache, one client
# IP); tests that check throttling set their own rates.
REST_FRAMEWORK = {  # noqa: F405
    **REST_FRAMEWORK,  # noqa: F405
    "DEFAULT_THROTTLE_RATES": {
        **REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"],  # noqa: F405
        "anon": "1000000/min",
        "user": "1000000/min",
    },
}
# No Prometheus unless a test starts its own (a developer's local one must not leak in).
PROMETHEUS_URL = env("TEST_PROMETHEUS_URL", default="")
