"""Feed writes: what the `feeds` consumer does with each event (feeds/handlers.py), and one
chunk of a fan-out job (the worker, feeds/fanout.py).

Every function here runs inside the caller's transaction (the consumer's batch, or the
worker's chunk) and is idempotent: timeline rows are inserted with ON CONFLICT DO NOTHING and
deleted by key, so applying an event twice, or a chunk after a crash, changes nothing more.

Order between topics is not guaranteed (post-events are keyed by post, user-events by the
follower), so nothing here trusts the event for the current state of the graph: fan-out reads
the follows as they are now, a backfill checks that the follow still exists, an unfollow
removes rows only if the follow is gone. The read path (feeds.selectors) checks follows,
blocks and visibility again, so a row left by a race is never shown.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.conf import settings
from django.db import connection

from .models import Celebrity


def _execute(sql: str, params: dict | list) -> int:
    with connection.cursor() as cur:
        cur.execute(sql, params)
        return cur.rowcount


def _followers_counts(author_ids: Iterable[int]) -> dict[int, int]:
    ids = sorted(set(author_ids))
    if not ids:
        return {}
    with connection.cursor() as cur:
        cur.execute("SELECT user_id, followers FROM social_socialcounts "
                    "WHERE user_id = ANY(%s)", [ids])
        found = dict(cur.fetchall())
    return {i: found.get(i, 0) for i in ids}


def celebrity_ids(author_ids: Iterable[int]) -> set[int]:
    return set(Celebrity.objects.filter(author_id__in=set(author_ids))
               .values_list("author_id", flat=True))


# --- post.created ----------------------------------------------------------------------------


def posts_created(*, posts: list[tuple[int, int]]) -> list[int]:
    """Fan out new posts, given as (post id, author id). Celebrities' posts are left to the
    read path. Every other post goes into its author's own feed and gets a fan-out job; the
    jobs of authors with at most FEEDS_FANOUT_INLINE followers are done right here, in one
    statement for the whole batch (the common case costs no extra transaction). Returns the
    ids of the jobs left for the worker."""
    if not posts:
        return []
    celebs = celebrity_ids(a for _, a in posts)
    counts = _followers_counts(a for _, a in posts)
    fanned = [(p, a) for p, a in posts if a not in celebs]
    if not fanned:
        return []
    post_ids = [p for p, _ in fanned]
    author_ids = [a for _, a in fanned]
    # The author's own feed, and a job per post (one per post: a repeated event finds it).
    _execute("""
        INSERT INTO feeds_timelineentry (owner_id, post_id, author_id)
        SELECT a, p, a FROM unnest(%(posts)s::bigint[], %(authors)s::bigint[]) AS t(p, a)
        ON CONFLICT DO NOTHING""", {"posts": post_ids, "authors": author_ids})
    inline = [(p, a) for p, a in fanned if counts[a] <= settings.FEEDS_FANOUT_INLINE]
    with connection.cursor() as cur:
        cur.execute("""
            INSERT INTO feeds_fanoutjob (post_id, author_id, next_follower_id, rows_written,
                                         chunks, created_at, updated_at, done_at)
            SELECT p, a, 0, 0, 0, now(), now(), CASE WHEN p = ANY(%(inline)s) THEN now() END
            FROM unnest(%(posts)s::bigint[], %(authors)s::bigint[]) AS t(p, a)
            WHERE NOT EXISTS (SELECT 1 FROM feeds_fanoutjob j WHERE j.post_id = t.p)
            RETURNING id, post_id, done_at IS NULL""",
                    {"posts": post_ids, "authors": author_ids,
                     "inline": [p for p, _ in inline]})
        jobs = cur.fetchall()
    new_posts = {post_id for _, post_id, _ in jobs}
    inline = [(p, a) for p, a in inline if p in new_posts]
    if inline:
        _execute("""
            WITH t(p, a) AS (SELECT * FROM unnest(%(posts)s::bigint[], %(authors)s::bigint[]))
            INSERT INTO feeds_timelineentry (owner_id, post_id, author_id)
            SELECT f.follower_id, t.p, t.a FROM t JOIN social_follow f ON f.followee_id = t.a
            ON CONFLICT DO NOTHING""",
                 {"posts": [p for p, _ in inline], "authors": [a for _, a in inline]})
    pending = [job_id for job_id, _, is_pending in jobs if is_pending]
    if pending:
        # Wakes the fan-out workers when this transaction commits.
        _execute("SELECT pg_notify('feeds_fanout', '')", [])
    return pending


# --- post.deleted, post.hidden ---------------------------------------------------------------


def posts_removed(*, post_ids: list[int]) -> int:
    """A deleted or hidden post leaves every feed. Its unfinished fan-out job is stopped first:
    the update waits for a chunk in progress (it holds the job's row lock), so the delete
    below sees that chunk's rows."""
    if not post_ids:
        return 0
    _execute("UPDATE feeds_fanoutjob SET done_at = now(), updated_at = now() "
             "WHERE post_id = ANY(%s) AND done_at IS NULL", [post_ids])
    return _execute("DELETE FROM feeds_timelineentry WHERE post_id = ANY(%s)", [post_ids])


# --- user.followed, user.unfollowed, user.blocked --------------------------------------------


def follows_added(*, pairs: list[tuple[int, int]]) -> int:
    """Backfill: a new follower's feed gets the followee's FEEDS_BACKFILL_POSTS latest posts
    (if the follow still exists; a celebrity's posts come at read time anyway). Then authors
    past the celebrity threshold become celebrities. Returns the rows written."""
    if not pairs:
        return 0
    written = _execute("""
        WITH t(follower, followee) AS (
            SELECT * FROM unnest(%(followers)s::bigint[], %(followees)s::bigint[]))
        INSERT INTO feeds_timelineentry (owner_id, post_id, author_id)
        SELECT t.follower, p.id, t.followee
        FROM t
        JOIN social_follow f ON f.follower_id = t.follower AND f.followee_id = t.followee
        CROSS JOIN LATERAL (
            SELECT id FROM posts_post
            WHERE author_id = t.followee AND deleted_at IS NULL AND hidden_at IS NULL
            ORDER BY id DESC LIMIT %(n)s) p
        WHERE NOT EXISTS (SELECT 1 FROM feeds_celebrity c WHERE c.author_id = t.followee)
        ON CONFLICT DO NOTHING""", {"followers": [a for a, _ in pairs],
                                    "followees": [b for _, b in pairs],
                                    "n": settings.FEEDS_BACKFILL_POSTS})
    counts = _followers_counts(b for _, b in pairs)
    rising = [a for a, n in counts.items() if n > settings.FEEDS_CELEBRITY_FOLLOWERS]
    if rising:
        _execute("INSERT INTO feeds_celebrity (author_id, since) SELECT a, now() "
                 "FROM unnest(%s::bigint[]) AS a ON CONFLICT DO NOTHING", [rising])
    return written


def follows_removed(*, pairs: list[tuple[int, int]]) -> int:
    """An unfollow (or a block, or a deleted account) takes the followee's posts out of the
    follower's feed, unless they follow again by now. Then celebrities whose followers fell
    below 90% of the threshold (the margin keeps an author near it from flapping) are fanned
    out after all: their recent posts get fan-out jobs. Returns the rows deleted."""
    if not pairs:
        return 0
    deleted = _execute("""
        DELETE FROM feeds_timelineentry e
        USING unnest(%(followers)s::bigint[], %(followees)s::bigint[]) AS t(follower, followee)
        WHERE e.owner_id = t.follower AND e.author_id = t.followee
          AND NOT EXISTS (SELECT 1 FROM social_follow f
                          WHERE f.follower_id = t.follower AND f.followee_id = t.followee)""",
                       {"followers": [a for a, _ in pairs], "followees": [b for _, b in pairs]})
    counts = _followers_counts(b for _, b in pairs)
    floor = settings.FEEDS_CELEBRITY_FOLLOWERS * 9 // 10
    falling = [a for a, n in counts.items() if n < floor]
    if falling:
        with connection.cursor() as cur:
            cur.execute("DELETE FROM feeds_celebrity WHERE author_id = ANY(%s) "
                        "RETURNING author_id", [falling])
            demoted = [row[0] for row in cur.fetchall()]
        if demoted:
            posts_refanned(author_ids=demoted)
    return deleted


def posts_refanned(*, author_ids: list[int]) -> None:
    """Fan-out jobs (done by the worker) for the FEEDS_BACKFILL_POSTS latest posts of authors
    who just stopped being celebrities, so their followers' feeds hold them without the
    read-time merge. Posts that had a job get a new one (the old one may have finished before
    the author became a celebrity; rows already there are skipped)."""
    _execute("""
        INSERT INTO feeds_fanoutjob (post_id, author_id, next_follower_id, rows_written, chunks,
                                     created_at, updated_at)
        SELECT p.id, p.author_id, 0, 0, 0, now(), now()
        FROM unnest(%(authors)s::bigint[]) AS a
        CROSS JOIN LATERAL (
            SELECT id, author_id FROM posts_post
            WHERE author_id = a AND deleted_at IS NULL AND hidden_at IS NULL
            ORDER BY id DESC LIMIT %(n)s) p""",
             {"authors": author_ids, "n": settings.FEEDS_BACKFILL_POSTS})
    # Their own feeds too (a celebrity's own posts were merged at read time as well).
    _execute("""
        INSERT INTO feeds_timelineentry (owner_id, post_id, author_id)
        SELECT a, p.id, a FROM unnest(%(authors)s::bigint[]) AS a
        CROSS JOIN LATERAL (
            SELECT id FROM posts_post
            WHERE author_id = a AND deleted_at IS NULL AND hidden_at IS NULL
            ORDER BY id DESC LIMIT %(n)s) p
        ON CONFLICT DO NOTHING""", {"authors": author_ids, "n": settings.FEEDS_BACKFILL_POSTS})
    _execute("SELECT pg_notify('feeds_fanout', '')", [])


def blocks_added(*, pairs: list[tuple[int, int]]) -> int:
    """Each side's posts leave the other's feed (the follows went with their own events; this
    also covers rows a race left behind)."""
    if not pairs:
        return 0
    return _execute("""
        DELETE FROM feeds_timelineentry e
        USING unnest(%(a)s::bigint[], %(b)s::bigint[]) AS t(a, b)
        WHERE (e.owner_id = t.a AND e.author_id = t.b)
           OR (e.owner_id = t.b AND e.author_id = t.a)""",
                    {"a": [a for a, _ in pairs], "b": [b for _, b in pairs]})


# --- the fan-out worker's step ---------------------------------------------------------------


def fanout_chunk() -> tuple[int, int] | None:
    """Claim the pending job touched longest ago (others' locked jobs are skipped) and write
    its next chunk; the caller's transaction commits the rows and the cursor together.
    Returns (job id, rows written), or None when no job waits."""
    with connection.cursor() as cur:
        cur.execute("""
            SELECT id, post_id, author_id, next_follower_id FROM feeds_fanoutjob
            WHERE done_at IS NULL ORDER BY updated_at, id LIMIT 1
            FOR UPDATE SKIP LOCKED""")
        row = cur.fetchone()
        if row is None:
            return None
        job_id, post_id, author_id, after = row
        cur.execute("""
            WITH chunk AS (
                SELECT follower_id FROM social_follow
                WHERE followee_id = %(author)s AND follower_id > %(after)s
                ORDER BY follower_id LIMIT %(size)s),
            written AS (
                INSERT INTO feeds_timelineentry (owner_id, post_id, author_id)
                SELECT follower_id, %(post)s, %(author)s FROM chunk
                ON CONFLICT DO NOTHING RETURNING 1)
            SELECT (SELECT max(follower_id) FROM chunk), (SELECT count(*) FROM chunk),
                   (SELECT count(*) FROM written)""",
                    {"author": author_id, "after": after, "post": post_id,
                     "size": settings.FEEDS_FANOUT_CHUNK})
        last, seen, written = cur.fetchone()
        finished = seen < settings.FEEDS_FANOUT_CHUNK
        cur.execute("""
            UPDATE feeds_fanoutjob SET next_follower_id = %s, rows_written = rows_written + %s,
                   chunks = chunks + 1, updated_at = clock_timestamp(),
                   done_at = CASE WHEN %s THEN clock_timestamp() END
            WHERE id = %s""", [last if last is not None else after, written, finished, job_id])
    return job_id, written


# --- trending --------------------------------------------------------------------------------

# Points per like (net of unlikes), comment, counted view and minute watched.
TRENDING_WEIGHTS = {"likes": 2.0, "comments": 3.0, "views": 1.0, "watch_minutes": 2.0}
TRENDING_GRAVITY = 1.5


def trending_refresh() -> int:
    """Rank the posts published in the last 24 hours by engagement from the analytics
    aggregates (analytics.PostStats, kept exactly once by the analytics consumer):

        points = 2 x (likes - unlikes) + 3 x comments + 1 x views + 2 x minutes watched
        score  = points / (age in hours + 2) ^ 1.5

    The post is under 24 hours old, so its running totals are its engagement of the last
    24 hours. The age term (Hacker News' gravity) lets a newer post with fewer points pass an
    older one. The table is replaced in one transaction: readers see the old or the new
    ranking, never half. Returns the number of posts ranked."""
    w = TRENDING_WEIGHTS
    with connection.cursor() as cur:
        cur.execute("DELETE FROM feeds_trendingpost")
        cur.execute("""
            INSERT INTO feeds_trendingpost (post_id, score, refreshed_at)
            SELECT p.id,
                   (%(likes)s * (s.likes - s.unlikes) + %(comments)s * s.comments
                    + %(views)s * s.views + %(watch)s * s.watch_time_ms / 60000.0)
                   / power(extract(epoch FROM now() - p.created_at) / 3600.0 + 2,
                           %(gravity)s) AS score,
                   now()
            FROM posts_post p JOIN analytics_poststats s ON s.post_id = p.id
            WHERE p.created_at >= now() - interval '24 hours'
              AND p.deleted_at IS NULL AND p.hidden_at IS NULL
            ORDER BY score DESC, p.id DESC
            LIMIT %(size)s""", {"likes": w["likes"], "comments": w["comments"],
                                "views": w["views"], "watch": w["watch_minutes"],
                                "gravity": TRENDING_GRAVITY,
                                "size": settings.FEEDS_TRENDING_SIZE})
        return cur.rowcount
