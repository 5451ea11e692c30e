"""Analytics throughput: client events accepted through the ingestion API, and events
aggregated by the `analytics` consumer.

    .venv/bin/python bench/analytics_throughput.py [--ingest-events 20000] [--batch 100]
                                                   [--aggregate-events 10000]

1. Ingestion, in process (Django's test client through the whole middleware and DRF stack,
   real PostgreSQL): accepted client events/s for batches of `--batch` mixed items, against
   the baseline of writing the same events with `outbox.services.publish_bulk` directly (no
   HTTP, no validation, no dedupe receipt), alternated in the same run. The ratio is what the
   API's validation, dedupe and request handling cost on top of the outbox write.
2. Aggregation: `--aggregate-events` mixed client and post events are produced to Kafka as the
   relay encodes them, then consumed by the real `analytics` consumer (`ConsumerWorker`,
   in process, one thread); events/s from its first record to its last, against the same
   runtime with a no-op handler over the same number of records (its floor: poll, decode,
   inbox row, commit), in the same run.

Runs on its own database (`showoff_bench_analytics`, created and migrated if missing) and
its own topic prefix; prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import random
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


def _produce_mixed(n: int) -> None:
    from outbox.services import Event
    from relay import testing as kt

    rng = random.Random(2)
    now = datetime.now(UTC)
    events = []
    for i in range(n):
        at = _iso(now - timedelta(seconds=rng.randint(0, 3 * 86400)))
        if i % 3 == 2:
            post = rng.randint(1, 500)
            kind = rng.choice(["post.liked", "post.viewed", "post.commented"])
            extra = {"post.liked": {"like_count": 1}, "post.viewed": {"view_count": 1},
                     "post.commented": {"comment_id": 1, "text": "c", "comment_count": 1}}[kind]
            events.append(Event(kind, {"post_id": post, "author_id": 1,
                                       "actor_id": rng.randint(1, 5000), "occurred_at": at,
                                       **extra}, event_id=uuid.uuid4()))
            continue
        item = client_item(rng, i, now)
        platform, version = PROFILES[i % 4]
        events.append(Event(f"analytics.{item['type']}", {
            "device_id": f"d{rng.randint(1, 3000)}", "user_id": rng.choice([None,
                                                                            rng.randint(1, 5000)]),
            "client_event_id": item["id"], "session_id": None, "platform": platform,
            "app_version": version, "occurred_at": item["occurred_at"],
            "received_at": _iso(now), **item["properties"]}, event_id=uuid.uuid4()))
    kt.produce_events(events, per_transaction=500)


def _probes(n: int) -> None:
    from outbox.services import Event
    from relay import testing as kt

    kt.produce_events([Event("pipeline.probe", {"probe_id": "bench", "key": f"k{i % 3000}",
                                                "seq": i}, event_id=uuid.uuid4())
                       for i in range(n)], per_transaction=500)


def _consume(name: str, topics: list[str], n: int) -> float:
    """Events/s of consumer `name` from its first handled record to its n-th."""
    from relay.consumer import ConsumerWorker

    worker = ConsumerWorker(name, topics, group_id=f"bench-{name}-{uuid.uuid4().hex[:6]}",
                            from_beginning=True, poll_timeout=0.2)
    worker.start()
    try:
        while worker.handled == 0:
            worker.step()
        first, t0 = worker.handled, time.perf_counter()
        while worker.handled < n:
            worker.step()
        return (worker.handled - first) / (time.perf_counter() - t0)
    finally:
        worker.close()


def bench_aggregate(n: int) -> dict:
    from django.db import connection

    from relay import registry
    from relay import testing as kt
    from relay.kafka import topic_name

    names = []
    for t in TOPICS:
        names += [kt.create_topic(topic_name(t), 3), kt.create_topic(topic_name(f"{t}.dlq"), 1)]
    try:
        _produce_mixed(n)
        analytics_rate = _consume("analytics", TOPICS, n)
        with connection.cursor() as cur:
            cur.execute("SELECT count(*) FROM relay_inbox WHERE consumer = 'analytics'")
            applied = cur.fetchone()[0]

        def noop(event):
            return None

        registry.register("bench-noop", "pipeline.probe", noop)
        _probes(n)
        noop_rate = _consume("bench-noop", ["analytics-events"], n)
        return {
            "events": n,
            "applied_once": applied == n,
            "analytics_consumer_events_per_s": round(analytics_rate, 1),
            "baseline_noop_handler_events_per_s": round(noop_rate, 1),
            "ratio_analytics_to_noop": round(analytics_rate / noop_rate, 3),
        }
    finally:
        kt.delete_topics(names)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ingest-events", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--aggregate-events", type=int, default=10_000)
    args = parser.parse_args()
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
        "ingestion": bench_ingest(args.ingest_events, args.batch),
        "aggregation": bench_aggregate(args.aggregate_events),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
