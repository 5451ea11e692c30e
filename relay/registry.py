"""Event handlers: domain apps register them; the consumer runtime (`manage.py consume`) runs them.

In an app's `handlers.py`, a record handler (one event per call):

    from relay.registry import ConsumedEvent, handler

    @handler("notifications", "post.liked", "post.commented")
    def notify_author(event: ConsumedEvent) -> None:
        ...  # runs inside the batch's DB transaction; may call outbox.publish()

or a batch handler (every new event of its types in the polled batch, in one call):

    @handler("analytics", "post.viewed", "analytics.watch_time", batch=True)
    def aggregate(events: list[ConsumedEvent]) -> None:
        ...  # sum in memory, then one statement per table for the whole list

The first argument is the consumer name: each consumer name is its own Kafka consumer group
(`{KAFKA_CONSUMER_GROUP}.<name>`), with its own inbox rows and dead letters, so two apps reading
the same topic never block or repeat each other's work (DESIGN.md §4). The topic comes from the
event catalogue. `relay` imports every installed app's `handlers` module at start-up.

What the runtime promises a handler (relay/consumer.py):
- One DB transaction per polled batch (up to CONSUMER_BATCH_SIZE records or CONSUMER_BATCH_MS):
  the inbox rows of the batch, then the handlers, then commit. A handler sees only events this
  consumer has not applied before (the inbox filtered out repeats), each exactly once when the
  transaction commits; it must not commit, and anything it writes (rows, `outbox.publish`)
  commits or rolls back with the batch. Do not open savepoints per event to "protect" the
  batch: a failure rolls everything back and the runtime isolates the culprit (below).
- Record handlers are called in partition order (a key's events in the order they were
  written). Batch handlers are called after the batch's record handlers, once per batch, with
  their events in the same order; a consumer that needs one handler's effects interleaved
  with another's, record by record, should use record handlers only.
- A batch handler must give the same result for its list as for each event applied alone in
  turn (sum, upsert, insert-if-absent: effects that commute or follow list order), because a
  failure re-runs the batch in smaller pieces.
- Trace context: around a record handler the current event (for log lines) and a child of the
  event's `traceparent` (for follow-up events) are set. A batch handler handles many events:
  wrap per-event work in `with event.traced():`, or give `publish_bulk` events
  `extra_headers=event.trace_headers()`.

Errors: raise `PermanentError` for a record that can never succeed (it goes to the DLQ at once);
any other exception is treated as transient and retried with capped exponential backoff, then
dead-lettered. When a handler raises in a batch of several records, the runtime rolls the batch
back and re-runs it in halves, down to single records, so the records before the failing one
commit and only the failing record is retried or dead-lettered; a batch handler's culprit is
found the same way (it is called again with ever smaller lists, down to one event).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from outbox import catalogue, tracing


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

    @contextmanager
    def traced(self) -> Iterator[None]:
        """Log lines name this event, and events published inside carry a child of its
        trace (what the runtime sets around a record handler; for batch handlers)."""
        with tracing.use_event(self.id, self.type), \
                tracing.use_traceparent(tracing.child_of(self.traceparent)):
            yield

    def trace_headers(self) -> dict[str, str]:
        """`extra_headers` for a follow-up `outbox.services.Event` of this event."""
        return {"traceparent": tracing.child_of(self.traceparent)}


HandlerFn = Callable[[ConsumedEvent], None]
BatchHandlerFn = Callable[[list[ConsumedEvent]], None]


@dataclass(frozen=True)
class Registration:
    consumer: str
    event_type: str
    topic: str
    fn: Callable[..., None]
    batch: bool = False  # fn takes list[ConsumedEvent]


# consumer name -> event type -> handlers (in registration order)
_HANDLERS: dict[str, dict[str, list[Registration]]] = defaultdict(lambda: defaultdict(list))


def handler(consumer: str, *event_types: str, batch: bool = False) -> Callable:
    """Register the decorated function for `event_types` under consumer name `consumer`;
    `batch=True`: it takes the list of the batch's new events of those types."""
    if not event_types:
        raise ValueError("@handler needs at least one event type")

    def decorate(fn):
        for event_type in event_types:
            register(consumer, event_type, fn, batch=batch)
        return fn

    return decorate


def register(consumer: str, event_type: str, fn: Callable[..., None], *,
             batch: bool = False) -> None:
    et = catalogue.get(event_type)  # unknown types fail at import time, not at 3 a.m.
    regs = _HANDLERS[consumer][event_type]
    for r in regs:
        if r.fn is fn:
            if r.batch != batch:
                raise ValueError(f"{fn.__qualname__} is registered for {consumer} "
                                 f"{event_type} both as a batch and as a record handler")
            return
    regs.append(Registration(consumer, event_type, et.topic, fn, batch))


def unregister(consumer: str, event_type: str, fn: Callable[..., None]) -> None:
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
