"""`email-events`: emails to send (key: the address, so one mailbox's emails keep order).

`email.requested`: `template` is one of the email templates under
`notifications/templates/notifications/email/`: `welcome`, `notification` (a notification told by
email), `transactional` (money and account matters), `marketing` (needs `user_id`: the email
carries an unsubscribe link for that user, and the user must have opted in), and the two
account-recovery emails, `password_reset` and `email_verification`, whose link travels sealed
in `secret` (outbox/sealing.py): the outbox row, the topic, dead letters and the delivery row
never hold a usable link; the email worker opens it only to render the email it sends, where the
template says `{{ secret }}`. `not_after` drops an email that is useless by then (an expired
link). `context` holds the template's plain values; `kind` is the notification kind when the
email tells one (it names the preference to honour). Consumed by `notifications-email`, which
records a delivery and sends it through Django's email backend.

`email.password_reset_requested`: someone asked for a password reset link for `email`. The API
writes this one event whatever the address (an account's or not), so the request takes the same
work and answer either way; the `accounts` consumer looks the address up and, for an active
account, issues the link (`email.requested`). Never carries a token.
"""

from __future__ import annotations

from outbox.catalogue import NULLABLE_ID, TIME, EventType, obj, register

EMAIL = {"type": "string", "minLength": 3, "maxLength": 254, "pattern": r"^[^@\s]+@[^@\s]+$"}
SECRET_TEMPLATES = ["password_reset", "email_verification"]

register(
    EventType(
        type="email.requested",
        topic="email-events",
        key="to",
        description="Send one email, rendered from a template in the recipient's language.",
        example={"to": "alice@example.com", "user_id": 42, "template": "welcome", "kind": None,
                 "context": {"username": "alice"}, "language": "en", "notification_id": None,
                 "secret": None, "not_after": None, "requested_at": "2026-11-27T09:30:00Z"},
        schema=obj(
            {
                "to": EMAIL,
                "user_id": NULLABLE_ID,
                "template": {"type": "string",
                             "enum": ["welcome", "notification", "transactional", "marketing",
                                      *SECRET_TEMPLATES]},
                "kind": {"type": ["string", "null"], "pattern": "^[a-z][a-z0-9_]{0,63}$"},
                "context": {"type": "object", "maxProperties": 50},
                "language": {"type": ["string", "null"], "maxLength": 10},
                "notification_id": NULLABLE_ID,
                "secret": {"type": ["string", "null"], "maxLength": 4000},
                "not_after": {"type": ["string", "null"], "format": "date-time"},
                "requested_at": TIME,
            },
            required=["to", "template", "requested_at"],
        )
        | {
            "allOf": [
                {
                    # A marketing email must name its user: the unsubscribe link and the
                    # opt-in check are that user's.
                    "if": {"properties": {"template": {"const": "marketing"}},
                           "required": ["template"]},
                    "then": {"properties": {"user_id": {"type": "integer"}},
                             "required": ["user_id"]},
                },
                {
                    # The recovery emails exist for their link: without it there is no email.
                    "if": {"properties": {"template": {"enum": SECRET_TEMPLATES}},
                           "required": ["template"]},
                    "then": {"properties": {"secret": {"type": "string", "minLength": 1}},
                             "required": ["secret"]},
                },
            ],
        },
    ),
    EventType(
        type="email.password_reset_requested",
        topic="email-events",
        key="email",
        description="A password reset link was asked for this address (which may belong to "
        "no account); the accounts consumer sends one if an active account uses it.",
        schema=obj(
            {
                "email": EMAIL,
                "ip": {"type": ["string", "null"], "maxLength": 64},
                "requested_at": TIME,
            }
        ),
    ),
)
