"""Home-feed read: `GET /api/feed/` with 10,000 users x 1,000 timeline rows each and a followed
celebrity merged at read time, against a plain indexed single-table page read.

    .venv/bin/python bench/feed_read.py [--users 10000] [--requests 1000] [--rounds 3]

Data (built once in its own database, `showoff_bench_feed`): `--users` users; 1,000 of them are
authors with 200 posts each; every user follows 5 authors (so 1,000 timeline rows each: 10
million rows for 10,000 users) and one celebrity with 1,000 posts interleaved in time with
the others, above FEEDS_CELEBRITY_FOLLOWERS, so its posts are merged at read time.

Each request goes through the whole Django stack in this process (middleware, JWT
authentication with its revocation check and the throttle in Redis, the view, the serializer;
no network): a signed-in random user's first page (20 posts) and, every other request, the
page its `next` link gives. Baseline, interleaved request by request: `GET
/api/users/{author}/posts/` of a random author, one indexed range of one table (the posts),
the same page size and post serializer. Per round: p50, p95, p99 of each; the JSON gives the
medians over rounds and the ratio. Target: feed p99 <= 30 ms. Then the data path alone, the
same way: `feeds.selectors.home_feed` against the baseline's queryset (no HTTP stack, no
serializer), to show what the feed itself costs.

Sanity checks (asserted): every feed page has 20 posts, newest first, with the celebrity's posts
among them where their ids fall, and none of them is a timeline row of the celebrity.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time

from _setup import percentile, setup_django

AUTHORS = 1000
POSTS_PER_AUTHOR = 200
FOLLOWS_PER_USER = 5
CELEBRITY_POSTS = 1000


def ensure_data(users: int) -> dict:
    from django.db import connection, transaction

    from accounts.models import User

    if User.objects.filter(username="feed-celebrity").exists():
        n = User.objects.filter(username__startswith="feed-u-").count()
        if n != users:
            raise SystemExit(f"showoff_bench_feed was built with {n} users; drop it and rerun")
    else:
        started = time.perf_counter()
        with transaction.atomic(), connection.cursor() as cur:  # all or nothing
            cur.execute("""
                INSERT INTO accounts_user (password, is_superuser, username, first_name,
                    last_name, is_staff, is_active, date_joined, display_name, bio, avatar,
                    avatar_version)
                SELECT '', false, 'feed-u-' || i, '', '', false, true, now(), 'User ' || i,
                       '', '', 0
                FROM generate_series(1, %s) AS i""", [users])
            celeb = User.objects.create(username="feed-celebrity").pk
            cur.execute("SELECT id FROM accounts_user WHERE username LIKE 'feed-u-%%' "
                        "ORDER BY id LIMIT %s", [AUTHORS])
            authors = [r[0] for r in cur.fetchall()]
            # Posts in time order (ids grow with created_at); every 201st is the celebrity's.
            total = AUTHORS * POSTS_PER_AUTHOR + CELEBRITY_POSTS
            cur.execute("""
                INSERT INTO posts_post (author_id, text, like_count, comment_count, view_count,
                                        created_at, updated_at)
                SELECT CASE WHEN i %% 201 = 200 THEN %(celeb)s
                            ELSE (%(authors)s::bigint[])[1 + (i - i / 201) %% %(n_authors)s] END,
                       'post ' || i, 0, 0, 0,
                       now() - make_interval(secs => %(total)s - i),
                       now() - make_interval(secs => %(total)s - i)
                FROM generate_series(0, %(last)s) AS i""",
                        {"celeb": celeb, "authors": authors, "n_authors": AUTHORS,
                         "total": total, "last": total - 1})
            # Each user follows 5 distinct authors (not themselves) and the celebrity.
            cur.execute("""
                INSERT INTO social_follow (follower_id, followee_id, created_at)
                SELECT follower, followee, now() FROM (
                    SELECT u.id AS follower, x.a AS followee,
                           row_number() OVER (PARTITION BY u.id ORDER BY k) AS rn
                    FROM accounts_user u, generate_series(0, 9) AS k,
                         LATERAL (SELECT (%(authors)s::bigint[])[
                             1 + ((u.id * 7 + k * 211) %% %(n_authors)s)] AS a) x
                    WHERE u.username LIKE 'feed-u-%%' AND x.a <> u.id) y
                WHERE rn <= %(k)s""",
                        {"authors": authors, "n_authors": AUTHORS, "k": FOLLOWS_PER_USER})
            cur.execute("""
                INSERT INTO social_follow (follower_id, followee_id, created_at)
                SELECT id, %s, now() FROM accounts_user WHERE username LIKE 'feed-u-%%'""",
                        [celeb])
            cur.execute("""
                INSERT INTO social_socialcounts (user_id, followers, following)
                SELECT followee_id, count(*), 0 FROM social_follow GROUP BY followee_id""")
            cur.execute("INSERT INTO feeds_celebrity (author_id, since) VALUES (%s, now())",
                        [celeb])
            # The timeline: what fan-out would have written (every followed non-celebrity's
            # posts). Indexes are built after the rows, as a bulk load does.
            cur.execute("ALTER TABLE feeds_timelineentry "
                        "DROP CONSTRAINT feeds_timelineentry_pkey")
            cur.execute("DROP INDEX timeline_by_post")
            cur.execute("""
                INSERT INTO feeds_timelineentry (owner_id, post_id, author_id)
                SELECT f.follower_id, p.id, p.author_id
                FROM social_follow f JOIN posts_post p ON p.author_id = f.followee_id
                WHERE f.followee_id <> %s""", [celeb])
            cur.execute("ALTER TABLE feeds_timelineentry ADD CONSTRAINT "
                        "feeds_timelineentry_pkey PRIMARY KEY (owner_id, post_id)")
            cur.execute("CREATE INDEX timeline_by_post ON feeds_timelineentry (post_id)")
        with connection.cursor() as cur:
            cur.execute("VACUUM ANALYZE")
        print(f"built the data in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM feeds_timelineentry")
        rows = cur.fetchone()[0]
        cur.execute("SELECT min(c), max(c) FROM (SELECT count(*) c FROM feeds_timelineentry "
                    "GROUP BY owner_id) x")
        per_min, per_max = cur.fetchone()
    readers = list(User.objects.filter(username__startswith="feed-u-").values_list("pk",
                                                                                   flat=True))
    from posts.models import Post

    authors = sorted(set(Post.objects.values_list("author_id", flat=True).distinct()))
    celeb = User.objects.get(username="feed-celebrity").pk
    return {"rows": rows, "rows_per_user_min": per_min, "rows_per_user_max": per_max,
            "readers": readers, "authors": [a for a in authors if a != celeb], "celeb": celeb}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=1000, help="per round and endpoint")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    os.environ.setdefault("DEBUG", "false")
    os.environ.setdefault("API_THROTTLE_USER", "100000000/min")
    os.environ.setdefault("FEEDS_CELEBRITY_FOLLOWERS", str(args.users // 2))
    setup_django(db="showoff_bench_feed")
    from django.test import Client
    from rest_framework_simplejwt.tokens import RefreshToken

    from accounts.models import User

    data = ensure_data(args.users)
    rnd = random.Random(7)
    tokens: dict[int, str] = {}

    def client_for(user_id: int) -> Client:
        if user_id not in tokens:
            tokens[user_id] = str(RefreshToken.for_user(User(pk=user_id)).access_token)
        return Client(HTTP_AUTHORIZATION=f"Bearer {tokens[user_id]}")

    celeb_posts = 0

    def feed_request(n: int) -> float:
        nonlocal celeb_posts
        reader = rnd.choice(data["readers"])
        client = client_for(reader)
        url = "/api/feed/"
        if n % 2:  # the second page, as a scrolling client asks for it
            url = client.get(url).json()["next"]
        started = time.perf_counter()
        resp = client.get(url)
        elapsed = time.perf_counter() - started
        body = resp.json()
        ids = [p["id"] for p in body["results"]]
        assert resp.status_code == 200 and len(ids) == 20 and ids == sorted(ids, reverse=True)
        celeb_posts += sum(p["author"]["id"] == data["celeb"] for p in body["results"])
        return elapsed

    def baseline_request(n: int) -> float:
        reader = rnd.choice(data["readers"])
        author = rnd.choice(data["authors"])
        client = client_for(reader)
        started = time.perf_counter()
        resp = client.get(f"/api/users/{author}/posts/")
        elapsed = time.perf_counter() - started
        assert resp.status_code == 200 and len(resp.json()["results"]) == 20
        return elapsed

    for n in range(100):  # warm-up: connections, caches, imports
        feed_request(n)
        baseline_request(n)
    rounds = []
    for r in range(args.rounds):
        feed, base = [], []
        for n in range(args.requests):
            feed.append(feed_request(n) * 1000)
            base.append(baseline_request(n) * 1000)
        rounds.append({
            "feed_p50_ms": percentile(feed, 50), "feed_p95_ms": percentile(feed, 95),
            "feed_p99_ms": percentile(feed, 99),
            "baseline_p50_ms": percentile(base, 50), "baseline_p95_ms": percentile(base, 95),
            "baseline_p99_ms": percentile(base, 99),
        })
        print(f"round {r}: " + json.dumps({k: round(v, 2) for k, v in rounds[-1].items()}),
              file=sys.stderr)
    # The data path alone (no HTTP stack, no serializer): the feed's selector against the
    # baseline's queryset, interleaved, same page size.
    from feeds.selectors import home_feed
    from posts.selectors import post_list_by_author

    data_feed, data_base = [], []
    for _ in range(args.requests):
        viewer = User.objects.get(pk=rnd.choice(data["readers"]))
        started = time.perf_counter()
        page, _more = home_feed(viewer=viewer, limit=20)
        data_feed.append((time.perf_counter() - started) * 1000)
        assert len(page) == 20
        started = time.perf_counter()
        page = list(post_list_by_author(author_id=rnd.choice(data["authors"]),
                                        viewer=viewer)[:21])
        data_base.append((time.perf_counter() - started) * 1000)
        assert len(page) == 21
    # The celebrity wrote 1 post in 201: a reader's 20-post pages hold about 1 in 6 of its.
    assert celeb_posts > 0, "the celebrity's posts never showed up"
    from feeds.models import TimelineEntry

    assert not TimelineEntry.objects.filter(author_id=data["celeb"]).exists()

    def med(key: str) -> float:
        return round(statistics.median(r[key] for r in rounds), 2)

    result = {
        "benchmark": "feed_read",
        "users": args.users, "timeline_rows": data["rows"],
        "timeline_rows_per_user": [data["rows_per_user_min"], data["rows_per_user_max"]],
        "celebrity_followers": args.users, "celebrity_posts": CELEBRITY_POSTS,
        "requests_per_round_each": args.requests, "rounds": args.rounds,
        "celebrity_posts_served": celeb_posts,
        "feed_p50_ms": med("feed_p50_ms"), "feed_p95_ms": med("feed_p95_ms"),
        "feed_p99_ms": med("feed_p99_ms"),
        "baseline_user_posts_p50_ms": med("baseline_p50_ms"),
        "baseline_user_posts_p95_ms": med("baseline_p95_ms"),
        "baseline_user_posts_p99_ms": med("baseline_p99_ms"),
        "target_feed_p99_ms": 30,
        "data_path_only": {
            "feed_selector_p50_ms": round(percentile(data_feed, 50), 2),
            "feed_selector_p99_ms": round(percentile(data_feed, 99), 2),
            "baseline_queryset_p50_ms": round(percentile(data_base, 50), 2),
            "baseline_queryset_p99_ms": round(percentile(data_base, 99), 2),
        },
    }
    result["p50_ratio_vs_baseline"] = round(result["feed_p50_ms"]
                                            / result["baseline_user_posts_p50_ms"], 2)
    result["p99_ratio_vs_baseline"] = round(result["feed_p99_ms"]
                                            / result["baseline_user_posts_p99_ms"], 2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
