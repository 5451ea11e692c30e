"""`user-events`: registration, login, profile and account changes (key: user id)."""

from __future__ import annotations

from outbox.catalogue import ID, NAME, TEXT, EventType, obj, register

NULLABLE_STR = {"type": ["string", "null"], "maxLength": 255}

register(
    EventType(
        type="user.registered",
        topic="user-events",
        key="user_id",
        schema=obj(
            {
                "user_id": ID,
                "username": NAME,
                "email": NULLABLE_STR,
                "display_name": NULLABLE_STR,
            },
            required=["user_id", "username"],
        ),
    ),
    EventType(
        type="user.logged_in",
        topic="user-events",
        key="user_id",
        schema=obj(
            {
                "user_id": ID,
                "ip": {"type": ["string", "null"], "maxLength": 64},
                "user_agent": {"type": "string", "maxLength": 1024},
                "client": {"type": "string", "maxLength": 32},
            },
            required=["user_id", "ip", "user_agent"],
        ),
    ),
    EventType(
        type="user.profile_updated",
        topic="user-events",
        key="user_id",
        schema=obj(
            {
                "user_id": ID,
                "changed": {"type": "object", "minProperties": 1},
            }
        ),
    ),
    EventType(
        type="user.account_changed",
        topic="user-events",
        key="user_id",
        schema=obj(
            {
                "user_id": ID,
                "change": {
                    "type": "string",
                    "enum": ["email", "password", "deactivated", "reactivated", "deleted"],
                },
                "detail": TEXT,
            },
            required=["user_id", "change"],
        ),
    ),
    EventType(
        type="user.phone_verified",
        topic="user-events",
        key="user_id",
        schema=obj({"user_id": ID, "phone": {"type": "string", "maxLength": 32}}),
    ),
)
