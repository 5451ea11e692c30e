"""`sms-events`: text messages to send (key: phone number, so one phone's messages keep order).

`sms.requested` is general: a one-time code, a security alert, a notification or marketing.
The sender gives either a ready `body`, or a `template` name with its `context` (plain values
only). A value that must not travel in clear through Kafka (a one-time code) goes in `secret`,
sealed with `seal()` (outbox/sealing.py); the SMS worker opens it with `unseal()` only when it
sends, and puts it where the template says `{{ secret }}`. Topic readers and the outbox table
therefore never see a usable code. `not_after` tells the sender to drop the message when it is
already useless (an expired code). `notification_id` and `language` are set when the SMS tells
a notification.
Consumed by `notifications-sms` (templates: `notifications/templates/notifications/sms/`).
"""

from __future__ import annotations

from outbox.catalogue import NULLABLE_ID, TIME, EventType, obj, register
from outbox.sealing import seal, unseal  # noqa: F401 - their first home; imported from here

register(
    EventType(
        type="sms.requested",
        topic="sms-events",
        key="phone",
        # A one-time code: the template says where the sealed code goes; it expires.
        example={"phone": "+15555550123", "kind": "otp", "user_id": 42, "body": None,
                 "template": "phone_verification_code", "context": {},
                 "secret": "gAAAAABn-sealed-code",
                 "not_after": "2026-11-27T09:40:00Z", "notification_id": None,
                 "language": "en", "requested_at": "2026-11-27T09:30:00Z"},
        schema=obj(
            {
                "phone": {"type": "string", "pattern": r"^\+[1-9][0-9]{7,14}$"},
                "kind": {"type": "string", "enum": ["otp", "alert", "notification", "marketing"]},
                "user_id": NULLABLE_ID,
                "body": {"type": ["string", "null"], "maxLength": 1600},
                "template": {"type": ["string", "null"], "maxLength": 100},
                "context": {"type": "object"},
                "secret": {"type": ["string", "null"], "maxLength": 1000},
                "not_after": {"type": ["string", "null"], "format": "date-time"},
                "notification_id": NULLABLE_ID,
                "language": {"type": ["string", "null"], "maxLength": 10},
                "requested_at": TIME,
            },
            required=["phone", "kind", "user_id", "requested_at"],
        )
        | {
            "anyOf": [
                {"properties": {"body": {"type": "string"}}, "required": ["body"]},
                {"properties": {"template": {"type": "string"}}, "required": ["template"]},
            ]
        },
    ),
)
