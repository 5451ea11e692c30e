"""The relay's failure holes (issue 13), each closed and shown against the real PostgreSQL and
Kafka: records Kafka refuses as too large, a reconnect to a database that is behind the
position, a lost shard lock before a rebuild, a zombie that resumes after being fenced, and a
paused relay giving its shard up."""

from __future__ import annotations

import logging
import secrets
import signal
import time
import uuid

import psycopg
import pytest
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType
from django.db import connection, transaction

from outbox.models import OutboxEvent
from outbox.services import Event, publish_bulk
from relay import metrics
from relay.engine import Relay, RelayError
from relay.kafka import make_admin, topic_name
from relay.lease import LeaseLost
from relay.models import SetAsideEvent
from relay.position import Position, Snapshot
from relay.testing import database_url, delete_topics, read_all

from .relay_helpers import (
    RelayProcess,
    Writers,
    assert_exactly_once_in_order,
    drain,
)

pytestmark = pytest.mark.django_db(transaction=True)


def _write_with_one_big(big_bytes: int) -> tuple[list[str], str]:
    """Ten small events and, in the middle, one with `big_bytes` of padding, in one
    transaction (one tick, one batch); returns (small ids, big id)."""
    events = [Event("pipeline.probe", {"probe_id": "size", "key": f"k{i % 3}", "seq": i + 1},
                    event_id=uuid.uuid4()) for i in range(10)]
    # random hex: the producer compresses batches, so the broker must see big bytes too
    big = Event("pipeline.probe", {"probe_id": "size", "key": "k1", "seq": 100,
                                   "padding": secrets.token_hex(big_bytes // 2)},
                event_id=uuid.uuid4())
    with transaction.atomic():
        publish_bulk(events[:5])
        publish_bulk([big])
        publish_bulk(events[5:])
    return [str(e.event_id) for e in events], str(big.event_id)


def _others(big: str) -> list[tuple[str, str, str]]:
    return [(str(e), k, t) for e, k, t in OutboxEvent.objects.exclude(event_id=big)
            .values_list("event_id", "key", "topic")]


def _assert_set_aside(big: str, caplog, reason: str) -> None:
    aside = SetAsideEvent.objects.get()
    assert (str(aside.event_id), aside.type, aside.key, aside.payload["seq"]) == (
        big, "pipeline.probe", "k1", 100)
    assert reason in aside.reason
    lines = [r.getMessage() for r in caplog.records if r.name == "relay"
             and r.levelno == logging.ERROR]
    assert any(f"set aside event {big}" in line for line in lines), lines
    assert big not in [r.header("ce_id") for r in read_all([topic_name("analytics-events")])]


def test_a_record_above_the_producer_limit_is_set_aside_and_the_shard_moves_on(
        relay_topics, settings, caplog):
    # given: an event accepted under a larger limit, then KAFKA_MESSAGE_MAX_BYTES lowered
    small, big = _write_with_one_big(30_000)
    settings.KAFKA_MESSAGE_MAX_BYTES = 20_000
    before = metrics.relay_set_aside.value(shard="0/1", reason="too_large")
    relay = Relay(use_lock=False)
    relay.start()
    # when
    with caplog.at_level(logging.INFO, logger="relay"):
        delivered = drain(relay)
    relay.close()
    # then: the ten others are in Kafka once, in order; the big one is set aside, visibly
    assert delivered == 11
    assert_exactly_once_in_order(rows=_others(big), expect_count=10)
    _assert_set_aside(big, caplog, "message.max.bytes (20000)")
    assert metrics.relay_set_aside.value(shard="0/1", reason="too_large") - before == 1


def test_a_record_the_broker_refuses_is_set_aside_without_losing_its_batch(
        relay_topics, caplog):
    # given: the topic accepts less than the producer sends (made or changed by hand)
    admin = make_admin("test")
    name = topic_name("analytics-events")
    for future in admin.incremental_alter_configs([ConfigResource(
            ResourceType.TOPIC, name, incremental_configs=[ConfigEntry(
                "max.message.bytes", "10000", incremental_operation=AlterConfigOpType.SET)])
    ]).values():
        future.result(30)
    small, big = _write_with_one_big(30_000)
    relay = Relay(use_lock=False)
    relay.start()
    # when: the broker refuses the batch holding it
    with caplog.at_level(logging.INFO, logger="relay"):
        delivered = 0
        for _ in range(30):
            delivered += relay.step()
            if not relay.retry_now and relay.position.cursor_id == 0:
                break
            relay.retry_now = False
    relay.close()
    # then: the batch's rows went one by one, the refused one is set aside
    assert relay.stats.aborts >= 2
    assert_exactly_once_in_order(rows=_others(big), expect_count=10)
    _assert_set_aside(big, caplog, "refused by the broker")
    assert delivered == 11


def test_after_a_reconnect_a_position_ahead_of_the_database_stops_the_relay(relay_topics):
    # given: a running relay whose database, behind the same address, is now an older one
    # (restored, or failed over to another cluster)
    relay = Relay(use_lock=False)
    relay.start()
    ahead = relay.snapshot().xmax + 10**9
    relay.position = Position(Snapshot(ahead, ahead), Snapshot(ahead, ahead), 0)
    with connection.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        pid = cur.fetchone()[0]
    _terminate(pid)
    # when / then: the relay reconnects, and re-checks its position before reading
    with pytest.raises(RelayError, match="ahead of this database.*--reanchor"):
        relay.run(once=True)


def _terminate(pid: int) -> None:
    with psycopg.connect(database_url(), autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", [pid]).fetchone()[0]


def test_a_relay_that_lost_its_lock_never_fences_the_new_owner_on_rebuild(relay_topics):
    with transaction.atomic():
        publish_bulk([Event("pipeline.probe", {"probe_id": "z", "key": "k", "seq": 1})])
    # given: relay A holds the shard, then its lock session ends and B takes the shard
    a = Relay()
    assert a._ready()
    _terminate(a.lease.backend_pid)
    b = Relay()
    assert b._ready()
    # when: A's commit outcome turns unknown and it rebuilds its producer
    with pytest.raises(LeaseLost, match="lost the database session holding the shard lock"):
        a._rebuild("commit outcome unknown (test)")
    # then: A did not init_transactions, so B (not fenced) delivers
    assert drain(b) == 1
    b.close()
    a.close()
    assert_exactly_once_in_order(expect_count=1)


def _wait_until(what: str, done, timeout: float, *procs) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"{what}:\n" + "\n---\n".join(
            p.output()[-4000:] for p in procs)
        time.sleep(0.05)


def _delivered_count() -> int:
    return len(read_all([topic_name("analytics-events")]))


def test_a_resumed_zombie_is_fenced_and_never_fences_the_newer_relay(relay_topics, tmp_path):
    # given: writers, and a relay bypassing the lock that is paused mid-stream
    writers = Writers(threads=2, events=10**9, pause=0.02).start()
    older = RelayProcess(tmp_path, "--unsafe-no-lock", "--batch-size", "10")
    older.wait_for("started at")
    _wait_until("older delivers", lambda: _delivered_count() >= 50, 60, older)
    older.proc.send_signal(signal.SIGSTOP)
    # when: a newer relay takes the shard (fencing the older's epoch), and the older resumes
    newer = RelayProcess(tmp_path, "--unsafe-no-lock", "--batch-size", "10")
    newer.wait_for("started at")
    at_resume = _delivered_count()
    older.proc.send_signal(signal.SIGCONT)
    # then: the older stops as fenced (its produce fails with _FATAL, which is fencing too)
    assert older.wait(timeout=60) != 0
    assert "fenced" in older.output().lower(), older.output()
    # and the newer keeps delivering, never fenced
    _wait_until("newer delivers after the resume", lambda: _delivered_count() >= at_resume + 50,
                60, newer)
    writers.stop()
    writers.join()
    assert newer.proc.poll() is None, newer.output()
    assert "fenced" not in newer.output().lower(), newer.output()
    assert newer.terminate() == 0, newer.output()
    final = RelayProcess(tmp_path, "--once")
    assert final.wait() == 0, final.output()
    assert_exactly_once_in_order(rolled_back=writers.rolled_back, expect_count=writers.written,
                                 contiguous=True)


def test_a_paused_relay_gives_its_shard_up_within_the_lease(relay_topics, tmp_path):
    lease = "3"
    writers = Writers(threads=2, events=10**9, pause=0.02).start()
    active = RelayProcess(tmp_path, "--batch-size", "10", RELAY_LOCK_LEASE_SECONDS=lease)
    active.wait_for("started at")
    standby = RelayProcess(tmp_path, "--batch-size", "10", RELAY_LOCK_LEASE_SECONDS=lease)
    standby.wait_for("waiting as hot standby")
    _wait_until("the active relay delivers", lambda: _delivered_count() >= 50, 60, active)
    # when: the active relay is paused (SIGSTOP: it keeps its sessions, sends nothing)
    active.proc.send_signal(signal.SIGSTOP)
    paused_at = time.monotonic()
    # then: PostgreSQL ends its lock session after the lease, and the standby takes over
    standby.wait_for("lock acquired, taking over", timeout=30)
    took_over = time.monotonic() - paused_at
    standby.wait_for("started at", timeout=30)
    at_takeover = _delivered_count()
    _wait_until("the standby delivers", lambda: _delivered_count() >= at_takeover + 50, 60,
                standby)
    # and when the paused relay resumes, it gives up (no init_transactions: it is not the
    # owner), while the new owner keeps delivering
    active.proc.send_signal(signal.SIGCONT)
    _wait_until("the resumed relay gives the shard up",
                lambda: "stopped delivering" in active.output() or active.proc.poll() is not None,
                30, active)
    at_resume = _delivered_count()
    _wait_until("the owner delivers after the resume",
                lambda: _delivered_count() >= at_resume + 50, 60, standby)
    writers.stop()
    writers.join()
    assert standby.proc.poll() is None and "fenced" not in standby.output().lower(), \
        standby.output()
    assert took_over >= float(lease) - 0.5, took_over
    if active.proc.poll() is None:  # it waits as a standby now
        assert active.terminate() == 0, active.output()
    else:  # it was mid-commit when resumed, and Kafka fenced it
        assert "fenced" in active.output().lower(), active.output()
    assert standby.terminate() == 0, standby.output()
    final = RelayProcess(tmp_path, "--once")
    assert final.wait() == 0, final.output()
    assert_exactly_once_in_order(rolled_back=writers.rolled_back, expect_count=writers.written,
                                 contiguous=True)


def test_create_topics_gives_every_topic_the_record_size_limit(kafka_prefix, settings):
    from relay.topics import TopicSpec, create_topics, desired_topics

    # given: a topic made before the setting (or by hand) with a smaller limit
    settings.KAFKA_MESSAGE_MAX_BYTES = 300_000
    admin = make_admin("test")
    old = topic_name("post-events")
    names = [s.name for s in desired_topics()]
    create_topics([TopicSpec("post-events", settings.KAFKA_TOPIC_PARTITIONS, 1,
                             {"max.message.bytes": "50000"})])
    try:
        # when
        report = dict(create_topics())
        # then: new topics are made with it, the existing one is raised to it
        assert report[old].endswith("max.message.bytes 50000 -> 300000"), report[old]
        configs = admin.describe_configs(
            [ConfigResource(ResourceType.TOPIC, n) for n in names])
        limits = {r.name: f.result(30)["max.message.bytes"].value for r, f in configs.items()}
        dlq = 300_000 + 64 * 1024
        assert limits == {n: str(dlq if n.endswith(".dlq") else 300_000) for n in names}
    finally:
        delete_topics(names)
