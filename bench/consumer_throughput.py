"""Consumer throughput: exactly-once (inbox) against plain at-least-once, same handler, same run.

    .venv/bin/python bench/consumer_throughput.py [--events 10000] [--batch-size 100] [--rounds 2]

`--events` probe events are produced once into `analytics-events` (3 partitions, Kafka
transactions of 500, exactly as the relay encodes them). Each round then reads all of them twice,
each time in a fresh consumer group:

- exactly_once: the real runtime, `relay.consumer.ConsumerWorker` (decode and schema validation,
  one DB transaction per record with the inbox row and the handler's effect, offsets stored
  after the DB commit and committed once per batch);
- at_least_once: the baseline, the same handler in the same per-record DB transaction, the same
  decode and validation, the same consumer configuration (read_committed, manual commits once per
  batch), without the inbox row (a redelivery would apply the effect again).

The handler inserts one row. Events/s is measured from the first handler call to the last (group
join excluded). Target: exactly_once ≥ 0.5 × at_least_once. Runs on its own database
(`showoff_bench_consumer`, created and migrated if missing); prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid

from _setup import setup_django

EFFECTS = "bench_consumer_effect"


class Clock:
    def __init__(self):
        self.first: float | None = None
        self.last = 0.0
        self.count = 0

    def tick(self) -> None:
        now = time.perf_counter()
        if self.first is None:
            self.first = now
        self.last = now
        self.count += 1

    def rate(self) -> float:
        return (self.count - 1) / (self.last - self.first) if self.count > 1 else 0.0


def make_handler(clock: Clock):
    from django.db import connection

    def handler(event) -> None:
        with connection.cursor() as cur:
            cur.execute(f"INSERT INTO {EFFECTS} (event_id, seq) VALUES (%s, %s)",  # noqa: S608
                        [event.id, event.data["seq"]])
        clock.tick()

    return handler


def exactly_once(n: int, batch_size: int) -> float:
    from relay import registry
    from relay.consumer import ConsumerWorker

    name = f"bench-eo-{uuid.uuid4().hex[:6]}"
    clock = Clock()
    fn = make_handler(clock)
    registry.register(name, "pipeline.probe", fn)
    worker = ConsumerWorker(name, ["analytics-events"], batch_size=batch_size, poll_timeout=0.5)
    try:
        worker.start()
        while worker.handled < n:
            worker.step()
    finally:
        worker.close()
        registry.unregister(name, "pipeline.probe", fn)
    assert clock.count == n, clock.count
    return clock.rate()


def at_least_once(n: int, batch_size: int) -> float:
    from confluent_kafka import TopicPartition
    from django.db import transaction

    from relay.cloudevents import decode
    from relay.kafka import make_consumer, topic_name

    clock = Clock()
    handler = make_handler(clock)
    topic = topic_name("analytics-events")
    consumer = make_consumer("bench-alo", f"bench-alo-{uuid.uuid4().hex[:6]}")
    consumer.subscribe([topic])
    handled = 0
    try:
        while handled < n:
            msgs = consumer.consume(batch_size, 0.5)
            for msg in msgs:
                if msg.error():
                    continue
                event = decode("analytics-events", msg.key(), msg.value(), msg.headers(),
                               msg.partition(), msg.offset())
                with transaction.atomic():
                    handler(event)
                consumer.store_offsets(offsets=[TopicPartition(msg.topic(), msg.partition(),
                                                               msg.offset() + 1)])
                handled += 1
            if msgs:
                consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    assert clock.count == n, clock.count
    return clock.rate()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=10000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    prefix = setup_django(db="showoff_bench_consumer")
    from django.db import connection

    from outbox.services import Event
    from relay.kafka import topic_name
    from relay.testing import create_topic, delete_topics, produce_events

    names = [create_topic(topic_name("analytics-events"), 3),
             create_topic(topic_name("analytics-events.dlq"), 3)]
    with connection.cursor() as cur:
        cur.execute(f"CREATE TABLE IF NOT EXISTS {EFFECTS} (id bigserial PRIMARY KEY, "
                    "event_id uuid NOT NULL, seq integer NOT NULL)")
        cur.execute(f"TRUNCATE {EFFECTS}")
        cur.execute("DELETE FROM relay_inbox WHERE consumer LIKE %s", ["bench-eo-%"])
    try:
        produce_events([Event("pipeline.probe", {"probe_id": "bench", "key": f"k{i % 64}",
                                                 "seq": i, "padding": "x" * 200})
                        for i in range(args.events)], per_transaction=500)
        rounds = []
        for _ in range(args.rounds):
            eo = exactly_once(args.events, args.batch_size)
            alo = at_least_once(args.events, args.batch_size)
            rounds.append({"exactly_once_events_per_s": round(eo),
                           "at_least_once_events_per_s": round(alo),
                           "ratio": round(eo / alo, 3)})
        with connection.cursor() as cur:
            cur.execute(f"SELECT count(*), count(DISTINCT event_id) FROM {EFFECTS}")  # noqa: S608
            rows, distinct = cur.fetchone()
        eo_rate = statistics.median(r["exactly_once_events_per_s"] for r in rounds)
        alo_rate = statistics.median(r["at_least_once_events_per_s"] for r in rounds)
        print(json.dumps({
            "benchmark": "consumer_throughput",
            "events": args.events,
            "batch_size": args.batch_size,
            "rounds": rounds,
            "exactly_once_events_per_s": round(eo_rate),
            "at_least_once_events_per_s": round(alo_rate),
            "exactly_once_vs_at_least_once_ratio": round(eo_rate / alo_rate, 3),
            "target_ratio": 0.5,
            "effect_rows_check": {"rows": rows, "distinct_events": distinct,
                                  "expected_rows": 2 * args.rounds * args.events},
        }, indent=2))
    finally:
        with connection.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {EFFECTS}")
            cur.execute("DELETE FROM relay_inbox WHERE consumer LIKE %s", ["bench-eo-%"])
        delete_topics(names)
        print(f"(topic prefix {prefix} deleted)", file=sys.stderr)


if __name__ == "__main__":
    main()
