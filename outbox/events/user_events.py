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

# --- the social graph (social.services). Keyed by the acting user (the follower, the blocker,
# the reporter): one user's follows, unfollows and blocks keep their order on one partition.
COUNT = {"type": "integer", "minimum": 0}


def _follow_event(type_: str, description: str, extra: dict | None = None) -> EventType:
    return EventType(
        type=type_,
        topic="user-events",
        key="follower_id",
        description=description,
        schema=obj(
            {
                "follower_id": ID,
                "followee_id": ID,
                # The counts after the change (the followee's followers, the follower's
                # following), as committed under both users' count-row locks.
                "followers_count": COUNT,
                "following_count": COUNT,
                "occurred_at": TIME,
                **(extra or {}),
            }
        ),
    )


register(
    _follow_event("user.followed", "follower_id started following followee_id (a repeated "
                  "follow emits nothing)."),
    _follow_event("user.unfollowed", "follower_id stopped following followee_id: by their "
                  "own unfollow, or because one of the two blocked the other (reason).",
                  {"reason": {"type": "string", "enum": ["unfollow", "block", "account"]}}),
    *(EventType(type=type_, topic="user-events", key="blocker_id", description=description,
                schema=obj({"blocker_id": ID, "blocked_id": ID, "occurred_at": TIME}))
      for type_, description in (
          ("user.blocked", "blocker_id blocked blocked_id; the follows between them were "
           "removed (each with its own user.unfollowed, published first)."),
          ("user.unblocked", "blocker_id lifted the block on blocked_id (follows are not "
           "restored)."))),
    EventType(
        type="report.filed",
        topic="user-events",
        key="reporter_id",
        description="A report of a post, comment or user, waiting for an operator.",
        schema=obj(
            {
                "report_id": ID,
                "reporter_id": ID,
                "target_type": {"type": "string", "enum": ["post", "comment", "user"]},
                "target_id": ID,
                "target_user_id": ID,
                "reason": {"type": "string", "maxLength": 20},
                "occurred_at": TIME,
            }
        ),
    ),
    EventType(
        type="report.resolved",
        topic="user-events",
        key="reporter_id",
        description="An operator decided a report: the content was hidden, or the report "
        "dismissed.",
        schema=obj(
            {
                "report_id": ID,
                "reporter_id": ID,
                "target_type": {"type": "string", "enum": ["post", "comment", "user"]},
                "target_id": ID,
                "status": {"type": "string", "enum": ["hidden", "dismissed"]},
                "operator_id": {"type": ["integer", "null"], "minimum": 1},
                "occurred_at": TIME,
            }
        ),
    ),
)
