"""Outbox rows ⇄ Kafka records, CloudEvents 1.0 Kafka binding in binary content mode."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from uuid import UUID

from outbox import catalogue

from .kafka import topic_name
from .registry import ConsumedEvent


class UndecodableRecord(ValueError):
    """A record that is not a CloudEvent of ours (missing headers, bad JSON, bad id)."""


def encode(topic: str, key: str, headers: dict[str, str], payload_json: str | bytes | dict
           ) -> tuple[str, bytes, bytes, list[tuple[str, bytes]]]:
    """(physical topic, key, value, headers) for producing one event."""
    if isinstance(payload_json, dict):
        value = json.dumps(payload_json, separators=(",", ":")).encode()
    elif isinstance(payload_json, str):
        value = payload_json.encode()
    else:
        value = payload_json
    return (
        topic_name(topic),
        key.encode(),
        value,
        [(k, str(v).encode()) for k, v in headers.items()],
    )


def decode(topic: str, key: bytes | None, value: bytes | None,
           headers: list[tuple[str, bytes]] | None, partition: int = -1,
           offset: int = -1, *, validate: bool = True) -> ConsumedEvent:
    """Parse a record into a `ConsumedEvent`; raises `UndecodableRecord` or
    `catalogue.EventValidationError` / `UnknownEventType` (when `validate`)."""
    try:
        hdrs = {k: (v.decode() if v is not None else "") for k, v in (headers or [])}
    except UnicodeDecodeError as exc:
        raise UndecodableRecord(f"a header is not UTF-8: {exc}") from None
    missing = [h for h in ("ce_specversion", "ce_id", "ce_type") if h not in hdrs]
    if missing:
        raise UndecodableRecord(f"not a CloudEvent: missing header(s) {', '.join(missing)}")
    if hdrs["ce_specversion"] != "1.0":
        raise UndecodableRecord(f"unsupported ce_specversion {hdrs['ce_specversion']!r}")
    try:
        event_id = UUID(hdrs["ce_id"])
    except ValueError:
        raise UndecodableRecord(f"ce_id {hdrs['ce_id']!r} is not a UUID") from None
    try:
        data: Any = json.loads(value) if value is not None else None
    except (ValueError, UnicodeDecodeError) as exc:
        raise UndecodableRecord(f"value is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise UndecodableRecord("value is not a JSON object")
    if validate:
        catalogue.validate(hdrs["ce_type"], data)
    time = None
    if hdrs.get("ce_time"):
        try:
            time = datetime.fromisoformat(hdrs["ce_time"].replace("Z", "+00:00"))
        except ValueError:
            raise UndecodableRecord(f"ce_time {hdrs['ce_time']!r} is not ISO 8601") from None
    return ConsumedEvent(
        id=event_id,
        type=hdrs["ce_type"],
        data=data,
        topic=topic,
        key=key.decode(errors="replace") if key is not None else None,
        subject=hdrs.get("ce_subject"),
        source=hdrs.get("ce_source"),
        time=time,
        traceparent=hdrs.get("traceparent"),
        partition=partition,
        offset=offset,
        headers=hdrs,
    )
