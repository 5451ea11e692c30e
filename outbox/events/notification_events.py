"""`notification-events`: a notification to tell one user (key: recipient id, so one user's
notifications keep their order on one partition).

Published by the notification triggers (`notifications/triggers.py`: a like, a comment, coins
received, a video ready, ...) and by bulk sends; consumed by `notifications-route`, which
creates the in-app notification and routes it to push, email (`email.requested`) and SMS
(`sms.requested`) by the recipient's preferences.

`kind` names a notification kind of `notifications/kinds.py` (it picks the templates and the
default channels); it is a pattern here so that adding a kind needs no schema change.
`context` holds the template's plain values. `title`/`body` replace the kind's templates (bulk
sends written by an operator). `channels` narrows the kind's channels (never widens them).
"""

from __future__ import annotations

from outbox.catalogue import ID, NULLABLE_ID, TIME, UUID_STR, EventType, obj, register

CHANNEL = {"type": "string", "enum": ["in_app", "push", "email", "sms"]}

register(
    EventType(
        type="notification.requested",
        topic="notification-events",
        key="recipient_id",
        description="Tell one user something, on the channels their preferences allow.",
        schema=obj(
            {
                "recipient_id": ID,
                "kind": {"type": "string", "pattern": "^[a-z][a-z0-9_]{0,63}$"},
                "actor_id": NULLABLE_ID,
                "context": {"type": "object", "maxProperties": 50},
                "title": {"type": ["string", "null"], "maxLength": 255},
                "body": {"type": ["string", "null"], "maxLength": 2000},
                "channels": {"type": ["array", "null"], "items": CHANNEL, "minItems": 1,
                             "uniqueItems": True},
                "source_event_id": {"anyOf": [UUID_STR, {"type": "null"}]},
                "bulk_id": NULLABLE_ID,
                "requested_at": TIME,
            },
            required=["recipient_id", "kind", "requested_at"],
        ),
    ),
)
