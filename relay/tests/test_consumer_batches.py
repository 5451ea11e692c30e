"""The batch runtime: one DB transaction per polled batch, a failing record isolated by halves,
batch handlers, and a record whose partition a rebalance revoked after it was handed out.

Real broker, real PostgreSQL; `ConsumerWorker.step()` driven in process. Each effect row
records the id of the transaction that wrote it (`txid_current()`), so a test sees which
records committed together.
"""

from __future__ import annotations

import time
import uuid

import pytest

from relay import dlq, metrics, registry
from relay import testing as kt
from relay.kafka import topic_name
from relay.models import InboxEntry

from . import consumer_support as cs
from .consumer_support import (
    BATCH_CALLS,
    BROKEN_KEYS,
    TOPIC,
    effect_txids,
    effects,
    fast_retry,
    probes,
    run_until,
)

pytestmark = pytest.mark.django_db(transaction=True)

effects_table, probe_consumer, topics, workers = (
    cs.effects_table, cs.probe_consumer, cs.topics, cs.workers)


def _partitions_by_seq() -> dict[int, int]:
    """seq -> the partition the producer put that probe on (read back from the topic)."""
    import json

    return {json.loads(r.value)["seq"]: r.partition for r in kt.read_all([topic_name(TOPIC)])}


def _with_poison(n: int, *, at: int) -> list:
    """n probes on one key (one partition); the one at index `at` can never succeed."""
    return (probes(at, keys=1, prefix="z") + probes(1, keys=1, prefix="z", start=at,
                                                    fail="permanent")
            + probes(n - at - 1, keys=1, prefix="z", start=at + 1))


def test_a_polled_batch_is_applied_in_one_transaction(topics, probe_consumer, workers):
    # given: 90 records on 3 partitions, already in the topic
    name = probe_consumer()
    ids = kt.produce_events(probes(90, keys=9), per_transaction=90)
    worker = workers(name, batch_size=500, batch_ms=200)
    # when
    run_until(worker, lambda: len(effects(name)) >= 90)
    # then: as many transactions as batches, far fewer than records, each record once
    txids = effect_txids(name)
    batches = metrics.consumer_batch_records.count(consumer=name)
    assert len(set(txids)) == batches
    assert batches <= 3
    assert sorted(e for e, _ in effects(name)) == sorted(str(i) for i in ids)
    assert set(InboxEntry.objects.filter(consumer=name).values_list("event_id", flat=True)) \
        == set(ids)


def test_records_before_a_failing_one_commit_and_the_ones_after_it_wait_in_order(
        topics, probe_consumer, workers):
    # given: 10 records on key p0 (one partition), the 5th failing for now; 10 on other keys
    name = probe_consumer()
    BROKEN_KEYS.add("p0")
    same_key = (probes(4, keys=1, prefix="p") + probes(1, keys=1, prefix="p", start=4,
                                                       fail="transient")
                + probes(5, keys=1, prefix="p", start=5))
    others = probes(10, keys=5, prefix="q", start=100)
    kt.produce_events(same_key + others, per_transaction=20)
    worker = workers(name, batch_size=100, batch_ms=200,
                     retry=fast_retry(max_attempts=1000))
    # when: the worker has retried the failing record once
    run_until(worker, lambda: metrics.consumer_retries.value(consumer=name, topic=TOPIC) >= 1)
    # then: the records before it on its partition and every other partition's record are
    # applied; the failing one and the ones after it on its partition are not
    where = _partitions_by_seq()
    elsewhere = [seq for seq in range(100, 110) if where[seq] != where[4]]
    assert elsewhere, "the other keys all landed on the failing record's partition"
    applied = sorted(seq for _, seq in effects(name))
    assert applied == [0, 1, 2, 3, *elsewhere]
    assert metrics.consumer_batch_splits.value(consumer=name) >= 1
    # when: the downstream recovers
    BROKEN_KEYS.clear()
    run_until(worker, lambda: len(effects(name)) >= 20)
    # then: the partition resumes at the failing record, in order, each once
    p_seqs = [seq for _, seq in effects(name) if seq < 100]
    assert p_seqs == list(range(10))
    assert len(effects(name)) == 20
    assert dlq.read_dead_letters(TOPIC) == []


def test_a_poison_record_inside_a_batch_is_dead_lettered_and_every_other_record_applied_once(
        topics, probe_consumer, workers):
    # given: 40 records on one key, the 17th can never succeed
    name = probe_consumer()
    events = _with_poison(40, at=16)
    kt.produce_events(events, per_transaction=40)
    worker = workers(name, batch_size=100, batch_ms=200)
    # when
    run_until(worker, lambda: worker.handled >= 40)
    # then: 39 effects in order, one dead letter with one attempt, found by halving
    assert [seq for _, seq in effects(name)] == [s for s in range(40) if s != 16]
    [letter] = dlq.read_dead_letters(TOPIC)
    assert (letter.original_event_id, letter.attempts) == (str(events[16].event_id), 1)
    assert letter.h(dlq.H_ERROR_MESSAGE) == "probe 16 can never succeed"
    assert metrics.consumer_batch_splits.value(consumer=name) >= 1
    assert InboxEntry.objects.filter(consumer=name).count() == 39


def test_a_batch_handler_gets_the_batchs_new_events_in_one_call_and_never_a_repeat(
        topics, probe_consumer, workers):
    # given: 30 events, 10 of them published twice (a relay retry), one batch handler
    name = probe_consumer(batch=True)
    events = probes(30, keys=3)
    kt.produce_events(events + events[:10], per_transaction=40)
    worker = workers(name, batch_size=100, batch_ms=300)
    # when
    run_until(worker, lambda: worker.handled >= 40)
    # then: every event once; calls were whole batches (at most one per transaction)
    assert sorted(seq for _, seq in effects(name)) == list(range(30))
    assert sorted(s for call in BATCH_CALLS for s in call) == list(range(30))
    assert len(BATCH_CALLS) == len(set(effect_txids(name)))
    assert max(len(call) for call in BATCH_CALLS) > 1
    assert metrics.consumer_duplicates.value(consumer=name, topic=TOPIC) == 10


def test_a_batch_handler_that_raises_is_rerun_on_smaller_lists_down_to_the_event_at_fault(
        topics, probe_consumer, workers):
    # given: 32 events for a batch handler, event 21 can never succeed
    name = probe_consumer(batch=True)
    events = _with_poison(32, at=21)
    kt.produce_events(events, per_transaction=32)
    worker = workers(name, batch_size=100, batch_ms=300)
    # when
    run_until(worker, lambda: worker.handled >= 32)
    # then: the 31 others applied once, in order; the culprit dead-lettered alone
    assert [seq for _, seq in effects(name)] == [s for s in range(32) if s != 21]
    [letter] = dlq.read_dead_letters(TOPIC)
    assert letter.original_event_id == str(events[21].event_id)
    assert letter.attempts == 1
    # every successful call was given a contiguous run of the partition, in order
    for call in BATCH_CALLS:
        assert call == list(range(call[0], call[0] + len(call)))


def test_a_record_handed_out_before_a_rebalance_revoked_its_partition_does_not_crash_the_worker(
        topics, probe_consumer, workers, caplog):
    # given: worker a alone in the group (all 3 partitions), records on every partition; b
    # joins once a holds a record. Static members are ordered by instance id and the range
    # assignor gives the first partitions 0 and 1, the second partition 2: b joins as "m1"
    # (before a's "m2") when a's record is of partition 0 or 1, as "m3" when it is of partition
    # 2, so that the partition a's record came from is the one taken away. (Which partition
    # the first poll returns is up to librdkafka's fetch order.)
    name = probe_consumer()
    ids = kt.produce_events(probes(60, keys=6), per_transaction=60)
    a = workers(name, batch_size=100, batch_ms=0, instance_id=f"{name}-m2")
    handed_out, joined = [], []
    real = a.consumer

    class JoinAfterTheFirstRecord:
        """a's consumer: once poll() hands a record to a, b joins so as to take that record's
        partition, and the group waits for a to give its partitions up: the revoke is served
        by a's next poll call, the `consume()` that fills the same batch."""

        def __getattr__(self, attr):
            return getattr(real, attr)

        def poll(self, timeout):
            msg = real.poll(timeout)
            if msg is not None and not msg.error() and not handed_out:
                handed_out.append((msg.topic(), msg.partition(), msg.offset()))
                order = "m1" if msg.partition() in (0, 1) else "m3"
                b = workers(name, batch_size=100, batch_ms=0, instance_id=f"{name}-{order}")
                joined.append(b)
                deadline = time.monotonic() + 8  # > heartbeat interval: a learns of it
                while time.monotonic() < deadline:
                    b.step()
            return msg

    a.consumer = JoinAfterTheFirstRecord()
    # when
    deadline = time.monotonic() + 60
    with caplog.at_level("INFO", logger="relay.consumer"):
        while not handed_out:
            assert time.monotonic() < deadline, "a never got a record"
            a.step()
    # then: the revoke came in that step, after the record was handed out; a lives on
    # without the partition, and applied nothing of it
    topic, partition, offset = handed_out[0]
    assert f"consumer {name}: revoked" in caplog.text
    assert (topic, partition) not in a._assigned
    [record] = [r for r in kt.read_all([topic]) if (r.partition, r.offset) == (partition, offset)]
    assert record.header("ce_id") not in {e for e, _ in effects(name)}
    # and the two members apply every record exactly once between them
    a.consumer = real
    [b] = joined
    deadline = time.monotonic() + 90
    while len(effects(name)) < 60:
        assert time.monotonic() < deadline, f"{len(effects(name))} of 60 applied"
        a.step()
        b.step()
    assert sorted(e for e, _ in effects(name)) == sorted(str(i) for i in ids)
    assert InboxEntry.objects.filter(consumer=name).count() == 60


def test_a_handler_is_registered_either_for_records_or_for_batches():
    def both(event):
        return None

    name = f"test-{uuid.uuid4().hex[:8]}"
    registry.register(name, "pipeline.probe", both)
    try:
        with pytest.raises(ValueError, match="both as a batch and as a record handler"):
            registry.register(name, "pipeline.probe", both, batch=True)
        [reg] = registry.handlers_for(name, "pipeline.probe")
        assert reg.batch is False
    finally:
        registry.unregister(name, "pipeline.probe", both)
