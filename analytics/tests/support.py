"""Helpers for the analytics tests: users and API clients, topics, records with a chosen event
time, an in-process `analytics` consumer, and an independent percentile."""

from __future__ import annotations

import itertools
import math
import uuid
from datetime import datetime

from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import RefreshToken

from accounts.models import User
from outbox import catalogue
from outbox.services import Event
from relay.cloudevents import encode
from relay.consumer import ConsumerWorker, RetryPolicy
from relay.kafka import make_producer

TOPICS = ["analytics-events", "post-events", "user-events", "transaction-events",
          "video-processing"]
_seq = itertools.count(1)


def make_user(**fields) -> User:
    n = next(_seq)
    fields.setdefault("username", f"an{n}-{uuid.uuid4().hex[:6]}")
    user = User(**fields)
    user.set_password("correct-Horse-battery-9")
    user.save()
    return user


def client_for(user: User | None, ip: str = "198.51.100.9") -> APIClient:
    client = APIClient(REMOTE_ADDR=ip)
    if user is not None:
        client.credentials(
            HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(user).access_token}")
    return client


def create_topics(kafka_topic, partitions: int = 3) -> None:
    for t in TOPICS:
        kafka_topic(t, partitions)
        kafka_topic(f"{t}.dlq", 1)


def produce_at(events: list[tuple[Event, datetime]]) -> list[uuid.UUID]:
    """Produce events as the relay encodes them, each with the given CloudEvents time (the
    relay's `ce_time` is when the event was written; coins and video events are bucketed by it)."""
    producer = make_producer("analytics-test", **{"transactional.id": f"at-{uuid.uuid4()}"})
    producer.init_transactions(30)
    producer.begin_transaction()
    ids = []
    for ev, at in events:
        et = catalogue.get(ev.type)
        event_id = ev.event_id or uuid.uuid4()
        key = et.key_of(ev.data)
        headers = catalogue.cloudevent_headers(et, event_id=event_id, time=at, subject=key,
                                               traceparent=None)
        topic, k, v, h = encode(et.topic, key, headers, dict(ev.data))
        producer.produce(topic, key=k, value=v, headers=h)
        ids.append(event_id)
    producer.commit_transaction(30)
    return ids


def analytics_worker() -> ConsumerWorker:
    worker = ConsumerWorker("analytics", TOPICS, group_id=f"test-analytics-{uuid.uuid4().hex}",
                            poll_timeout=0.2,
                            retry=RetryPolicy(max_attempts=3, backoff=0.05, backoff_max=0.2))
    worker.start()
    return worker


def drain(worker: ConsumerWorker, expected_inbox: int, timeout: float = 60) -> None:
    """Step the worker until the analytics inbox holds `expected_inbox` rows, then a little
    more (so a repeat would show)."""
    import time

    from relay.models import InboxEntry

    deadline = time.monotonic() + timeout
    while InboxEntry.objects.filter(consumer="analytics").count() < expected_inbox:
        assert time.monotonic() < deadline, (
            f"inbox {InboxEntry.objects.filter(consumer='analytics').count()} of "
            f"{expected_inbox} after {timeout}s")
        worker.step()
    for _ in range(3):
        worker.step()


def percentile(values: list[float], p: float) -> float:
    """Linear interpolation between closest ranks (PostgreSQL's percentile_cont)."""
    s = sorted(values)
    rank = p * (len(s) - 1)
    lo, hi = math.floor(rank), math.ceil(rank)
    return s[lo] + (s[hi] - s[lo]) * (rank - lo)
