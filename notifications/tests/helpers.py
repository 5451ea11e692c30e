"""Helpers of the notifications tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from django.db import transaction

from accounts.tests.fixtures import client_for, make_user  # noqa: F401
from notifications import handlers
from notifications.models import Device
from outbox import catalogue
from outbox.models import OutboxEvent
from relay.registry import ConsumedEvent


def consumed(event_type: str, data: dict[str, Any], *, event_id: uuid.UUID | None = None
             ) -> ConsumedEvent:
    """A record as the consumer runtime hands it to a handler (validated like one)."""
    et = catalogue.validate(event_type, data)
    return ConsumedEvent(id=event_id or uuid.uuid4(), type=event_type, data=data,
                         topic=et.topic, key=et.key_of(data), time=datetime.now(UTC))


def handle(consumer: str, event: ConsumedEvent) -> None:
    """Run every handler `consumer` registered for the event, in one transaction (a batch
    handler with a batch of one)."""
    from relay.registry import handlers_for

    with transaction.atomic():
        for reg in handlers_for(consumer, event.type):
            reg.fn([event] if reg.batch else event)


def events(event_type: str) -> list[dict[str, Any]]:
    return [e.payload for e in OutboxEvent.objects.filter(type=event_type).order_by("id")]


def outbox_rows(event_type: str) -> list[OutboxEvent]:
    return list(OutboxEvent.objects.filter(type=event_type).order_by("id"))


def request(recipient, kind: str = "post_liked", **data) -> ConsumedEvent:
    """A `notification.requested` record for `recipient`."""
    payload = {"recipient_id": recipient.pk, "kind": kind, "actor_id": None, "context": {},
               "title": None, "body": None, "channels": None, "source_event_id": None,
               "bulk_id": None, "requested_at": "2026-01-01T12:00:00Z"}
    payload.update(data)
    return consumed("notification.requested", payload)


def route(event: ConsumedEvent) -> None:
    handle(handlers.ROUTE, event)


def device(user, token: str | None = None, platform: str = "android") -> Device:
    return Device.objects.create(user=user, platform=platform,
                                 token=token or f"tok-{uuid.uuid4().hex}")
