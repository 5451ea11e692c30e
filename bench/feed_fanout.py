"""Home-feed fan-out: one post of an author with 100,000 followers, end to end, while other
posts keep flowing.

    .venv/bin/python bench/feed_fanout.py [--followers 100000] [--rounds 2] [--rate 4]
                                         [--seconds 12] [--workers 1]

The production shape, as subprocesses: `run_relay`, the `feeds` consumer
(`consume post-events user-events --consumer feeds`) and `--workers` fan-out workers
(`run_fanout`). Posts are created through `posts.services.post_create` (the API's service: the
post row and its outbox event in one transaction); a watcher polls the timeline table every
20 ms and notes when each post is in every follower's feed (and its author's).

Each round runs a stream of other posts at `--rate` per second for `--seconds`, alternating
between authors with 100 followers (fanned out inside the consumer's transaction) and authors
with 2,000 followers (more than FEEDS_FANOUT_INLINE: the fan-out worker, one chunk each, the
path a big job could block). Rounds alternate:
- `with_big`: one post of the author with `--followers` followers is created 1 s into the
  stream: its commit → last follower's row is the headline figure (target: 10 s), and the other
  posts' latencies show whether it held them back;
- `without_big`: the same stream alone, the baseline for the other posts.
Baseline for the big fan-out itself, in the same run: the same rows written by one
`INSERT ... SELECT` in one transaction (the least work the database can do for it; what the
pipeline adds is relay, Kafka, consumer, job queue and chunking).

Runs on its own database (`showoff_bench_fanout`, users and follows created once); prints one
JSON object. Sanity checks (asserted): every follower has each post exactly once.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time

from _setup import percentile, setup_django

SMALL_FOLLOWERS = 100
MID_FOLLOWERS = 2000
STREAM_AUTHORS = 10  # of each kind


def ensure_graph(followers: int) -> dict:
    """Users and follows (created once, by SQL): `big` with `followers` followers, and
    STREAM_AUTHORS authors with SMALL_FOLLOWERS and with MID_FOLLOWERS followers."""
    from django.db import connection, transaction

    from accounts.models import User

    if User.objects.filter(username="bench-big").exists():
        big = User.objects.get(username="bench-big")
        if Follow_count(big.pk) != followers:
            raise SystemExit("the bench database was built with another --followers; drop "
                             "database showoff_bench_fanout and run again")
    else:
        with transaction.atomic(), connection.cursor() as cur:
            cur.execute("""
                INSERT INTO accounts_user (password, is_superuser, username, first_name,
                    last_name, is_staff, is_active, date_joined, display_name, bio, avatar,
                    avatar_version)
                SELECT '', false, 'bench-fan-' || i, '', '', false, true, now(), '', '', '', 0
                FROM generate_series(1, %s) AS i""", [followers])
            for name in (["bench-big"] + [f"bench-small-{i}" for i in range(STREAM_AUTHORS)]
                         + [f"bench-mid-{i}" for i in range(STREAM_AUTHORS)]):
                User.objects.create(username=name)
            fans = "SELECT id FROM accounts_user WHERE username LIKE 'bench-fan-%%'"
            cur.execute(f"""
                INSERT INTO social_follow (follower_id, followee_id, created_at)
                SELECT f.id, a.id, now() FROM ({fans}) f, accounts_user a
                WHERE a.username = 'bench-big'""")  # noqa: S608
            for kind, n in (("small", SMALL_FOLLOWERS), ("mid", MID_FOLLOWERS)):
                cur.execute(f"""
                    INSERT INTO social_follow (follower_id, followee_id, created_at)
                    SELECT f.id, a.id, now()
                    FROM accounts_user a CROSS JOIN LATERAL (
                        {fans} ORDER BY random() LIMIT %s) f
                    WHERE a.username LIKE %s""", [n, f"bench-{kind}-%"])  # noqa: S608
            cur.execute("""
                INSERT INTO social_socialcounts (user_id, followers, following)
                SELECT followee_id, count(*), 0 FROM social_follow GROUP BY followee_id
                ON CONFLICT (user_id) DO UPDATE SET followers = EXCLUDED.followers""")
            cur.execute("ANALYZE")
    users = dict(User.objects.filter(username__startswith="bench-").exclude(
        username__startswith="bench-fan-").values_list("username", "pk"))
    return users


def Follow_count(author_id: int) -> int:  # noqa: N802 - reads like the check it is
    from social.models import Follow

    return Follow.objects.filter(followee_id=author_id).count()


class Watcher(threading.Thread):
    """Notes when each tracked post has reached `expected` timeline rows."""

    def __init__(self):
        super().__init__(daemon=True)
        self.pending: dict[int, int] = {}
        self.done: dict[int, float] = {}
        self.lock = threading.Lock()
        self.stop = False

    def track(self, post_id: int, expected: int) -> None:
        with self.lock:
            self.pending[post_id] = expected

    def run(self) -> None:
        from django.db import connection

        try:
            while not self.stop:
                with self.lock:
                    pending = dict(self.pending)
                if pending:
                    with connection.cursor() as cur:
                        cur.execute("SELECT post_id, count(*) FROM feeds_timelineentry "
                                    "WHERE post_id = ANY(%s) GROUP BY post_id",
                                    [sorted(pending)])
                        counts = dict(cur.fetchall())
                    now = time.time()
                    with self.lock:
                        for post_id, expected in pending.items():
                            got = counts.get(post_id, 0)
                            assert got <= expected, (post_id, got, expected)
                            if got == expected:
                                self.done[post_id] = now
                                self.pending.pop(post_id, None)
                time.sleep(0.02)
        finally:
            connection.close()

    def wait_all(self, timeout: float) -> None:
        deadline = time.time() + timeout
        while self.pending and time.time() < deadline:
            time.sleep(0.05)
        if self.pending:
            raise SystemExit(f"posts never fully fanned out: {self.pending}")


def run_round(users: dict, watcher: Watcher, followers: int, *, with_big: bool, rate: float,
              seconds: float) -> dict:
    from django.db import connections

    from accounts.models import User
    from posts.services import post_create

    authors = {name: User.objects.get(pk=pk) for name, pk in users.items()}
    stream: list[tuple[int, float, str]] = []
    big: dict = {}

    def post(name: str, expected: int, kind: str) -> None:
        p = post_create(author=authors[name], text=f"bench {kind}")
        at = time.time()
        watcher.track(p.pk, expected + 1)  # and the author's own feed
        if kind == "big":
            big.update(post_id=p.pk, committed=at)
        else:
            stream.append((p.pk, at, kind))

    def big_poster() -> None:
        time.sleep(1.0)
        try:
            post("bench-big", followers, "big")
        finally:
            connections.close_all()

    t = threading.Thread(target=big_poster) if with_big else None
    if t:
        t.start()
    start = time.perf_counter()
    n = 0
    while time.perf_counter() - start < seconds:
        kind = "small" if n % 2 == 0 else "mid"
        post(f"bench-{kind}-{(n // 2) % STREAM_AUTHORS}",
             SMALL_FOLLOWERS if kind == "small" else MID_FOLLOWERS, kind)
        n += 1
        sleep = start + n / rate - time.perf_counter()
        if sleep > 0:
            time.sleep(sleep)
    if t:
        t.join()
    watcher.wait_all(300)
    out: dict = {}
    for kind in ("small", "mid"):
        lat = [(watcher.done[p] - at) * 1000 for p, at, k in stream if k == kind]
        out[f"{kind}_posts"] = len(lat)
        out[f"{kind}_p50_ms"] = round(percentile(lat, 50), 1)
        out[f"{kind}_p99_ms"] = round(percentile(lat, 99), 1)
        out[f"{kind}_max_ms"] = round(max(lat), 1)
    if big:
        out["big_commit_to_all_followers_s"] = round(watcher.done[big["post_id"]]
                                                     - big["committed"], 3)
        out["big_post_id"] = big["post_id"]
    return out


def raw_insert_seconds(author_id: int) -> float:
    """The baseline: the same 100,000 rows by one INSERT ... SELECT in one transaction (for a
    post id no post has; rolled back)."""
    from django.db import connection, transaction

    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("""
            INSERT INTO feeds_timelineentry (owner_id, post_id, author_id)
            SELECT follower_id, -1, %s FROM social_follow WHERE followee_id = %s""",
                    [author_id, author_id])
        rows = cur.rowcount
        elapsed = time.perf_counter() - started
        transaction.set_rollback(True)
    assert rows == Follow_count(author_id)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--followers", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=2, help="rounds of each kind")
    parser.add_argument("--rate", type=float, default=4.0)
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()

    prefix = setup_django(db="showoff_bench_fanout")
    import os

    from _setup import reset_outbox
    from django.conf import settings

    from relay.testing import ManageProcess, delete_topics
    from relay.topics import create_topics, desired_topics

    # The big author is fanned out, not merged at read time (that is what is measured).
    os.environ["FEEDS_CELEBRITY_FOLLOWERS"] = str(args.followers * 10)
    settings.FEEDS_CELEBRITY_FOLLOWERS = args.followers * 10
    users = ensure_graph(args.followers)
    specs = desired_topics()
    create_topics(specs)
    reset_outbox()
    env = {"DJANGO_SETTINGS_MODULE": "showoff.settings.base", "LOG_LEVEL": "INFO",
           "FEEDS_CELEBRITY_FOLLOWERS": str(args.followers * 10)}
    relay = ManageProcess(["run_relay"], **env)
    consumer = ManageProcess(["consume", "post-events", "user-events", "--consumer", "feeds",
                              "--poll-timeout", "0.2"], **env)
    workers = [ManageProcess(["run_fanout"], **env) for _ in range(args.workers)]
    watcher = Watcher()
    watcher.start()
    try:
        consumer.wait_for("assigned", 60)
        # Warm-up: one stream post through the whole path.
        run_round(users, watcher, args.followers, with_big=False, rate=2, seconds=1)
        rounds: dict[str, list[dict]] = {"with_big": [], "without_big": []}
        raw: list[float] = []
        for r in range(args.rounds):
            for kind in ("with_big", "without_big"):
                rounds[kind].append(run_round(users, watcher, args.followers,
                                              with_big=kind == "with_big", rate=args.rate,
                                              seconds=args.seconds))
                print(f"round {r} {kind}: {rounds[kind][-1]}", file=sys.stderr)
            raw.append(raw_insert_seconds(users["bench-big"]))
        # Sanity: each big post reached every follower exactly once (primary key), no more.
        from feeds.models import TimelineEntry

        for rnd in rounds["with_big"]:
            n = TimelineEntry.objects.filter(post_id=rnd["big_post_id"]).count()
            assert n == args.followers + 1, n

        def med(kind: str, key: str) -> float:
            return round(statistics.median(r[key] for r in rounds[kind]), 3)

        big_s = med("with_big", "big_commit_to_all_followers_s")
        raw_s = round(statistics.median(raw), 3)
        result = {
            "benchmark": "feed_fanout",
            "followers": args.followers, "rounds_each": args.rounds,
            "stream_rate_per_s": args.rate, "stream_seconds": args.seconds,
            "fanout_workers": args.workers, "chunk": settings.FEEDS_FANOUT_CHUNK,
            "inline_max_followers": settings.FEEDS_FANOUT_INLINE,
            "big_post_commit_to_every_feed_s_median": big_s,
            "big_post_each_round_s": [r["big_commit_to_all_followers_s"]
                                      for r in rounds["with_big"]],
            "baseline_one_insert_select_s_median": raw_s,
            "ratio_vs_one_insert_select": round(big_s / raw_s, 2),
            "target_s": 10,
            "other_posts_during_big_fanout": {
                k: med("with_big", k) for k in ("small_p50_ms", "small_p99_ms", "mid_p50_ms",
                                                "mid_p99_ms", "mid_max_ms")},
            "other_posts_without_big_fanout": {
                k: med("without_big", k) for k in ("small_p50_ms", "small_p99_ms",
                                                   "mid_p50_ms", "mid_p99_ms", "mid_max_ms")},
        }
        result["mid_p99_ratio_with_vs_without_big"] = round(
            result["other_posts_during_big_fanout"]["mid_p99_ms"]
            / result["other_posts_without_big_fanout"]["mid_p99_ms"], 2)
        print(json.dumps(result, indent=2))
    finally:
        watcher.stop = True
        for p in [*workers, consumer, relay]:
            if p.proc.poll() is None:
                p.terminate()
        reset_outbox()
        delete_topics([s.name for s in specs])
        print(f"(topic prefix {prefix} deleted)", file=sys.stderr)


if __name__ == "__main__":
    main()
