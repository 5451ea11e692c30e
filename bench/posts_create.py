"""What the outbox costs a create-post request, and API throughput under a local load.

    .venv/bin/python bench/posts_create.py [--requests 400] [--seconds 8] [--concurrency 8]

1. In process (Django's test client through the whole middleware and DRF stack, real
   PostgreSQL): create-post request time with the `post.created` outbox write against the same
   request with event writing switched off (settings.POSTS_PUBLISH_EVENTS, a plain setting only
   this benchmark changes), interleaved in blocks in the same run. Target: ratio ≤ 1.15.
2. Over HTTP (gunicorn on 127.0.0.1, a free port): requests/s and latency of create-post (with
   and without events, same run) and of the feed, from `--concurrency` client threads for
   `--seconds` each.

Runs on its own database (`showoff_bench_posts`, created and migrated if missing) against the
local services; prints one JSON object.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
warnings.filterwarnings("ignore", message="No directory at")
DB = os.environ.get("BENCH_POSTS_DATABASE_NAME", "showoff_bench_posts")
BENCH_ENV = {
    # The server and this process sign and check the same tokens.
    "SECRET_KEY": "bench-only-secret-key-not-for-production-use-0123456789abcdef",
    # The load is the point here: no throttling in the way.
    "API_THROTTLE_ANON": "1000000/min",
    "API_THROTTLE_USER": "1000000/min",
    "LOG_LEVEL": "WARNING",
    "DEBUG": "false",
}


def setup_django() -> str:
    import psycopg

    base_url = os.environ.get("DATABASE_URL", "postgres://showoff@127.0.0.1:5432/showoff")
    server, _, _ = base_url.rpartition("/")
    with psycopg.connect(base_url, autocommit=True) as conn:
        if not conn.execute("select 1 from pg_database where datname = %s", [DB]).fetchone():
            conn.execute(f'create database "{DB}"')
    os.environ["DATABASE_URL"] = f"{server}/{DB}"
    os.environ.update(BENCH_ENV)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "showoff.settings.base")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return os.environ["DATABASE_URL"]


def make_users(n: int) -> list[str]:
    """n users; returns a bearer access token for each."""
    import uuid

    from rest_framework_simplejwt.tokens import AccessToken

    from accounts.models import User

    run = uuid.uuid4().hex[:6]
    users = [User(username=f"bench-{run}-{i}") for i in range(n)]
    for u in users:
        u.set_unusable_password()
    User.objects.bulk_create(users)
    users = list(User.objects.filter(username__startswith=f"bench-{run}-"))
    return [f"Bearer {AccessToken.for_user(u)}" for u in users]


# --- 1. in process ---------------------------------------------------------------------------


def in_process(requests: int, block: int = 25) -> dict:
    from django.conf import settings
    from django.core.signals import request_finished
    from django.db import close_old_connections
    from rest_framework.test import APIClient

    from outbox.models import OutboxEvent

    # Keep the connection between requests (a real server keeps it with CONN_MAX_AGE too).
    request_finished.disconnect(close_old_connections)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=make_users(1)[0])
    body = {"text": "a benchmark post with a sentence of ordinary length in it, #showoff"}
    for _ in range(50):  # warm-up: connections, caches, code paths
        client.post("/api/posts/", body, format="json")

    timings: dict[bool, list[float]] = {True: [], False: []}
    events_before = OutboxEvent.objects.filter(type="post.created").count()
    for i in range(0, requests, block):
        # Interleave blocks (with, without, without, with, ...) so drift hits both alike.
        order = (True, False) if (i // block) % 2 == 0 else (False, True)
        for publish in order:
            settings.POSTS_PUBLISH_EVENTS = publish
            for _ in range(block):
                t0 = time.perf_counter()
                resp = client.post("/api/posts/", body, format="json")
                timings[publish].append(time.perf_counter() - t0)
                assert resp.status_code == 201, resp.content
    settings.POSTS_PUBLISH_EVENTS = True
    written = OutboxEvent.objects.filter(type="post.created").count() - events_before
    assert written == len(timings[True]), (written, len(timings[True]))

    def summary(xs: list[float]) -> dict:
        xs = sorted(xs)
        return {"n": len(xs), "mean_ms": round(statistics.fmean(xs) * 1000, 3),
                "p50_ms": round(xs[len(xs) // 2] * 1000, 3),
                "p95_ms": round(xs[int(len(xs) * 0.95)] * 1000, 3)}

    with_events, without = summary(timings[True]), summary(timings[False])
    return {
        "with_outbox": with_events,
        "events_off": without,
        "ratio_mean": round(with_events["mean_ms"] / without["mean_ms"], 3),
        "ratio_p50": round(with_events["p50_ms"] / without["p50_ms"], 3),
        "target_ratio_max": 1.15,
    }


# --- 2. over HTTP ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, events: bool) -> subprocess.Popen:
    env = {**os.environ, **BENCH_ENV}
    env["DJANGO_SETTINGS_MODULE"] = ("showoff.settings.base" if events
                                     else "bench_posts_settings_no_events")
    env["PYTHONPATH"] = f"{ROOT}:{ROOT / 'bench'}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "showoff.wsgi:application", "--bind",
         f"127.0.0.1:{port}", "--workers", "2", "--threads", "4", "--log-level", "warning"],
        cwd=ROOT, env=env,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.2)
    proc.terminate()
    raise RuntimeError(f"gunicorn did not answer on 127.0.0.1:{port} within 30 s")


def load(port: int, method: str, path: str, tokens: list[str], seconds: float,
         concurrency: int, body: dict | None = None) -> tuple[list[float], dict[int, int], float]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds
    payload = json.dumps(body).encode() if body is not None else None

    def worker(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        headers = {"Authorization": tokens[i % len(tokens)], "Content-Type": "application/json"}
        mine: list[float] = []
        codes: dict[int, int] = {}
        while time.monotonic() < stop_at:
            t0 = time.perf_counter()
            conn.request(method, path, body=payload, headers=headers)
            resp = conn.getresponse()
            resp.read()
            mine.append(time.perf_counter() - t0)
            codes[resp.status] = codes.get(resp.status, 0) + 1
        conn.close()
        with lock:
            latencies.extend(mine)
            for k, v in codes.items():
                statuses[k] = statuses.get(k, 0) + v

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, statuses, time.perf_counter() - started


def _summary(runs: list[tuple[list[float], dict[int, int], float]]) -> dict:
    latencies = sorted(x for r in runs for x in r[0])
    elapsed = sum(r[2] for r in runs)
    statuses: dict[int, int] = {}
    for r in runs:
        for k, v in r[1].items():
            statuses[k] = statuses.get(k, 0) + v
    return {
        "requests": len(latencies),
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(latencies[len(latencies) // 2] * 1000, 2),
        "p95_ms": round(latencies[int(len(latencies) * 0.95)] * 1000, 2),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
    }


def over_http(seconds: float, concurrency: int, rounds: int = 4) -> dict:
    """Both servers run at once (only one is loaded at a time); the scenarios alternate in
    `rounds` short rounds so that load from elsewhere on the machine hits them alike."""
    tokens = make_users(concurrency)
    body = {"text": "a benchmark post with a sentence of ordinary length in it, #showoff"}
    ports = {True: free_port(), False: free_port()}
    servers = [start_server(ports[True], True), start_server(ports[False], False)]
    runs: dict[str, list] = {"create_post_with_outbox": [], "create_post_events_off": [],
                             "feed": []}
    try:
        for events in (True, False):  # warm-up
            load(ports[events], "POST", "/api/posts/", tokens, 1.0, concurrency, body)
        share = seconds / rounds
        for r in range(rounds):
            order = (True, False) if r % 2 == 0 else (False, True)
            for events in order:
                key = "create_post_with_outbox" if events else "create_post_events_off"
                runs[key].append(load(ports[events], "POST", "/api/posts/", tokens, share,
                                      concurrency, body))
            runs["feed"].append(load(ports[True], "GET", "/api/posts/", tokens, share,
                                     concurrency))
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            server.wait(timeout=30)
    out: dict = {"concurrency": concurrency, "seconds_each": seconds, "rounds": rounds,
                 "server": "gunicorn, 2 workers x 4 threads, 127.0.0.1"}
    out.update({k: _summary(v) for k, v in runs.items()})
    out["create_post_rps_ratio_off_over_on"] = round(
        out["create_post_events_off"]["requests_per_s"]
        / out["create_post_with_outbox"]["requests_per_s"], 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=400,
                        help="in-process create-post requests per variant")
    parser.add_argument("--seconds", type=float, default=8.0, help="HTTP load per scenario")
    parser.add_argument("--concurrency", type=int, default=8, help="HTTP client threads")
    args = parser.parse_args()
    setup_django()
    result = {
        "benchmark": "posts_create",
        "in_process_create_post": in_process(args.requests),
        "http_load": over_http(args.seconds, args.concurrency),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
