"""Rate-limit headers (showoff/ratelimit.py) on the real Redis-backed throttles: exact figures
across consecutive requests, and a 429 that carries them with Retry-After.

The throttles' clock is DRF's `SimpleRateThrottle.timer`; the tests set it, so every figure is
known in advance (the cache keeps the real histories in Redis)."""

from __future__ import annotations

import pytest
from rest_framework import throttling

from accounts.tests.fixtures import PASSWORD, client_for, make_user

pytestmark = pytest.mark.django_db
T0 = 1_900_000_000.0


class Clock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    c = Clock(T0)
    monkeypatch.setattr(throttling.SimpleRateThrottle, "timer", staticmethod(c))
    return c


@pytest.fixture
def rates(settings, redis_cache):
    def set_rates(**rates: str) -> None:
        settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {
            **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], **rates}}
    return set_rates


def _headers(resp) -> dict[str, str]:
    names = ("RateLimit-Policy", "RateLimit", "X-RateLimit-Limit", "X-RateLimit-Remaining",
             "X-RateLimit-Reset", "Retry-After")
    return {n: resp.headers[n] for n in names if n in resp.headers}


def _login(client, password: str = "wrong"):
    return client.post("/api/auth/login/", {"login": "alice", "password": password})


def test_the_figures_are_exact_across_consecutive_requests_and_on_the_429(clock, rates):
    # given: a 3-per-minute login budget under generous global ones
    make_user(username="alice")
    rates(anon="10/min", user="20/min", login="3/min")
    client = client_for(None)
    policy = '"anon";q=10;w=60, "user";q=20;w=60, "login";q=3;w=60'
    seen = []
    # when: requests at t0, t0+10 s, t0+20 s, and a fourth at t0+30 s
    for offset in (0, 10, 20, 30):
        clock.now = T0 + offset
        resp = _login(client)
        seen.append((resp.status_code, _headers(resp)))
    # then: login is the tightest policy; its oldest request (t0) leaves the window at t0+60
    reset = str(int(T0 + 60))
    assert seen[0] == (400, {
        "RateLimit-Policy": policy,
        "RateLimit": '"anon";r=9;t=60, "user";r=19;t=60, "login";r=2;t=60',
        "X-RateLimit-Limit": "3", "X-RateLimit-Remaining": "2", "X-RateLimit-Reset": reset})
    assert seen[1] == (400, {
        "RateLimit-Policy": policy,
        "RateLimit": '"anon";r=8;t=50, "user";r=18;t=50, "login";r=1;t=50',
        "X-RateLimit-Limit": "3", "X-RateLimit-Remaining": "1", "X-RateLimit-Reset": reset})
    assert seen[2] == (400, {
        "RateLimit-Policy": policy,
        "RateLimit": '"anon";r=7;t=40, "user";r=17;t=40, "login";r=0;t=40',
        "X-RateLimit-Limit": "3", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset})
    # the refused request: counted by the global budgets (DRF records every passed throttle)
    assert seen[3] == (429, {
        "RateLimit-Policy": policy,
        "RateLimit": '"anon";r=6;t=30, "user";r=16;t=30, "login";r=0;t=30',
        "X-RateLimit-Limit": "3", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset,
        "Retry-After": "30"})


def test_a_429_says_the_same_wait_in_its_body_and_headers_and_the_budget_comes_back(
        clock, rates):
    # given: the login budget spent at t0, t0+1, t0+2
    make_user(username="alice", password=PASSWORD)
    rates(anon="100/min", user="100/min", login="3/min")
    client = client_for(None)
    for offset in (0, 1, 2):
        clock.now = T0 + offset
        assert _login(client).status_code == 400
    # when: refused at t0+15.5, then asked again once the first request left the window
    clock.now = T0 + 15.5
    refused = _login(client, PASSWORD)
    clock.now = T0 + 60.25
    again = _login(client, PASSWORD)
    # then
    assert refused.status_code == 429
    assert refused.json() == {"type": "throttled",
                              "detail": "Request was throttled. Expected available in 45 "
                                        "seconds.", "retry_after": 45}
    assert (refused["Retry-After"], refused["X-RateLimit-Remaining"],
            refused["X-RateLimit-Reset"]) == ("45", "0", str(int(T0 + 60)))
    assert again.status_code == 200
    # t0+1 is now the oldest of three (t0+1, t0+2, t0+60.25): it leaves at t0+61
    assert (again["X-RateLimit-Remaining"], again["X-RateLimit-Reset"]) == (
        "0", str(int(T0 + 61)))
    assert '"login";r=0;t=1' in again["RateLimit"]


def test_a_signed_in_client_is_counted_by_its_user_budget(clock, rates):
    user = make_user(username="alice")
    rates(anon="5/min", user="7/min")
    client = client_for(user)
    first, second = client.get("/api/me/"), client.get("/api/me/")
    assert _headers(first) == {"RateLimit-Policy": '"user";q=7;w=60',
                               "RateLimit": '"user";r=6;t=60', "X-RateLimit-Limit": "7",
                               "X-RateLimit-Remaining": "6",
                               "X-RateLimit-Reset": str(int(T0 + 60))}
    assert second["X-RateLimit-Remaining"] == "5"


def test_the_budget_is_shared_through_redis_not_kept_per_process(clock, rates, redis_cache):
    # given: two clients (as two API processes would be) from one address
    rates(anon="4/min", user="100/min")
    a, b = client_for(None), client_for(None)
    # when
    remaining = [c.get("/api/users/999999/")["X-RateLimit-Remaining"] for c in (a, b, a, b)]
    # then: one count, kept in Redis under this test's prefix
    assert remaining == ["3", "2", "1", "0"]
    import redis
    from django.conf import settings

    r = redis.Redis.from_url(settings.CACHES["default"]["LOCATION"])
    assert r.exists(f"{redis_cache}:1:throttle_anon_203.0.113.7") == 1


def test_the_analytics_ingest_throttle_reports_its_budget(clock, rates, settings):
    rates(anon="100/min", user="100/min")
    settings.ANALYTICS_INGEST_RATE = "2/min"
    client = client_for(make_user(username="alice"))
    body = {"device_id": "dev-1", "platform": "web", "sent_at": "2030-01-01T00:00:00Z",
            "events": []}
    resp = client.post("/api/analytics/events/", body, format="json")
    assert '"analytics_ingest";r=1;t=60' in resp["RateLimit"]
    assert resp["X-RateLimit-Remaining"] == "1"


def test_a_response_that_no_throttle_looked_at_has_no_rate_limit_headers(client):
    resp = client.get("/healthz")
    assert resp.status_code == 200
    assert _headers(resp) == {}


def test_the_schema_documents_the_headers_of_a_429(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    headers = schema["paths"]["/api/auth/login/"]["post"]["responses"]["429"]["headers"]
    assert set(headers) == {"Retry-After", "RateLimit", "RateLimit-Policy", "X-RateLimit-Limit",
                            "X-RateLimit-Remaining", "X-RateLimit-Reset"}
    assert headers["Retry-After"]["required"] is True
