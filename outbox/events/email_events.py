"""`email-events`: emails to send (key: the address, so one mailbox's emails keep order).

`template` is one of the email templates under `notifications/templates/notifications/email/`:
`welcome`, `notification` (a notification told by email), `transactional` (money and account
matters) and `marketing` (needs `user_id`: the email carries an unsubscribe link for that
user, and the user must have opted in). `context` holds the template's plain values; `kind`
is the notification kind when the email tells one (it names the preference to honour).
Consumed by `notifications-email`, which renders it and sends it through Django's email backend.
"""

from __future__ import annotations

from outbox.catalogue import NULLABLE_ID, TIME, EventType, obj, register

register(
    EventType(
        type="email.requested",
        topic="email-events",
        key="to",
        description="Send one email, rendered from a template in the recipient's language.",
        schema=obj(
            {
                "to": {"type": "string", "minLength": 3, "maxLength": 254,
                       "pattern": r"^[^@\s]+@[^@\s]+$"},
                "user_id": NULLABLE_ID,
                "template": {"type": "string",
                             "enum": ["welcome", "notification", "transactional", "marketing"]},
                "kind": {"type": ["string", "null"], "pattern": "^[a-z][a-z0-9_]{0,63}$"},
                "context": {"type": "object", "maxProperties": 50},
                "language": {"type": ["string", "null"], "maxLength": 10},
                "notification_id": NULLABLE_ID,
                "requested_at": TIME,
            },
            required=["to", "template", "requested_at"],
        )
        | {
            # A marketing email must name its user: the unsubscribe link and the opt-in
            # check are that user's.
            "if": {"properties": {"template": {"const": "marketing"}},
                   "required": ["template"]},
            "then": {"properties": {"user_id": {"type": "integer"}}, "required": ["user_id"]},
        },
    ),
)
