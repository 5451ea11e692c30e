"""Event handlers: domain apps register them; the consumer runtime (`manage.py consume`) runs them.

In an app's `handlers.py`:

    from relay.registry import ConsumedEvent, handler

    @handler("notifications", "post.liked", "post.commented")
    def notify_author(event: ConsumedEvent) -> None:
        ...  # runs inside the record's DB transaction; may call outbox.publish()

The first argument is the consumer name: each consumer name is its own Kafka consumer group
(`{KAFKA_CONSUMER_GROUP}.<name>`), with its own inbox rows and dead letters, so two apps reading
the same topic never block or repeat each other's work (DESIGN.md §4). The topic comes from the
event catalogue. `relay` imports every installed app's `handlers` module at start-up.

Errors: raise `PermanentError` for a record that can never succeed (it goes to the DLQ at once);
any other exception is treated as transient and retried with capped exponential backoff, then
dead-lettered.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from outbox import catalogue


class PermanentError(Exception):
    """The record can never be handled (bad data, missing referent): dead-letter it now."""


@dataclass(frozen=True)
class ConsumedEvent:
    id: UUID
    type: str
    data: dict[str, Any]
    topic: str  # logical topic name, without KAFKA_TOPIC_PREFIX
    key: str | None = None
    subject: str | None = None
    source: str | None = None
    time: datetime | None = None
    traceparent: str | None = None
    partition: int = -1
    offset: int = -1
    headers: dict[str, str] = field(default_factory=dict)


HandlerFn = Callable[[ConsumedEvent], None]


@dataclass(frozen=True)
class Registration:
    consumer: str
    event_type: str
    topic: str
    fn: HandlerFn


# consumer name -> event type -> handlers (in registration order)
_HANDLERS: dict[str, dict[str, list[Registration]]] = defaultdict(lambda: defaultdict(list))


def handler(consumer: str, *event_types: str) -> Callable[[HandlerFn], HandlerFn]:
    if not event_types:
        raise ValueError("@handler needs at least one event type")

    def decorate(fn: HandlerFn) -> HandlerFn:
        for event_type in event_types:
            register(consumer, event_type, fn)
        return fn

    return decorate


def register(consumer: str, event_type: str, fn: HandlerFn) -> None:
    et = catalogue.get(event_type)  # unknown types fail at import time, not at 3 a.m.
    regs = _HANDLERS[consumer][event_type]
    if any(r.fn is fn for r in regs):
        return
    regs.append(Registration(consumer, event_type, et.topic, fn))


def unregister(consumer: str, event_type: str, fn: HandlerFn) -> None:
    regs = _HANDLERS.get(consumer, {}).get(event_type, [])
    regs[:] = [r for r in regs if r.fn is not fn]


def handlers_for(consumer: str, event_type: str) -> list[Registration]:
    return list(_HANDLERS.get(consumer, {}).get(event_type, []))


def consumers_for_topic(topic: str) -> list[str]:
    """Consumer names with at least one handler for an event type on `topic` (logical name)."""
    names = []
    for consumer, by_type in _HANDLERS.items():
        if any(r.topic == topic for regs in by_type.values() for r in regs):
            names.append(consumer)
    return sorted(names)


def topics_for_consumer(consumer: str) -> list[str]:
    return sorted({r.topic for regs in _HANDLERS.get(consumer, {}).values() for r in regs})


def all_registrations() -> list[Registration]:
    return [r for by_type in _HANDLERS.values() for regs in by_type.values() for r in regs]
