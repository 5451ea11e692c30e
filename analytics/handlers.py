"""Kafka handlers of the `analytics` consumer:

    python manage.py consume analytics-events post-events user-events transaction-events \
        video-processing --consumer analytics

Its own group (`{KAFKA_CONSUMER_GROUP}.analytics`), inbox rows and dead letters, independent of
the notifications and media consumers reading the same topics. Types on these topics without a
handler here (pipeline.probe, coins.adjusted, ...) are skipped and counted by the runtime.
"""

from __future__ import annotations

from relay.registry import ConsumedEvent, handler

from . import services
from .metrics import CLIENT_EVENT_TYPES, DOMAIN_TYPES

CONSUMER = "analytics"


@handler(CONSUMER, *CLIENT_EVENT_TYPES, *DOMAIN_TYPES, batch=True)
def aggregate(events: list[ConsumedEvent]) -> None:
    """Add the batch's new events to the hourly counters, post totals, active users and
    performance samples: summed in memory, each row written once per batch (the runtime's
    inbox has already dropped redelivered events)."""
    services.events_aggregate(events=[
        services.AggregatedEvent(e.type, e.data, e.id, e.time) for e in events])
