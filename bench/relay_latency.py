"""Relay latency: writer commit → record visible to a `read_committed` consumer.

    .venv/bin/python bench/relay_latency.py [--rates 500,2000] [--seconds 10] [--rounds 3]
                                            [--writers 8] [--hold 10]

Writer threads commit one `pipeline.probe` event per transaction (publish(), as a service does)
at a steady total rate while a `manage.py run_relay` process delivers them; a read_committed
consumer notes when each event id arrives. Each rate is measured twice: as is, and with an
unrelated transaction (holding a transaction id) open for `--hold` seconds during the run,
which with the old `(txid, id)` relay held every event back.

Baseline in the same run: raw transactional produce of the same CloudEvents records (key,
JSON value and headers exactly as the relay sends them), one record per Kafka transaction, at
the same rate (enough producer threads to keep it), commit → visible to the same consumer.

Rounds are interleaved (relay and raw alternate which goes first, round by round); each figure
is the median over rounds. Sanity checks, asserted: every event committed in a run is seen,
none twice. Targets (issue 13): relay p50 ≤ 10 ms and p99 ≤ 50 ms, with or without the open
transaction.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter

from _setup import ROOT, latencies, reset_outbox, run_writers, setup_django

TARGETS = {"p50_ms": 10, "p99_ms": 50}


class Receiver(threading.Thread):
    """Notes when each event id first arrives (read_committed), and any repeat."""

    def __init__(self, topic: str):
        super().__init__(daemon=True)
        from confluent_kafka import TopicPartition

        from relay.kafka import make_consumer

        self.seen: dict[str, float] = {}
        self.counts: Counter[str] = Counter()
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
                    event_id = v.decode()
                    self.seen.setdefault(event_id, at)
                    self.counts[event_id] += 1
        self.consumer.close()


class RawProducers:
    """Transactional producers of the baseline, made once (init_transactions is slow)."""

    def __init__(self, n: int):
        from relay.kafka import make_producer

        self.producers = []
        for _ in range(n):
            p = make_producer("bench-raw", **{"transactional.id": f"bench-raw-{uuid.uuid4()}",
                                              "linger.ms": 0})
            p.init_transactions(30)
            self.producers.append(p)


class _Rollback(Exception):
    pass


def raw_records(n: int, writers: int) -> list[list[tuple]]:
    """`n` CloudEvents records exactly as publish() writes them and the relay sends them (key,
    JSON value and headers), made by publish_bulk in a transaction rolled back; dealt to the
    writers round-robin. Made before the timed run."""
    from django.db import transaction

    from outbox.models import OutboxEvent
    from outbox.services import Event, publish_bulk
    from relay.cloudevents import encode

    rows = []
    try:
        with transaction.atomic():
            ids = publish_bulk([Event("pipeline.probe", {"probe_id": "lat",
                                                         "key": f"w{i % writers}-{i % 50}",
                                                         "seq": i}) for i in range(n)])
            rows = list(OutboxEvent.objects.filter(event_id__in=ids).order_by("id").values_list(
                "event_id", "topic", "key", "headers", "payload"))
            raise _Rollback
    except _Rollback:
        pass
    dealt: list[list[tuple]] = [[] for _ in range(writers)]
    for i, (event_id, topic, key, headers, payload) in enumerate(rows):
        dealt[i % writers].append((str(event_id), *encode(topic, key, headers, payload)))
    return dealt


def measure(system: str, rate: float, seconds: float, hold: float, writers: int,
            raw: RawProducers, receiver: Receiver) -> dict:
    import psycopg
    from django.db import transaction

    from outbox.services import publish
    from relay.testing import database_url

    threads = writers if system == "relay" else len(raw.producers)
    records = raw_records(math.ceil(rate * seconds * 1.2) + threads, threads) \
        if system == "raw" else []
    holder = None
    if hold:
        holder = psycopg.connect(database_url())
        holder.execute("SELECT pg_current_xact_id()")  # an open transaction with an id
    started = time.monotonic()

    def write_outbox(w: int, n: int) -> tuple[str, float]:
        with transaction.atomic():
            event_id = publish("pipeline.probe", {"probe_id": "lat", "key": f"w{w}-{n % 50}",
                                                  "seq": n})
        return str(event_id), time.time()

    def write_raw(w: int, n: int) -> tuple[str, float]:
        event_id, topic, key, value, headers = records[w][n]
        p = raw.producers[w]
        p.begin_transaction()
        p.produce(topic, key=key, value=value, headers=headers)
        p.commit_transaction(30)
        return event_id, time.time()

    try:
        committed = run_writers(rate, seconds, threads,
                                write_outbox if system == "relay" else write_raw)
        if holder is not None:
            # held for the whole run (and at least `hold` seconds)
            time.sleep(max(0.0, hold - (time.monotonic() - started)))
    finally:
        if holder is not None:
            held = time.monotonic() - started
            holder.rollback()
            holder.close()
    result = latencies(committed, receiver.seen, wait=30)
    result["achieved_rate_per_s"] = round(len(committed) / seconds)
    result["writer_threads"] = threads
    if holder is not None:
        result["open_transaction_held_s"] = round(held, 1)
    # sanity: every committed event arrived, and exactly once
    assert result["delivered"] == result["events"], (system, result)
    repeats = [e for e in committed if receiver.counts[e] != 1]
    assert not repeats, f"{system}: {len(repeats)} events seen more than once"
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rates", default="500,2000")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--writers", type=int, default=8, help="outbox writer threads")
    parser.add_argument("--hold", type=float, default=10,
                        help="seconds the unrelated transaction stays open")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]

    prefix = setup_django(db="showoff_bench_latency")
    from django.db import transaction

    from outbox.services import publish
    from relay.kafka import topic_name
    from relay.testing import delete_topics
    from relay.topics import create_topics, desired_topics

    specs = [s for s in desired_topics() if not s.logical.endswith(".dlq")]
    create_topics(specs)
    topic = topic_name("analytics-events")
    reset_outbox()
    relay = subprocess.Popen([sys.executable, "manage.py", "run_relay"], cwd=ROOT,
                             env=dict(os.environ, LOG_LEVEL="WARNING"))
    try:
        receiver = Receiver(topic)
        receiver.start()
        receiver.ready.wait()
        # one probe through the relay: it runs
        with transaction.atomic():
            first = str(publish("pipeline.probe", {"probe_id": "lat", "key": "w", "seq": 0}))
        deadline = time.time() + 60
        while first not in receiver.seen:
            assert time.time() < deadline, "the relay did not start"
            time.sleep(0.1)
        raw = RawProducers(max(args.writers, math.ceil(max(rates) / 50)))
        # warm-up, not recorded
        for system in ("relay", "raw"):
            measure(system, 100, 2, 0, args.writers, raw, receiver)

        conditions = [(rate, hold) for rate in rates for hold in (0.0, args.hold)]
        runs: dict[tuple, dict[str, list[dict]]] = {c: {"relay": [], "raw": []}
                                                    for c in conditions}
        for r in range(args.rounds):
            for i, (rate, hold) in enumerate(conditions):
                order = ("relay", "raw") if (r + i) % 2 == 0 else ("raw", "relay")
                for system in order:
                    runs[(rate, hold)][system].append(
                        measure(system, rate, args.seconds, hold, args.writers, raw, receiver))
        receiver.stop = True

        def median(results: list[dict], key: str) -> float:
            return round(statistics.median(x[key] for x in results), 2)

        out = []
        for (rate, hold), by in runs.items():
            summary = {s: {k: median(v, k) for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms",
                                                     "achieved_rate_per_s")}
                       for s, v in by.items()}
            out.append({
                "rate_per_s": rate,
                "open_transaction_s": hold,
                "relay": summary["relay"],
                "raw_transactional_produce": summary["raw"],
                "p50_ratio_relay_vs_raw": round(summary["relay"]["p50_ms"]
                                                / summary["raw"]["p50_ms"], 2),
                "p99_ratio_relay_vs_raw": round(summary["relay"]["p99_ms"]
                                                / summary["raw"]["p99_ms"], 2),
                "relay_meets_targets": {
                    k: summary["relay"][k] <= v for k, v in TARGETS.items()},
                "rounds": by,
            })
        print(json.dumps({
            "benchmark": "relay_latency",
            "seconds_per_run": args.seconds, "rounds": args.rounds,
            "outbox_writer_threads": args.writers,
            "targets_ms": TARGETS,
            "conditions": out,
        }, indent=2))
    finally:
        relay.terminate()
        relay.wait(30)
        reset_outbox()
        delete_topics([s.name for s in specs])
        print(f"(topic prefix {prefix} deleted)", file=sys.stderr)


if __name__ == "__main__":
    main()
