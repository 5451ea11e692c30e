"""The consumer runtime in-process: exactly-once effects, duplicates, poison records, retries,
dead letters, replays, independent consumer names, trace context, metrics.

Real broker, real PostgreSQL: records are produced into the test's own prefixed topics exactly
as the relay encodes them, and `ConsumerWorker.step()` is driven directly.
"""

from __future__ import annotations

import json
import time
import uuid
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from outbox.models import OutboxEvent
from outbox.services import Event
from relay import dlq, metrics, registry
from relay import testing as kt
from relay.cli import groups_describe
from relay.consumer import RetryPolicy, group_for
from relay.kafka import make_consumer, topic_name
from relay.models import InboxEntry

from . import consumer_support as cs
from .consumer_support import (
    BROKEN_KEYS,
    FOLLOW_UP,
    TOPIC,
    effects,
    fast_retry,
    group_of,
    probes,
    run_until,
)

pytestmark = pytest.mark.django_db(transaction=True)

effects_table, probe_consumer, topics, workers = (
    cs.effects_table, cs.probe_consumer, cs.topics, cs.workers)


def _dead_letters() -> list[dlq.DeadLetter]:
    return dlq.read_dead_letters(TOPIC)


def _group_partitions(name: str):
    return groups_describe(group_of(name)).partitions


def _call(*args) -> str:
    buf = StringIO()
    call_command(*args, stdout=buf)
    return buf.getvalue()


def test_each_event_is_applied_once_and_its_offset_committed(topics, probe_consumer, workers):
    # given
    name = probe_consumer()
    ids = kt.produce_events(probes(300), per_transaction=50)
    worker = workers(name, batch_size=64)
    # when
    run_until(worker, lambda: len(effects(name)) >= 300)
    worker.close()
    # then
    assert sorted(e for e, _ in effects(name)) == sorted(str(i) for i in ids)
    assert InboxEntry.objects.filter(consumer=name).count() == 300
    assert metrics.consumer_processed.value(consumer=name, topic=TOPIC) == 300
    # committed past each partition's last commit marker: nothing left, lag 0
    assert {p.partition: p.lag for p in _group_partitions(name)} == {0: 0, 1: 0, 2: 0}


def test_the_same_event_delivered_twice_has_one_effect(topics, probe_consumer, workers):
    # given: one event id published twice (a relay retry, a replayed batch)
    name = probe_consumer()
    event, later = probes(2, keys=1)
    kt.produce_events([event])
    kt.produce_events([event])
    kt.produce_events([later])
    worker = workers(name)
    # when
    run_until(worker, lambda: worker.handled >= 3)
    # then
    assert effects(name) == [(str(event.event_id), 0), (str(later.event_id), 1)]
    assert metrics.consumer_duplicates.value(consumer=name, topic=TOPIC) == 1
    assert metrics.consumer_processed.value(consumer=name, topic=TOPIC) == 2


def test_poison_records_go_to_the_dlq_and_the_good_ones_around_them_are_applied(
        topics, probe_consumer, workers):
    # given: on one key (one partition), good, undecodable, schema-invalid, permanent, good
    name = probe_consumer()
    good_before = probes(2, keys=1)
    kt.produce_events(good_before)
    physical = topic_name(TOPIC)
    kt.produce_raw(physical, [(b"k0", b"{not json", [("ce_specversion", b"1.0"),
                                                      ("ce_id", str(uuid.uuid4()).encode()),
                                                      ("ce_type", b"pipeline.probe")])])
    invalid_id = uuid.uuid4()
    kt.produce_raw(physical, [(b"k0", json.dumps({"probe_id": "x", "key": "k0", "seq": -5})
                               .encode(), [("ce_specversion", b"1.0"),
                                           ("ce_id", str(invalid_id).encode()),
                                           ("ce_type", b"pipeline.probe")])])
    permanent = probes(1, keys=1, start=2, fail="permanent")
    good_after = probes(2, keys=1, start=3)
    kt.produce_events(permanent + good_after)
    worker = workers(name)
    # when
    run_until(worker, lambda: worker.handled >= 7)
    # then: every good record applied, in order, none of the poison ones
    assert [seq for _, seq in effects(name)] == [0, 1, 3, 4]
    letters = _dead_letters()
    assert [(d.consumer, d.attempts, d.h(dlq.H_ERROR_CLASS).rsplit(".", 1)[-1])
            for d in letters] == [
        (name, 0, "UndecodableRecord"),
        (name, 0, "EventValidationError"),
        (name, 1, "PermanentError"),
    ]
    assert "value is not JSON" in letters[0].reason
    assert "seq: -5 is less than the minimum of 0" in letters[1].reason
    assert letters[1].original_event_id == str(invalid_id)
    assert letters[2].original_event_id == str(permanent[0].event_id)
    assert [d.h(dlq.H_TOPIC) for d in letters] == [TOPIC] * 3
    assert [int(d.h(dlq.H_OFFSET)) for d in letters] == sorted(
        int(d.h(dlq.H_OFFSET)) for d in letters)
    assert {d.h(dlq.H_GROUP) for d in letters} == {group_of(name)}
    assert all(d.h(dlq.H_TIME).endswith("Z") for d in letters)
    reasons = metrics.snapshot()["showoff_consumer_dead_lettered_total"]
    assert reasons[f"consumer={name},topic={TOPIC},reason=undecodable"] == 1
    assert reasons[f"consumer={name},topic={TOPIC},reason=invalid"] == 1
    assert reasons[f"consumer={name},topic={TOPIC},reason=permanent"] == 1


def test_a_transient_failure_is_retried_with_backoff_then_dead_lettered_without_blocking(
        topics, probe_consumer, workers):
    # given: a record that keeps failing on key "bad", and good records on the same partition
    name = probe_consumer()
    BROKEN_KEYS.add("bad0")
    bad = probes(1, keys=1, prefix="bad", fail="transient")
    good = probes(3, keys=1, prefix="bad", start=1)
    kt.produce_events(bad + good)
    worker = workers(name)
    # when
    run_until(worker, lambda: worker.handled >= 4)
    # then: 3 attempts (2 retries), then the DLQ; the records behind it were applied, in order
    assert [seq for _, seq in effects(name)] == [1, 2, 3]
    assert metrics.consumer_retries.value(consumer=name, topic=TOPIC) == 2
    [letter] = _dead_letters()
    assert letter.attempts == 3
    assert letter.h(dlq.H_ERROR_CLASS) == "builtins.ConnectionResetError"
    assert letter.h(dlq.H_ERROR_MESSAGE) == "probe 0: downstream unavailable"
    assert letter.original_event_id == str(bad[0].event_id)


def test_a_transient_failure_that_recovers_is_applied_once_in_order(
        topics, probe_consumer, workers):
    # given
    name = probe_consumer()
    BROKEN_KEYS.add("flaky0")
    kt.produce_events(probes(1, keys=1, prefix="flaky", fail="transient")
                      + probes(2, keys=1, prefix="flaky", start=1))
    worker = workers(name, retry=fast_retry(max_attempts=50))
    run_until(worker, lambda: metrics.consumer_retries.value(consumer=name, topic=TOPIC) >= 2)
    assert effects(name) == []  # failed attempts left nothing behind, later records wait
    # when: the downstream recovers
    BROKEN_KEYS.clear()
    run_until(worker, lambda: worker.handled >= 3)
    # then
    assert [seq for _, seq in effects(name)] == [0, 1, 2]
    assert _dead_letters() == []


def test_a_partition_paused_for_a_retry_flows_again_after_a_rebalance(
        topics, probe_consumer, workers):
    # given: a record failing on one partition (paused, backing off) in consumer a
    name = probe_consumer()
    BROKEN_KEYS.add(f"{name}/m0")
    kt.produce_events(probes(1, keys=1, prefix="m", fail="transient")
                      + probes(2, keys=1, prefix="m", start=1))
    a = workers(name, retry=RetryPolicy(max_attempts=10_000, backoff=60, backoff_max=60))
    run_until(a, lambda: metrics.consumer_retries.value(consumer=name, topic=TOPIC) >= 1)
    # when: another member joins the group (for another topic, so every partition of the
    # probe topic is revoked from a and given straight back to it), then leaves
    other = make_consumer("test-other", group_of(name))
    other.subscribe([topic_name(f"{TOPIC}.dlq")])
    deadline = time.monotonic() + 30
    while not other.assignment() and time.monotonic() < deadline:
        a.step()
        other.poll(0.1)
    assert other.assignment(), "the other member never got its partitions"
    other.close()
    for _ in range(5):
        a.step()
    assert len(a._assigned) == 3
    BROKEN_KEYS.clear()  # the downstream recovers
    # then: the partition that was paused (its retry a minute away) when revoked delivers
    # again at once: the new assignment starts from the committed offset, unpaused
    run_until(a, lambda: len(effects(name)) == 3, timeout=20)
    assert [seq for _, seq in effects(name)] == [0, 1, 2]


def test_a_connection_dropped_mid_record_is_rolled_back_and_the_retry_applies_it_once(
        topics, probe_consumer, workers):
    # given: a handler whose first attempt loses its database connection mid-transaction
    name = probe_consumer()
    killed = []

    def drop_connection_once(event):
        if not killed:
            killed.append(event.id)
            with connection.cursor() as cur:
                cur.execute("SELECT pg_terminate_backend(pg_backend_pid())")

    registry.register(name, "pipeline.probe", drop_connection_once)
    try:
        [event] = probes(1)
        kt.produce_events([event])
        worker = workers(name)
        # when
        run_until(worker, lambda: worker.handled >= 1)
    finally:
        registry.unregister(name, "pipeline.probe", drop_connection_once)
    # then: the first attempt's effect row was rolled back with the connection
    assert killed == [event.event_id]
    assert effects(name) == [(str(event.event_id), 0)]
    assert metrics.consumer_retries.value(consumer=name, topic=TOPIC) == 1
    assert _dead_letters() == []


def test_a_database_outage_waits_without_counting_attempts_or_dead_lettering(
        topics, probe_consumer, workers):
    # given: a record, and a database the worker cannot reach (its address points nowhere)
    name = probe_consumer()
    [event] = probes(1)
    kt.produce_events([event])
    worker = workers(name, retry=fast_retry(max_attempts=2))
    port = connection.settings_dict["PORT"]
    connection.close()
    connection.settings_dict["PORT"] = "1"
    try:
        # when: it polls until it has met the outage several times (more than the attempts
        # that would dead-letter a failing record); polls, not wall time, set the pace
        tp = (topic_name(TOPIC), effects_partition(event))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            worker.step()
            state = worker._retries.get(tp)
            if state is not None and state.outages >= 3:
                break
    finally:
        connection.settings_dict["PORT"] = port
        connection.close()
    # then: it waited (no attempt counted, nothing dead-lettered), and applies once it is back
    assert state is not None and state.attempts == 0 and state.outages >= 2
    assert worker.handled == 0
    run_until(worker, lambda: worker.handled >= 1)
    assert effects(name) == [(str(event.event_id), 0)]
    assert _dead_letters() == []
    assert metrics.consumer_retries.value(consumer=name, topic=TOPIC) == 0


def effects_partition(event) -> int:
    [record] = [r for r in kt.read_all([topic_name(TOPIC)])
                if r.header("ce_id") == str(event.event_id)]
    return record.partition


def test_replay_after_fixing_the_handler_applies_the_event_once(
        topics, probe_consumer, workers):
    # given: a record dead-lettered after its retries
    name = probe_consumer()
    other = probe_consumer()  # a second consumer of the topic, healthy
    BROKEN_KEYS.add(f"{name}/r0")
    [event] = probes(1, keys=1, prefix="r", fail="transient")
    kt.produce_events([event])
    w1, w2 = workers(name), workers(other)
    run_until(w1, lambda: w1.handled >= 1)
    run_until(w2, lambda: w2.handled >= 1)
    assert effects(name) == [] and len(effects(other)) == 1
    BROKEN_KEYS.clear()  # the fix
    # when: replayed twice (an impatient operator), delivered by the relay
    call_command("dlq", "replay", TOPIC, "--event-id", str(event.event_id))
    call_command("dlq", "replay", TOPIC, "--all")
    kt.deliver_outbox()
    run_until(w1, lambda: w1.handled >= 2)
    run_until(w2, lambda: w2.handled >= 2)
    # then: applied once by the failed consumer, under the original id; ignored by the other
    assert effects(name) == [(str(event.event_id), 0)]
    assert effects(other) == [(str(event.event_id), 0)]
    assert OutboxEvent.objects.count() == 1
    assert metrics.consumer_skipped.value(consumer=other, topic=TOPIC,
                                          reason="replay_for_other") == 1
    # and a replay of a replay that was already applied is refused
    out = _call("dlq", "replay", TOPIC, "--all")
    assert "already applied" in out


def test_one_consumers_failures_never_hold_back_another_consumer_of_the_topic(
        topics, probe_consumer, workers):
    # given: notifications-like consumer failing on every record, analytics-like healthy
    failing, healthy = probe_consumer(), probe_consumer()
    BROKEN_KEYS.update({f"{failing}/s0", f"{failing}/s1", f"{failing}/s2"})
    kt.produce_events(probes(30, keys=3, prefix="s", fail="transient"))
    w_fail = workers(failing, retry=fast_retry(max_attempts=1000))
    w_ok = workers(healthy)
    # when
    for _ in range(5):
        w_fail.step()
    run_until(w_ok, lambda: w_ok.handled >= 30)
    # then
    assert len(effects(healthy)) == 30
    assert effects(failing) == []
    assert w_fail.handled == 0
    assert InboxEntry.objects.filter(consumer=failing).count() == 0


def test_follow_up_events_carry_the_trace_and_commit_with_the_effect(
        topics, probe_consumer, workers):
    # given: a handler that publishes a follow-up event, and a record with a traceparent
    name = probe_consumer()
    FOLLOW_UP.add(name)
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    [event] = probes(1)
    event.extra_headers = {"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"}
    kt.produce_events([event])
    worker = workers(name)
    # when
    run_until(worker, lambda: worker.handled >= 1)
    # then
    row = OutboxEvent.objects.get()
    assert row.payload == {"probe_id": "follow-up", "key": "f-k0", "seq": 0}
    parts = row.headers["traceparent"].split("-")
    assert parts[1] == trace_id and parts[2] != "00f067aa0ba902b7"


@pytest.fixture
def stray_type():
    """A catalogue type on the probe topic that no consumer handles."""
    from outbox import catalogue

    et = catalogue.EventType(type="test.stray", topic=TOPIC, key="key",
                             schema=catalogue.obj({"key": catalogue.TEXT}))
    catalogue.register(et)
    yield et
    catalogue._REGISTRY.pop(et.type, None)


def test_records_of_types_without_a_handler_are_skipped_and_counted(
        topics, probe_consumer, workers, stray_type):
    # given: probe, stray type, probe, on one key
    name = probe_consumer()
    first, last = probes(2, keys=1)
    stray = Event("test.stray", {"key": "k0"}, event_id=uuid.uuid4())
    kt.produce_events([first, stray, last])
    worker = workers(name)
    # when
    run_until(worker, lambda: worker.handled >= 3)
    # then
    assert effects(name) == [(str(first.event_id), 0), (str(last.event_id), 1)]
    assert metrics.consumer_skipped.value(consumer=name, topic=TOPIC, reason="no_handler") == 1
    assert not InboxEntry.objects.filter(event_id=stray.event_id).exists()
    assert _dead_letters() == []


def test_consume_refuses_to_start_when_kafka_is_disabled(settings):
    settings.KAFKA_ENABLED = False
    with pytest.raises(CommandError, match="KAFKA_ENABLED is false"):
        call_command("consume", "analytics-events")


def test_consume_names_an_unknown_topic(settings):
    with pytest.raises(CommandError, match="unknown topic nope; topics are: user-events"):
        call_command("consume", "nope")


def test_consume_refuses_a_consumer_without_handlers_for_the_topic(probe_consumer):
    with pytest.raises(CommandError, match="consumer 'nobody' has no handlers for"):
        call_command("consume", TOPIC, "--consumer", "nobody")


def test_consume_refuses_missing_topics(kafka_prefix, probe_consumer):
    name = probe_consumer()
    with pytest.raises(CommandError, match=f"{kafka_prefix}analytics-events, "
                                           f"{kafka_prefix}analytics-events.dlq do not exist"):
        call_command("consume", TOPIC, "--consumer", name)


def test_consume_with_max_records_handles_that_many_and_exits(topics, probe_consumer):
    # given
    name = probe_consumer()
    kt.produce_events(probes(10))
    # when
    call_command("consume", TOPIC, "--consumer", name, "--max-records", "4",
                 "--poll-timeout", "0.2")
    # then
    assert len(effects(name)) == 4
    committed = sum(p.committed or 0 for p in _group_partitions(name))
    assert committed >= 4


def test_consume_runs_every_consumer_of_the_topic_each_in_its_own_group(
        topics, probe_consumer, settings):
    # given: two consumer names with handlers for the topic (besides any app's own)
    settings.KAFKA_CONSUMER_GROUP = f"test-{uuid.uuid4().hex[:8]}"
    first, second = probe_consumer(), probe_consumer()
    ids = kt.produce_events(probes(5, keys=1))
    # when: one command, no --consumer
    call_command("consume", TOPIC, "--max-records", "5", "--poll-timeout", "0.2")
    # then: each applied every event once, with its own inbox rows and its own group
    assert effects(first) == effects(second) == [(str(i), n) for n, i in enumerate(ids)]
    for name in (first, second):
        assert InboxEntry.objects.filter(consumer=name).count() == 5
        group = groups_describe(group_for(name))
        assert sum(p.committed or 0 for p in group.partitions) >= 5


def test_metrics_render_as_prometheus_text(topics, probe_consumer, workers):
    name = probe_consumer()
    kt.produce_events(probes(2))
    worker = workers(name)
    run_until(worker, lambda: worker.handled >= 2)
    text = metrics.render_prometheus()
    assert f'showoff_consumer_processed_total{{consumer="{name}",topic="{TOPIC}"}} 2' in text
    assert f'showoff_consumer_batch_records_sum{{consumer="{name}"}} 2\n' in text


def test_retry_backoff_is_capped_exponential():
    from relay.consumer import RetryPolicy

    policy = RetryPolicy(max_attempts=8, backoff=0.5, backoff_max=5)
    assert [policy.delay(n) for n in range(1, 7)] == [0.5, 1, 2, 4, 5, 5]
