"""Shared test fixtures: the real PostgreSQL (pytest-django) and the real Kafka broker.

Each test that touches Kafka gets its own topic prefix, so tests sharing the one local broker
never see each other's records.
"""

from __future__ import annotations

import uuid

import pytest
from django.core.signals import request_finished, request_started
from django.db import close_old_connections

from relay import testing as kt
from showoff.tests.redis_cache import redis_cache  # noqa: F401 - fixture for every app's tests


@pytest.fixture
def kafka_prefix(settings):
    """A unique KAFKA_TOPIC_PREFIX for this test; topics created through `kafka_topic` are
    deleted afterwards."""
    prefix = f"t{uuid.uuid4().hex[:10]}."
    settings.KAFKA_TOPIC_PREFIX = prefix
    return prefix


@pytest.fixture
def kafka_topic(kafka_prefix):
    """Factory: `kafka_topic("post-events", partitions=3)` creates `<prefix>post-events`."""
    created: list[str] = []

    def make(logical: str, partitions: int = 1, config: dict | None = None) -> str:
        name = f"{kafka_prefix}{logical}"
        kt.create_topic(name, partitions, config)
        created.append(name)
        return name

    yield make
    kt.delete_topics(created)


@pytest.fixture
def read_committed():
    """`read_committed([topic, ...])` returns every committed record, aborted ones excluded."""
    return kt.read_all


@pytest.fixture
def wsgi_keeps_connection():
    """For tests calling the WSGI app directly (schemathesis): the handler closes the DB
    connection after each request, as in production; the test's transaction lives on that
    connection, so do what Django's test client does."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)
