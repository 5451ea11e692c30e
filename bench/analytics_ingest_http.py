"""Analytics ingestion through gunicorn (issue 18): accepted client events/s per web worker.

    .venv/bin/python bench/analytics_ingest_http.py [--batches 200] [--batch 100] [--rounds 5]
                                                    [--clients 2]

A gunicorn with ONE sync worker (the production web server of docker-compose.yml) serves
`POST /api/analytics/events/`; `--clients` HTTP client threads send pre-encoded batches of
`--batch` mixed items back to back (each batch a new device, so every item is new and
accepted), through the whole stack: middleware, throttles (Redis; their rates raised so that
nothing is refused), DRF, per-item checks, receipts, `publish_bulk`, commit. Events/s from the
first request sent to the last response.

Baseline, in the same run, alternating which goes first each round: the same number of items as
catalogue events written by `publish_bulk` in this process, one transaction per batch (no HTTP,
no per-item checks, no receipts). Medians over the rounds. Target: >= 5,000 events/s per worker.

Sanity checks (asserted): every response is 200 with every item accepted; the outbox and the
receipts hold exactly the items sent. Runs on its own database
(`showoff_bench_analytics_http`), DEBUG off; prints one JSON object.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime

from _setup import ROOT, setup_django
from analytics_throughput import PROFILES, client_item

DB = "showoff_bench_analytics_http"
UNLIMITED = "100000000/min"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_gunicorn(port: int) -> subprocess.Popen:
    env = dict(os.environ, DEBUG="false", API_THROTTLE_ANON=UNLIMITED,
               ANALYTICS_INGEST_RATE=UNLIMITED, LOG_LEVEL="WARNING",
               DJANGO_SETTINGS_MODULE="showoff.settings.base")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "showoff.wsgi:application", "--workers", "1",
         "--bind", f"127.0.0.1:{port}", "--log-level", "warning"], cwd=ROOT, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/api/schema/")
            conn.getresponse().read()
            return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("gunicorn did not start")


def make_batches(n: int, size: int, rng: random.Random, now: datetime) -> list[dict]:
    batches = []
    for b in range(n):
        platform, version = PROFILES[b % 4]
        batches.append({"device_id": f"http-{uuid.uuid4().hex[:12]}", "platform": platform,
                        "app_version": version,
                        "events": [client_item(rng, b * size + i, now) for i in range(size)]})
    return batches


def post_all(port: int, bodies: list[bytes], clients: int) -> tuple[float, int]:
    """Send every body (`clients` at a time); returns (seconds, items accepted)."""
    queue = list(enumerate(bodies))
    lock = threading.Lock()
    accepted = [0]
    errors: list[str] = []

    def worker() -> None:
        while True:
            with lock:
                if not queue:
                    return
                _, body = queue.pop()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            conn.request("POST", "/api/analytics/events/", body,
                         {"Content-Type": "application/json"})
            response = conn.getresponse()
            data = response.read()
            conn.close()
            if response.status != 200:
                errors.append(f"{response.status} {data[:200]!r}")
                return
            with lock:
                accepted[0] += json.loads(data)["accepted"]

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    return time.perf_counter() - started, accepted[0]


def direct(batches: list[dict], now: datetime) -> float:
    """The baseline: the same items as catalogue events, publish_bulk per batch."""
    from django.db import transaction

    from outbox.services import Event, publish_bulk

    received = now.isoformat().replace("+00:00", "Z")
    events = [[Event(f"analytics.{i['type']}", {
        "device_id": body["device_id"], "user_id": None, "client_event_id": i["id"],
        "session_id": None, "platform": body["platform"], "app_version": body["app_version"],
        "occurred_at": i["occurred_at"], "received_at": received, **i["properties"]},
        event_id=uuid.uuid4()) for i in body["events"]] for body in batches]
    started = time.perf_counter()
    for chunk in events:
        with transaction.atomic():
            publish_bulk(chunk)
    return time.perf_counter() - started


def counts() -> tuple[int, int]:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT (SELECT count(*) FROM outbox_event), "
                    "(SELECT count(*) FROM analytics_ingestreceipt)")
        return cur.fetchone()


def truncate() -> None:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("TRUNCATE outbox_event, analytics_ingestreceipt")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--clients", type=int, default=2)
    args = parser.parse_args()
    os.environ["DEBUG"] = "false"
    setup_django(db=DB)
    port = free_port()
    server = start_gunicorn(port)
    rng = random.Random(3)
    load_at_start = os.getloadavg()[0]
    api_rates, direct_rates, ratios = [], [], []
    try:
        # Warm the worker up (imports, catalogue, connections) before measuring.
        now = datetime.now(UTC)
        post_all(port, [json.dumps(b).encode() for b in make_batches(10, args.batch, rng, now)],
                 args.clients)
        for r in range(args.rounds):
            truncate()
            now = datetime.now(UTC)
            batches = make_batches(args.batches, args.batch, rng, now)
            bodies = [json.dumps(b).encode() for b in batches]
            items = args.batches * args.batch
            seconds = {}
            for phase in (("api", "direct") if r % 2 == 0 else ("direct", "api")):
                before = counts()
                if phase == "api":
                    seconds["api"], accepted = post_all(port, bodies, args.clients)
                    assert accepted == items, (accepted, items)
                    assert counts() == (before[0] + items, before[1] + items), counts()
                else:
                    seconds["direct"] = direct(batches, now)
                    assert counts() == (before[0] + items, before[1]), counts()
            api_rates.append(items / seconds["api"])
            direct_rates.append(items / seconds["direct"])
            ratios.append(seconds["direct"] / seconds["api"])
    finally:
        server.terminate()
        server.wait(30)
        truncate()
    print(json.dumps({
        "benchmark": "analytics_ingest_http",
        "cpu_count": os.cpu_count(),
        "load_average_at_start": load_at_start,
        "load_average_at_end": os.getloadavg()[0],
        "gunicorn_workers": 1,
        "client_threads": args.clients,
        "batch_size": args.batch,
        "items_per_round": args.batches * args.batch,
        "rounds": args.rounds,
        "api_events_per_s_per_worker": round(statistics.median(api_rates)),
        "baseline_publish_bulk_events_per_s": round(statistics.median(direct_rates)),
        "ratio_api_to_baseline": round(statistics.median(ratios), 3),
        "api_events_per_s_per_round": [round(x) for x in api_rates],
        "target_events_per_s_per_worker": 5000,
        "target_met": statistics.median(api_rates) >= 5000,
    }, indent=2))


if __name__ == "__main__":
    main()
