"""PostgreSQL restarting under the relay: the relay and its standby wait and reconnect (the
lock session, LISTEN, reads, the position copy), a relay started while PostgreSQL is down
waits for it, and every event still arrives once, in commit order. Runs a private PostgreSQL
(its own port and data folder, the test database's schema), so the shared one is never
restarted."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import pytest

from relay.kafka import topic_name
from relay.testing import delete_topics, read_all

from .private_services import PrivatePostgres
from .relay_helpers import ROOT, RelayProcess, assert_exactly_once_in_order, create_relay_topics

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

# Writers in their own process against the private database: each transaction locks its key's
# counter, increments it and publishes it; a transaction cut by a restart is retried (if its
# commit did land, the counter says so).
WRITERS = """
import json, random, sys, time, uuid
import django
django.setup()
from django.db import DatabaseError, connection, connections, transaction
from outbox.services import Event, publish_bulk
from relay.tests.relay_helpers import COUNTER_TABLE, ensure_counter_table

stop_file, out_file = sys.argv[1], sys.argv[2]
rng = random.Random(5)
keys = [f"pg-{i}" for i in range(6)]
ensure_counter_table()
with connection.cursor() as cur:
    for k in keys:
        cur.execute(f"INSERT INTO {COUNTER_TABLE} (key) VALUES (%s) ON CONFLICT DO NOTHING", [k])
rolled_back, errors = [], 0
while True:
    try:
        open(stop_file).close()
        break
    except FileNotFoundError:
        pass
    key, n = rng.choice(keys), rng.randint(1, 3)
    rollback = rng.randrange(8) == 0
    try:
        with transaction.atomic(), connection.cursor() as cur:
            if rng.random() < 0.5:
                cur.execute("SELECT pg_current_xact_id()")
            cur.execute(f"SELECT n FROM {COUNTER_TABLE} WHERE key = %s FOR UPDATE", [key])
            (base,) = cur.fetchone()
            cur.execute(f"UPDATE {COUNTER_TABLE} SET n = n + %s WHERE key = %s", [n, key])
            events = [Event("pipeline.probe", {"probe_id": "pg", "key": key, "seq": base + i + 1},
                            event_id=uuid.uuid4()) for i in range(n)]
            publish_bulk(events)
            if rollback:
                rolled_back += [str(e.event_id) for e in events]
                raise LookupError
    except LookupError:
        pass
    except DatabaseError:
        errors += 1
        connections.close_all()
        time.sleep(0.2)
    time.sleep(rng.uniform(0, 0.03))
json.dump({"rolled_back": rolled_back, "errors": errors}, open(out_file, "w"))
"""


@pytest.fixture
def private_pg():
    # PostgreSQL runs as the `postgres` user: its folders must be reachable by it (pytest's
    # tmp_path is private to root).
    base = Path(tempfile.mkdtemp(prefix="showoff-relay-pg-", dir="/var/tmp"))
    base.chmod(0o755)
    pg = PrivatePostgres(base)
    try:
        pg.create()
        yield pg
    finally:
        pg.destroy()
        shutil.rmtree(base, ignore_errors=True)


def _rows(pg: PrivatePostgres) -> list[tuple[str, str, str]]:
    with psycopg.connect(pg.url) as conn:
        return [(str(e), k, t) for e, k, t in conn.execute(
            "SELECT event_id, key, topic FROM outbox_event").fetchall()]


def _delivered() -> int:
    return len(read_all([topic_name("analytics-events")]))


def _wait_for_more(n: int, *relays: RelayProcess, timeout: float = 90) -> None:
    target = _delivered() + n
    deadline = time.monotonic() + timeout
    while _delivered() < target:
        assert time.monotonic() < deadline, "".join(r.output() for r in relays)
        time.sleep(0.1)


def test_relay_and_standby_ride_out_postgresql_restarts(private_pg, kafka_prefix, tmp_path):
    topics = create_relay_topics()
    env = {"DATABASE_URL": private_pg.url, "RELAY_LOCK_LEASE_SECONDS": "3"}
    try:
        # given: PostgreSQL is down when the relay starts: it waits, saying what for
        private_pg.down()
        active = RelayProcess(tmp_path, "--batch-size", "20", **env)
        active.wait_for("waiting for it", timeout=60)
        private_pg.up()
        active.wait_for("started at", timeout=60)
        standby = RelayProcess(tmp_path, "--batch-size", "20", **env)
        standby.wait_for("waiting as hot standby", timeout=60)
        stop_file, out_file = tmp_path / "stop", tmp_path / "writers.json"
        writers = subprocess.Popen(
            [sys.executable, "-c", WRITERS, str(stop_file), str(out_file)], cwd=ROOT,
            env={**os.environ, "DJANGO_SETTINGS_MODULE": "showoff.settings.test",
                 "DATABASE_URL": private_pg.url, "LOG_LEVEL": "ERROR"})
        # when: PostgreSQL restarts three times mid-stream (each time after 100 more events)
        for round_ in range(3):
            _wait_for_more(100, active, standby)
            private_pg.down()
            time.sleep(1 + round_)
            private_pg.up()
        _wait_for_more(100, active, standby)
        stop_file.touch()
        assert writers.wait(60) == 0
        result = json.loads(out_file.read_text())
        # then: both relay processes are still there, and everything committed is delivered
        rows = _rows(private_pg)
        deadline = time.monotonic() + 120
        while _delivered() < len(rows):
            assert time.monotonic() < deadline, active.output() + standby.output()
            time.sleep(0.2)
        for relay in (active, standby):
            assert relay.proc.poll() is None, relay.output()
        logs = active.output() + standby.output()
        assert "PostgreSQL is back" in logs or "reconnecting" in logs, logs
        assert "Traceback" not in logs, logs
        assert result["errors"] >= 3  # the writers saw the restarts too
        assert active.terminate() == 0, active.output()
        assert standby.terminate() == 0, standby.output()
        assert_exactly_once_in_order(rolled_back=set(result["rolled_back"]), rows=rows,
                                     contiguous=True)
    finally:
        private_pg.up()
        delete_topics(topics)
