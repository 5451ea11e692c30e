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
from django.db import connection, transaction

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
# Each call of a batch probe handler: the seqs it was given.
BATCH_CALLS: list[list[int]] = []
# Seconds a batch probe handler's transaction sleeps after its commit (subprocess tests).
AFTER_COMMIT_PAUSE = float(os.environ.get("RELAY_TEST_AFTER_COMMIT_PAUSE", "0"))


def fail_if_asked(name: str, event: registry.ConsumedEvent) -> None:
    """`fail: permanent` always raises `PermanentError`; `fail: transient` raises a transient
    error while the record's key is in BROKEN_KEYS."""
    fail = event.data.get("fail")
    if fail == "permanent":
        raise registry.PermanentError(f"probe {event.data['seq']} can never succeed")
    if fail == "transient" and (event.key in BROKEN_KEYS or f"{name}/{event.key}" in BROKEN_KEYS):
        raise ConnectionResetError(f"probe {event.data['seq']}: downstream unavailable")


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
        fail_if_asked(name, event)

    apply_probe.__name__ = f"probe_{name}"
    return apply_probe


def batch_handler_for(name: str) -> Callable[[list[registry.ConsumedEvent]], None]:
    """The probe as a batch handler: one INSERT for the whole list. Like a real batch handler
    that validates its input, it raises for the whole list when one event in it is bad."""

    def apply_probes(events: list[registry.ConsumedEvent]) -> None:
        for event in events:
            fail_if_asked(name, event)
        BATCH_CALLS.append([e.data["seq"] for e in events])
        with connection.cursor() as cur:
            cur.execute(
                f"INSERT INTO {EFFECTS} (consumer, event_id, seq, key, pid) "  # noqa: S608
                "SELECT %s, e, s, k, %s FROM unnest(%s::uuid[], %s::int[], %s::text[]) "
                "AS x(e, s, k)",
                [name, os.getpid(), [e.id for e in events], [e.data["seq"] for e in events],
                 [e.key for e in events]])
        if AFTER_COMMIT_PAUSE:
            # A slow step after the commit (as a handler enqueuing Celery tasks on commit
            # has): widens the window between the DB commit and the Kafka offset commit.
            transaction.on_commit(lambda: time.sleep(AFTER_COMMIT_PAUSE))

    apply_probes.__name__ = f"probe_batch_{name}"
    return apply_probes


def create_effects_table() -> None:
    with connection.cursor() as cur:
        cur.execute(f"CREATE TABLE IF NOT EXISTS {EFFECTS} (id bigserial PRIMARY KEY, "
                    "consumer text NOT NULL, event_id uuid NOT NULL, seq integer NOT NULL, "
                    "key text, pid integer, txid bigint NOT NULL DEFAULT txid_current())")
        cur.execute(f"TRUNCATE {EFFECTS}")


def drop_effects_table() -> None:
    with connection.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {EFFECTS}")


def effect_txids(consumer: str) -> list[int]:
    """The transaction id of each effect row, in insertion order."""
    with connection.cursor() as cur:
        cur.execute(f"SELECT txid FROM {EFFECTS} WHERE consumer = %s ORDER BY id",  # noqa: S608
                    [consumer])
        return [row[0] for row in cur.fetchall()]


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

    def make(name: str | None = None, *, batch: bool = False) -> str:
        name = name or f"test-{uuid.uuid4().hex[:8]}"
        fn = batch_handler_for(name) if batch else handler_for(name)
        registry.register(name, EVENT_TYPE, fn, batch=batch)
        registered.append((name, fn))
        return name

    yield make
    for name, fn in registered:
        registry.unregister(name, EVENT_TYPE, fn)
    BROKEN_KEYS.clear()
    FOLLOW_UP.clear()
    BATCH_CALLS.clear()


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
# handler under the name the test chose (the batch one with RELAY_TEST_BATCH=1).
if os.environ.get("RELAY_TEST_CONSUMER"):
    _name = os.environ["RELAY_TEST_CONSUMER"]
    if os.environ.get("RELAY_TEST_BATCH") == "1":
        registry.register(_name, EVENT_TYPE, batch_handler_for(_name), batch=True)
    else:
        registry.register(_name, EVENT_TYPE, handler_for(_name))
