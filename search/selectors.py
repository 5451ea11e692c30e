"""Search reads: users by name (pg_trgm) and posts by text (PostgreSQL full-text search).

Both are ranked and keyset-paged on `(score, id)`; the score of a row depends only on the
row and the query (never on the clock), so a cursor taken from one page finds the same place
on the next request. Indexes: search/migrations/0001_initial.py. Ranking: docs/api-search.md.

Users: a trigram match on the username or the display name, or a username prefix, scored
    similarity(username, q) + word_similarity(q, display_name)
    + 1 when the username starts with q, + 2 when it is q.
Posts: the `SEARCH_POST_CANDIDATES` newest posts matching the query (websearch syntax:
`"exact phrase"`, `or`, `-word`; English stemming) are ranked by
    ts_rank_cd(search_vector, query, 32) + created_at (epoch seconds) / SEARCH_RECENCY_SECONDS
so that among equally relevant posts the newer one wins, and a post SEARCH_RECENCY_SECONDS
newer outweighs any difference in relevance. The cap keeps a query for a common word as fast as
a rare one: it reads at most that many index entries and rows.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.db import connection, transaction

_NOT_BLOCKED = """
    NOT EXISTS (SELECT 1 FROM social_block b
                WHERE (b.blocker_id = %(viewer)s AND b.blocked_id = {user})
                   OR (b.blocker_id = {user} AND b.blocked_id = %(viewer)s))
"""

_USERS = """
SELECT u.id, (similarity(lower(u.username), %(q)s)
              + word_similarity(%(q)s, lower(u.display_name))
              + CASE WHEN lower(u.username) LIKE %(prefix)s THEN 1 ELSE 0 END
              + CASE WHEN lower(u.username) = %(q)s THEN 2 ELSE 0 END)::float8 AS score
FROM accounts_user u
WHERE u.is_active AND u.deleted_at IS NULL
  AND (lower(u.username) %% %(q)s OR lower(u.display_name) %%> %(q)s
       OR lower(u.username) LIKE %(prefix)s)
  AND {not_blocked}
"""

_POSTS = """
WITH candidates AS (
    SELECT p.id, p.author_id, p.created_at, p.search_vector
    FROM posts_post p
    WHERE p.search_vector @@ websearch_to_tsquery('english', %(q)s)
      AND p.deleted_at IS NULL AND p.hidden_at IS NULL
    ORDER BY p.id DESC
    LIMIT %(cap)s
)
SELECT c.id, (ts_rank_cd(c.search_vector, websearch_to_tsquery('english', %(q)s), 32)
              + extract(epoch FROM c.created_at) / %(recency)s)::float8 AS score
FROM candidates c JOIN accounts_user u ON u.id = c.author_id
WHERE u.is_active AND {not_blocked}
"""

_PAGE = """
SELECT id, score FROM ({inner}) ranked
WHERE %(after_score)s::float8 IS NULL OR (score, id) < (%(after_score)s, %(after_id)s)
ORDER BY score DESC, id DESC
LIMIT %(limit)s
"""


@dataclass(frozen=True)
class Hit:
    id: int
    score: float


def _viewer_id(viewer) -> int:
    # 0 matches no user: an anonymous viewer has no blocks.
    return viewer.pk if viewer is not None and viewer.is_authenticated else 0


def _run(inner: str, params: dict, after: tuple[float, int] | None, limit: int, *,
         no_seqscan: bool = False, explain: bool = False) -> list[Hit] | str:
    sql = ("EXPLAIN (ANALYZE, COSTS OFF) " if explain else "") + _PAGE.format(inner=inner)
    params = {**params, "after_score": after[0] if after else None,
              "after_id": after[1] if after else None, "limit": limit}
    with transaction.atomic(), connection.cursor() as cur:
        if no_seqscan:
            # pg_trgm declares its operators as cheap as `=` (procost 1), so on a table of
            # tens of thousands of users the planner may price a scan of every name below the
            # trigram indexes, and then runs similarity() on every row (measured: 0.2-0.5 s
            # on 50,000 users instead of a few ms). The functions belong to the extension's
            # owner, so their cost cannot be corrected here; this statement is told instead.
            cur.execute("SET LOCAL enable_seqscan = off")
        cur.execute(sql, params)
        rows = cur.fetchall()
    if explain:
        return "\n".join(row[0] for row in rows)
    return [Hit(row[0], row[1]) for row in rows]


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _users(q: str, viewer) -> tuple[str, dict]:
    q = q.strip().lower()
    inner = _USERS.format(not_blocked=_NOT_BLOCKED.format(user="u.id"))
    return inner, {"q": q, "prefix": _like_escape(q) + "%", "viewer": _viewer_id(viewer)}


def _posts(q: str, viewer) -> tuple[str, dict]:
    inner = _POSTS.format(not_blocked=_NOT_BLOCKED.format(user="c.author_id"))
    return inner, {"q": q.strip(), "viewer": _viewer_id(viewer),
                   "cap": settings.SEARCH_POST_CANDIDATES,
                   "recency": float(settings.SEARCH_RECENCY_SECONDS)}


def search_users(*, q: str, viewer=None, after: tuple[float, int] | None = None,
                 limit: int = 20) -> list[Hit]:
    return _run(*_users(q, viewer), after, limit, no_seqscan=True)


def search_posts(*, q: str, viewer=None, after: tuple[float, int] | None = None,
                 limit: int = 20) -> list[Hit]:
    return _run(*_posts(q, viewer), after, limit)


def explain_users(*, q: str, viewer=None) -> str:
    """EXPLAIN ANALYZE of the users query (tests and the benchmark show the plan)."""
    return _run(*_users(q, viewer), None, 20, no_seqscan=True, explain=True)


def explain_posts(*, q: str, viewer=None) -> str:
    return _run(*_posts(q, viewer), None, 20, explain=True)
