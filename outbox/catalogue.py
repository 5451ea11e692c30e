"""The event catalogue: every event type the system emits, in one place.

An `EventType` names its topic, which field of its data is the record key (the aggregate id, so
per-aggregate order holds on one partition), its JSON Schema and the schema's version. Each
topic's event types are declared in `outbox/events/<topic>.py`; this module gathers them and
compiles their validators once.

Validation runs a compiled validator (`fastjsonschema`: each schema turned into Python code once,
at catalogue load) on every event; only data it refuses goes through `jsonschema`, which decides
and words the errors exactly as before (the API and the dead-letter reasons show them). Why
fastjsonschema and not jsonschema-rs (both measured by bench/validators.py): both are far inside
the write path's budget, but fastjsonschema matches patterns with Python's `re`, as `jsonschema`
does, where the Rust engine accepts strings `jsonschema` refuses (its whitespace class lacks
U+001C-U+001F and U+0085, so `a<U+001C>@b` passes an email pattern). The one known difference
left is stricter, not laxer: fastjsonschema anchors `$` at the very end, `re` also before a
final newline; `jsonschema` then decides, and accepts as before.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

import fastjsonschema
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
    _compiled: Any = field(default=None, compare=False, repr=False)

    @property
    def dataschema(self) -> str:
        return f"{settings.OUTBOX_SCHEMA_BASE_URI}{self.type}/v{self.version}"

    def validator(self) -> Draft202012Validator:
        if self._validator is None:
            Draft202012Validator.check_schema(self.schema)
            object.__setattr__(self, "_validator", Draft202012Validator(self.schema))
        return self._validator  # type: ignore[return-value]

    def compile(self) -> None:
        """Check the schema and build both validators (once per type, at catalogue load)."""
        self.validator()
        if self._compiled is None:
            _check_keywords(self.schema, self.type)
            # Formats are annotations in draft 2020-12 (jsonschema does not assert them without
            # a format checker), and defaults must never be written into the data. Its errors
            # are never shown (jsonschema words them), so they are built plain: a `null` taking
            # the second branch of an `anyOf` costs one cheap exception, not a detailed one.
            object.__setattr__(self, "_compiled", fastjsonschema.compile(
                _const_as_enum(self.schema), use_formats=False, use_default=False,
                detailed_exceptions=False))

    def validate(self, data: Any) -> None:
        if self._compiled is None:
            self.compile()
        try:
            self._compiled(data)
            return
        except fastjsonschema.JsonSchemaException:
            pass
        # Refused by the compiled validator: `jsonschema` decides (the one case where they
        # differ, a trailing newline before a pattern's `$`, it accepts) and words the errors.
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


# Keywords whose meaning is the same in draft 7 (what fastjsonschema compiles) and in draft
# 2020-12 (what `jsonschema` checks). A schema using any other keyword (`$ref`, `prefixItems`,
# `unevaluatedProperties`, ...) is refused at load: fastjsonschema would ignore or misread it
# and accept data that `jsonschema` refuses.
_SAME_IN_BOTH_DRAFTS = frozenset({
    "type", "enum", "const", "properties", "required", "additionalProperties",
    "patternProperties", "propertyNames", "minProperties", "maxProperties", "items", "minItems",
    "maxItems", "uniqueItems", "contains", "minLength", "maxLength", "pattern", "format",
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "not", "anyOf",
    "allOf", "oneOf", "if", "then", "else", "title", "description", "examples", "default",
})


_SUBSCHEMA = ("additionalProperties", "propertyNames", "items", "contains", "not", "if", "then",
              "else")
_SUBSCHEMA_MAPS = ("properties", "patternProperties")
_SUBSCHEMA_LISTS = ("anyOf", "allOf", "oneOf")


def _const_as_enum(schema: Any) -> Any:
    """`{"const": v}` as `{"enum": [v]}` (the same constraint) in every subschema:
    fastjsonschema 2.22 cannot compile `const` without detailed exceptions."""
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    if "const" in out:
        out["enum"] = [out.pop("const")]
    for name in _SUBSCHEMA:
        if name in out:
            out[name] = _const_as_enum(out[name])
    for name in _SUBSCHEMA_MAPS:
        if name in out:
            out[name] = {k: _const_as_enum(v) for k, v in out[name].items()}
    for name in _SUBSCHEMA_LISTS:
        if name in out:
            out[name] = [_const_as_enum(v) for v in out[name]]
    return out


def _check_keywords(schema: Any, event_type: str, where: str = "#") -> None:
    if isinstance(schema, bool):
        return
    if not isinstance(schema, dict):
        raise ValueError(f"{event_type}: the schema at {where} is not an object")
    unknown = sorted(set(schema) - _SAME_IN_BOTH_DRAFTS)
    if unknown:
        raise ValueError(f"{event_type}: schema keyword(s) {', '.join(unknown)} at {where} are "
                         "not supported by the compiled validator; use the keywords listed in "
                         "outbox/catalogue.py (_SAME_IN_BOTH_DRAFTS)")
    for name in _SUBSCHEMA_MAPS:
        for prop, sub in schema.get(name, {}).items():
            _check_keywords(sub, event_type, f"{where}/{name}/{prop}")
    for name in _SUBSCHEMA:
        if name in schema and not isinstance(schema[name], bool):
            _check_keywords(schema[name], event_type, f"{where}/{name}")
    for name in _SUBSCHEMA_LISTS:
        for i, sub in enumerate(schema.get(name, [])):
            _check_keywords(sub, event_type, f"{where}/{name}/{i}")


_REGISTRY: dict[str, EventType] = {}


def register(*event_types: EventType) -> None:
    for et in event_types:
        if et.topic not in TOPICS:
            raise ValueError(f"{et.type}: topic {et.topic!r} is not one of {TOPICS}")
        if et.type in _REGISTRY and _REGISTRY[et.type] != et:
            raise ValueError(f"event type {et.type} is declared twice")
        if et.key not in et.schema.get("properties", {}):
            raise ValueError(f"{et.type}: key field {et.key!r} is not in its schema")
        et.compile()
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
