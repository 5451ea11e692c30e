from __future__ import annotations

import socket

import pytest


def _closed_port() -> int:
    # Bind then release: nothing listens on the port afterwards.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_healthz_answers_without_dependencies(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_reports_every_dependency_up(client):
    response = client.get("/readyz")
    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "kafka", "redis"}
    for name, check in body["checks"].items():
        assert check["status"] == "up", (name, check)
        assert check["latency_ms"] >= 0


@pytest.mark.django_db
def test_readyz_is_503_when_kafka_is_unreachable(client, settings):
    settings.KAFKA_BROKERS = f"127.0.0.1:{_closed_port()}"
    settings.HEALTH_CHECK_TIMEOUT = 1.0
    response = client.get("/readyz")
    body = response.json()
    assert response.status_code == 503
    assert body["status"] == "unavailable"
    assert body["checks"]["kafka"]["status"] == "down"
    assert body["checks"]["database"]["status"] == "up"


@pytest.mark.django_db
def test_readyz_is_503_when_redis_is_unreachable(client, settings):
    settings.REDIS_URL = f"redis://127.0.0.1:{_closed_port()}/0"
    response = client.get("/readyz")
    body = response.json()
    assert response.status_code == 503
    assert body["checks"]["redis"]["status"] == "down"
    assert "Connection" in body["checks"]["redis"]["detail"]
    assert body["checks"]["kafka"]["status"] == "up"
