"""`publish`: the one way to emit an event.

A service calls it inside its own `transaction.atomic()` block, so the event is committed with
the domain change or not at all. The relay (`manage.py run_relay`) delivers it to Kafka exactly
once, in commit order.
"""

from __future__ import annotations

import json
import logging
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID, uuid4

from django.core.serializers.json import DjangoJSONEncoder
from django.db import DEFAULT_DB_ALIAS, connections
from django.utils import timezone

from . import catalogue, tracing
from .models import OutboxEvent

# One DEBUG line per event written (LOG_LEVEL_EVENTS=DEBUG), to follow an event end to end.
log = logging.getLogger("outbox.publish")


class OutboxError(RuntimeError):
    pass


class NotInTransaction(OutboxError):
    pass


@dataclass
class Event:
    """One event for `publish_bulk`."""

    type: str
    data: Mapping[str, Any]
    key: str | None = None
    event_id: UUID | None = None
    subject: str | None = None
    extra_headers: Mapping[str, str] = field(default_factory=dict)


def shard_hash(key: str) -> int:
    """Stable across processes, machines and Python versions (unlike `hash()`)."""
    return zlib.crc32(key.encode()) & 0x7FFFFFFF


def _normalise(data: Mapping[str, Any]) -> dict[str, Any]:
    # UUIDs, datetimes and Decimals become JSON strings exactly as they will travel.
    return json.loads(json.dumps(data, cls=DjangoJSONEncoder))


def _build(ev: Event, now, traceparent: str | None) -> OutboxEvent:
    et = catalogue.get(ev.type)
    data = _normalise(ev.data)
    et.validate(data)
    key = ev.key if ev.key is not None else et.key_of(data)
    if not key:
        raise catalogue.EventValidationError(ev.type, ["the record key is empty"])
    event_id = ev.event_id or uuid4()
    subject = ev.subject or (str(data.get(et.subject or et.key)) if (et.subject or et.key) in data
                             else None)
    headers = catalogue.cloudevent_headers(
        et, event_id=event_id, time=now, subject=subject, traceparent=traceparent
    )
    for name, value in ev.extra_headers.items():
        if name.startswith("ce_") and name in headers:
            raise OutboxError(f"header {name} is set by the catalogue and cannot be overridden")
        headers[name] = str(value)
    return OutboxEvent(
        event_id=event_id,
        type=et.type,
        topic=et.topic,
        key=key,
        shard_hash=shard_hash(key),
        headers=headers,
        payload=data,
    )


def _require_atomic(using: str) -> None:
    if not connections[using].in_atomic_block:
        raise NotInTransaction(
            "publish() must be called inside transaction.atomic(), in the same transaction as "
            "the change it announces; otherwise the event and the change can diverge."
        )


def publish(
    event_type: str,
    data: Mapping[str, Any],
    *,
    key: str | None = None,
    event_id: UUID | None = None,
    subject: str | None = None,
    headers: Mapping[str, str] | None = None,
    using: str = DEFAULT_DB_ALIAS,
) -> UUID:
    """Validate `data` against the catalogue and write one outbox row; returns the event id.

    Raises `NotInTransaction` outside `transaction.atomic()`, `UnknownEventType` for a type not
    in the catalogue and `EventValidationError` for data that fails its schema; nothing is
    written in those cases.
    """
    _require_atomic(using)
    row = _build(
        Event(event_type, data, key=key, event_id=event_id, subject=subject,
              extra_headers=headers or {}),
        timezone.now(),
        tracing.current_traceparent(),
    )
    row.save(using=using, force_insert=True)
    _log_published([row])
    return row.event_id


def publish_bulk(events: Iterable[Event], *, using: str = DEFAULT_DB_ALIAS) -> list[UUID]:
    """Write many events in one INSERT (the seed's `publishBulkNotifications`).

    Every event is validated before anything is written: one bad event writes none. Callers
    fanning out to very many recipients call this per batch, each in its own transaction.
    """
    _require_atomic(using)
    now = timezone.now()
    traceparent = tracing.current_traceparent()
    rows = [_build(ev, now, traceparent) for ev in events]
    if rows:
        OutboxEvent.objects.using(using).bulk_create(rows)
        _log_published(rows)
    return [row.event_id for row in rows]


def _log_published(rows: list[OutboxEvent]) -> None:
    if not log.isEnabledFor(logging.DEBUG):
        return
    for row in rows:
        log.debug("wrote %s %s for %s (key %s) in the open transaction", row.type,
                  row.event_id, row.topic, row.key,
                  extra={"event_id": str(row.event_id), "event_type": row.type,
                         "traceparent": row.headers.get("traceparent")})
