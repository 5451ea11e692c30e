"""Relay throughput and memory.

    .venv/bin/python bench/relay_throughput.py [--events 200000] [--size 1024] [--batch 500]
        [--rounds 3] [--live-events 200000] [--memory-events 0] [--skip-backlog] [--skip-live]

Three measurements, each printing its figures in one JSON object:

1. Backlog (`backlog`): N events of `size` bytes written with publish_bulk, then delivered by
   the relay (in-process, the same code as `run_relay --once`); baseline: raw transactional
   produce of the same records (read into memory first), same batch size, same topics' layout.
   `--rounds` rounds on fresh topics each, alternating which of the two goes first; the ratio
   is the median of the rounds' ratios. Target: relay ≥ 0.6 × raw. Each round writes its
   backlog anew (one process, publish_bulk of 5,000 per transaction; `--writers N`: N
   processes at once, each its share), timed: the writer against the relay, median of the
   rounds' ratios (issue 18's target: ≥ 1 with one writer).
2. Live with an old xmin (`live`): a writer thread commits `--live-events` rows of `size`
   bytes (1,000 per transaction, SQL, faster than the relay) while the relay delivers them;
   throughput = events / (first commit → last event in Kafka). Half the rounds with an
   unrelated transaction holding a transaction id open for the whole run (the xmin of every
   snapshot stays behind it), alternating. Target: with ≥ 0.9 × without (the tick read
   starts at xmax(S_prev), not at the old xmin).
3. Memory (`--memory-events M`): a `run_relay` subprocess delivers M small events (written by
   SQL); its RSS is sampled as it goes. Target: flat (end / at 10% close to 1).

Sanity checks, asserted: every relay round delivers exactly the events written (counted in
Kafka with read_committed, each event id once), raw produce sends as many.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid

from _setup import ROOT, reset_outbox, rss_kib, setup_django


def fresh_topics() -> list[str]:
    """A new topic prefix with the eight topics and the checkpoint topic (no DLQs): each round
    delivers into empty topics from a fresh checkpoint."""
    from django.conf import settings

    from relay.topics import create_topics, desired_topics

    settings.KAFKA_TOPIC_PREFIX = f"bench-{uuid.uuid4().hex[:8]}."
    specs = [s for s in desired_topics() if not s.logical.endswith(".dlq")]
    create_topics(specs)
    from relay.testing import wait_for_topic

    for spec in specs:
        wait_for_topic(spec.name, spec.partitions)
    return [s.name for s in specs]


def drop_topics(names: list[str]) -> None:
    from relay.testing import delete_topics

    delete_topics(names)


def write_range(first: int, n: int, size: int, keys: int = 1000) -> float:
    """publish_bulk of events first..first+n-1, 5,000 per transaction; returns the seconds."""
    from django.db import transaction

    from outbox.services import Event, publish_bulk

    padding = "x" * max(0, size - 80)
    started = time.perf_counter()
    chunk = 5000
    for start in range(first, first + n, chunk):
        with transaction.atomic():
            publish_bulk([
                Event("pipeline.probe", {"probe_id": "bench", "key": f"user-{i % keys}",
                                         "seq": i, "padding": padding})
                for i in range(start, min(first + n, start + chunk))
            ])
    return time.perf_counter() - started


def write_backlog(n: int, size: int, writers: int = 1) -> float:
    """The backlog, written by `writers` processes at once (each its share); returns the
    seconds from the first write to the last commit (each writer times its own part)."""
    if writers == 1:
        return write_range(0, n, size)
    from django.db import connection

    share = -(-n // writers)
    start_at = time.time() + 5  # all start together, after their Django set-up
    procs = [subprocess.Popen(
        [sys.executable, __file__, "--role", "writer", "--first", str(w * share), "--events",
         str(min(share, n - w * share)), "--size", str(size), "--start-at", str(start_at)],
        stdout=subprocess.PIPE, text=True) for w in range(writers)]
    spans = []
    for p in procs:
        out, _ = p.communicate(timeout=600)
        assert p.returncode == 0, "a writer failed"
        spans.append(json.loads(out.strip().splitlines()[-1]))
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM outbox_event")
        assert cur.fetchone()[0] == n  # sanity: every writer wrote its share
    return max(s["end"] for s in spans) - min(s["start"] for s in spans)


def delivered_once(expected: int) -> int:
    """Records in the event topic (read_committed), asserting each event id once."""
    from relay.kafka import topic_name
    from relay.testing import read_all

    ids = [r.header("ce_id") for r in read_all([topic_name("analytics-events")], timeout=300)]
    assert len(ids) == len(set(ids)) == expected, (len(ids), len(set(ids)), expected)
    return len(ids)


def raw_produce(batch: int) -> tuple[float, int]:
    """Raw transactional produce of the same records from memory (the baseline)."""
    from django.db import connection

    from relay.kafka import make_producer, topic_name

    with connection.cursor() as cur:
        cur.execute("SELECT topic, key, headers::text, payload::text FROM outbox_event "
                    "ORDER BY id")
        rows = [(topic_name(t), k.encode(), json.loads(h), p.encode())
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


def backlog_rounds(args) -> dict:
    from relay.models import RelayPosition

    rounds = []
    for r in range(args.rounds):
        # each round writes its backlog anew (timed: the writer against the relay, issue 18)
        reset_outbox()
        write_seconds = write_backlog(args.events, args.size, args.writers)
        names = fresh_topics()
        RelayPosition.objects.all().delete()
        try:
            order = ("raw", "relay") if r % 2 == 0 else ("relay", "raw")
            got = {}
            for what in order:
                got[what] = raw_produce(args.batch) if what == "raw" else \
                    relay_deliver(args.batch)
            (raw_s, raw_n), (relay_s, relay_n) = got["raw"], got["relay"]
            assert raw_n == relay_n == args.events, (raw_n, relay_n)
        finally:
            drop_topics(names)
        rounds.append({"order": list(order), "raw_events_per_s": round(raw_n / raw_s),
                       "relay_events_per_s": round(relay_n / relay_s),
                       "relay_vs_raw_ratio": round(raw_s / relay_s, 3),
                       "relay_seconds": round(relay_s, 2),
                       "outbox_write_events_per_s": round(args.events / write_seconds),
                       "outbox_write_vs_relay_ratio": round(relay_s / write_seconds, 3)})
    # one more relay delivery on its own topics, read back: every event exactly once
    names = fresh_topics()
    RelayPosition.objects.all().delete()
    try:
        _, n = relay_deliver(args.batch)
        checked = delivered_once(args.events)
    finally:
        drop_topics(names)
    return {
        "events": args.events, "event_bytes": args.size, "batch_size": args.batch,
        "writer_processes": args.writers,
        "outbox_write_events_per_s": statistics.median(
            r["outbox_write_events_per_s"] for r in rounds),
        # Issue 18: the writer (publish_bulk, one process) must keep up with the relay (>= 1).
        "outbox_write_vs_relay_ratio": statistics.median(
            r["outbox_write_vs_relay_ratio"] for r in rounds),
        "raw_transactional_produce_events_per_s": statistics.median(
            r["raw_events_per_s"] for r in rounds),
        "relay_events_per_s": statistics.median(r["relay_events_per_s"] for r in rounds),
        "relay_vs_raw_ratio_median": statistics.median(r["relay_vs_raw_ratio"] for r in rounds),
        "target_ratio": 0.6,
        "checked_exactly_once_in_kafka": checked,
        "rounds": rounds,
    }


def sql_rows(cur, lo: int, hi: int, size: int) -> None:
    """Rows lo..hi of `size` bytes as publish() writes them (columns, CloudEvents headers)."""
    cur.execute(
        """
        INSERT INTO outbox_event (event_id, type, topic, key, shard_hash, headers, payload)
        SELECT s.id, 'pipeline.probe', 'analytics-events', 'user-' || mod(i, 1000), mod(i, 1000),
               jsonb_build_object('ce_specversion', '1.0', 'ce_id', s.id::text,
                                  'ce_type', 'pipeline.probe', 'ce_source', 'bench',
                                  'content-type', 'application/json'),
               jsonb_build_object('probe_id', 'bench', 'key', 'user-' || mod(i, 1000), 'seq', i,
                                  'padding', repeat('x', greatest(%s::int - 80, 0)))
        FROM (SELECT i, gen_random_uuid() AS id FROM generate_series(%s::bigint, %s::bigint) AS i) s
        """,
        [size, lo, hi],
    )


def live_round(n: int, size: int, batch: int, hold: bool) -> dict:
    """A writer commits n rows (1,000 per transaction) while the relay delivers them."""
    import psycopg
    from django.db import connections

    from relay.engine import Relay
    from relay.testing import database_url

    reset_outbox()
    holder = None
    if hold:
        holder = psycopg.connect(database_url())
        holder.execute("SELECT pg_current_xact_id()")
    relay = Relay(use_lock=False, batch_size=batch)
    relay.start()
    errors: list[BaseException] = []

    def write() -> None:
        try:
            with psycopg.connect(database_url(), autocommit=True) as conn:
                cur = conn.cursor()
                for lo in range(0, n, 1000):
                    with conn.transaction():
                        sql_rows(cur, lo, min(n, lo + 1000) - 1, size)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    writer = threading.Thread(target=write)
    started = time.perf_counter()
    writer.start()
    delivered = 0
    deadline = time.monotonic() + 600
    while delivered < n:
        got = relay.step()
        delivered += got
        if not got:
            assert not errors and time.monotonic() < deadline, (delivered, errors)
            time.sleep(0.001)
    elapsed = time.perf_counter() - started
    writer.join()
    relay.close()
    assert not errors, errors
    if holder is not None:
        holder.rollback()
        holder.close()
    return {"open_transaction": hold, "events": delivered,
            "relay_events_per_s": round(delivered / elapsed),
            "batches": relay.stats.batches}


def live_rounds(args) -> dict:
    rounds = []
    for r in range(args.rounds * 2):
        names = fresh_topics()
        try:
            hold = (r % 2 == 0) == (r // 2 % 2 == 0)  # with, without; without, with; ...
            rounds.append(live_round(args.live_events, args.size, args.batch, hold))
            if r == 0:
                delivered_once(args.live_events)
        finally:
            drop_topics(names)
    with_ = statistics.median(x["relay_events_per_s"] for x in rounds if x["open_transaction"])
    without = statistics.median(x["relay_events_per_s"] for x in rounds
                                if not x["open_transaction"])
    return {"events": args.live_events, "event_bytes": args.size,
            "relay_events_per_s_with_open_transaction": with_,
            "relay_events_per_s_without": without,
            "with_vs_without_ratio": round(with_ / without, 3), "target_ratio": 0.9,
            "rounds": rounds}


def memory_run(events: int, batch: int) -> dict:
    import os

    from django.db import connection, transaction

    from relay.selectors import shard_states

    reset_outbox()
    names = fresh_topics()
    started = time.perf_counter()
    with connection.cursor() as cur:
        for lo in range(0, events, 100_000):
            with transaction.atomic():
                sql_rows(cur, lo, min(events, lo + 100_000) - 1, 0)
    write_seconds = time.perf_counter() - started
    env = dict(os.environ, LOG_LEVEL="WARNING")
    from django.conf import settings

    env["KAFKA_TOPIC_PREFIX"] = settings.KAFKA_TOPIC_PREFIX
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
        drop_topics(names)
    elapsed = time.perf_counter() - started
    assert series[-1][0] == events, series[-1]

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
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--live-events", type=int, default=200_000)
    parser.add_argument("--memory-events", type=int, default=0)
    parser.add_argument("--skip-backlog", action="store_true")
    parser.add_argument("--skip-live", action="store_true")
    parser.add_argument("--writers", type=int, default=1,
                        help="processes writing the backlog (the issue's figure is for one)")
    parser.add_argument("--role", default="main", help=argparse.SUPPRESS)
    parser.add_argument("--first", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--start-at", type=float, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()

    setup_django(db="showoff_bench_relay", prefix=os.environ.get("KAFKA_TOPIC_PREFIX")
                 if args.role == "writer" else None)
    if args.role == "writer":
        time.sleep(max(0.0, args.start_at - time.time()))
        start = time.time()
        write_range(args.first, args.events, args.size)
        print(json.dumps({"start": start, "end": time.time()}))
        return
    result: dict = {"benchmark": "relay_throughput"}
    try:
        if not args.skip_backlog:
            result["backlog"] = backlog_rounds(args)
        if not args.skip_live:
            result["live"] = live_rounds(args)
        if args.memory_events:
            result["memory"] = memory_run(args.memory_events, args.batch)
        print(json.dumps(result, indent=2))
    finally:
        reset_outbox()


if __name__ == "__main__":
    main()
