"""End to end: commit of a domain write → the handler's effect committed, through the outbox,
`manage.py run_relay` and `manage.py consume`, at a steady rate.

    .venv/bin/python bench/end_to_end_latency.py [--rate 1000] [--seconds 20] [--writers 4]
                                                 [--consumers 1]

Writer threads commit one `pipeline.probe` outbox event per transaction at `--rate` events/s in
total; a relay process delivers them to Kafka; `--consumers` consumer processes (one group;
default one: the figure is per process) apply each once with the batch runtime (one DB
transaction per polled batch: inbox rows, the effect rows, commit; batches of
CONSUMER_BATCH_SIZE records or CONSUMER_BATCH_MS). `--handler batch` (default) writes a batch's
effect rows with one INSERT, `--handler record` one INSERT per record. A watcher polls the
effect table every 2 ms and notes when each event's effect is visible (committed).
Latency = effect visible - writer's commit returned.

Baseline in the same run: the same consumer fed by raw transactional produce of one record per
Kafka transaction at the same rate (no outbox, no relay): Kafka commit → effect visible. The
ratio says what the outbox and relay add. Target: p99 ≤ 150 ms end to end at 1,000 events/s.

Runs on its own database (`showoff_bench_e2e`, created and migrated if missing) and its own topic
prefix; prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import uuid

from _setup import ROOT, latencies, reset_outbox, run_writers, setup_django

CONSUMER = f"bench-e2e-{uuid.uuid4().hex[:6]}"


class Watcher(threading.Thread):
    """Notes when each effect row becomes visible to another connection.

    Every 2 ms it reads the rows after the highest id seen (cheap: the new rows only). Ids are
    taken before commit, so with several consumer processes a lower id can become visible
    after a higher one: every 50 ms it also looks back over the last 5,000 ids. (Reading the
    whole window every 2 ms, as this did before, cost the benchmark's own process more CPU
    than the writers it measures.)"""

    def __init__(self):
        super().__init__(daemon=True)
        self.seen: dict[str, float] = {}
        self.stop = False

    def run(self) -> None:
        from django.db import connection

        last = 0
        polls = 0
        try:
            while not self.stop:
                polls += 1
                since = last - 5000 if polls % 25 == 0 else last
                with connection.cursor() as cur:
                    cur.execute("SELECT id, event_id::text FROM relay_test_effect WHERE id > %s",
                                [since])
                    rows = cur.fetchall()
                now = time.time()
                for row_id, event_id in rows:
                    self.seen.setdefault(event_id, now)
                    last = max(last, row_id)
                time.sleep(0.002)
        finally:
            connection.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--consumers", type=int, default=1)
    parser.add_argument("--handler", choices=["batch", "record"], default="batch",
                        help="the probe as a batch handler (one INSERT per batch) or a record "
                             "handler (one INSERT per record)")
    args = parser.parse_args()

    load_at_start = os.getloadavg()[0]
    prefix = setup_django(db="showoff_bench_e2e")
    from django.conf import settings
    from django.db import connection, transaction

    from outbox.services import publish
    from relay.kafka import make_producer
    from relay.testing import ManageProcess, delete_topics
    from relay.tests.consumer_support import create_effects_table, drop_effects_table
    from relay.topics import create_topics, desired_topics

    specs = [s for s in desired_topics()
             if not s.logical.endswith(".dlq") or s.logical == "analytics-events.dlq"]
    create_topics(specs)
    reset_outbox()
    create_effects_table()
    env = {"DJANGO_SETTINGS_MODULE": "showoff.settings.base", "LOG_LEVEL": "WARNING"}
    relay = subprocess.Popen([sys.executable, "manage.py", "run_relay"], cwd=ROOT,
                             env=dict(os.environ, **env))
    consumers = [ManageProcess(["consume", "analytics-events", "--consumer", CONSUMER,
                                "--poll-timeout", "0.5"],
                               imports=["relay.tests.consumer_support"],
                               RELAY_TEST_CONSUMER=CONSUMER,
                               RELAY_TEST_BATCH="1" if args.handler == "batch" else "0",
                               **{**env, "LOG_LEVEL": "INFO"})  # "assigned" lines
                 for _ in range(args.consumers)]
    watcher = Watcher()
    try:
        # Warm-up: both processes up, the consumer in its group, one event through.
        with transaction.atomic():
            publish("pipeline.probe", {"probe_id": "warm-up", "key": "warm", "seq": 0})
        deadline = time.time() + 60
        while True:
            with connection.cursor() as cur:
                cur.execute("SELECT count(*) FROM relay_test_effect")
                if cur.fetchone()[0]:
                    break
            if time.time() > deadline or any(c.proc.poll() is not None for c in consumers):
                raise SystemExit("warm-up event never applied:\n"
                                 + "\n".join(c.output() for c in consumers))
            time.sleep(0.1)
        for c in consumers:  # every process has its partitions before the clock starts
            c.wait_for("assigned", 60)
        time.sleep(1)
        watcher.start()

        def write_outbox(w: int, n: int) -> tuple[str, float]:
            with transaction.atomic():
                event_id = publish("pipeline.probe", {"probe_id": "e2e", "key": f"w{w}-{n % 50}",
                                                      "seq": n})
            return str(event_id), time.time()

        e2e = latencies(run_writers(args.rate, args.seconds, args.writers, write_outbox),
                        watcher.seen, seen_label="applied")

        producers = {}
        lock = threading.Lock()
        from datetime import UTC, datetime

        from outbox import catalogue
        from relay.cloudevents import encode

        et = catalogue.get("pipeline.probe")

        def write_raw(w: int, n: int) -> tuple[str, float]:
            with lock:
                if w not in producers:
                    p = make_producer("bench-raw", **{"transactional.id":
                                                      f"bench-raw-{uuid.uuid4()}",
                                                      "linger.ms": 0})
                    p.init_transactions(30)
                    producers[w] = p
            p = producers[w]
            event_id = uuid.uuid4()
            key = f"r{w}-{n % 50}"
            headers = catalogue.cloudevent_headers(et, event_id=event_id, time=datetime.now(UTC),
                                                   subject=key, traceparent=None)
            topic, k, v, h = encode("analytics-events", key, headers,
                                    {"probe_id": "raw", "key": key, "seq": n})
            p.begin_transaction()
            p.produce(topic, key=k, value=v, headers=h)
            p.commit_transaction(30)
            return str(event_id), time.time()

        raw = latencies(run_writers(args.rate, args.seconds, args.writers, write_raw),
                        watcher.seen, seen_label="applied")
        # sanity: every event of both phases applied, each exactly once
        with connection.cursor() as cur:
            cur.execute("SELECT count(*), count(DISTINCT event_id) FROM relay_test_effect")
            rows, distinct = cur.fetchone()
        assert e2e["applied"] == e2e["events"] and raw["applied"] == raw["events"], (e2e, raw)
        assert rows == distinct == 1 + e2e["events"] + raw["events"], (rows, distinct)
        print(json.dumps({
            "benchmark": "end_to_end_latency",
            "rate_per_s": args.rate, "seconds": args.seconds, "writers": args.writers,
            "consumer_processes": args.consumers, "handler": args.handler,
            "batch_size": settings.CONSUMER_BATCH_SIZE, "batch_ms": settings.CONSUMER_BATCH_MS,
            "load_average_at_start": load_at_start, "load_average_at_end": os.getloadavg()[0],
            "achieved_write_rate_per_s": round(e2e["events"] / args.seconds, 1),
            "outbox_relay_consumer": e2e,
            "baseline_raw_produce_consumer": raw,
            "p50_ratio_vs_baseline": round(e2e["p50_ms"] / raw["p50_ms"], 2),
            "p99_ratio_vs_baseline": round(e2e["p99_ms"] / raw["p99_ms"], 2),
            "sanity": {"every_event_applied_once": True, "effect_rows": rows},
            "target_p99_ms": 150,
            "target_met": e2e["p99_ms"] <= 150,
        }, indent=2))
    finally:
        watcher.stop = True
        for c in consumers:
            c.terminate()
        relay.terminate()
        relay.wait(30)
        reset_outbox()
        drop_effects_table()
        delete_topics([s.name for s in specs])
        print(f"(topic prefix {prefix} deleted)", file=sys.stderr)


if __name__ == "__main__":
    main()
