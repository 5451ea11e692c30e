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


@handler(CONSUMER, *CLIENT_EVENT_TYPES, *DOMAIN_TYPES)
def aggregate(event: ConsumedEvent) -> None:
    """Add the event to the hourly counters, post totals, active users and performance
    samples, once (the runtime's inbox skips a redelivered event)."""
    services.event_aggregate(event_type=event.type, data=event.data, event_id=event.id,
                             event_time=event.time)
