"""Handlers of the `feeds` consumer (its own group, inbox and dead letters):

    python manage.py consume post-events user-events --consumer feeds

One batch handler for every type it reads: a polled batch becomes a few set-based statements
(feeds/services.py), whatever its size. Within a batch, additions (new posts, follows) are
applied before removals (deletions, unfollows, blocks); this is safe in any event order because
each step decides from the graph as it is now, not from the event (feeds/services.py).
"""

from __future__ import annotations

from relay.registry import ConsumedEvent, handler

from . import services

CONSUMER = "feeds"
TYPES = ("post.created", "post.deleted", "post.hidden", "user.followed", "user.unfollowed",
         "user.blocked")


def apply(events: list[ConsumedEvent]) -> None:
    by_type: dict[str, list[dict]] = {t: [] for t in TYPES}
    for event in events:
        by_type[event.type].append(event.data)
    services.posts_created(posts=[(d["post_id"], d["author_id"])
                                  for d in by_type["post.created"]])
    services.follows_added(pairs=[(d["follower_id"], d["followee_id"])
                                  for d in by_type["user.followed"]])
    services.posts_removed(post_ids=[d["post_id"] for d in
                                     by_type["post.deleted"] + by_type["post.hidden"]])
    services.follows_removed(pairs=[(d["follower_id"], d["followee_id"])
                                    for d in by_type["user.unfollowed"]])
    services.blocks_added(pairs=[(d["blocker_id"], d["blocked_id"])
                                 for d in by_type["user.blocked"]])


handler(CONSUMER, *TYPES, batch=True)(apply)
