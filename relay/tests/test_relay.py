"""The relay's guarantees, shown by breaking things against the real PostgreSQL and Kafka."""

from __future__ import annotations

import json
import random
import threading
import time
import uuid

import psycopg
import pytest
from django.db import connection, connections, transaction

from outbox.catalogue import CHECKPOINT_TOPIC
from outbox.models import OutboxEvent
from outbox.services import publish
from relay.engine import Relay, RelayError, Shard
from relay.kafka import make_producer, topic_name
from relay.models import RelayPosition
from relay.position import Position, Snapshot
from relay.testing import database_url, read_all

from .relay_helpers import (
    COUNTER_TABLE,
    RelayProcess,
    Writers,
    assert_exactly_once_in_order,
    drain,
    ensure_counter_table,
)

pytestmark = pytest.mark.django_db(transaction=True)


def _probe(key: str, seq: int = 0) -> uuid.UUID:
    return publish("pipeline.probe", {"probe_id": "t", "key": key, "seq": seq})


def _delivered() -> list:
    return read_all([topic_name("analytics-events")])


def _delivered_ids() -> list[str]:
    return [r.header("ce_id") for r in _delivered()]


def _seqs(key: str) -> list[int]:
    return [json.loads(r.value)["seq"] for r in sorted(_delivered(), key=lambda r: r.offset)
            if r.key == key.encode()]


def _locked_increment(key: str) -> int:
    """As a service does it: lock the key's row, change it, publish the new value."""
    with connection.cursor() as cur:
        cur.execute(f"SELECT n FROM {COUNTER_TABLE} WHERE key = %s FOR UPDATE", [key])
        (n,) = cur.fetchone()
        cur.execute(f"UPDATE {COUNTER_TABLE} SET n = %s WHERE key = %s", [n + 1, key])
    _probe(key, n + 1)
    return n + 1


def test_a_key_is_delivered_in_commit_order_when_the_older_transaction_commits_last(
        relay_topics):
    # given: T1 takes a transaction id first (any write), then T2 locks post K, publishes
    # like_count 1 and commits; then T1 locks K, publishes like_count 2 and commits
    ensure_counter_table()
    key = f"post-{uuid.uuid4().hex[:6]}"
    with connection.cursor() as cur:
        cur.execute(f"INSERT INTO {COUNTER_TABLE} (key) VALUES (%s)", [key])
    t1_has_xid, t2_done, t1_may_go = threading.Event(), threading.Event(), threading.Event()
    txids = {}

    def t1():
        with transaction.atomic():
            with connection.cursor() as cur:
                cur.execute("SELECT pg_current_xact_id()::text")
                txids["t1"] = int(cur.fetchone()[0])
            t1_has_xid.set()
            t1_may_go.wait(20)
            _locked_increment(key)
        connections.close_all()

    def t2():
        t1_has_xid.wait(20)
        with transaction.atomic():
            with connection.cursor() as cur:
                cur.execute("SELECT pg_current_xact_id()::text")
                txids["t2"] = int(cur.fetchone()[0])
            _locked_increment(key)
        t2_done.set()
        connections.close_all()

    threads = [threading.Thread(target=t1), threading.Thread(target=t2)]
    for t in threads:
        t.start()
    assert t2_done.wait(20)
    relay = Relay(shard=Shard(), use_lock=False)
    relay.start()
    try:
        # when: the relay runs while T1 is still open, then after T1 commits
        delivered_while_t1_open = drain(relay)
        t1_may_go.set()
        for t in threads:
            t.join(20)
        delivered_after = drain(relay)
    finally:
        relay.close()

    # then: T2's event did not wait for T1, and Kafka shows the counts as they happened
    assert txids["t1"] < txids["t2"]
    assert (delivered_while_t1_open, delivered_after) == (1, 1)
    assert _seqs(key) == [1, 2]
    pos = RelayPosition.objects.get(shards=1, shard=0)
    assert (pos.events_total, pos.batches_total) == (2, 2)


def test_an_open_transaction_delays_only_itself(relay_topics, tmp_path):
    relay = RelayProcess(tmp_path, "--batch-size", "50")
    relay.wait_for("started at")
    # given: an unrelated transaction holding a transaction id, open for (up to) 10 s
    holder = psycopg.connect(database_url())
    holder.execute("SELECT pg_current_xact_id()")
    opened = time.monotonic()
    try:
        # when: 20 events commit, one per transaction, while it stays open
        ids = []
        for i in range(20):
            with transaction.atomic():
                ids.append(str(_probe("k", i)))
            time.sleep(0.1)
        while not set(ids) <= set(_delivered_ids()):
            assert time.monotonic() - opened < 10, "events waited for the open transaction"
            time.sleep(0.05)
        # then: all of them are in Kafka while it is still open
        assert holder.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        assert time.monotonic() - opened < 10
    finally:
        holder.rollback()
        holder.close()
        assert relay.terminate() == 0, relay.output()
    assert_exactly_once_in_order(expect_count=20)


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


def test_restart_resumes_from_the_kafka_checkpoint_inside_a_tick(relay_topics):
    with transaction.atomic():
        first = [_probe(f"k{i}", 1) for i in range(5)]
    relay = Relay(use_lock=False, batch_size=2)
    relay.start()
    # one tick of five rows, delivered in batches of two: stop after the first two batches
    assert relay.step() == 2 and relay.step() == 2
    tick = relay.position
    relay.close()
    with transaction.atomic():
        second = [_probe(f"k{i}", 2) for i in range(3)]

    # A new relay knows where to go on only from the checkpoint topic.
    RelayPosition.objects.all().delete()
    relay = Relay(use_lock=False)
    relay.start()
    assert relay.position == tick
    assert relay.step() == 1  # the rest of the interrupted tick, same two snapshots
    assert relay.position.cur == tick.cur
    assert drain(relay) == 3
    relay.close()
    assert sorted(_delivered_ids()) == sorted(str(i) for i in first + second)


def _progress() -> int:
    pos = RelayPosition.objects.filter(shards=1, shard=0).first()
    return pos.events_total if pos else 0


def test_commit_order_holds_under_concurrent_writers_and_relay_kill9(relay_topics, tmp_path):
    """The property run: many writers on a few keys, each taking its transaction id at a
    random moment, locking its key's row, incrementing its counter and publishing it, some
    rolling back; the relay killed -9 mid-stream again and again. Kafka must show each key's
    counters exactly 1..N in order."""
    rng = random.Random(7)
    writers = Writers(threads=4, events=10**9, keys=5, pause=0.05, early_wait=0.02).start()
    kills = []
    while len(kills) < 5:
        time.sleep(0.5)  # a backlog builds up while no relay runs
        relay = RelayProcess(tmp_path, "--batch-size", str(rng.choice([10, 20, 50])))
        before = _progress()
        # each kill lands mid-stream: after this relay delivered something, with rows left
        deadline = time.monotonic() + 60
        while _progress() < before + rng.randint(20, 200):
            assert time.monotonic() < deadline, relay.output()
            time.sleep(0.005)
        relay.kill9()
        committed = OutboxEvent.objects.count()
        delivered = len(_delivered_ids())
        kills.append({"delivered by this relay": _progress() - before,
                      "committed": committed, "delivered": delivered})
        assert _progress() > before and committed - delivered > 0, kills
    writers.stop()
    writers.join()
    final = RelayProcess(tmp_path, "--once")
    assert final.wait() == 0, final.output()
    assert writers.written > 1000
    assert len(writers.rolled_back) > 0
    assert_exactly_once_in_order(rolled_back=writers.rolled_back, expect_count=writers.written,
                                 contiguous=True)


def test_second_relay_waits_as_hot_standby_and_takes_over(relay_topics, tmp_path):
    active = RelayProcess(tmp_path)
    active.wait_for("started at")
    standby = RelayProcess(tmp_path)
    standby.wait_for("waiting as hot standby")
    with transaction.atomic():
        before = _probe("k", 1)
    deadline = time.monotonic() + 20
    while str(before) not in _delivered_ids():
        assert time.monotonic() < deadline, active.output()
        time.sleep(0.1)
    assert "started at" not in standby.output()

    # when the active relay dies, the standby takes over
    active.kill9()
    standby.wait_for("started at", timeout=20)
    with transaction.atomic():
        after = _probe("k", 2)
    deadline = time.monotonic() + 20
    while str(after) not in _delivered_ids():
        assert time.monotonic() < deadline, standby.output()
        time.sleep(0.1)
    assert standby.terminate() == 0
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
    drain_proc = RelayProcess(tmp_path, "--once")
    assert drain_proc.wait() == 0, drain_proc.output()
    assert writers.written > 0
    assert_exactly_once_in_order(rolled_back=writers.rolled_back, expect_count=writers.written,
                                 contiguous=True)


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


def _write_checkpoint(relay: Relay, value: dict) -> None:
    relay.producer.begin_transaction()
    relay._produce(relay._checkpoint_topic, relay.shard.checkpoint_key,
                   json.dumps(value).encode(), None, partition=relay._checkpoint_partition)
    relay.producer.commit_transaction(30)


def _current_xmax() -> int:
    with connection.cursor() as cur:
        cur.execute("SELECT pg_snapshot_xmax(pg_current_snapshot())::text")
        return int(cur.fetchone()[0])


def _restored_rows(txids: list[int]) -> list[str]:
    """Rows as a restore from another cluster leaves them: their transaction ids are the old
    cluster's (here: ahead of this one's)."""
    ids = []
    with connection.cursor() as cur:
        for i, txid in enumerate(txids):
            event_id = str(uuid.uuid4())
            headers = {"ce_id": event_id, "ce_type": "pipeline.probe", "ce_specversion": "1.0",
                       "ce_source": "restore", "content-type": "application/json"}
            cur.execute(
                "INSERT INTO outbox_event (event_id, type, topic, key, shard_hash, headers, "
                "payload, txid) VALUES (%s, 'pipeline.probe', 'analytics-events', 'r', 0, "
                "%s::jsonb, %s::jsonb, %s::xid8)",
                [event_id, json.dumps(headers), json.dumps({"probe_id": "r", "key": "r",
                                                            "seq": i + 1}), str(txid)])
            ids.append(event_id)
    return ids


def test_restore_is_detected_and_reanchor_delivers_restored_rows_once(relay_topics):
    relay = Relay(use_lock=False)
    relay.start()
    # given: a checkpoint from a cluster whose transaction ids ran far ahead, and rows restored
    # from it carrying ids a little ahead of this cluster's
    ahead = _current_xmax() + 10**9
    _write_checkpoint(relay, Position(Snapshot(ahead, ahead), Snapshot(ahead, ahead), 5)
                      .to_record(shards=1, shard=0))
    relay.close()
    near = _current_xmax() + 40
    restored = _restored_rows([near, near + 1, near + 2])

    # when: a relay starts, it refuses and says how to re-anchor
    again = Relay(use_lock=False)
    with pytest.raises(RelayError, match="run_relay --reanchor"):
        again.start()
    again.close()

    # then: the re-anchored relay delivers the restored rows and a new one
    with transaction.atomic():
        fresh = str(_probe("k", 1))
    reanchored = Relay(use_lock=False, reanchor=True)
    reanchored.start()
    assert drain(reanchored) == 4
    # and never again, even once this cluster's transaction ids pass the restored ones
    with connection.cursor() as cur:
        while _current_xmax() <= near + 3:
            cur.execute("SELECT pg_current_xact_id()")  # autocommit: one id each
    with transaction.atomic():
        later = str(_probe("k", 2))
    assert drain(reanchored) == 1
    reanchored.close()
    assert sorted(_delivered_ids()) == sorted([*restored, fresh, later])
    assert _seqs("r") == [1, 2, 3]


def test_an_old_txid_id_checkpoint_resumes_exactly_after_it_and_fences_the_old_relay(
        relay_topics, tmp_path):
    """The upgrade: a deployment whose checkpoint is the old `(txid, id)` record goes on without
    losing or repeating an event, and a zombie of the old relay (old transactional.id) is
    fenced, its open transaction aborted."""
    txids, ids = [], []
    for i in range(3):
        with transaction.atomic():
            ids.append([str(_probe("k", 2 * i + 1)), str(_probe("k", 2 * i + 2))])
            with connection.cursor() as cur:
                cur.execute("SELECT pg_current_xact_id()::text")
                txids.append(int(cur.fetchone()[0]))
    first_row_of_b = OutboxEvent.objects.get(event_id=ids[1][0]).id
    shard = Shard()
    # given: the old relay delivered A and the first row of B, checkpointed (txid_B, id) the
    # way it did, and a zombie of it still has a transaction open
    old = make_producer("old-relay", **{"transactional.id": shard.legacy_transactional_id})
    old.init_transactions(30)
    old.begin_transaction()
    for event_id in [*ids[0], ids[1][0]]:
        row = OutboxEvent.objects.get(event_id=event_id)
        old.produce(topic_name("analytics-events"), key=b"k",
                    value=json.dumps(row.payload).encode(), headers=row.headers)
    checkpoint_topic = topic_name(CHECKPOINT_TOPIC)
    old.produce(checkpoint_topic, key=shard.checkpoint_key, partition=0,
                value=json.dumps({"txid": str(txids[1]), "id": first_row_of_b, "shards": 1,
                                  "shard": 0}).encode())
    old.commit_transaction(30)
    old.begin_transaction()
    old.produce(topic_name("analytics-events"), key=b"zombie", value=b"{}")
    old.flush(10)
    # when: the new relay starts from that record
    relay = RelayProcess(tmp_path, "--once")
    assert relay.wait() == 0, relay.output()
    # then: B's second row and C follow, nothing twice, nothing lost; the zombie is fenced
    assert "upgraded from a (txid, id) checkpoint" in relay.output()
    with pytest.raises(Exception, match="(?i)fenced"):
        old.commit_transaction(30)
    assert_exactly_once_in_order(expect_count=6)
    assert _seqs("k") == [1, 2, 3, 4, 5, 6]
    assert b"zombie" not in [r.key for r in _delivered()]


@pytest.mark.parametrize("which", [0, 1])
def test_a_zombie_on_either_of_the_shards_producers_is_fenced_before_the_checkpoint_is_read(
        relay_topics, which):
    """Transactions alternate between the shard's two transactional ids: a zombie with either
    one that commits before the new relay starts is in the checkpoint the relay resumes from
    (nothing repeated); its transaction still open is aborted (nothing of it visible) and it
    is fenced."""
    keys = [f"z{i}" for i in range(6)]
    for i, key in enumerate(keys):
        with transaction.atomic():
            _probe(key, i)
    shard = Shard()
    zombie_relay = Relay(use_lock=False, batch_size=1)
    zombie_relay.start()
    # given: the old relay delivered the first events, one per Kafka transaction, until its
    # next transaction was the producer `which`'s
    steps = 0
    while steps < 2 or zombie_relay.producer is not zombie_relay._producers[which]:
        assert zombie_relay.step() == 1
        steps += 1
    zombie = zombie_relay.producer
    assert zombie is zombie_relay._producers[which]
    # and that transaction is open, with a record in it
    zombie.begin_transaction()
    zombie.produce(topic_name("analytics-events"), key=b"zombie", value=b"{}")
    zombie.flush(10)
    # when: a new relay starts
    relay = Relay(use_lock=False)
    relay.start()
    assert drain(relay) == 6 - steps
    relay.close()
    # then: the rest follows once, the zombie's record never shows, the zombie is fenced
    with pytest.raises(Exception, match="(?i)fenced"):
        zombie.commit_transaction(30)
    delivered = _delivered()
    assert b"zombie" not in [r.key for r in delivered]
    assert sorted(r.key.decode() for r in delivered) == sorted(keys), shard.transactional_ids
    assert_exactly_once_in_order(expect_count=6)
    zombie_relay.close()


def test_a_commit_that_landed_though_its_outcome_was_unknown_is_counted_once(
        relay_topics, monkeypatch):
    """The commit timed out but had landed: the rebuilt relay finds the batch in the
    checkpoint, so it is not sent again, and it counts as delivered (the database copy's
    events_total, what the admin and the backlog figures read) exactly once."""
    from relay.engine import IndefiniteOutcome

    for i in range(5):
        with transaction.atomic():
            _probe(f"u{i}", i)
    relay = Relay(use_lock=False, batch_size=3)
    relay.start()
    real_commit = Relay._commit
    unknown = []

    def commit_then_time_out(self):
        real_commit(self)  # the batch is in Kafka...
        if not unknown:
            unknown.append(self.position)
            raise IndefiniteOutcome("commit outcome unknown: timed out (test)")  # ...unsaid

    monkeypatch.setattr(Relay, "_commit", commit_then_time_out)
    # when: the first batch's commit "times out", then the relay goes on
    first = relay.step()
    rest = drain(relay)
    relay.close()
    # then: the first batch counted, everything delivered once, and counted once
    assert unknown and relay.stats.rebuilds == 1
    assert (first, first + rest) == (3, 5)
    assert_exactly_once_in_order(expect_count=5)
    assert RelayPosition.objects.get(shards=1, shard=0).events_total == 5
    assert relay.stats.events == 5


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
