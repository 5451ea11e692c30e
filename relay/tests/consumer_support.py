"""Test-only handlers and fixtures for the consumer runtime tests.

The probe handler records each applied event as a row of `relay_test_effect`, a table without a
unique constraint, so an event applied twice shows up as two rows. It is registered under a
test-only consumer name: in-process by the `probe_consumer` fixture, in a consumer subprocess by
importing this module with `RELAY_TEST_CONSUMER` set (`relay.testing.ManageProcess(imports=...)`).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable

import pytest
from django.db import connection

from outbox.services import Event, publish
from relay import registry
from relay.consumer import ConsumerWorker, RetryPolicy

EFFECTS = "relay_test_effect"
EVENT_TYPE = "pipeline.probe"
TOPIC = "analytics-events"

# Records with `fail: transient` fail while their key ("k0": every consumer; "name/k0": one
# consumer) is listed here; in-process tests "fix the handler" by removing it.
BROKEN_KEYS: set[str] = set()
# Consumer names whose handler publishes a follow-up event for each record.
FOLLOW_UP: set[str] = set()


def handler_for(name: str) -> Callable[[registry.ConsumedEvent], None]:
    """The probe handler of consumer `name`: one effect row per applied event."""

    def apply_probe(event: registry.ConsumedEvent) -> None:
        with connection.cursor() as cur:
            cur.execute(
                f"INSERT INTO {EFFECTS} (consumer, event_id, seq, key, pid) "  # noqa: S608
                "VALUES (%s, %s, %s, %s, %s)",
                [name, event.id, event.data["seq"], event.key, os.getpid()],
            )
        if name in FOLLOW_UP:
            publish("pipeline.probe", {"probe_id": "follow-up", "key": f"f-{event.key}",
                                       "seq": event.data["seq"]})
        fail = event.data.get("fail")
        if fail == "permanent":
            raise registry.PermanentError(f"probe {event.data['seq']} can never succeed")
        if fail == "transient" and (event.key in BROKEN_KEYS
                                    or f"{name}/{event.key}" in BROKEN_KEYS):
            raise ConnectionResetError(f"probe {event.data['seq']}: downstream unavailable")

    apply_probe.__name__ = f"probe_{name}"
    return apply_probe


def create_effects_table() -> None:
    with connection.cursor() as cur:
        cur.execute(f"CREATE TABLE IF NOT EXISTS {EFFECTS} (id bigserial PRIMARY KEY, "
                    "consumer text NOT NULL, event_id uuid NOT NULL, seq integer NOT NULL, "
                    "key text, pid integer)")
        cur.execute(f"TRUNCATE {EFFECTS}")


def drop_effects_table() -> None:
    with connection.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {EFFECTS}")


def effects(consumer: str | None = None) -> list[tuple[str, int]]:
    """(event id, seq) of every effect row, in insertion order."""
    sql = f"SELECT event_id::text, seq FROM {EFFECTS}"  # noqa: S608
    params: list = []
    if consumer:
        sql += " WHERE consumer = %s"
        params.append(consumer)
    with connection.cursor() as cur:
        cur.execute(sql + " ORDER BY id", params)
        return [(row[0], row[1]) for row in cur.fetchall()]


def probes(n: int, *, keys: int = 6, start: int = 0, prefix: str = "k", **extra) -> list[Event]:
    return [Event(EVENT_TYPE, {"probe_id": "test", "key": f"{prefix}{i % keys}", "seq": i,
                               **extra}, event_id=uuid.uuid4())
            for i in range(start, start + n)]


def group_of(name: str) -> str:
    from relay.consumer import group_for

    return group_for(name)


def fast_retry(max_attempts: int = 3) -> RetryPolicy:
    return RetryPolicy(max_attempts=max_attempts, backoff=0.05, backoff_max=0.2)


def run_until(worker: ConsumerWorker, done: Callable[[], bool], timeout: float = 60) -> None:
    """Step `worker` until `done()`; fails with what the worker has seen so far."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"consumer {worker.name} did not get there within {timeout}s "
                                 f"(handled {worker.handled})")
        worker.step()


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture
def effects_table(db):
    create_effects_table()
    yield
    drop_effects_table()


@pytest.fixture
def probe_consumer(effects_table):
    """Factory: `probe_consumer()` registers the probe handler under a fresh consumer name
    (or the one given) and returns the name; unregistered after the test."""
    registered: list[tuple[str, Callable]] = []

    def make(name: str | None = None) -> str:
        name = name or f"test-{uuid.uuid4().hex[:8]}"
        fn = handler_for(name)
        registry.register(name, EVENT_TYPE, fn)
        registered.append((name, fn))
        return name

    yield make
    for name, fn in registered:
        registry.unregister(name, EVENT_TYPE, fn)
    BROKEN_KEYS.clear()
    FOLLOW_UP.clear()


@pytest.fixture
def topics(kafka_topic):
    """`analytics-events` (3 partitions) and its `.dlq` under the test's prefix."""
    return kafka_topic(TOPIC, 3), kafka_topic(f"{TOPIC}.dlq", 3)


@pytest.fixture
def workers():
    """Factory for in-process workers; each is closed after the test."""
    made: list[ConsumerWorker] = []

    def make(name: str, **kwargs) -> ConsumerWorker:
        kwargs.setdefault("retry", fast_retry())
        kwargs.setdefault("poll_timeout", 0.2)
        w = ConsumerWorker(name, [TOPIC], **kwargs)
        w.start()
        made.append(w)
        return w

    yield make
    for w in made:
        if w.consumer is not None:
            w.close()


# Imported by a consumer subprocess (ManageProcess(imports=[__name__])): register the probe
# handler under the name the test chose.
if os.environ.get("RELAY_TEST_CONSUMER"):
    registry.register(os.environ["RELAY_TEST_CONSUMER"], EVENT_TYPE,
                      handler_for(os.environ["RELAY_TEST_CONSUMER"]))
