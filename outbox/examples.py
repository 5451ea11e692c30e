"""An example `data` for every event type of the catalogue, for the generated event catalogue
page (docs/events.md, `manage.py event_catalogue`).

A type may declare its own (`EventType.example`); otherwise one is built from its JSON Schema,
deterministically (the page must not change between runs): every property, a value of its type
within its bounds, chosen by its format and name (`*_id` an id, `occurred_at` a time, `currency`
"EUR"). Either way `example_for` validates the result against the schema, so the page never
shows data `publish` would refuse.
"""

from __future__ import annotations

import re
import zlib
from typing import Any

from .catalogue import EventType, EventValidationError

TIME = "2026-11-27T09:30:00Z"
UUID = "3f1c2a9e-7b4d-4c8e-9a15-2d6f0b7e8c41"

# By property name: a value that reads like the real thing.
NAMED: dict[str, Any] = {
    "username": "alice", "display_name": "Alice Martin", "email": "alice@example.com",
    "old_email": "alice@old.example.com", "new_email": "alice@example.com",
    "phone": "+15555550123", "to": "+15555550123", "currency": "EUR", "language": "en",
    "platform": "android", "app_version": "2.4.1", "ip": "203.0.113.7",
    "user_agent": "ShowOff/2.4.1 (Android 14)", "text": "Sunset at the pier", "body":
    "Alice liked your post", "title": "New like", "bio": "Skater, filmmaker",
    "reason": "example reason", "note": "great video!", "screen": "feed",
    "previous_screen": "profile", "surface": "feed", "template": "welcome",
    "container": "mp4", "video_codec": "h264", "provider": "google_play", "method": "password",
    "name": "720p", "key": "k0", "probe_id": "runbook", "session_id": "s-7f2c",
    "client_event_id": "c-0001", "device_id": "dev-8c41", "package_id": "coins_500",
    "order_id": "GPA.1234-5678", "payout_reference": "PO-2026-0042",
    "storage_name": "videos/2026/11/27/8c41.mp4", "poster_storage_name":
    "videos/2026/11/27/8c41.jpg", "avatar_url": "https://cdn.example.com/avatars/42.jpg",
    "endpoint": "/api/posts/", "period_key": "2026-11-27", "rule": "daily_login",
    "secret": "gAAAAABn-sealed-code", "kind": "like",
}


def _int(name: str, schema: dict[str, Any]) -> int:
    if name.endswith(("_id", "_by")) or name == "id":
        value = 40 + zlib.crc32(name.encode()) % 60  # distinct ids, stable across runs
    elif name.endswith("_ms"):
        value = 850
    elif name.endswith(("_count", "count")) or name in {"attempts", "seq"}:
        value = 3
    elif name == "attempt":
        value = 1
    elif name == "fee":
        value = 25
    elif name == "price_minor":
        value = 499
    elif name in {"width", "height"}:
        value = 1080 if name == "width" else 1920
    elif name == "bitrate":
        value = 2_500_000
    elif name == "size_bytes":
        value = 48_213_504
    else:
        value = 500
    lo, hi = schema.get("minimum"), schema.get("maximum")
    if lo is not None:
        value = max(value, lo)
    if hi is not None:
        value = min(value, hi)
    return value


def _string(name: str, schema: dict[str, Any]) -> str:
    fmt = schema.get("format")
    if fmt == "uuid":
        return UUID
    if fmt == "date-time" or name.endswith("_at"):
        return TIME
    if fmt == "date":
        return TIME[:10]
    if fmt == "email":
        return NAMED["email"]
    candidates = [NAMED[name]] if name in NAMED else []
    candidates += ["example", "alice@example.com", "spam", "abc", "x", "A"]
    pattern = schema.get("pattern")
    low, high = schema.get("minLength", 0), schema.get("maxLength", 10**6)
    fitting = [c for c in candidates if not pattern or re.search(pattern, c)]
    for candidate in fitting:
        if low <= len(candidate) <= high:
            return candidate
    candidate = (fitting or candidates)[0]
    return candidate.ljust(low, "x")[:high]


def build(schema: dict[str, Any], name: str = "") -> Any:
    """A value valid for simple schemas (types, bounds, formats, enums, nested objects)."""
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if key in schema:
            rest = {k: v for k, v in schema.items() if k != key}
            # An object listing every property already meets "one of these is present".
            return build(rest if rest.get("properties") else {**rest, **schema[key][0]}, name)
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props = schema.get("properties", {})
        out = {key: build(sub, key) for key, sub in props.items()}
        most = schema.get("maxProperties")
        if most is not None and len(out) > most:
            required = schema.get("required", [])
            keep = [k for k in props if k in required] + [k for k in props if k not in required]
            out = {k: out[k] for k in keep[:most]}
        return out
    if kind == "array":
        item = build(schema.get("items", {}), name.rstrip("s"))
        return [item] * max(1, schema.get("minItems", 1)) if not schema.get("uniqueItems") \
            else [item]
    if kind == "integer":
        return _int(name, schema)
    if kind == "number":
        return 42.5 if name.endswith("_seconds") else float(_int(name, schema))
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return _string(name, schema)


def example_for(et: EventType) -> dict[str, Any]:
    """The type's example, validated against its schema.

    Raises EventValidationError naming the type when neither a declared nor a built example
    fits: declare one (`EventType(..., example={...})`)."""
    data = et.example if et.example is not None else build(et.schema)
    try:
        et.validate(data)
    except EventValidationError as exc:
        raise EventValidationError(et.type, [
            *exc.errors, "declare an example that fits: EventType(..., example={...})"]) from None
    return data
