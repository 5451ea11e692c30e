"""A known synthetic stream, end to end, checked aggregate by aggregate.

Client events go through the ingestion API (with invalid items, repeated ids in a batch and
retried batches), domain events through the outbox; both reach Kafka as the relay encodes them,
the outbox is delivered twice (every first-phase record arrives again), events arrive out of
order and days late, and `manage.py consume ... --consumer analytics` is killed -9 mid-stream and
restarted. Every aggregate is then compared with values computed here, from the list of events
this test generated, by rules written out below (not by calling analytics.metrics).
"""

from __future__ import annotations

import random
import re
import time
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from analytics import services
from analytics.models import DailyMetric, DailyPerf, HourlyMetric, PostStats
from outbox.models import OutboxEvent
from outbox.services import Event, publish_bulk
from posts.models import Post
from relay import testing as kt
from relay.models import InboxEntry

from .support import TOPICS, client_for, create_topics, make_user, percentile

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

DEVICE_PROFILES = [("ios", "2.0"), ("ios", "2.1"), ("android", "2.1"), ("web", "1.0")]


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _day(moment: datetime):
    return moment.astimezone(UTC).date()


def _hour(moment: datetime):
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


class Stream:
    """Generates the events and keeps the truth: every distinct accepted event once."""

    def __init__(self, seed: int, users, posts):
        self.rng = random.Random(seed)
        self.now = timezone.now().replace(microsecond=0)
        self.users = users
        self.posts = posts
        self.devices = [(f"dev-u{u.pk}", u, *DEVICE_PROFILES[i % 4])
                        for i, u in enumerate(users)]
        self.devices += [(f"anon-{k}", None, *DEVICE_PROFILES[k % 4]) for k in range(3)]
        self.truth: dict[uuid.UUID, dict] = {}
        self.sent_batches: list[tuple] = []
        self._n = 0

    def when(self, oldest_days: float, newest_days: float = 0) -> datetime:
        return self.now - timedelta(seconds=self.rng.randint(int(newest_days * 86400) + 60,
                                                             int(oldest_days * 86400)))

    # --- client events through the API ---------------------------------------------------

    def client_item(self, oldest_days: float, newest_days: float = 0) -> dict:
        self._n += 1
        kind = self.rng.choice(["app_start", "api_latency", "screen_view", "session_start",
                                "session_end", "post_impression", "watch_time"])
        props = {
            "app_start": lambda: {"duration_ms": self.rng.randint(200, 5000)},
            "api_latency": lambda: {"duration_ms": self.rng.randint(20, 2000),
                                    "endpoint": "/api/posts/"},
            "screen_view": lambda: {"screen": self.rng.choice(["feed", "profile"])},
            "session_start": lambda: {},
            "session_end": lambda: {"duration_ms": self.rng.randint(1000, 600_000)},
            "post_impression": lambda: {"post_id": self.rng.choice(self.posts).pk},
            "watch_time": lambda: {"post_id": self.rng.choice(self.posts).pk,
                                   "watched_ms": self.rng.randint(0, 60_000)},
        }[kind]()
        return {"id": f"c{self._n}", "type": kind,
                "occurred_at": _iso(self.when(oldest_days, newest_days)), "properties": props}

    def send_batch(self, device, items: list[dict], *, invalid: int = 0,
                   repeat: int = 0) -> dict:
        device_id, user, platform, version = device
        batch = list(items)
        for _ in range(invalid):
            bad = self.client_item(1)
            bad["properties"] = {"duration_ms": -1}
            bad["type"] = "app_start"
            batch.insert(self.rng.randrange(len(batch) + 1), bad)
        for _ in range(repeat):
            batch.append(dict(self.rng.choice(items)))
        body = {"device_id": device_id, "platform": platform, "app_version": version,
                "events": batch}
        response = client_for(user).post("/api/analytics/events/", body, format="json")
        assert response.status_code == 200, response.content
        result = response.json()
        self.sent_batches.append((device, body))
        for item, r in zip(batch, result["results"], strict=True):
            if r["status"] != "accepted":
                continue
            event_id = uuid.UUID(r["event_id"])
            assert event_id not in self.truth
            self.truth[event_id] = {
                "type": f"analytics.{item['type']}", "time": datetime.fromisoformat(
                    item["occurred_at"].replace("Z", "+00:00")),
                "user": user.pk if user else None, "device": device_id,
                "platform": platform, "version": version, **item["properties"]}
        return result

    def retry(self, index: int) -> dict:
        (device_id, user, *_), body = self.sent_batches[index]
        response = client_for(user).post("/api/analytics/events/", body, format="json")
        return response.json()

    # --- domain events through the outbox --------------------------------------------------

    def domain_events(self, n: int, oldest_days: float, newest_days: float = 0) -> None:
        events, times = [], {}
        for _ in range(n):
            user = self.rng.choice(self.users).pk
            other = self.rng.choice(self.users).pk
            post = self.rng.choice(self.posts)
            at = self.when(oldest_days, newest_days)
            kind = self.rng.choice(["registered", "logged_in", "created", "liked", "unliked",
                                    "commented", "viewed", "viewed_anon", "purchased", "tip",
                                    "transfer", "withdraw_req", "withdraw_done",
                                    "withdraw_rej", "rewarded", "video"])
            p = {"post_id": post.pk, "author_id": post.author_id, "actor_id": user,
                 "occurred_at": _iso(at)}
            amount = self.rng.randint(1, 500)
            ev = {
                "registered": lambda: Event("user.registered", {
                    "user_id": user, "username": "x", "email": None, "display_name": "",
                    "registered_at": _iso(at)}),
                "logged_in": lambda: Event("user.logged_in", {
                    "user_id": user, "ip": None, "user_agent": "t", "logged_in_at": _iso(at)}),
                "created": lambda: Event("post.created", {**p, "text": "t", "video_id": None}),
                "liked": lambda: Event("post.liked", {**p, "like_count": 1}),
                "unliked": lambda: Event("post.unliked", {**p, "like_count": 0}),
                "commented": lambda: Event("post.commented", {**p, "comment_id": 1, "text": "c",
                                                              "comment_count": 1}),
                "viewed": lambda: Event("post.viewed", {**p, "view_count": 1}),
                "viewed_anon": lambda: Event("post.viewed", {**p, "actor_id": None,
                                                             "view_count": 1}),
                "purchased": lambda: Event("coins.purchased", {
                    "user_id": user, "order_id": str(uuid.uuid4()), "package_id": None,
                    "coins": amount, "price_minor": amount * 10,
                    "currency": self.rng.choice(["USD", "EUR"]), "provider": "test",
                    "transaction_id": 1}),
                "tip": lambda: Event("coins.transferred", {
                    "transfer_id": 1, "sender_id": user, "recipient_id": post.author_id,
                    "amount": amount, "post_id": post.pk, "kind": "tip", "note": "",
                    "transaction_id": 1}),
                "transfer": lambda: Event("coins.transferred", {
                    "transfer_id": 1, "sender_id": user, "recipient_id": other,
                    "amount": amount, "post_id": None, "kind": "transfer", "note": "",
                    "transaction_id": 1}),
                "withdraw_req": lambda: Event("coins.withdrawal_requested", {
                    "withdrawal_id": 1, "user_id": user, "amount": amount, "fee": 0,
                    "transaction_id": 1}),
                "withdraw_done": lambda: Event("coins.withdrawal_completed", {
                    "withdrawal_id": 1, "user_id": user, "amount": amount, "fee": 0,
                    "payout_reference": "r", "reviewed_by": other, "transaction_id": 1}),
                "withdraw_rej": lambda: Event("coins.withdrawal_rejected", {
                    "withdrawal_id": 1, "user_id": user, "amount": amount, "reason": "r",
                    "reviewed_by": other, "transaction_id": 1}),
                "rewarded": lambda: Event("coins.rewarded", {
                    "grant_id": 1, "user_id": user, "rule": "r", "period_key": "p",
                    "amount": amount, "transaction_id": 1}),
                "video": lambda: Event("video.uploaded", {
                    "video_id": 1, "owner_id": user, "size_bytes": 10, "duration_seconds": 1,
                    "width": 2, "height": 2, "container": "mp4", "video_codec": "h264",
                    "has_audio": False}),
            }[kind]()
            ev.event_id = uuid.uuid4()
            events.append(ev)
            times[ev.event_id] = at
        with transaction.atomic():
            publish_bulk(events)
        written = {r.event_id: r for r in OutboxEvent.objects.filter(
            event_id__in=[e.event_id for e in events])}
        for ev in events:
            # Coins and video events carry no time of their own: their time is when they were
            # written (the CloudEvents time the outbox gave them).
            ce_time = datetime.fromisoformat(
                written[ev.event_id].headers["ce_time"].replace("Z", "+00:00"))
            at = ce_time if ev.type.split(".")[0] in ("coins", "video") else times[ev.event_id]
            self.truth[ev.event_id] = {"type": ev.type, "time": at, **ev.data}


# --- the expected aggregates, from the truth ---------------------------------------------------

ACTOR_FIELD = {"user.registered": "user_id", "user.logged_in": "user_id",
               "coins.purchased": "user_id", "coins.transferred": "sender_id",
               "coins.withdrawal_requested": "user_id", "video.uploaded": "owner_id"}


def actor(e: dict) -> int | None:
    if e["type"].startswith("analytics."):
        return e["user"]
    if e["type"].startswith("post."):
        return e["actor_id"]
    return e.get(ACTOR_FIELD.get(e["type"], "-"))


def sums_of(e: dict) -> list[tuple[str, str, int]]:
    t = e["type"]
    simple = {"user.registered": "signups", "user.logged_in": "logins", "post.created": "posts",
              "post.liked": "likes", "post.unliked": "unlikes", "post.commented": "comments",
              "post.viewed": "views", "coins.rewarded": "rewards",
              "coins.withdrawal_requested": "withdrawals_requested",
              "coins.withdrawal_completed": "withdrawals_completed",
              "coins.withdrawal_rejected": "withdrawals_rejected",
              "video.uploaded": "videos_uploaded", "analytics.app_start": "app_starts",
              "analytics.api_latency": "api_calls", "analytics.screen_view": "screen_views",
              "analytics.session_start": "sessions", "analytics.session_end": "session_ends",
              "analytics.post_impression": "impressions", "analytics.watch_time": "watches"}
    out = [(simple[t], "", 1)] if t in simple else []
    if t == "coins.purchased":
        out += [("purchases", "", 1), ("coins_purchased", "", e["coins"]),
                ("revenue_minor", e["currency"], e["price_minor"])]
    elif t == "coins.transferred" and e["kind"] == "tip":
        out += [("tips", "", 1), ("tip_coins", "", e["amount"])]
    elif t == "coins.transferred":
        out += [("transfers", "", 1), ("transfer_coins", "", e["amount"])]
    elif t == "coins.rewarded":
        out.append(("reward_coins", "", e["amount"]))
    elif t == "coins.withdrawal_requested":
        out.append(("withdrawal_coins_requested", "", e["amount"]))
    elif t == "coins.withdrawal_completed":
        out.append(("withdrawal_coins_completed", "", e["amount"]))
    elif t == "analytics.session_end":
        out.append(("session_time_ms", "", e["duration_ms"]))
    elif t == "analytics.watch_time":
        out.append(("watch_time_ms", "", e["watched_ms"]))
    return out


def expected_daily(truth: dict) -> dict:
    daily: dict = Counter()
    for e in truth.values():
        for metric, dim, n in sums_of(e):
            daily[(_day(e["time"]), metric, dim)] += n
    return daily


def expected_active(truth: dict):
    days, hours = defaultdict(set), defaultdict(set)
    for e in truth.values():
        user = actor(e)
        if user:
            days[_day(e["time"])].add(user)
            hours[_hour(e["time"])].add(user)
    return days, hours


def expected_posts(truth: dict) -> dict:
    posts: dict = defaultdict(lambda: Counter())
    viewers = defaultdict(set)
    for e in truth.values():
        t, pid = e["type"], e.get("post_id")
        if pid is None:
            continue
        s = posts[pid]
        if t in ("post.liked", "post.unliked", "post.commented", "post.viewed"):
            s[{"post.liked": "likes", "post.unliked": "unlikes", "post.commented": "comments",
               "post.viewed": "views"}[t]] += 1
            if t == "post.viewed" and e["actor_id"]:
                viewers[pid].add(f"u:{e['actor_id']}")
        elif t == "coins.transferred" and e["kind"] == "tip":
            s["tips"] += 1
            s["tip_coins"] += e["amount"]
        elif t in ("analytics.post_impression", "analytics.watch_time"):
            viewers[pid].add(f"u:{e['user']}" if e["user"] else f"d:{e['device']}")
            if t == "analytics.post_impression":
                s["impressions"] += 1
            else:
                s["watches"] += 1
                s["watch_time_ms"] += e["watched_ms"]
    for pid, keys in viewers.items():
        posts[pid]["unique_viewers"] = len(keys)
    return posts


def expected_perf(truth: dict) -> dict:
    samples = defaultdict(list)
    for e in truth.values():
        if e["type"] in ("analytics.app_start", "analytics.api_latency"):
            metric = e["type"].removeprefix("analytics.")
            for platform in (e["platform"], "*"):
                for version in (e["version"], "*"):
                    samples[(_day(e["time"]), metric, platform, version)].append(
                        e["duration_ms"])
    return {k: (len(v), percentile(v, 0.5), percentile(v, 0.95)) for k, v in samples.items()}


# --- the run -------------------------------------------------------------------------------------


def _consumer(tmp_path) -> kt.ManageProcess:
    return kt.ManageProcess(
        ["consume", *TOPICS, "--consumer", "analytics", "--batch-size", "20",
         "--poll-timeout", "0.2", "--instance-id", "analytics-stream-test"],
        log_dir=tmp_path, CONSUMER_SUMMARY_INTERVAL="0.2", CONSUMER_SESSION_TIMEOUT_MS="6000")


def _inbox() -> int:
    return InboxEntry.objects.filter(consumer="analytics").count()


def _wait(condition, what: str, proc: kt.ManageProcess, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.proc.poll() is not None:
            raise AssertionError(f"consumer exited ({proc.proc.returncode}):\n{proc.output()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached in {timeout}s; inbox {_inbox()}:\n"
                                 f"{proc.output()[-3000:]}")
        time.sleep(0.05)


def _duplicates(proc: kt.ManageProcess) -> int:
    found = re.findall(r"duplicates (\d+)", proc.output())
    return int(found[-1]) if found else 0


def test_a_synthetic_stream_with_duplicates_late_events_and_a_kill_gives_exact_aggregates(
        kafka_topic, settings, tmp_path):
    # given: topics, users, posts, and no ingestion throttle in the way
    settings.ANALYTICS_INGEST_RATE = "100000/min"
    create_topics(kafka_topic)
    users = [make_user() for _ in range(6)]
    posts = [Post.objects.create(author=users[i % 2], text=f"p{i}") for i in range(5)]
    stream = Stream(20240611, users, posts)

    # phase 1: client batches (an invalid item and a repeated id in each), domain events
    for device in stream.devices:
        for _ in range(2):
            result = stream.send_batch(device, [stream.client_item(4) for _ in range(25)],
                                       invalid=1, repeat=1)
            assert (result["accepted"], result["duplicates"], result["rejected"]) == (25, 1, 1)
    stream.domain_events(300, 4)
    phase1 = len(stream.truth)
    assert kt.deliver_outbox() == phase1

    # when: the consumer is killed -9 in the middle of phase 1, and restarted
    first = _consumer(tmp_path)
    _wait(lambda: _inbox() >= phase1 // 3, "a third of phase 1", first)
    first.kill9()
    assert _inbox() < phase1
    second = _consumer(tmp_path)
    _wait(lambda: _inbox() == phase1, "phase 1", second)
    services.rollup_run()

    # phase 2: retried batches (all duplicates), late events (5-6.5 days old, older than
    # anything in phase 1 and than the first rollup), and every phase-1 record again
    for index in (0, 5, 11):
        retried = stream.retry(index)
        assert retried["accepted"] == 0 and retried["duplicates"] == 26
    for device in stream.devices[:5]:
        stream.send_batch(device, [stream.client_item(6.5, 5) for _ in range(20)])
    stream.domain_events(150, 6.5, 5)
    assert kt.deliver_outbox() == len(stream.truth)  # phase 1 again, plus phase 2
    _wait(lambda: _inbox() == len(stream.truth), "phase 2", second)
    _wait(lambda: _duplicates(second) >= phase1, "the redelivered phase 1", second)
    assert second.terminate() == 0, second.output()
    services.rollup_run()
    rolled = sorted(DailyMetric.objects.values_list("day", "metric", "dimension", "value"))
    services.rollup_run()  # safe to run twice

    # then: the inbox holds each event once, and every aggregate matches the truth
    truth = stream.truth
    assert _inbox() == len(truth) == InboxEntry.objects.filter(
        consumer="analytics").values("event_id").distinct().count()
    assert sorted(DailyMetric.objects.values_list("day", "metric", "dimension", "value")) \
        == rolled

    want = expected_daily(truth)
    got = {(d, m, dim): v for d, m, dim, v in DailyMetric.objects.values_list(
        "day", "metric", "dimension", "value") if m not in ("dau", "wau", "mau")}
    assert {k: v for k, v in got.items() if v} == dict(want)

    days, hours = expected_active(truth)
    today = _day(stream.now)
    for offset in range(8):
        day = today - timedelta(days=offset)
        window = lambda n: set().union(*[days.get(day - timedelta(days=i), set())  # noqa: E731
                                         for i in range(n)])
        got_day = {m: DailyMetric.objects.filter(day=day, metric=m).values_list(
            "value", flat=True).first() for m in ("dau", "wau", "mau")}
        assert got_day == {"dau": len(days.get(day, ())), "wau": len(window(7)),
                           "mau": len(window(30))}, day
    got_hours = dict(HourlyMetric.objects.filter(metric="active_users").values_list(
        "hour", "value"))
    assert got_hours == {h: len(u) for h, u in hours.items()}

    want_posts = expected_posts(truth)
    columns = ["views", "impressions", "unique_viewers", "likes", "unlikes", "comments",
               "tips", "tip_coins", "watch_time_ms", "watches"]
    got_posts = {s.post_id: {c: getattr(s, c) for c in columns}
                 for s in PostStats.objects.all()}
    assert got_posts == {pid: {c: s[c] for c in columns} for pid, s in want_posts.items()}

    want_perf = expected_perf(truth)
    got_perf = {(p.day, p.metric, p.platform, p.app_version): (p.samples, p.p50_ms, p.p95_ms)
                for p in DailyPerf.objects.all()}
    assert set(got_perf) == set(want_perf)
    for key, (n, p50, p95) in want_perf.items():
        assert got_perf[key][0] == n, key
        assert got_perf[key][1] == pytest.approx(p50, abs=1e-9), key
        assert got_perf[key][2] == pytest.approx(p95, abs=1e-9), key

    # and the APIs serve the same numbers: the owner's post stats, a staff metric series
    post = posts[0]
    s = want_posts[post.pk]
    body = client_for(post.author).get(f"/api/analytics/posts/{post.pk}/stats/").json()
    assert body["views"] == s["views"] and body["unique_viewers"] == s["unique_viewers"]
    assert body["likes"] == s["likes"] - s["unlikes"]
    assert body["watch_time_ms"] == s["watch_time_ms"] and body["tips"] == s["tips"]
    assert body["engagement_rate"] == (round((s["likes"] - s["unlikes"] + s["comments"]
                                              + s["tips"]) / s["views"], 4)
                                       if s["views"] else None)
    staff = make_user(is_staff=True)
    start = today - timedelta(days=7)
    series = client_for(staff).get("/api/analytics/metrics/dau/", {
        "period": "day", "start": start.isoformat(), "end": today.isoformat()}).json()
    assert [p["value"] for p in series["series"][0]["points"]] == [
        len(days.get(start + timedelta(days=i), ())) for i in range(8)]
    late_day = _day(stream.now - timedelta(days=6))
    signups = client_for(staff).get("/api/analytics/metrics/signups/", {
        "period": "day", "start": late_day.isoformat(), "end": late_day.isoformat()}).json()
    assert signups["series"][0]["points"][0]["value"] == want[(late_day, "signups", "")]
