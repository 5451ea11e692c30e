"""Analytics throughput: client events accepted through the ingestion API, and events
aggregated by the `analytics` consumer.

    .venv/bin/python bench/analytics_throughput.py [--ingest-events 20000] [--batch 100]
                                                   [--aggregate-events 20000] [--rounds 3]

1. Ingestion, in process (Django's test client through the whole middleware and DRF stack,
   real PostgreSQL): accepted client events/s for batches of `--batch` mixed items, against
   the baseline of writing the same events with `outbox.services.publish_bulk` directly (no
   HTTP, no validation, no dedupe receipt), alternated in the same run. The ratio is what the
   API's validation, dedupe and request handling cost on top of the outbox write.
2. Aggregation: `--aggregate-events` mixed events (two thirds client events of every type, one
   third likes, views and comments) are produced to Kafka as the relay encodes them, then
   consumed by the real `analytics` consumer (`ConsumerWorker`, in process, one thread, its
   batch handler) and, as the baseline, by the same runtime with a batch handler that does
   nothing, registered for exactly the same types: both read the same records and apply (and
   write inbox rows for) every one of them, so the ratio is what aggregation costs on top of
   the runtime's floor (poll, decode and validate, inbox rows, commit). Interleaved rounds
   (the order alternates), every aggregate and inbox row reset before each run, medians.
   Reported per run: handled (records finished), applied (inbox rows), skipped. Asserted: each
   run handled and applied every record once and skipped none, and the aggregates equal the
   totals the generator counted (hourly sums per metric, post totals, performance samples).

Runs on its own database (`showoff_bench_analytics`, created and migrated if missing) and
its own topic prefix; prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta

from _setup import setup_django

TOPICS = ["analytics-events", "post-events", "user-events", "transaction-events",
          "video-processing"]
PROFILES = [("ios", "2.0"), ("ios", "2.1"), ("android", "2.1"), ("web", "1.0")]


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def client_item(rng: random.Random, n: int, now: datetime) -> dict:
    kind = rng.choice(["app_start", "api_latency", "screen_view", "session_start",
                       "session_end", "post_impression", "watch_time"])
    props = {"app_start": {"duration_ms": rng.randint(200, 5000)},
             "api_latency": {"duration_ms": rng.randint(20, 2000), "endpoint": "/api/posts/"},
             "screen_view": {"screen": "feed"}, "session_start": {},
             "session_end": {"duration_ms": rng.randint(1000, 600_000)},
             "post_impression": {"post_id": rng.randint(1, 500)},
             "watch_time": {"post_id": rng.randint(1, 500),
                            "watched_ms": rng.randint(0, 60_000)}}[kind]
    at = now - timedelta(seconds=rng.randint(0, 3 * 86400))
    return {"id": f"c{n}", "type": kind, "occurred_at": _iso(at), "properties": props}


def bench_ingest(total: int, batch: int) -> dict:
    from django.db import transaction
    from django.test import Client

    from outbox.services import Event, publish_bulk

    rng = random.Random(1)
    now = datetime.now(UTC)
    batches = []
    for b in range(total // batch):
        platform, version = PROFILES[b % 4]
        batches.append({"device_id": f"bench-{uuid.uuid4().hex[:12]}", "platform": platform,
                        "app_version": version,
                        "events": [client_item(rng, b * batch + i, now) for i in range(batch)]})

    client = Client()
    api_time = direct_time = 0.0
    accepted = 0
    # Alternate blocks: API, then the outbox write of the same number of fresh events.
    block = max(1, len(batches) // 10)
    for start in range(0, len(batches), block):
        t0 = time.perf_counter()
        for body in batches[start:start + block]:
            response = client.post("/api/analytics/events/", body,
                                   content_type="application/json")
            assert response.status_code == 200, response.content[:300]
            accepted += response.json()["accepted"]
        api_time += time.perf_counter() - t0
        # The baseline: the same items as catalogue events (publish_bulk validates them
        # against the schema too), fresh ids, written straight to the outbox.
        events = [[Event(f"analytics.{i['type']}", {
            "device_id": body["device_id"], "user_id": None, "client_event_id": i["id"],
            "session_id": None, "platform": body["platform"],
            "app_version": body["app_version"], "occurred_at": i["occurred_at"],
            "received_at": _iso(now), **i["properties"]}, event_id=uuid.uuid4())
            for i in body["events"]] for body in batches[start:start + block]]
        t0 = time.perf_counter()
        for chunk in events:
            with transaction.atomic():
                publish_bulk(chunk)
        direct_time += time.perf_counter() - t0
    direct = sum(len(c) for c in [b["events"] for b in batches])
    return {
        "events": accepted,
        "batch_size": batch,
        "api_events_per_s": round(accepted / api_time, 1),
        "api_batches_per_s": round(len(batches) / api_time, 1),
        "baseline_publish_bulk_events_per_s": round(direct / direct_time, 1),
        "ratio_api_to_baseline": round((accepted / api_time) / (direct / direct_time), 3),
    }


# Post events of the mixed stream: type -> its PostStats column and hourly metric.
_POST_TYPES = {"post.liked": "likes", "post.viewed": "views", "post.commented": "comments"}


def _produce_mixed(n: int) -> dict[str, int]:
    """n mixed events (two thirds client events of every type, one third likes, views and
    comments) as the relay encodes them; returns the truth: what each hourly metric must sum
    to once every event is applied exactly once."""
    from collections import Counter

    from outbox.services import Event
    from relay import testing as kt

    rng = random.Random(2)
    now = datetime.now(UTC)
    events = []
    truth: Counter = Counter()
    for i in range(n):
        at = _iso(now - timedelta(seconds=rng.randint(0, 3 * 86400)))
        if i % 3 == 2:
            post = rng.randint(1, 500)
            kind = rng.choice(list(_POST_TYPES))
            extra = {"post.liked": {"like_count": 1}, "post.viewed": {"view_count": 1},
                     "post.commented": {"comment_id": 1, "text": "c", "comment_count": 1}}[kind]
            events.append(Event(kind, {"post_id": post, "author_id": 1,
                                       "actor_id": rng.randint(1, 5000), "occurred_at": at,
                                       **extra}, event_id=uuid.uuid4()))
            truth[_POST_TYPES[kind]] += 1
            continue
        item = client_item(rng, i, now)
        platform, version = PROFILES[i % 4]
        events.append(Event(f"analytics.{item['type']}", {
            "device_id": f"d{rng.randint(1, 3000)}", "user_id": rng.choice([None,
                                                                            rng.randint(1, 5000)]),
            "client_event_id": item["id"], "session_id": None, "platform": platform,
            "app_version": version, "occurred_at": item["occurred_at"],
            "received_at": _iso(now), **item["properties"]}, event_id=uuid.uuid4()))
        props = item["properties"]
        truth.update({
            "app_start": {"app_starts": 1}, "api_latency": {"api_calls": 1},
            "screen_view": {"screen_views": 1}, "session_start": {"sessions": 1},
            "session_end": {"session_ends": 1, "session_time_ms": props.get("duration_ms", 0)},
            "post_impression": {"impressions": 1},
            "watch_time": {"watches": 1, "watch_time_ms": props.get("watched_ms", 0)},
        }[item["type"]])
    kt.produce_events(events, per_transaction=500)
    return dict(truth)


NOOP = "bench-noop"


def _noop(events) -> None:
    return None


def _reset(names: list[str]) -> None:
    """Every analytics aggregate and these consumers' inbox rows: each round starts empty."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("TRUNCATE analytics_hourlymetric, analytics_poststats, "
                    "analytics_postviewer, analytics_perfsample, analytics_activeuserhour, "
                    "analytics_activeuserday")
        cur.execute("DELETE FROM relay_inbox WHERE consumer = ANY(%s)", [names])


def _consume(name: str, n: int) -> dict:
    """Consumer `name` over the mixed stream's topics in a fresh group, until it has handled
    n records: events/s from its first finished batch to its n-th record, and what it did."""
    from django.db import connection

    from relay import metrics
    from relay.consumer import ConsumerWorker

    skipped_before = metrics.consumer_skipped.total(consumer=name)
    worker = ConsumerWorker(name, TOPICS, group_id=f"bench-{name}-{uuid.uuid4().hex[:6]}",
                            from_beginning=True, poll_timeout=0.2)
    worker.start()
    try:
        while worker.handled == 0:
            worker.step()
        first, t0 = worker.handled, time.perf_counter()
        while worker.handled < n:
            worker.step()
        rate = (worker.handled - first) / (time.perf_counter() - t0)
    finally:
        worker.close()
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM relay_inbox WHERE consumer = %s", [name])
        applied = cur.fetchone()[0]
    return {"events_per_s": round(rate, 1), "handled": worker.handled, "applied": applied,
            "skipped": int(metrics.consumer_skipped.total(consumer=name) - skipped_before)}


def _aggregates() -> dict[str, int]:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT metric, sum(value) FROM analytics_hourlymetric GROUP BY metric")
        hourly = {m: int(v) for m, v in cur.fetchall()}
        cur.execute("SELECT sum(likes), sum(views), sum(comments), sum(impressions), "
                    "sum(watches), sum(watch_time_ms) FROM analytics_poststats")
        post = dict(zip(("likes", "views", "comments", "impressions", "watches",
                         "watch_time_ms"), (int(v or 0) for v in cur.fetchone()), strict=True))
        cur.execute("SELECT count(*) FROM analytics_perfsample")
        perf = cur.fetchone()[0]
    return {"hourly": hourly, "post": post, "perf_samples": perf}


def bench_aggregate(n: int, rounds: int) -> dict:
    from django.conf import settings

    from analytics.handlers import CONSUMER
    from analytics.metrics import CLIENT_EVENT_TYPES, DOMAIN_TYPES
    from relay import registry
    from relay import testing as kt
    from relay.kafka import topic_name

    names = []
    for t in TOPICS:
        names += [kt.create_topic(topic_name(t), 3), kt.create_topic(topic_name(f"{t}.dlq"), 1)]
    # The baseline: the same runtime over the same records with a batch handler that does
    # nothing, registered for exactly the types the analytics consumer handles (so both
    # apply, and write inbox rows for, the same records).
    for event_type in (*CLIENT_EVENT_TYPES, *DOMAIN_TYPES):
        registry.register(NOOP, event_type, _noop, batch=True)
    try:
        truth = _produce_mixed(n)
        modes = {CONSUMER: "analytics", NOOP: "noop_batch_handler"}
        results: dict[str, list[dict]] = {label: [] for label in modes.values()}
        for r in range(rounds):
            for name in (list(modes) if r % 2 == 0 else list(modes)[::-1]):
                _reset([CONSUMER, NOOP])
                result = _consume(name, n)
                # sanity: every record handled, applied once (inbox), none skipped
                assert result["handled"] == n, result
                assert result["applied"] == n and result["skipped"] == 0, result
                if name == CONSUMER:
                    got = _aggregates()
                    for metric, total in truth.items():
                        assert got["hourly"].get(metric, 0) == total, (metric, got, truth)
                    for column in ("likes", "views", "comments", "impressions", "watches",
                                   "watch_time_ms"):
                        assert got["post"][column] == truth.get(column, 0), (column, got)
                    assert got["perf_samples"] == truth.get("app_starts", 0) + truth.get(
                        "api_calls", 0), got
                results[modes[name]].append(result)
        median = {label: statistics.median(r["events_per_s"] for r in rs)
                  for label, rs in results.items()}
        return {
            "events": n,
            "batch_size": settings.CONSUMER_BATCH_SIZE,
            "rounds": results,
            "analytics_consumer_events_per_s": median["analytics"],
            "baseline_noop_batch_handler_events_per_s": median["noop_batch_handler"],
            "ratio_analytics_to_noop": round(median["analytics"] / median["noop_batch_handler"],
                                             3),
            "target_events_per_s": 5000,
            "target_met": median["analytics"] >= 5000,
            "sanity": {"every_record_applied_once": True,
                       "aggregates_match_the_stream": True, "truth": truth},
        }
    finally:
        for event_type in (*CLIENT_EVENT_TYPES, *DOMAIN_TYPES):
            registry.unregister(NOOP, event_type, _noop)
        kt.delete_topics(names)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ingest-events", type=int, default=20_000,
                        help="0 skips the ingestion part")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--aggregate-events", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, help="CONSUMER_BATCH_SIZE for this run")
    args = parser.parse_args()
    if args.batch_size:
        os.environ["CONSUMER_BATCH_SIZE"] = str(args.batch_size)
    os.environ.update({"DEBUG": "false", "ANALYTICS_INGEST_RATE": "1000000/min",
                       "API_THROTTLE_ANON": "1000000/min", "API_THROTTLE_USER": "1000000/min",
                       "ANALYTICS_MAX_BATCH_EVENTS": str(max(500, args.batch))})
    prefix = setup_django(db=os.environ.get("BENCH_ANALYTICS_DATABASE_NAME",
                                            "showoff_bench_analytics"))
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("TRUNCATE outbox_event, relay_inbox, analytics_ingestreceipt, "
                    "analytics_hourlymetric, analytics_poststats, analytics_postviewer, "
                    "analytics_perfsample, analytics_activeuserhour, analytics_activeuserday")
    result = {
        "benchmark": "analytics_throughput",
        "topic_prefix": prefix,
        "load_average_at_start": os.getloadavg()[0],
    }
    if args.ingest_events:
        result["ingestion"] = bench_ingest(args.ingest_events, args.batch)
    result["aggregation"] = bench_aggregate(args.aggregate_events, args.rounds)
    result["load_average_at_end"] = os.getloadavg()[0]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
