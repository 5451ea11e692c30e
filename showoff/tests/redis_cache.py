"""`redis_cache`: the test runs on the real Redis cache (as production does) under a key prefix
of its own, deleted afterwards; nothing else in the shared Redis is touched (never FLUSHDB)."""

from __future__ import annotations

import uuid

import pytest
import redis


@pytest.fixture
def redis_cache(settings):
    location = settings.REDIS_URL.rsplit("/", 1)[0] + "/1"
    prefix = f"test-{uuid.uuid4().hex[:12]}"
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                   "LOCATION": location, "KEY_PREFIX": prefix}}
    yield prefix
    client = redis.Redis.from_url(location)
    keys = list(client.scan_iter(f"{prefix}:*"))
    if keys:
        client.delete(*keys)
