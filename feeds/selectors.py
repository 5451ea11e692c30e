"""Feed reads: the home feed (timeline rows merged with followed celebrities' posts).

A page is newest first by post id (ids grow with publication), keyset-paged on the last id.
Two sources are merged: the owner's timeline rows (fanned out on write), and, for each
followed celebrity (and the owner if they are one), their latest posts straight from the posts
table. Candidates are then checked as they are now: the post is visible, its author is
followed (or is the owner) and not in a block with the owner. A row the fan-out wrote just
before an unfollow, a block or a deletion is therefore never shown, whatever the consumer has
reached. A client cannot tell a fanned-out post from a merged one.
"""

from __future__ import annotations

from django.db import connection
from django.db.models import Q

from posts.models import Post
from posts.selectors import post_visible_queryset

_CANDIDATES = """
WITH celebs AS (
    SELECT f.followee_id AS author_id FROM social_follow f
    JOIN feeds_celebrity c ON c.author_id = f.followee_id
    WHERE f.follower_id = %(me)s
    UNION
    SELECT author_id FROM feeds_celebrity WHERE author_id = %(me)s
)
(SELECT post_id, author_id FROM feeds_timelineentry
 WHERE owner_id = %(me)s AND post_id < %(before)s
 ORDER BY post_id DESC LIMIT %(n)s)
UNION
(SELECT p.id, p.author_id FROM celebs CROSS JOIN LATERAL (
    SELECT id, author_id FROM posts_post
    WHERE author_id = celebs.author_id AND deleted_at IS NULL AND id < %(before)s
    ORDER BY id DESC LIMIT %(n)s) p)
ORDER BY 1 DESC
LIMIT %(n)s
"""

_MAX_ID = 2**63 - 1
# Rounds of candidates before a page is returned short (only when nearly everything read is
# filtered out: a feed full of posts deleted since).
_MAX_ROUNDS = 5


def _candidates(owner_id: int, before: int, n: int) -> list[tuple[int, int]]:
    with connection.cursor() as cur:
        cur.execute(_CANDIDATES, {"me": owner_id, "before": before, "n": n})
        return cur.fetchall()


def _followed(owner_id: int, author_ids: set[int]) -> set[int]:
    with connection.cursor() as cur:
        cur.execute("SELECT followee_id FROM social_follow WHERE follower_id = %s "
                    "AND followee_id = ANY(%s)", [owner_id, sorted(author_ids)])
        return {row[0] for row in cur.fetchall()}


def home_feed(*, viewer, before: int | None = None, limit: int = 20) -> tuple[list[Post], bool]:
    """The viewer's home feed: up to `limit` posts older than post id `before` (newest first),
    and whether there are more."""
    before = before or _MAX_ID
    posts: list[Post] = []
    want = limit + 1
    for _ in range(_MAX_ROUNDS):
        batch = _candidates(viewer.pk, before, want)
        if not batch:
            break
        authors = {a for _, a in batch} - {viewer.pk}
        allowed = _followed(viewer.pk, authors) | {viewer.pk}
        ids = [p for p, a in batch if a in allowed]
        visible = {p.pk: p for p in post_visible_queryset(viewer=viewer).filter(pk__in=ids)}
        posts += [visible[i] for i in ids if i in visible]
        if len(posts) >= want or len(batch) < want:
            break
        before = batch[-1][0]
    return posts[:limit], len(posts) > limit


def trending(*, viewer, after: tuple[float, int] | None = None,
             limit: int = 20) -> tuple[list[tuple[Post, float]], bool]:
    """The trending ranking (feeds.TrendingPost), best first, without what the viewer may not
    see; keyset on (score, post id)."""
    from .models import TrendingPost

    out: list[tuple[Post, float]] = []
    for _ in range(_MAX_ROUNDS):
        qs = TrendingPost.objects.order_by("-score", "-post_id")
        if after is not None:
            qs = qs.filter(Q(score__lt=after[0]) | Q(score=after[0], post_id__lt=after[1]))
        batch = list(qs.values_list("post_id", "score")[:limit + 1])
        visible = {p.pk: p for p in post_visible_queryset(viewer=viewer)
                   .filter(pk__in=[p for p, _ in batch])}
        out += [(visible[p], score) for p, score in batch if p in visible]
        if len(out) > limit or len(batch) <= limit:
            break
        after = batch[-1][1], batch[-1][0]
    return out[:limit], len(out) > limit
