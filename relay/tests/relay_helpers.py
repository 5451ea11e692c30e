"""Helpers for the relay's fault tests: subprocess relays, concurrent writers taking per-key
counters under row locks, and the check that every committed event reached Kafka exactly once
and, per key, in commit order (the counters)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path

from django.conf import settings
from django.db import connection, connections, transaction

from outbox.catalogue import CHECKPOINT_TOPIC, TOPICS
from outbox.models import OutboxEvent
from outbox.services import Event, publish_bulk
from relay.kafka import topic_name
from relay.testing import read_all

ROOT = Path(__file__).resolve().parents[2]


def subprocess_env(**extra: str) -> dict[str, str]:
    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "showoff.settings.test",
        "DATABASE_URL": (f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"),
        "KAFKA_TOPIC_PREFIX": settings.KAFKA_TOPIC_PREFIX,
        "KAFKA_BROKERS": settings.KAFKA_BROKERS,
        "KAFKA_ENABLED": "true" if settings.KAFKA_ENABLED else "false",
        "RELAY_POLL_INTERVAL": "0.2",
        "RELAY_STANDBY_POLL_INTERVAL": "0.2",
        "RELAY_SUMMARY_INTERVAL": "5",
        "LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
    }
    env.update(extra)
    return env


class RelayProcess:
    """A `manage.py run_relay` subprocess whose output goes to a log file. Any still running
    (or paused) when its test ends is killed (relay/tests/conftest.py)."""

    live: list[RelayProcess] = []

    @classmethod
    def kill_leftovers(cls) -> None:
        for relay in cls.live:
            if relay.proc.poll() is None:
                relay.proc.send_signal(signal.SIGCONT)
                relay.proc.kill()
                relay.proc.wait(10)
        cls.live.clear()

    def __init__(self, log_dir: Path, *args: str, **env: str):
        self.log_path = log_dir / f"relay-{uuid.uuid4().hex[:6]}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in wait()/kill()
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "run_relay", *args],
            cwd=ROOT, env=subprocess_env(**env), stdout=self._log, stderr=subprocess.STDOUT,
        )
        RelayProcess.live.append(self)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, text: str, timeout: float = 30) -> float:
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if text in self.output():
                return time.monotonic() - start
            if self.proc.poll() is not None and text not in self.output():
                raise AssertionError(f"relay exited ({self.proc.returncode}) before "
                                     f"{text!r}:\n{self.output()}")
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not seen within {timeout}s:\n{self.output()}")

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._log.close()

    def terminate(self, timeout: float = 30) -> int:
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout)
        self._log.close()
        return rc

    def wait(self, timeout: float = 120) -> int:
        rc = self.proc.wait(timeout)
        self._log.close()
        return rc


def create_relay_topics(partitions: int = 3) -> list[str]:
    """The eight topics and the checkpoint topic under the test's prefix."""
    from relay.topics import TopicSpec, create_topics

    specs = [TopicSpec(t, partitions, 1) for t in TOPICS]
    specs.append(TopicSpec(CHECKPOINT_TOPIC, 4, 1, {"cleanup.policy": "compact"}))
    create_topics(specs)
    from relay.testing import wait_for_topic

    for spec in specs:
        wait_for_topic(spec.name, spec.partitions)
    return [s.name for s in specs]


COUNTER_TABLE = "relay_test_key_counter"


def ensure_counter_table(cursor=None) -> None:
    """Per-key counters the writers take under the key's row lock (a test-only table)."""
    sql = (f"CREATE TABLE IF NOT EXISTS {COUNTER_TABLE} (key text PRIMARY KEY, "
           "n bigint NOT NULL DEFAULT 0)")
    if cursor is not None:
        cursor.execute(sql)
        return
    with connection.cursor() as cur:
        cur.execute(sql)


class Writers:
    """Concurrent writer threads, as the app's services write: each transaction locks its key's
    row (a counter), increments it and publishes one probe event per increment, `seq` = the
    counter value, so the counters are the true commit order of each key. Each transaction
    takes its transaction id at a random moment: about half take one first (a write before
    the lock, as a request that inserts an idempotency key first) and wait a little before
    locking, the others get theirs from the lock. About one transaction in `rollback_every`
    rolls back (its events and increments vanish)."""

    def __init__(self, *, threads: int = 4, events: int = 2000, keys: int = 12,
                 max_batch: int = 4, rollback_every: int = 7, pause: float = 0.0,
                 early_txid: float = 0.5, early_wait: float = 0.01):
        self.threads = threads
        self.target = events
        self.keys = keys
        self.max_batch = max_batch
        self.rollback_every = rollback_every
        self.pause = pause
        self.early_txid = early_txid
        self.early_wait = early_wait
        self.tag = uuid.uuid4().hex[:6]
        self.rolled_back: set[str] = set()
        self.written = 0
        self._lock = threading.Lock()
        self._workers: list[threading.Thread] = []
        self.errors: list[BaseException] = []

    def key(self, i: int) -> str:
        return f"key-{self.tag}-{i}"

    def _transaction(self, rng: random.Random, n: int) -> list[str]:
        key = self.key(rng.randrange(self.keys))
        rollback = rng.randrange(self.rollback_every) == 0
        ids = []
        try:
            with transaction.atomic(), connection.cursor() as cur:
                if rng.random() < self.early_txid:
                    cur.execute("SELECT pg_current_xact_id()")
                    time.sleep(rng.uniform(0, self.early_wait))
                cur.execute(f"SELECT n FROM {COUNTER_TABLE} WHERE key = %s FOR UPDATE", [key])
                (base,) = cur.fetchone()
                cur.execute(f"UPDATE {COUNTER_TABLE} SET n = n + %s WHERE key = %s", [n, key])
                events = [Event("pipeline.probe", {"probe_id": "fault", "key": key,
                                                   "seq": base + i + 1}, event_id=uuid.uuid4())
                          for i in range(n)]
                publish_bulk(events)
                ids = [str(e.event_id) for e in events]
                if rollback:
                    raise _Rollback
        except _Rollback:
            with self._lock:
                self.rolled_back.update(ids)
            return []
        return ids

    def _work(self, seed: int) -> None:
        rng = random.Random(seed)
        try:
            while True:
                with self._lock:
                    if self.written >= self.target:
                        return
                    n = min(rng.randint(1, self.max_batch), self.target - self.written)
                    self.written += n
                if not self._transaction(rng, n):
                    with self._lock:
                        self.written -= n
                if self.pause:
                    time.sleep(rng.uniform(0, self.pause))
        except BaseException as exc:  # noqa: BLE001 - reported by join()
            self.errors.append(exc)
        finally:
            connections.close_all()

    def start(self) -> Writers:
        ensure_counter_table()
        with connection.cursor() as cur:
            for i in range(self.keys):
                cur.execute(f"INSERT INTO {COUNTER_TABLE} (key) VALUES (%s) "
                            "ON CONFLICT DO NOTHING", [self.key(i)])
        for i in range(self.threads):
            t = threading.Thread(target=self._work, args=(i,), daemon=True)
            t.start()
            self._workers.append(t)
        return self

    def stop(self) -> None:
        """Write no more than what is already claimed (transactions in flight finish)."""
        with self._lock:
            self.target = self.written

    def join(self, timeout: float = 120) -> None:
        for t in self._workers:
            t.join(timeout)
        assert not self.errors, self.errors

    def alive(self) -> bool:
        return any(t.is_alive() for t in self._workers)


class _Rollback(Exception):
    pass


def _seq(record) -> int | None:
    try:
        return json.loads(record.value)["seq"]
    except (TypeError, ValueError, KeyError):
        return None


def assert_exactly_once_in_order(*, rolled_back: set[str] = frozenset(),
                                 expect_count: int | None = None,
                                 rows: list[tuple[str, str, str]] | None = None,
                                 contiguous: bool = False) -> list:
    """Every committed outbox row is in Kafka exactly once, no rolled-back event anywhere, and
    per key in commit order: each key's `seq` (a counter taken under the key's row lock, or a
    number growing with each commit of one writer) strictly increases in Kafka's order.
    `contiguous`: each key's counters are exactly 1..N (the writers' counters: nothing lost
    and nothing extra). `rows` (event id, key, topic) default to this database's outbox."""
    if rows is None:
        rows = [(str(e), k, t) for e, k, t in
                OutboxEvent.objects.values_list("event_id", "key", "topic")]
    topics = sorted({topic_name(t) for _, _, t in rows}) or [topic_name("analytics-events")]
    records = read_all(topics)
    ids = [r.header("ce_id") for r in records]
    counts = Counter(ids)
    dupes = {i: c for i, c in counts.items() if c > 1}
    assert not dupes, f"{len(dupes)} events delivered more than once, e.g. {list(dupes)[:3]}"
    expected = [str(e) for e, _, _ in rows]
    missing = set(expected) - set(ids)
    assert not missing, f"{len(missing)} committed events never delivered"
    extra = set(ids) - set(expected)
    assert not extra, f"{len(extra)} delivered events are not committed outbox rows"
    assert not (set(ids) & set(rolled_back)), "a rolled-back event reached Kafka"
    if expect_count is not None:
        assert len(ids) == expect_count
    # Per key: Kafka order (one partition per key, offsets ascending) is commit order.
    by_key: dict[str, list[int]] = defaultdict(list)
    for r in sorted(records, key=lambda r: (r.topic, r.partition, r.offset)):
        by_key[r.key.decode()].append(_seq(r))
    inversions = {k: s for k, s in by_key.items()
                  if any(b is None or a is None or b <= a for a, b in zip(s, s[1:]))}
    assert not inversions, (f"{len(inversions)} key(s) out of commit order, e.g. "
                            f"{next(iter(inversions.items()))}")
    if contiguous:
        gaps = {k: s for k, s in by_key.items() if s != list(range(1, len(s) + 1))}
        assert not gaps, f"counters not 1..N: {next(iter(gaps.items()))}"
    return records


def drain(relay, timeout: float = 60) -> int:
    """Step an in-process relay until a fresh tick has nothing for it (everything committed so
    far is in Kafka; a transaction open elsewhere delays only its own rows)."""
    total = 0
    deadline = time.monotonic() + timeout
    while n := relay.step():
        total += n
        assert time.monotonic() < deadline, "the relay kept finding rows"
    relay.flush_position()  # the database copy, held back while batches follow each other
    return total
