"""Fixtures of the notifications tests: in-memory channel backends, a private Celery queue,
eager Celery where a test wants sends to happen in-process, and the whole Kafka pipeline
(in-process relay and consumers on the test's own topics)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable

import pytest
import redis
from django.conf import settings

from notifications.backends import reset_backends
from notifications.backends.push import MemoryPushBackend
from notifications.backends.sms import MemorySmsBackend
from relay.consumer import ConsumerWorker, RetryPolicy
from relay.engine import Relay
from relay.testing import create_topic, delete_topics
from relay.tests.relay_helpers import create_relay_topics, drain

CONSUMERS = {
    "notifications": ["user-events", "post-events", "transaction-events", "video-processing"],
    "notifications-route": ["notification-events"],
    "notifications-email": ["email-events"],
    "notifications-sms": ["sms-events"],
}


def clear_queue(queue: str) -> None:
    """Leave nothing of a test's Celery queue in the shared Redis."""
    r = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    r.delete(queue, f"_kombu.binding.{queue}")
    for tag, raw in r.hgetall("unacked").items():
        try:
            routing_key = json.loads(raw)[2]
        except (ValueError, IndexError):
            continue
        if routing_key == queue:
            r.hdel("unacked", tag)
            r.zrem("unacked_index", tag)


@pytest.fixture(autouse=True)
def channel_backends(settings):
    """In-memory push and SMS, locmem email (test settings), a Celery queue of our own,
    short retry delays."""
    settings.NOTIFICATIONS_PUSH_BACKEND = "memory"
    settings.NOTIFICATIONS_SMS_BACKEND = "memory"
    settings.NOTIFICATIONS_CELERY_QUEUE = f"notifications-test-{uuid.uuid4().hex[:12]}"
    settings.NOTIFICATIONS_RETRY_BACKOFF_SECONDS = 0.05
    settings.NOTIFICATIONS_RETRY_BACKOFF_MAX_SECONDS = 0.2
    settings.NOTIFICATIONS_MAX_ATTEMPTS = 3
    reset_backends()
    MemoryPushBackend.reset()
    MemorySmsBackend.reset()
    yield settings
    reset_backends()
    MemoryPushBackend.reset()
    MemorySmsBackend.reset()
    clear_queue(settings.NOTIFICATIONS_CELERY_QUEUE)


@pytest.fixture
def eager_celery():
    """Celery tasks run in this process when queued (after the commit that queues them)."""
    from showoff.celery import app

    before = app.conf.task_always_eager, app.conf.task_eager_propagates
    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True
    yield app
    app.conf.task_always_eager, app.conf.task_eager_propagates = before


class Pipeline:
    """The real relay and the notifications consumers (or the given `consumers`: name →
    topics), in-process, on the test's topics."""

    def __init__(self, prefix: str, consumers: dict[str, list[str]] | None = None):
        self.prefix = prefix
        self.consumers = consumers or CONSUMERS
        self.relay = Relay(use_lock=False)
        self.relay.start()
        self.workers: dict[str, ConsumerWorker] = {}

    def consumer(self, name: str) -> ConsumerWorker:
        if name not in self.workers:
            worker = ConsumerWorker(
                name, self.consumers[name], group_id=f"{self.prefix}{name}", poll_timeout=0.2,
                retry=RetryPolicy(max_attempts=3, backoff=0.05, backoff_max=0.2))
            worker.start()
            self.workers[name] = worker
        return self.workers[name]

    def run_until(self, done: Callable[[], bool], *, consumers=None,
                  timeout: float = 60) -> None:
        """Relay the outbox and step the consumers until `done()`."""
        workers = [self.consumer(n) for n in consumers or self.consumers]
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"pipeline did not get there in {timeout}s; handled: "
                    f"{ {w.name: w.handled for w in workers} }")
            drain(self.relay)
            for w in workers:
                w.step()

    def settle(self, *, consumers=None, quiet_rounds: int = 3,
               timeout: float = 60) -> None:
        """Run until nothing moves for a few rounds (every event relayed and handled)."""
        workers = [self.consumer(n) for n in consumers or self.consumers]
        deadline = time.monotonic() + timeout
        quiet = 0
        while quiet < quiet_rounds:
            assert time.monotonic() < deadline, "the pipeline never settled"
            moved = drain(self.relay)
            for w in workers:
                moved += int(w.step())
            quiet = 0 if moved else quiet + 1

    def close(self) -> None:
        for w in self.workers.values():
            if w.consumer is not None:
                w.close()
        self.relay.close()


def pipeline_on_topics(prefix: str, consumers: dict[str, list[str]] | None = None):
    """A Pipeline on freshly created topics (and dead-letter topics), removed afterwards."""
    consumers = consumers or CONSUMERS
    names = create_relay_topics()
    dlqs = sorted({f"{prefix}{t}.dlq" for topics in consumers.values() for t in topics})
    for name in dlqs:
        create_topic(name, 3)
    pipe = Pipeline(prefix, consumers)
    yield pipe
    pipe.close()
    delete_topics(names + dlqs)


@pytest.fixture
def pipeline(kafka_prefix, eager_celery):
    yield from pipeline_on_topics(kafka_prefix)
