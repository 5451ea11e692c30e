"""The tests run on the real Redis cache, as production does, each run under its own key
prefix (runs share the one Redis) and no test inheriting another's throttle counters."""

from __future__ import annotations

import redis
from django.conf import settings
from django.core.cache import cache

from accounts.tests.fixtures import PASSWORD, client_for, make_user


def _raw() -> redis.Redis:
    return redis.Redis.from_url(settings.CACHES["default"]["LOCATION"])


def test_the_cache_is_the_real_redis_under_this_runs_prefix():
    # when
    cache.set("probe", "here", 30)
    # then: the key is in Redis, under a prefix naming this run's test database
    prefix = settings.CACHES["default"]["KEY_PREFIX"]
    assert prefix.startswith(f"test:{settings.DATABASES['default']['TEST']['NAME']}:")
    assert _raw().exists(f"{prefix}:1:probe") == 1


def test_clear_removes_only_this_runs_keys():
    # given: a key of another run (another prefix) and one of ours
    raw = _raw()
    raw.set("test:someone-else:1:probe", b"theirs", ex=60)
    cache.set("probe", "ours", 60)
    # when
    cache.clear()
    # then
    assert cache.get("probe") is None
    assert raw.get("test:someone-else:1:probe") == b"theirs"
    raw.delete("test:someone-else:1:probe")


# These two run in this order: the first spends the login budget, the second must find it
# whole again (the root conftest clears the run's keys after each test).

def test_throttle_state_does_not_leak_1_spend_the_budget(db, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {
        **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "login": "2/min"}}
    make_user(username="leaky")
    client = client_for(None)
    codes = [client.post("/api/auth/login/", {"login": "leaky", "password": "wrong"},
                         format="json").status_code for _ in range(3)]
    assert codes == [400, 400, 429]


def test_throttle_state_does_not_leak_2_the_next_test_starts_afresh(db, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {
        **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "login": "2/min"}}
    make_user(username="leaky")
    resp = client_for(None).post("/api/auth/login/", {"login": "leaky", "password": PASSWORD},
                                 format="json")
    assert resp.status_code == 200, resp.content
