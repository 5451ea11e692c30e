"""`post-events`: posts, likes, comments and views (key: post id, so one post's events stay in
order on one partition).

Every event names the post, its author and the actor (who did it), so a consumer can notify the
author without a database lookup. `actor_id` is null only for an anonymous view.
"""

from __future__ import annotations

from outbox.catalogue import ID, NULLABLE_ID, TEXT, TIME, EventType, obj, register

COUNT = {"type": "integer", "minimum": 0}
TEXT_2000 = TEXT | {"maxLength": 2000}


def _post_event(type_: str, description: str, extra: dict, *, anonymous_actor: bool = False):
    return EventType(
        type=type_,
        topic="post-events",
        key="post_id",
        description=description,
        schema=obj(
            {
                "post_id": ID,
                "author_id": ID,
                "actor_id": NULLABLE_ID if anonymous_actor else ID,
                "occurred_at": TIME,
                **extra,
            }
        ),
    )


register(
    _post_event("post.created", "A new post; video_id is the media app's video, if any.",
                {"text": TEXT_2000, "video_id": NULLABLE_ID}),
    _post_event("post.updated", "An edit by the author: only the changed fields, new values.",
                {"changed": obj({"text": TEXT_2000, "video_id": NULLABLE_ID}, required=[])
                 | {"minProperties": 1}}),
    _post_event("post.deleted", "A soft delete: the post is hidden everywhere from now on.", {}),
    _post_event("post.hidden", "A moderator hid the post after a report (actor_id: the "
                "operator): it leaves feeds, search and counts like a deleted post.", {}),
    _post_event("comment.hidden", "A moderator hid a comment after a report (actor_id: the "
                "operator); comment_count is the post's count without it.",
                {"comment_id": ID, "comment_count": COUNT}),
    _post_event("post.liked", "A new like (a repeated like emits nothing).",
                {"like_count": COUNT}),
    _post_event("post.unliked", "A like withdrawn (unliking a post not liked emits nothing).",
                {"like_count": COUNT}),
    _post_event("post.commented", "A new comment.",
                {"comment_id": ID, "text": TEXT_2000, "comment_count": COUNT}),
    _post_event("post.viewed", "A counted view (one per viewer per post per window, see "
                "docs/api-accounts-posts.md); actor_id is null for an anonymous viewer.",
                {"view_count": COUNT}, anonymous_actor=True),
)
