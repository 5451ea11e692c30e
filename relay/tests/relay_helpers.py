"""Helpers for the relay's fault tests: subprocess relays, concurrent writers, and the check
that every committed event reached Kafka exactly once and in per-key `(txid, id)` order."""

from __future__ import annotations

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
    """A `manage.py run_relay` subprocess whose output goes to a log file."""

    def __init__(self, log_dir: Path, *args: str, **env: str):
        self.log_path = log_dir / f"relay-{uuid.uuid4().hex[:6]}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in wait()/kill()
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "run_relay", *args],
            cwd=ROOT, env=subprocess_env(**env), stdout=self._log, stderr=subprocess.STDOUT,
        )

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


class Writers:
    """Concurrent writer threads: each commits transactions of 1..`max_batch` probe events on a
    few keys, and rolls back about one transaction in `rollback_every`."""

    def __init__(self, *, threads: int = 4, events: int = 2000, keys: int = 12,
                 max_batch: int = 8, rollback_every: int = 7, pause: float = 0.0):
        self.threads = threads
        self.target = events
        self.keys = keys
        self.max_batch = max_batch
        self.rollback_every = rollback_every
        self.pause = pause
        self.rolled_back: set[str] = set()
        self.written = 0
        self._lock = threading.Lock()
        self._workers: list[threading.Thread] = []
        self.errors: list[BaseException] = []

    def _work(self, seed: int) -> None:
        rng = random.Random(seed)
        try:
            while True:
                with self._lock:
                    if self.written >= self.target:
                        return
                    n = min(rng.randint(1, self.max_batch), self.target - self.written)
                    self.written += n
                events = [
                    Event("pipeline.probe",
                          {"probe_id": "fault", "key": f"key-{rng.randrange(self.keys)}",
                           "seq": i}, event_id=uuid.uuid4())
                    for i in range(n)
                ]
                rollback = rng.randrange(self.rollback_every) == 0
                try:
                    with transaction.atomic():
                        publish_bulk(events)
                        if rollback:
                            raise _Rollback
                except _Rollback:
                    with self._lock:
                        self.written -= n
                        self.rolled_back.update(str(e.event_id) for e in events)
                if self.pause:
                    time.sleep(rng.uniform(0, self.pause))
        except BaseException as exc:  # noqa: BLE001 - reported by join()
            self.errors.append(exc)
        finally:
            connections.close_all()

    def start(self) -> Writers:
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


def assert_exactly_once_in_order(*, rolled_back: set[str] = frozenset(),
                                 expect_count: int | None = None) -> list:
    """Every committed outbox row is in Kafka exactly once; per key in (txid, id) order; no
    rolled-back event anywhere."""
    rows = list(OutboxEvent.objects.order_by("txid", "id").values_list("event_id", "key",
                                                                          "topic"))
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
    # Per key: Kafka order (one partition per key, offsets ascending) == (txid, id) order.
    by_key_db: dict[str, list[str]] = defaultdict(list)
    for event_id, key, _ in rows:
        by_key_db[key].append(str(event_id))
    by_key_kafka: dict[str, list[str]] = defaultdict(list)
    for r in sorted(records, key=lambda r: (r.topic, r.partition, r.offset)):
        by_key_kafka[r.key.decode()].append(r.header("ce_id"))
    for key, order in by_key_db.items():
        assert by_key_kafka[key] == order, f"key {key}: Kafka order differs from commit order"
    return records


def drain(relay, timeout: float = 60) -> int:
    """Step an in-process relay until nothing is left for it. Rows waiting behind a
    transaction that is still open elsewhere in the cluster (another test database on a
    shared server, say) are waited for, not taken as the end."""
    total = 0
    deadline = time.monotonic() + timeout
    while True:
        n = relay.step()
        total += n
        if n:
            continue
        if not relay._has_pending():
            return total
        assert time.monotonic() < deadline, "rows stayed undeliverable (a transaction open?)"
        time.sleep(0.05)
