"""`analytics-events`: what client apps report about behaviour and performance (`analytics/`).

Clients send batches to `POST /api/analytics/events/`; each accepted item becomes one of these
events. Every event carries the same envelope:

- `device_id`: the app installation that sent it (chosen by the client, stable per install);
- `user_id`: the signed-in user, set by the server from the request's token (never by the
  client), null for an anonymous client;
- `client_event_id`: the client's own id for the item, unique per device; the event id is
  `uuid5(user or "-", device, client id)` (`analytics.services.client_event_uuid`), so a retried
  item is the same event everywhere (ingestion receipt, outbox, consumer inbox);
- `occurred_at`: when it happened, on the server's clock (the client's time corrected by the
  batch's `sent_at`, see docs/api-analytics.md); aggregates are bucketed by this time;
- `received_at`: when the server accepted it; `platform`, `app_version`, `session_id`.

Record key: `device_id`. Every client event has a device (anonymous ones too, which have no
user), one device's events keep their order on one partition (a session's start before its
end), and devices spread evenly over partitions, where a key by user would put every anonymous
event on one key. Aggregation does not depend on the order anyway (every effect commutes).
"""

from __future__ import annotations

from outbox.catalogue import ID, NULLABLE_ID, EventType, obj, register

# Everything here must be storable by the `analytics` consumer once the ingestion API has
# accepted it (an accepted event that fails there stalls its partition, then is dead-lettered):
# ids fit a bigint (ID), durations an integer column, and free text holds no character
# PostgreSQL text or jsonb refuses (U+0000, unpaired surrogates).
STORABLE = "^[^\\x00\\ud800-\\udfff]*$"
DEVICE_ID = {"type": "string", "minLength": 1, "maxLength": 64,
             "pattern": "^[A-Za-z0-9._:-]+$"}
CLIENT_ID = {"type": "string", "minLength": 1, "maxLength": 64, "pattern": STORABLE}
PLATFORM = {"type": "string", "enum": ["ios", "android", "web"]}
APP_VERSION = {"type": "string", "minLength": 1, "maxLength": 32,
               "pattern": "^[0-9A-Za-z.+_-]+$"}
SESSION_ID = {"type": ["string", "null"], "maxLength": 64, "pattern": STORABLE}
# A millisecond duration up to one day (longer means a broken clock or a stuck timer).
MILLIS = {"type": "integer", "minimum": 0, "maximum": 86_400_000}
LABEL = {"type": "string", "minLength": 1, "maxLength": 100, "pattern": STORABLE}
# An RFC 3339 date and time (the API writes UTC: 2025-01-31T12:00:00.000Z).
RFC3339 = {"type": "string", "maxLength": 40,
           "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?"
                      "(Z|[+-][0-9]{2}:[0-9]{2})$"}

ENVELOPE = {
    "device_id": DEVICE_ID,
    "user_id": NULLABLE_ID,
    "client_event_id": CLIENT_ID,
    "session_id": SESSION_ID,
    "platform": PLATFORM,
    "app_version": APP_VERSION,
    "occurred_at": RFC3339,
    "received_at": RFC3339,
}

# Short name (what clients send) -> (properties, required properties, description).
CLIENT_TYPES: dict[str, tuple[dict, list[str], str]] = {
    "app_start": (
        {"duration_ms": MILLIS, "cold": {"type": "boolean"}},
        ["duration_ms"],
        "The app became usable: time from launch to the first screen drawn.",
    ),
    "api_latency": (
        {"duration_ms": MILLIS,
         "endpoint": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": STORABLE},
         "method": {"type": "string", "enum": ["GET", "POST", "PUT", "PATCH", "DELETE"]},
         "status": {"type": "integer", "minimum": 0, "maximum": 599}},
        ["duration_ms", "endpoint"],
        "One API call as the client saw it (network included).",
    ),
    "screen_view": (
        {"screen": LABEL,
         "previous_screen": {"type": ["string", "null"], "maxLength": 100, "pattern": STORABLE}},
        ["screen"],
        "A screen was shown.",
    ),
    "session_start": ({}, [], "The app came to the foreground (a new session)."),
    "session_end": (
        {"duration_ms": MILLIS},
        ["duration_ms"],
        "The session ended (background or closed); its length.",
    ),
    "post_impression": (
        {"post_id": ID, "position": {"type": "integer", "minimum": 0, "maximum": 100_000},
         "surface": {"type": "string", "maxLength": 50, "pattern": STORABLE}},
        ["post_id"],
        "A post was shown on screen (feed, profile, ...).",
    ),
    "watch_time": (
        {"post_id": ID, "watched_ms": MILLIS, "video_id": NULLABLE_ID},
        ["post_id", "watched_ms"],
        "Time a post's video played in one viewing.",
    ),
}

# The envelope fields a client may not set through `properties`.
RESERVED = frozenset(ENVELOPE)


def full_type(short: str) -> str:
    return f"analytics.{short}"


register(*[
    EventType(
        type=full_type(short),
        topic="analytics-events",
        key="device_id",
        description=description,
        schema=obj({**ENVELOPE, **props}, required=[*ENVELOPE, *required]),
    )
    for short, (props, required, description) in CLIENT_TYPES.items()
])
