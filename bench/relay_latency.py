"""Relay latency: writer commit → record visible to a `read_committed` consumer.

    .venv/bin/python bench/relay_latency.py [--rate 500] [--seconds 20] [--writers 4]

Concurrent writer threads commit one event per transaction at a steady total rate while a
`manage.py run_relay` process delivers them; a read_committed consumer notes when each event
id arrives. Baseline in the same run: raw transactional produce of one record per transaction
at the same rate, commit → visible to the same kind of consumer. Targets: p50 ≤ 20 ms,
p99 ≤ 100 ms.
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


class Receiver(threading.Thread):
    def __init__(self, topic: str):
        super().__init__(daemon=True)
        from confluent_kafka import TopicPartition

        from relay.kafka import make_consumer

        self.seen: dict[str, float] = {}
        self.stop = False
        self.consumer = make_consumer("bench-latency", f"bench-{uuid.uuid4()}",
                                      **{"fetch.wait.max.ms": 5})
        md = self.consumer.list_topics(topic, timeout=10)
        self.consumer.assign([TopicPartition(topic, p, -1) for p in md.topics[topic].partitions])
        self.ready = threading.Event()

    def run(self) -> None:
        self.ready.set()
        while not self.stop:
            msg = self.consumer.poll(0.1)
            if msg is None or msg.error():
                continue
            at = time.time()
            for k, v in msg.headers() or []:
                if k == "ce_id":
                    self.seen[v.decode()] = at
        self.consumer.close()








def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=500)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--writers", type=int, default=4)
    args = parser.parse_args()

    prefix = setup_django(db="showoff_bench_latency")
    from django.db import transaction

    from outbox.services import publish
    from relay.kafka import make_producer, topic_name
    from relay.testing import delete_topics
    from relay.topics import create_topics, desired_topics

    specs = [s for s in desired_topics() if not s.logical.endswith(".dlq")]
    create_topics(specs)
    topic = topic_name("analytics-events")
    reset_outbox()
    relay = subprocess.Popen([sys.executable, "manage.py", "run_relay"], cwd=ROOT,
                             env=dict(os.environ, LOG_LEVEL="WARNING"))
    try:
        time.sleep(3)  # relay start-up
        receiver = Receiver(topic)
        receiver.start()
        receiver.ready.wait()
        time.sleep(1)

        def write_outbox(w: int, n: int) -> tuple[str, float]:
            with transaction.atomic():
                event_id = publish("pipeline.probe", {"probe_id": "lat", "key": f"w{w}-{n % 50}",
                                                      "seq": n})
            return str(event_id), time.time()

        relay_result = latencies(run_writers(args.rate, args.seconds, args.writers,
                                             write_outbox), receiver.seen, wait=30)

        producers = {}
        lock = threading.Lock()

        def write_raw(w: int, n: int) -> tuple[str, float]:
            with lock:
                if w not in producers:
                    p = make_producer("bench-raw", **{"transactional.id":
                                                      f"bench-raw-{uuid.uuid4()}",
                                                      "linger.ms": 0})
                    p.init_transactions(30)
                    producers[w] = p
            p = producers[w]
            event_id = str(uuid.uuid4())
            p.begin_transaction()
            p.produce(topic, key=f"w{w}".encode(), value=b"{}", headers=[("ce_id",
                                                                           event_id.encode())])
            p.commit_transaction(30)
            return event_id, time.time()

        raw_result = latencies(run_writers(args.rate, args.seconds, args.writers, write_raw),
                               receiver.seen, wait=30)
        receiver.stop = True
        print(json.dumps({
            "benchmark": "relay_latency",
            "rate_per_s": args.rate, "seconds": args.seconds, "writers": args.writers,
            "relay": relay_result,
            "raw_transactional_produce": raw_result,
            "p50_ratio_relay_vs_raw": round(relay_result["p50_ms"] / raw_result["p50_ms"], 2),
            "targets_ms": {"p50": 20, "p99": 100},
        }, indent=2))
    finally:
        relay.terminate()
        relay.wait(30)
        reset_outbox()
        delete_topics([s.name for s in specs])
        print(f"(topic prefix {prefix} deleted)", file=sys.stderr)


if __name__ == "__main__":
    main()
