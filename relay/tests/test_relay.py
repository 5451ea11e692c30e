"""The relay's guarantees, shown by breaking things against the real PostgreSQL and Kafka."""

from __future__ import annotations

import random
import threading
import time
import uuid

import pytest
from django.db import connection, connections, transaction

from outbox.services import publish
from relay.engine import Relay, Shard
from relay.kafka import topic_name
from relay.models import RelayPosition
from relay.testing import delete_topics, read_all

from .relay_helpers import (
    RelayProcess,
    Writers,
    assert_exactly_once_in_order,
    create_relay_topics,
    drain,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def relay_topics(kafka_prefix):
    names = create_relay_topics()
    yield names
    delete_topics(names)


def _probe(key: str, seq: int = 0) -> uuid.UUID:
    return publish("pipeline.probe", {"probe_id": "t", "key": key, "seq": seq})


def _delivered_ids() -> list[str]:
    return [r.header("ce_id") for r in read_all([topic_name("analytics-events")])]


def test_out_of_order_commits_are_neither_skipped_nor_doubled(relay_topics):
    # given: A takes its transaction id first, B inserts first (smaller id) and commits first
    a_has_xid, b_committed, a_may_commit = threading.Event(), threading.Event(), threading.Event()
    ids = {}

    def writer_a():
        with transaction.atomic():
            with connection.cursor() as cur:
                cur.execute("select pg_current_xact_id()")
            a_has_xid.set()
            b_committed.wait(10)
            ids["a"] = _probe("same-key", 1)
            a_may_commit.wait(10)
        connections.close_all()

    def writer_b():
        a_has_xid.wait(10)
        with transaction.atomic():
            ids["b"] = _probe("same-key", 2)
        b_committed.set()
        connections.close_all()

    ta, tb = threading.Thread(target=writer_a), threading.Thread(target=writer_b)
    ta.start()
    tb.start()
    b_committed.wait(10)
    time.sleep(0.2)  # A has inserted its row (larger id) and is still open
    relay = Relay(shard=Shard(), use_lock=False)
    relay.start()

    # when: the relay runs while A is open
    delivered_while_open = relay.step()

    # then: B's row waits for A (commit order), nothing is skipped past it
    assert delivered_while_open == 0
    assert relay.position == (0, 0)

    a_may_commit.set()
    ta.join(10)
    tb.join(10)
    assert drain(relay) == 2
    assert _delivered_ids() == [str(ids["a"]), str(ids["b"])]
    pos = RelayPosition.objects.get(shards=1, shard=0)
    assert (pos.events_total, pos.batches_total) == (2, 1)
    relay.close()


def test_rolled_back_transaction_never_reaches_kafka(relay_topics):
    with pytest.raises(RuntimeError):
        with transaction.atomic():
            rolled_back = _probe("k")
            raise RuntimeError("domain failure")
    with transaction.atomic():
        committed = _probe("k")
    relay = Relay(use_lock=False)
    relay.start()
    assert drain(relay) == 1
    relay.close()
    assert _delivered_ids() == [str(committed)]
    assert str(rolled_back) not in _delivered_ids()


def test_restart_resumes_from_the_kafka_checkpoint(relay_topics):
    with transaction.atomic():
        first = [_probe(f"k{i}") for i in range(5)]
    relay = Relay(use_lock=False, batch_size=2)
    relay.start()
    assert drain(relay) == 5
    relay.close()
    with transaction.atomic():
        second = [_probe(f"k{i}") for i in range(3)]

    # A new relay knows where to go on only from the checkpoint topic.
    RelayPosition.objects.all().delete()
    relay = Relay(use_lock=False)
    relay.start()
    assert drain(relay) == 3
    relay.close()
    assert sorted(_delivered_ids()) == sorted(str(i) for i in first + second)


def test_relay_survives_kill9_at_random_moments(relay_topics, tmp_path):
    # given: concurrent writers streaming thousands of events, some transactions rolled back
    rng = random.Random(7)
    writers = Writers(threads=4, events=3000, pause=0.01).start()
    kills = 0
    # when: the relay is killed with SIGKILL at random moments and restarted each time
    while kills < 5:
        relay = RelayProcess(tmp_path, "--batch-size", str(rng.choice([20, 50, 200])))
        time.sleep(rng.uniform(1.2, 2.5))
        relay.kill9()
        kills += 1
    writers.join()
    relay = RelayProcess(tmp_path, "--once")
    assert relay.wait() == 0, relay.output()
    # then
    assert writers.written == 3000
    assert_exactly_once_in_order(rolled_back=writers.rolled_back, expect_count=3000)


def test_second_relay_waits_as_hot_standby_and_takes_over(relay_topics, tmp_path):
    active = RelayProcess(tmp_path)
    active.wait_for("started at")
    standby = RelayProcess(tmp_path)
    standby.wait_for("waiting as hot standby")
    with transaction.atomic():
        before = _probe("k")
    deadline = time.monotonic() + 20
    while str(before) not in _delivered_ids():
        assert time.monotonic() < deadline, active.output()
        time.sleep(0.1)
    assert "started at" not in standby.output()

    # when the active relay dies, the standby takes over within seconds
    active.kill9()
    killed_at = time.monotonic()
    standby.wait_for("started at", timeout=20)
    takeover = time.monotonic() - killed_at
    with transaction.atomic():
        after = _probe("k")
    deadline = time.monotonic() + 20
    while str(after) not in _delivered_ids():
        assert time.monotonic() < deadline, standby.output()
        time.sleep(0.1)
    assert standby.terminate() == 0
    assert takeover < 10, takeover
    assert_exactly_once_in_order(expect_count=2)


def test_racing_relays_without_lock_fence_the_older_one(relay_topics, tmp_path):
    # given: writers that keep going until told to stop, and a relay bypassing the lock
    writers = Writers(threads=2, events=1_000_000, pause=0.05).start()
    older = RelayProcess(tmp_path, "--unsafe-no-lock", "--batch-size", "20")
    older.wait_for("started at")
    time.sleep(1.0)
    # when: a second relay on the same shard starts, also bypassing the lock
    newer = RelayProcess(tmp_path, "--unsafe-no-lock", "--batch-size", "20")
    newer.wait_for("started at")
    # then: its init_transactions bumped the epoch, so the older one's next produce or commit
    # fails as fenced, while events keep coming
    assert older.wait(timeout=60) != 0
    assert "fenced" in older.output().lower(), older.output()
    writers.stop()
    writers.join()
    time.sleep(0.5)
    assert newer.terminate() == 0, newer.output()
    drain = RelayProcess(tmp_path, "--once")
    assert drain.wait() == 0, drain.output()
    assert writers.written > 0
    assert_exactly_once_in_order(rolled_back=writers.rolled_back, expect_count=writers.written)


def test_kafka_disabled_relay_refuses_and_writes_are_kept(relay_topics, tmp_path, settings):
    settings.KAFKA_ENABLED = False
    with transaction.atomic():
        kept = _probe("k")
    refused = RelayProcess(tmp_path, "--once")
    assert refused.wait() == 1
    assert "KAFKA_ENABLED is false" in refused.output()

    settings.KAFKA_ENABLED = True
    delivered = RelayProcess(tmp_path, "--once")
    assert delivered.wait() == 0, delivered.output()
    assert _delivered_ids() == [str(kept)]


def test_missing_topics_are_a_clear_error(kafka_prefix, tmp_path):
    relay = RelayProcess(tmp_path, "--once")
    assert relay.wait() == 1
    assert "manage.py kafka create-topics" in relay.output()
    assert "Traceback" not in relay.output()


def test_checkpoint_ahead_of_the_database_is_detected(relay_topics):
    relay = Relay(use_lock=False)
    relay.start()
    # Simulate a restore: a checkpoint far beyond this cluster's transaction ids.
    relay.producer.begin_transaction()
    relay._produce(relay._checkpoint_topic, relay.shard.checkpoint_key,
                   b'{"txid": "999999999999", "id": 1}', None,
                   partition=relay._checkpoint_partition)
    relay.producer.commit_transaction(30)
    relay.close()

    from relay.engine import RelayError

    again = Relay(use_lock=False)
    with pytest.raises(RelayError, match="run_relay --reanchor"):
        again.start()
    again.close()

    with transaction.atomic():
        event = _probe("k")
    reanchored = Relay(use_lock=False, reanchor=True)
    reanchored.start()
    assert reanchored.position == (0, 0)
    assert drain(reanchored) == 1
    reanchored.close()
    assert _delivered_ids() == [str(event)]


def test_rows_are_read_in_numeric_transaction_id_order(relay_topics):
    # Transaction ids 9 and 10 (both long finished): text order would put "10" first.
    rows = []
    with transaction.atomic():
        for key in ("late", "early"):
            rows.append(_probe(key))
    from outbox.models import OutboxEvent

    with connection.cursor() as cur:
        cur.execute("ALTER TABLE outbox_event DISABLE TRIGGER outbox_event_no_update")
        try:
            cur.execute("UPDATE outbox_event SET txid = '10'::xid8 WHERE event_id = %s",
                        [rows[0]])
            cur.execute("UPDATE outbox_event SET txid = '9'::xid8 WHERE event_id = %s",
                        [rows[1]])
        finally:
            cur.execute("ALTER TABLE outbox_event ENABLE TRIGGER outbox_event_no_update")
    assert OutboxEvent.objects.get(event_id=rows[0]).id < OutboxEvent.objects.get(
        event_id=rows[1]).id
    relay = Relay(use_lock=False)
    relay.start()
    fetched = relay.fetch()
    relay.close()
    assert [int(r[1]) for r in fetched] == [9, 10]


def test_unreachable_brokers_are_retried_with_a_clear_message(kafka_prefix, tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    relay = RelayProcess(tmp_path, KAFKA_BROKERS=f"127.0.0.1:{closed}")
    relay.wait_for("Retrying in", timeout=60)
    assert relay.terminate() == 0
    assert f"No Kafka broker answered at KAFKA_BROKERS=127.0.0.1:{closed}" in relay.output()
    assert "Traceback" not in relay.output()
