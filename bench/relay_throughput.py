"""Relay throughput and memory.

    .venv/bin/python bench/relay_throughput.py [--events 200000] [--size 1024] [--batch 500]
                                               [--memory-events 0]

Throughput: a backlog of N events of `size` bytes is delivered by the relay (in-process, the same
code as `run_relay --once`), against raw transactional produce of the same records, loaded
into memory first, with the same batch size, in the same run. Target: relay ≥ 0.5 × raw.

Memory (with --memory-events M): a `run_relay` subprocess delivers M small events; its RSS is
sampled at start and end.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from _setup import ROOT, reset_outbox, rss_kib, setup_django


def write_backlog(n: int, size: int, keys: int = 1000) -> float:
    from django.db import transaction

    from outbox.services import Event, publish_bulk

    padding = "x" * max(0, size - 80)
    started = time.perf_counter()
    chunk = 5000
    for start in range(0, n, chunk):
        with transaction.atomic():
            publish_bulk([
                Event("pipeline.probe", {"probe_id": "bench", "key": f"user-{i % keys}",
                                         "seq": i, "padding": padding})
                for i in range(start, min(n, start + chunk))
            ])
    return time.perf_counter() - started


def raw_produce(batch: int) -> tuple[float, int]:
    """Raw transactional produce of the same records from memory (the baseline)."""
    import uuid

    from django.db import connection

    from relay.kafka import make_producer, topic_name

    with connection.cursor() as cur:
        cur.execute("SELECT topic, key, headers::text, payload::text FROM outbox_event "
                    "ORDER BY txid, id")
        rows = [(topic_name(t), k.encode(), [(hk, hv.encode()) for hk, hv in
                                              json.loads(h).items()], p.encode())
                for t, k, h, p in cur.fetchall()]
    producer = make_producer("bench-raw", **{"transactional.id": f"bench-raw-{uuid.uuid4()}",
                                             "linger.ms": 2, "batch.num.messages": 10000,
                                             "queue.buffering.max.messages": 200000})
    producer.init_transactions(30)
    started = time.perf_counter()
    for i in range(0, len(rows), batch):
        producer.begin_transaction()
        for topic, key, headers, value in rows[i:i + batch]:
            while True:
                try:
                    producer.produce(topic, value=value, key=key, headers=headers)
                    break
                except BufferError:
                    producer.poll(0.05)
        producer.commit_transaction(30)
    return time.perf_counter() - started, len(rows)


def relay_deliver(batch: int) -> tuple[float, int]:
    from relay.engine import Relay

    relay = Relay(use_lock=False, batch_size=batch)
    relay.start()
    started = time.perf_counter()
    delivered = 0
    while n := relay.step():
        delivered += n
    elapsed = time.perf_counter() - started
    relay.close()
    return elapsed, delivered


def sql_backlog(n: int, chunk: int = 100_000) -> float:
    """A large backlog of small events written by SQL (the relay's memory is measured here, not
    publish()): the same columns and CloudEvents headers publish() writes."""
    from django.db import connection, transaction

    started = time.perf_counter()
    for lo in range(0, n, chunk):
        with transaction.atomic(), connection.cursor() as cur:
            cur.execute(
                """
                INSERT INTO outbox_event (event_id, type, topic, key, shard_hash, headers,
                                          payload)
                SELECT s.id, 'pipeline.probe', 'analytics-events', 'user-' || (i %% 1000),
                       i %% 1000,
                       jsonb_build_object('ce_specversion', '1.0', 'ce_id', s.id::text,
                                          'ce_type', 'pipeline.probe', 'ce_source', 'bench',
                                          'content-type', 'application/json'),
                       jsonb_build_object('probe_id', 'mem', 'key', 'user-' || (i %% 1000),
                                          'seq', i)
                FROM (SELECT i, gen_random_uuid() AS id FROM generate_series(%s, %s) AS i) s
                """,
                [lo, min(n, lo + chunk) - 1],
            )
    return time.perf_counter() - started


def memory_run(events: int, batch: int) -> dict:
    import os

    from relay.selectors import shard_states

    reset_outbox()
    write_seconds = sql_backlog(events)
    env = dict(os.environ, LOG_LEVEL="WARNING")
    proc = subprocess.Popen([sys.executable, "manage.py", "run_relay", "--batch-size",
                             str(batch)], cwd=ROOT, env=env)
    series = []  # (events delivered, RSS KiB)
    started = time.perf_counter()
    try:
        while True:
            time.sleep(0.5)
            rss = rss_kib(proc.pid)
            state = shard_states(1)[0]
            series.append((state.events_total, rss))
            if state.events_total >= events and state.backlog == 0:
                break
            if proc.poll() is not None:
                raise RuntimeError("relay exited early")
    finally:
        proc.terminate()
        proc.wait(30)
    elapsed = time.perf_counter() - started

    def rss_at(fraction: float) -> int:
        return next(r for e, r in series if e >= fraction * events)

    return {
        "events": events, "backlog_write_seconds": round(write_seconds, 1),
        "deliver_seconds": round(elapsed, 1),
        "rss_kib_at_10pct": rss_at(0.1), "rss_kib_at_50pct": rss_at(0.5),
        "rss_kib_at_end": series[-1][1], "rss_kib_peak": max(r for _, r in series),
        "rss_growth_10pct_to_end": round(series[-1][1] / rss_at(0.1), 3),
        "samples": len(series),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--memory-events", type=int, default=0)
    args = parser.parse_args()

    prefix = setup_django(db="showoff_bench_relay")
    from relay.testing import delete_topics
    from relay.topics import create_topics, desired_topics

    specs = [s for s in desired_topics() if not s.logical.endswith(".dlq")]
    create_topics(specs)
    try:
        reset_outbox()
        write_seconds = write_backlog(args.events, args.size)
        raw_seconds, raw_n = raw_produce(args.batch)
        relay_seconds, relay_n = relay_deliver(args.batch)
        assert raw_n == relay_n == args.events, (raw_n, relay_n)
        result = {
            "benchmark": "relay_throughput",
            "events": args.events,
            "event_bytes": args.size,
            "batch_size": args.batch,
            "outbox_write_events_per_s": round(args.events / write_seconds),
            # Issue 18: the writers (publish_bulk) must keep up with the relay (>= 1).
            "outbox_write_vs_relay_ratio": round(relay_seconds / write_seconds, 3),
            "raw_transactional_produce_events_per_s": round(raw_n / raw_seconds),
            "relay_events_per_s": round(relay_n / relay_seconds),
            "relay_vs_raw_ratio": round(raw_seconds / relay_seconds, 3),
            "target_ratio": 0.5,
        }
        if args.memory_events:
            result["memory"] = memory_run(args.memory_events, args.batch)
        print(json.dumps(result, indent=2))
    finally:
        reset_outbox()
        delete_topics([s.name for s in specs])
        print(f"(topic prefix {prefix} deleted)", file=sys.stderr)


if __name__ == "__main__":
    main()
