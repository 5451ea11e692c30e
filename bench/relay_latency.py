"""Relay latency: writer commit → record visible to a `read_committed` consumer.

    .venv/bin/python bench/relay_latency.py [--rates 500,2000] [--seconds 10] [--rounds 3]
                                            [--processes 4] [--threads 4] [--hold 10]
                                            [--writer publish|sql]

Writer processes (`--processes`, each with `--threads` threads) commit one `pipeline.probe`
event per transaction (publish(), as a service does; with `--writer sql`, an INSERT of the
same row built beforehand, which frees the CPU that publish() and Django take on a small
machine: the raw baseline's records are built beforehand too) at a steady total rate while a
`manage.py run_relay` process delivers them; a read_committed consumer process notes when each
event id arrives. Writers and the consumer are processes of their own, so neither waits for the
other's Python (the GIL) and each timestamp is taken where the thing happened: the commit time
right after commit returns, the arrival time right after the consumer's poll returns (same
machine clock). Each rate is measured twice: as is, and with an unrelated transaction (holding
a transaction id) open for `--hold` seconds over the whole run, which with the old `(txid, id)`
relay held every event back.

Baseline in the same run: raw transactional produce of the same CloudEvents records (key, JSON
value and headers exactly as publish() writes them and the relay sends them), one record per
Kafka transaction, at the same rate, from as many writer threads, commit → visible to the same
consumer.

Rounds are interleaved (relay and raw alternate which goes first, round by round); each figure
is the median over rounds. Sanity checks, asserted: every event committed in a run is seen,
none twice. Targets (issue 13): relay p50 ≤ 10 ms and p99 ≤ 50 ms, with or without the open
transaction.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

from _setup import ROOT, paced, percentile, reset_outbox, setup_django

TARGETS = {"p50_ms": 10, "p99_ms": 50}
HERE = Path(__file__).resolve()


# --- roles run in their own processes --------------------------------------------------------


def receiver_main(topic: str, out: str) -> None:
    """Append `event_id <TAB> unix time` for every record seen, from the end of the topic."""
    from confluent_kafka import TopicPartition

    from relay.kafka import make_consumer

    consumer = make_consumer("bench-latency", f"bench-{uuid.uuid4()}",
                             **{"fetch.wait.max.ms": 5})
    md = consumer.list_topics(topic, timeout=10)
    consumer.assign([TopicPartition(topic, p, -1) for p in md.topics[topic].partitions])
    with open(out, "a", buffering=1) as f:
        print("ready", file=f)
        while True:
            msg = consumer.poll(0.1)
            if msg is None or msg.error():
                continue
            at = time.time()
            for k, v in msg.headers() or []:
                if k == "ce_id":
                    f.write(f"{v.decode()}\t{at}\n")


class _Rollback(Exception):
    pass


def _built_rows(n: int, tag: str) -> list[tuple]:
    """`n` outbox rows exactly as publish() writes them, made by publish_bulk in a transaction
    rolled back (before the timed run): event_id, type, topic, key, shard_hash, headers and
    payload as their JSON text."""
    from django.db import connection, transaction

    from outbox.services import Event, publish_bulk

    rows = []
    try:
        with transaction.atomic():
            ids = publish_bulk([Event("pipeline.probe", {"probe_id": "lat",
                                                         "key": f"{tag}-{i % 50}", "seq": i})
                                for i in range(n)])
            with connection.cursor() as cur:
                cur.execute("SELECT event_id::text, type, topic, key, shard_hash, "
                            "headers::text, payload::text FROM outbox_event "
                            "WHERE event_id = ANY(%s) ORDER BY id", [ids])
                rows = cur.fetchall()
            raise _Rollback
    except _Rollback:
        pass
    return rows


def raw_records(n: int, tag: str) -> list[tuple]:
    """`n` CloudEvents records as the relay sends them: the value is the payload's text as
    the relay reads it."""
    import orjson

    from relay.cloudevents import encode

    return [(e, *encode(t, k, orjson.loads(h), p))
            for e, _type, t, k, _shard, h, p in _built_rows(n, tag)]


INSERT_SQL = ("INSERT INTO outbox_event (event_id, type, topic, key, shard_hash, headers, "
              "payload) VALUES (%s, %s, %s, %s, %s, %s::jsonb, %s::jsonb)")


def writer_main(system: str, rate: float, seconds: float, threads: int, start_at: float,
                out: str, writer: str = "publish") -> None:
    """`threads` threads share `rate`; each line of `out` is `event_id <TAB> commit time`.
    With `writer` "sql", relay writers INSERT rows built beforehand (as the raw baseline
    produces records built beforehand), one per transaction on a plain psycopg connection."""
    import psycopg
    from django.db import connections, transaction

    from outbox.services import publish
    from relay.kafka import make_producer
    from relay.testing import database_url

    tag = uuid.uuid4().hex[:6]
    per_thread = rate / threads
    records: list[list[tuple]] = []
    producers = []
    conns: list[psycopg.Connection] = []
    if system == "relay" and writer == "sql":
        for t in range(threads):
            records.append(_built_rows(int(per_thread * seconds * 1.3) + 5, f"{tag}{t}"))
            conns.append(psycopg.connect(database_url(), prepare_threshold=0))
        connections.close_all()
    if system == "raw":
        for t in range(threads):
            records.append(raw_records(int(per_thread * seconds * 1.3) + 5, f"{tag}{t}"))
            p = make_producer("bench-raw", **{"transactional.id": f"bench-raw-{uuid.uuid4()}",
                                              "linger.ms": 0})
            p.init_transactions(30)
            producers.append(p)
        connections.close_all()
    lines: list[str] = []
    lock = threading.Lock()

    def work(t: int) -> None:
        def one(n: int) -> None:
            if conns:
                row = records[t][n]
                conn = conns[t]
                conn.execute(INSERT_SQL, row)
                conn.commit()
                at = time.time()
                event_id = row[0]
            elif system == "relay":
                with transaction.atomic():
                    event_id = publish("pipeline.probe", {"probe_id": "lat",
                                                          "key": f"{tag}{t}-{n % 50}",
                                                          "seq": n})
                at = time.time()
            else:
                event_id, topic, key, value, headers = records[t][n]
                p = producers[t]
                p.begin_transaction()
                p.produce(topic, key=key, value=value, headers=headers)
                p.commit_transaction(30)
                at = time.time()
            with lock:
                lines.append(f"{event_id}\t{at}\n")

        try:
            paced(per_thread, seconds, one)
        finally:
            connections.close_all()
            if conns:
                conns[t].close()

    time.sleep(max(0.0, start_at - time.time()))
    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    Path(out).write_text("".join(lines))


# --- the orchestrating process ---------------------------------------------------------------


def _read_tsv(path: Path, offset: int = 0) -> list[tuple[str, float]]:
    with open(path, "rb") as f:
        f.seek(offset)
        text = f.read().decode()
    out = []
    for line in text.splitlines():
        if "\t" in line:
            event_id, at = line.split("\t")
            out.append((event_id, float(at)))
    return out


def measure(system: str, rate: float, seconds: float, hold: float, processes: int,
            threads: int, seen_file: Path, work: Path, writer: str = "publish") -> dict:
    import psycopg

    from relay.testing import database_url

    offset = seen_file.stat().st_size
    holder = None
    if hold:
        holder = psycopg.connect(database_url())
        holder.execute("SELECT pg_current_xact_id()")  # an open transaction with an id
    opened = time.monotonic()
    # raw writers init producers first; prebuilt rows are built first
    start_at = time.time() + (4 if system == "raw" or writer == "sql" else 2)
    outs = [work / f"{system}-{uuid.uuid4().hex[:6]}.tsv" for _ in range(processes)]
    procs = [subprocess.Popen(
        [sys.executable, str(HERE), "--role", "writer", "--system", system, "--rate",
         str(rate / processes), "--seconds", str(seconds), "--threads", str(threads),
         "--start-at", str(start_at), "--out", str(out), "--writer", writer], cwd=ROOT)
        for out in outs]
    try:
        for p in procs:
            assert p.wait(seconds + 120) == 0, f"{system} writer failed"
        if holder is not None:
            time.sleep(max(0.0, hold - (time.monotonic() - opened)))
    finally:
        if holder is not None:
            held = time.monotonic() - opened
            holder.rollback()
            holder.close()
    committed = dict(e for out in outs for e in _read_tsv(out))
    deadline = time.time() + 30
    while True:
        seen_list = _read_tsv(seen_file, offset)
        seen: dict[str, float] = {}
        for event_id, at in seen_list:
            seen.setdefault(event_id, at)
        if all(e in seen for e in committed) or time.time() > deadline:
            break
        time.sleep(0.2)
    counts = Counter(e for e, _ in seen_list if e in committed)
    lat = [(seen[e] - t) * 1000 for e, t in committed.items() if e in seen]
    result = {
        "events": len(committed), "delivered": len(lat),
        "achieved_rate_per_s": round(len(committed) / seconds),
        "p50_ms": round(percentile(lat, 50), 2), "p90_ms": round(percentile(lat, 90), 2),
        "p99_ms": round(percentile(lat, 99), 2), "max_ms": round(max(lat), 2),
    }
    if holder is not None:
        result["open_transaction_held_s"] = round(held, 1)
    # sanity: every committed event arrived, and exactly once
    assert result["delivered"] == result["events"], (system, result)
    repeats = [e for e, c in counts.items() if c != 1]
    assert not repeats, f"{system}: {len(repeats)} events seen more than once"
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rates", default="500,2000")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--processes", type=int, default=4, help="writer processes")
    parser.add_argument("--threads", type=int, default=4, help="threads per writer process")
    parser.add_argument("--hold", type=float, default=10,
                        help="seconds the unrelated transaction stays open")
    parser.add_argument("--relay-nice", type=int, default=0,
                        help="diagnostic: run the relay process at this nice level (negative "
                             "needs root), to see how much of its latency is CPU contention")
    parser.add_argument("--writer", choices=("publish", "sql"), default="publish",
                        help="how the relay's writers commit: publish() in a Django "
                             "transaction, as a service does (default), or an INSERT of a row "
                             "built beforehand by publish_bulk, on a plain psycopg connection "
                             "(as the raw baseline produces records built beforehand): the "
                             "same rows at far less client CPU")
    parser.add_argument("--role", default="main", help=argparse.SUPPRESS)
    parser.add_argument("--system", help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--start-at", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--topic", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.role != "main":
        # Children inherit DATABASE_URL and KAFKA_TOPIC_PREFIX from the parent.
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "showoff.settings.base")
        import django

        django.setup()
        if args.role == "receiver":
            receiver_main(args.topic, args.out)
        else:
            writer_main(args.system, args.rate, args.seconds, args.threads, args.start_at,
                        args.out, args.writer)
        return

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
    work = Path(tempfile.mkdtemp(prefix="relay-latency-"))
    seen_file = work / "seen.tsv"
    nice = ["nice", "-n", str(args.relay_nice)] if args.relay_nice else []
    relay = subprocess.Popen([*nice, sys.executable, "manage.py", "run_relay"], cwd=ROOT,
                             env=dict(os.environ, LOG_LEVEL="WARNING"))
    receiver = subprocess.Popen([sys.executable, str(HERE), "--role", "receiver", "--topic",
                                 topic, "--out", str(seen_file)], cwd=ROOT)
    try:
        while not (seen_file.exists() and "ready" in seen_file.read_text()):
            time.sleep(0.1)
        # one probe through the relay: it runs
        with transaction.atomic():
            first = str(publish("pipeline.probe", {"probe_id": "lat", "key": "w", "seq": 0}))
        deadline = time.time() + 60
        while first not in seen_file.read_text():
            assert time.time() < deadline, "the relay did not start"
            time.sleep(0.1)
        for system in ("relay", "raw"):  # warm-up, not recorded
            measure(system, 100, 2, 0, 1, 2, seen_file, work)

        conditions = [(rate, hold) for rate in rates for hold in (0.0, args.hold)]
        runs: dict[tuple, dict[str, list[dict]]] = {c: {"relay": [], "raw": []}
                                                    for c in conditions}
        for r in range(args.rounds):
            for i, (rate, hold) in enumerate(conditions):
                order = ("relay", "raw") if (r + i) % 2 == 0 else ("raw", "relay")
                for system in order:
                    runs[(rate, hold)][system].append(measure(
                        system, rate, args.seconds, hold, args.processes, args.threads,
                        seen_file, work, args.writer))

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
            "writer_processes": args.processes, "threads_per_process": args.threads,
            "relay_writer": args.writer,
            "relay_nice": args.relay_nice,
            "load_average_at_end": os.getloadavg(),
            "targets_ms": TARGETS,
            "conditions": out,
        }, indent=2))
    finally:
        receiver.kill()
        relay.terminate()
        relay.wait(30)
        reset_outbox()
        delete_topics([s.name for s in specs])
        print(f"(topic prefix {prefix} deleted)", file=sys.stderr)


if __name__ == "__main__":
    main()
