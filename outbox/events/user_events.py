"""`user-events`: registration, login, profile and account changes (key: user id).

No event here ever carries a secret: no password, password hash, token or one-time code.
"""

from __future__ import annotations

from outbox.catalogue import ID, NAME, TEXT, TIME, EventType, obj, register

NULLABLE_STR = {"type": ["string", "null"], "maxLength": 255}
PHONE = {"type": "string", "pattern": r"^\+[1-9][0-9]{7,14}$"}

register(
    EventType(
        type="user.registered",
        topic="user-events",
        key="user_id",
        description="A new account; email is null when the user registered without one.",
        schema=obj(
            {
                "user_id": ID,
                "username": NAME,
                "email": NULLABLE_STR,
                "display_name": NAME,
                "registered_at": TIME,
            }
        ),
    ),
    EventType(
        type="user.logged_in",
        topic="user-events",
        key="user_id",
        description="A successful password login (token refreshes are not logins).",
        schema=obj(
            {
                "user_id": ID,
                "ip": {"type": ["string", "null"], "maxLength": 64},
                "user_agent": {"type": "string", "maxLength": 1024},
                "logged_in_at": TIME,
            }
        ),
    ),
    EventType(
        type="user.profile_updated",
        topic="user-events",
        key="user_id",
        description="Only the fields that changed, with their new values.",
        schema=obj(
            {
                "user_id": ID,
                "changed": obj(
                    {
                        "display_name": NAME,
                        "bio": TEXT,
                        "avatar_url": NULLABLE_STR,
                    },
                    required=[],
                )
                | {"minProperties": 1},
            }
        ),
    ),
    EventType(
        type="user.account_changed",
        topic="user-events",
        key="user_id",
        description="What changed on the account, never the secret: for an email change the "
        "old and new addresses (so the old one can be told), otherwise just the kind of change.",
        schema=obj(
            {
                "user_id": ID,
                "change": {
                    "type": "string",
                    "enum": ["email", "password", "deactivated", "reactivated", "deleted"],
                },
                "old_email": NULLABLE_STR,
                "new_email": NULLABLE_STR,
                "changed_at": TIME,
            },
            required=["user_id", "change", "changed_at"],
        ),
    ),
    EventType(
        type="user.phone_verified",
        topic="user-events",
        key="user_id",
        schema=obj({"user_id": ID, "phone": PHONE, "verified_at": TIME}),
    ),
    EventType(
        type="user.email_verified",
        topic="user-events",
        key="user_id",
        description="The user opened a verification link sent to `email`.",
        schema=obj({"user_id": ID, "email": {"type": "string", "maxLength": 254},
                    "verified_at": TIME}),
    ),
    EventType(
        type="user.password_reset",
        topic="user-events",
        key="user_id",
        description="The password was replaced through an emailed reset link; every session "
        "and token of the account was revoked.",
        schema=obj({"user_id": ID, "ip": {"type": ["string", "null"], "maxLength": 64},
                    "reset_at": TIME}),
    ),
)
