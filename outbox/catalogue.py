"""The event catalogue: every event type the system emits, in one place.

An `EventType` names its topic, which field of its data is the record key (the aggregate id, so
per-aggregate order holds on one partition), its JSON Schema and the schema's version. Each
topic's event types are declared in `outbox/events/<topic>.py`; this module gathers them and
compiles their validators once.

CloudEvents 1.0, Kafka protocol binding, binary content mode: the record value is the JSON
`data`; the attributes travel as `ce_*` headers (see `cloudevent_headers`).
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from django.conf import settings
from jsonschema import Draft202012Validator

TOPICS = (
    "user-events",
    "notification-events",
    "post-events",
    "transaction-events",
    "video-processing",
    "analytics-events",
    "email-events",
    "sms-events",
)
CHECKPOINT_TOPIC = "_showoff.relay.checkpoints"


class UnknownEventType(LookupError):
    pass


class EventValidationError(ValueError):
    """Event data does not match its schema; `.errors` lists `path: message` strings."""

    def __init__(self, event_type: str, errors: list[str]):
        self.event_type = event_type
        self.errors = errors
        super().__init__(f"invalid {event_type} event: {'; '.join(errors)}")


@dataclass(frozen=True)
class EventType:
    type: str
    topic: str
    key: str
    schema: dict[str, Any]
    version: int = 1
    description: str = ""
    # Field of `data` used as the CloudEvents subject (defaults to the key field).
    subject: str | None = None
    # Example `data` for the event catalogue page (docs/events.md); None: built from the schema
    # (outbox/examples.py). Validated against the schema either way.
    example: dict[str, Any] | None = field(default=None, compare=False)
    _validator: Draft202012Validator | None = field(default=None, compare=False, repr=False)

    @property
    def dataschema(self) -> str:
        return f"{settings.OUTBOX_SCHEMA_BASE_URI}{self.type}/v{self.version}"

    def validator(self) -> Draft202012Validator:
        if self._validator is None:
            Draft202012Validator.check_schema(self.schema)
            object.__setattr__(self, "_validator", Draft202012Validator(self.schema))
        return self._validator  # type: ignore[return-value]

    def validate(self, data: Any) -> None:
        errors = sorted(self.validator().iter_errors(data), key=lambda e: list(e.path))
        if errors:
            messages = []
            for err in errors:
                where = "/".join(str(p) for p in err.path) or "(root)"
                messages.append(f"{where}: {err.message}")
            raise EventValidationError(self.type, messages)

    def key_of(self, data: dict[str, Any]) -> str:
        value = data.get(self.key)
        if value is None or value == "":
            raise EventValidationError(self.type, [f"{self.key}: the record key is missing"])
        return str(value)


def obj(properties: dict[str, Any], required: list[str] | None = None, *,
        additional: bool = False) -> dict[str, Any]:
    """A JSON Schema object; every listed property is required unless `required` says."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
        "additionalProperties": additional,
    }


# Reusable property schemas. Ids are PostgreSQL bigints: an id above 2^63 - 1 would pass
# `publish` and then fail every consumer that stores it ("bigint out of range").
BIGINT_MAX = 2**63 - 1
ID = {"type": "integer", "minimum": 1, "maximum": BIGINT_MAX}
UUID_STR = {"type": "string", "format": "uuid", "pattern": "^[0-9a-fA-F-]{36}$"}
TIME = {"type": "string", "format": "date-time", "minLength": 1}
NAME = {"type": "string", "maxLength": 255}
TEXT = {"type": "string"}
NULLABLE_ID = {"type": ["integer", "null"], "minimum": 1, "maximum": BIGINT_MAX}


_REGISTRY: dict[str, EventType] = {}


def register(*event_types: EventType) -> None:
    for et in event_types:
        if et.topic not in TOPICS:
            raise ValueError(f"{et.type}: topic {et.topic!r} is not one of {TOPICS}")
        if et.type in _REGISTRY and _REGISTRY[et.type] != et:
            raise ValueError(f"event type {et.type} is declared twice")
        if et.key not in et.schema.get("properties", {}):
            raise ValueError(f"{et.type}: key field {et.key!r} is not in its schema")
        _REGISTRY[et.type] = et


_loaded = False


def _load() -> None:
    # A flag, not "is the registry empty": importing one events module directly must not hide
    # the others.
    global _loaded
    if _loaded:
        return
    from . import events

    for mod in pkgutil.iter_modules(events.__path__):
        importlib.import_module(f"{events.__name__}.{mod.name}")
    _loaded = True


def get(event_type: str) -> EventType:
    _load()
    try:
        return _REGISTRY[event_type]
    except KeyError:
        raise UnknownEventType(
            f"unknown event type {event_type!r}: declare it in outbox/events/<topic>.py"
        ) from None


def all_types() -> dict[str, EventType]:
    _load()
    return dict(_REGISTRY)


def validate(event_type: str, data: Any) -> EventType:
    et = get(event_type)
    et.validate(data)
    return et


def cloudevent_headers(
    et: EventType, *, event_id: UUID, time: datetime, subject: str | None,
    traceparent: str | None,
) -> dict[str, str]:
    headers = {
        "ce_specversion": "1.0",
        "ce_id": str(event_id),
        "ce_source": settings.OUTBOX_EVENT_SOURCE,
        "ce_type": et.type,
        "ce_time": time.isoformat().replace("+00:00", "Z"),
        "ce_dataschema": et.dataschema,
        "content-type": "application/json",
    }
    if subject:
        headers["ce_subject"] = subject
    if traceparent:
        headers["traceparent"] = traceparent
    return headers


__all__ = [
    "CHECKPOINT_TOPIC", "TOPICS", "EventType", "EventValidationError", "UnknownEventType",
    "all_types", "cloudevent_headers", "get", "register", "validate",
]
