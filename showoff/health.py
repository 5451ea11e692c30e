"""Liveness (`/healthz`) and readiness (`/readyz`) probes.

Readiness asks each dependency a real question: a SQL query, a Kafka metadata request, a Redis
PING. Each answer carries its latency; any failure makes the whole response HTTP 503.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import redis
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET


def check_database() -> str:
    with connection.cursor() as cur:
        cur.execute("select 1")
        cur.fetchone()
    return "ok"


def check_kafka() -> str:
    if not settings.KAFKA_ENABLED:
        return "disabled"
    from relay.kafka import check_connection

    # Fails with a sentence naming the setting to fix (e.g. a rejected SASL password).
    return f"{check_connection(settings.HEALTH_CHECK_TIMEOUT, role='health')} broker(s)"


def check_redis() -> str:
    timeout = settings.HEALTH_CHECK_TIMEOUT
    client = redis.Redis.from_url(
        settings.REDIS_URL, socket_timeout=timeout, socket_connect_timeout=timeout
    )
    try:
        if not client.ping():
            raise RuntimeError("PING was not answered")
    finally:
        client.close()
    return "ok"


CHECKS: dict[str, Callable[[], str]] = {
    "database": check_database,
    "kafka": check_kafka,
    "redis": check_redis,
}


@require_GET
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@require_GET
@never_cache
def readyz(request: HttpRequest) -> JsonResponse:
    results = {}
    healthy = True
    for name, check in CHECKS.items():
        started = time.perf_counter()
        try:
            detail, ok = check(), True
        except Exception as exc:  # noqa: BLE001 - any failure is "down", reported with its reason
            detail, ok = f"{type(exc).__name__}: {exc}", False
        healthy &= ok
        results[name] = {
            "status": "up" if ok else "down",
            "detail": detail,
            "latency_ms": round((time.perf_counter() - started) * 1000, 2),
        }
    return JsonResponse(
        {"status": "ok" if healthy else "unavailable", "checks": results},
        status=200 if healthy else 503,
    )
