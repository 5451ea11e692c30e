"""Consumer throughput: the batch runtime against a batched at-least-once consumer and against
the per-record runtime it replaced, same handler, same records, same run.

    .venv/bin/python bench/consumer_throughput.py [--events 20000] [--batch-size 100]
                                                  [--rounds 3] [--poison-every 1000]

`--events` probe events are produced once into `analytics-events` (3 partitions, Kafka
transactions of 500, exactly as the relay encodes them). Each round reads all of them once per
mode, each time in a fresh consumer group, the modes in a rotating order (interleaved rounds):

- inbox: the real runtime, `relay.consumer.ConsumerWorker`, with a record handler that inserts
  one row (decode and schema validation, one DB transaction per polled batch: the batch's inbox
  rows in one statement, one INSERT per record, commit; offsets stored after the commit and
  committed once per batch);
- at_least_once: the baseline asked for, the same handler and batch size without the inbox:
  poll a batch, decode and validate each record, one transaction running the handler per
  record, commit, store the offsets, commit them (a redelivery would apply an effect again);
- per_record: the runtime before batches, kept here as a baseline (`PerRecordWorker`): the same
  worker, polling the same batches, but one DB transaction per record with its own inbox
  INSERT, as `relay/consumer.py` did until this change;
- inbox_poison: the inbox mode over a second copy of the stream in which one record per
  `--poison-every` can never succeed (its handler raises `PermanentError`): the batch holding
  it is rolled back and re-run in halves until the record is alone, then dead-lettered.

Events/s is measured from the first handler call to the last (group join excluded); each mode's
figure is the median over rounds. The script asserts what it prints: every mode applied every
event exactly once per round (effect rows counted per mode and round, distinct ids), the inbox
holds one row per applied event, and each poison record was dead-lettered once. Runs on its own
database (`showoff_bench_consumer`, created and migrated if missing); prints one JSON object.
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
TARGETS = {"inbox_vs_at_least_once": 0.8, "inbox_vs_per_record": 3.0,
           "poison_vs_clean": 0.7}


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


def make_handler(clock: Clock, mode: str):
    """The one-row handler: every mode runs exactly this per applied record."""
    from django.db import connection

    from relay.registry import PermanentError

    def handler(event) -> None:
        if event.data.get("fail") == "permanent":
            raise PermanentError(f"poison record {event.data['seq']}")
        with connection.cursor() as cur:
            cur.execute(f"INSERT INTO {EFFECTS} (mode, event_id, seq) VALUES (%s, %s, %s)",  # noqa: S608
                        [mode, event.id, event.data["seq"]])
        clock.tick()

    return handler


def per_record_worker_class():
    """The pre-batch runtime's transaction pattern on today's worker: one DB transaction and one
    inbox INSERT per record (the statement `relay/consumer.py` ran per record before batches)."""
    from django.db import connection, transaction

    from relay.consumer import DUPLICATE, PROCESSED, ConsumerWorker

    class PerRecordWorker(ConsumerWorker):
        def _transaction(self, records):
            if len(records) > 1:
                for r in records:
                    if r.outcome == "apply":
                        try:
                            self._transaction([r])
                        except Exception as exc:  # noqa: BLE001 - as the old loop did
                            self._failed([r], exc)
                return
            [r] = records
            event = r.event
            with transaction.atomic():
                with connection.cursor() as cur:
                    cur.execute(
                        'INSERT INTO relay_inbox (consumer, event_id, event_type, topic, '
                        'partition, "offset", processed_at) VALUES (%s, %s, %s, %s, %s, %s, '
                        'now()) ON CONFLICT (consumer, event_id) DO NOTHING RETURNING id',
                        [self.name, event.id, event.type, r.logical, r.tp[1], r.offset])
                    fresh = cur.fetchone() is not None
                if fresh:
                    for reg in r.regs:
                        reg.fn(event)
            r.outcome = PROCESSED if fresh else DUPLICATE

    return PerRecordWorker


def produce(n: int, topic: str, *, poison: set[int]) -> None:
    """n probe records on `topic` as the relay encodes them (Kafka transactions of 500);
    those whose seq is in `poison` can never be applied."""
    from datetime import UTC, datetime

    from outbox import catalogue
    from relay.cloudevents import encode
    from relay.kafka import make_producer

    et = catalogue.get("pipeline.probe")
    producer = make_producer("bench-producer", **{"transactional.id": f"bench-{uuid.uuid4()}"})
    producer.init_transactions(30)
    for start in range(0, n, 500):
        producer.begin_transaction()
        for i in range(start, min(n, start + 500)):
            data = {"probe_id": "bench", "key": f"k{i % 64}", "seq": i, "padding": "x" * 200,
                    **({"fail": "permanent"} if i in poison else {})}
            headers = catalogue.cloudevent_headers(et, event_id=uuid.uuid4(),
                                                   time=datetime.now(UTC), subject=data["key"],
                                                   traceparent=None)
            physical, k, v, h = encode(topic, data["key"], headers, data)
            while True:
                try:
                    producer.produce(physical, key=k, value=v, headers=h)
                    break
                except BufferError:
                    producer.poll(0.1)
        producer.commit_transaction(30)


def run_worker(mode: str, n: int, batch_size: int, topic: str, worker_class=None) -> dict:
    from relay import registry
    from relay.consumer import ConsumerWorker

    name = f"bench-{mode}-{uuid.uuid4().hex[:6]}"
    clock = Clock()
    fn = make_handler(clock, mode)
    registry.register(name, "pipeline.probe", fn)
    cls = worker_class or ConsumerWorker
    worker = cls(name, [topic], batch_size=batch_size, poll_timeout=0.5, from_beginning=True)
    try:
        worker.start()
        while worker.handled < n:
            worker.step()
    finally:
        worker.close()
        registry.unregister(name, "pipeline.probe", fn)
    return {"name": name, "rate": clock.rate(), "applied": clock.count,
            "handled": worker.handled}


def at_least_once(n: int, batch_size: int, topic: str) -> dict:
    from confluent_kafka import TopicPartition
    from django.conf import settings
    from django.db import transaction

    from relay.cloudevents import decode
    from relay.kafka import make_consumer, topic_name

    clock = Clock()
    handler = make_handler(clock, "at_least_once")
    physical = topic_name(topic)
    consumer = make_consumer("bench-alo", f"bench-alo-{uuid.uuid4().hex[:6]}",
                             **{"auto.offset.reset": "earliest"})
    consumer.subscribe([physical])
    handled = 0
    try:
        while handled < n:
            first = consumer.poll(0.5)
            if first is None:
                continue
            # the runtime's batch: up to batch_size records, CONSUMER_BATCH_MS for the rest
            msgs = [first, *consumer.consume(batch_size - 1, settings.CONSUMER_BATCH_MS / 1000)]
            events = []
            for msg in msgs:
                if msg.error():
                    continue
                events.append((msg, decode(topic, msg.key(), msg.value(), msg.headers(),
                                           msg.partition(), msg.offset())))
            with transaction.atomic():
                for _msg, event in events:
                    handler(event)
            consumer.store_offsets(offsets=[
                TopicPartition(m.topic(), m.partition(), m.offset() + 1) for m, _e in events])
            consumer.commit(asynchronous=False)
            handled += len(events)
    finally:
        consumer.close()
    return {"name": None, "rate": clock.rate(), "applied": clock.count, "handled": handled}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--poison-every", type=int, default=1000)
    args = parser.parse_args()

    prefix = setup_django(db="showoff_bench_consumer")
    from django.conf import settings
    from django.db import connection

    from relay import dlq
    from relay.kafka import topic_name
    from relay.testing import create_topic, delete_topics

    names = [create_topic(topic_name(t), 3) for t in
             ("analytics-events", "analytics-events.dlq", "post-events", "post-events.dlq")]
    with connection.cursor() as cur:
        cur.execute(f"CREATE TABLE IF NOT EXISTS {EFFECTS} (id bigserial PRIMARY KEY, "
                    "mode text NOT NULL, event_id uuid NOT NULL, seq integer NOT NULL)")
        cur.execute(f"TRUNCATE {EFFECTS}")
        cur.execute("DELETE FROM relay_inbox WHERE consumer LIKE %s", ["bench-%"])
    n = args.events
    poison = {i for i in range(n) if i % args.poison_every == args.poison_every // 2}
    try:
        # The clean stream on analytics-events; the poisoned copy on post-events (the runtime
        # consumes whatever topics it is given, and the probe type validates anywhere).
        produce(n, "analytics-events", poison=set())
        produce(n, "post-events", poison=poison)
        PerRecordWorker = per_record_worker_class()
        modes = {
            "inbox": lambda: run_worker("inbox", n, args.batch_size, "analytics-events"),
            "at_least_once": lambda: at_least_once(n, args.batch_size, "analytics-events"),
            "per_record": lambda: run_worker("per_record", n, args.batch_size,
                                             "analytics-events", PerRecordWorker),
            "inbox_poison": lambda: run_worker("inbox_poison", n, args.batch_size,
                                               "post-events"),
        }
        order = list(modes)
        rounds = []
        for r in range(args.rounds):
            figures = {}
            for mode in order[r % len(order):] + order[:r % len(order)]:  # rotate the order
                with connection.cursor() as cur:
                    cur.execute(f"DELETE FROM {EFFECTS} WHERE mode = %s", [mode])  # noqa: S608
                result = modes[mode]()
                expected = n - len(poison) if mode == "inbox_poison" else n
                with connection.cursor() as cur:
                    cur.execute(f"SELECT count(*), count(DISTINCT event_id) FROM {EFFECTS} "  # noqa: S608
                                "WHERE mode = %s", [mode])
                    rows, distinct = cur.fetchone()
                    inbox = None
                    if result["name"]:
                        cur.execute("SELECT count(*) FROM relay_inbox WHERE consumer = %s",
                                    [result["name"]])
                        inbox = cur.fetchone()[0]
                # sanity: every event applied exactly once, and recorded once in the inbox
                assert rows == distinct == expected, (mode, rows, distinct, expected)
                assert result["handled"] == n, (mode, result["handled"])
                if inbox is not None:
                    assert inbox == expected, (mode, inbox, expected)
                figures[mode] = {"events_per_s": round(result["rate"]),
                                 "handled": result["handled"], "applied": rows,
                                 "skipped_or_dead_lettered": result["handled"] - rows}
            rounds.append(figures)
        letters = [d for d in dlq.read_dead_letters("post-events")
                   if d.consumer.startswith("bench-inbox_poison-")]
        assert len(letters) == len(poison) * args.rounds, (len(letters), len(poison))
        median = {m: statistics.median(r[m]["events_per_s"] for r in rounds) for m in modes}
        ratios = {
            "inbox_vs_at_least_once": round(median["inbox"] / median["at_least_once"], 3),
            "inbox_vs_per_record": round(median["inbox"] / median["per_record"], 3),
            "poison_vs_clean": round(median["inbox_poison"] / median["inbox"], 3),
        }
        print(json.dumps({
            "benchmark": "consumer_throughput",
            "events": n, "batch_size": args.batch_size,
            "batch_ms": settings.CONSUMER_BATCH_MS,
            "poison_records": len(poison), "rounds": rounds,
            "median_events_per_s": {m: round(v) for m, v in median.items()},
            "ratios": ratios, "targets": TARGETS,
            "targets_met": {k: ratios[k] >= v for k, v in TARGETS.items()},
            "sanity": {"every_event_applied_once_per_mode_and_round": True,
                       "inbox_rows_match_applied": True,
                       "dead_letters": len(letters)},
        }, indent=2))
    finally:
        with connection.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {EFFECTS}")
            cur.execute("DELETE FROM relay_inbox WHERE consumer LIKE %s", ["bench-%"])
        delete_topics(names)
        print(f"(topic prefix {prefix} deleted)", file=sys.stderr)


if __name__ == "__main__":
    main()
