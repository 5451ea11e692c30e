"""Shared set-up for benchmarks: Django on a dedicated `showoff_bench` database, unique topics.

Benchmarks run against the real local services (`scripts/services up`), print one JSON object
on stdout, and compare against a baseline measured in the same run.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BENCH_DB = os.environ.get("BENCH_DATABASE_NAME", "showoff_bench")


def setup_django(prefix: str | None = None, db: str | None = None) -> str:
    """Point Django at the bench database (created and migrated if needed); returns the
    Kafka topic prefix of this run."""
    import psycopg

    db = db or BENCH_DB

    base_url = os.environ.get("DATABASE_URL", "postgres://showoff@127.0.0.1:5432/showoff")
    server, _, _ = base_url.rpartition("/")
    with psycopg.connect(base_url, autocommit=True) as conn:
        exists = conn.execute("select 1 from pg_database where datname = %s",
                              [db]).fetchone()
        if not exists:
            conn.execute(f'create database "{db}"')
    os.environ["DATABASE_URL"] = f"{server}/{db}"
    prefix = prefix or f"bench-{uuid.uuid4().hex[:8]}."
    os.environ["KAFKA_TOPIC_PREFIX"] = prefix
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "showoff.settings.base")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return prefix


def reset_outbox() -> None:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("TRUNCATE outbox_event, relay_position, relay_inbox")


def rss_kib(pid: int | str = "self") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def paced(rate: float, seconds: float, fn) -> None:
    """Call fn(n) at a steady `rate` per second for `seconds` (catching up after a slow call)."""
    interval = 1.0 / rate
    start = time.perf_counter()
    n = 0
    while time.perf_counter() - start < seconds:
        fn(n)
        n += 1
        sleep = start + n * interval - time.perf_counter()
        if sleep > 0:
            time.sleep(sleep)


def run_writers(rate: float, seconds: float, writers: int, write_one) -> dict[str, float]:
    """`writers` threads share `rate`; write_one(w, n) returns (event id, commit time)."""
    committed: dict[str, float] = {}
    lock = threading.Lock()

    def worker(w: int) -> None:
        from django.db import connections

        def one(n: int) -> None:
            event_id, at = write_one(w, n)
            with lock:
                committed[event_id] = at

        try:
            paced(rate / writers, seconds, one)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return committed


def latencies(committed: dict[str, float], seen: dict[str, float], wait: float = 60,
              seen_label: str = "delivered") -> dict:
    """Commit → seen latency percentiles (ms), waiting up to `wait` s for stragglers."""
    deadline = time.time() + wait
    while time.time() < deadline and not all(e in seen for e in committed):
        time.sleep(0.1)
    lat = [(seen[e] - t) * 1000 for e, t in committed.items() if e in seen]
    return {
        "events": len(committed),
        seen_label: len(lat),
        "p50_ms": round(percentile(lat, 50), 2),
        "p90_ms": round(percentile(lat, 90), 2),
        "p99_ms": round(percentile(lat, 99), 2),
        "max_ms": round(max(lat), 2) if lat else None,
    }
