"""`manage.py kafka ...` against the real broker: topics, tail, groups (lag, reset-offsets), and
one-line errors."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections import Counter
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from relay import metrics
from relay import testing as kt
from relay.kafka import make_admin, topic_name

from . import consumer_support as cs
from .consumer_support import TOPIC, effects, group_of, probes, run_until

pytestmark = pytest.mark.django_db(transaction=True)

effects_table, probe_consumer, topics, workers = (
    cs.effects_table, cs.probe_consumer, cs.topics, cs.workers)

ROOT = Path(__file__).resolve().parents[2]


def kafka(*args: str) -> str:
    out = StringIO()
    call_command("kafka", *args, stdout=out)
    return out.getvalue()


def rows(table: str) -> list[dict[str, str]]:
    """An aligned table back into dicts (cells contain no spaces)."""
    lines = [line for line in table.splitlines() if line.strip()]
    start = next(i for i, line in enumerate(lines) if line.startswith(("GROUP", "PARTITION")))
    header = lines[start].split()
    return [dict(zip(header, line.split(), strict=True)) for line in lines[start + 1:]
            if len(line.split()) == len(header)]


# --- topics ---------------------------------------------------------------------------------


def test_topics_list_shows_this_prefix_topics(topics, kafka_prefix):
    assert kafka("topics", "--list").split() == [f"{kafka_prefix}analytics-events",
                                                 f"{kafka_prefix}analytics-events.dlq"]


def test_topics_describe_shows_partitions_and_topic_configs(kafka_topic, kafka_prefix):
    kafka_topic("post-events", 2, {"retention.ms": "3600000"})
    out = kafka("topics", "--describe", "--topic", "post-events")
    assert out.splitlines()[0] == (f"Topic: {kafka_prefix}post-events  PartitionCount: 2  "
                                   "ReplicationFactor: 1  Configs: retention.ms=3600000")
    assert rows(out) == [{"PARTITION": "0", "LEADER": "1", "REPLICAS": "1", "ISR": "1"},
                         {"PARTITION": "1", "LEADER": "1", "REPLICAS": "1", "ISR": "1"}]


def test_topics_alter_adds_partitions_and_refuses_to_shrink(kafka_topic, kafka_prefix):
    name = kafka_topic("sms-events", 1)
    out = kafka("topics", "--alter", "--topic", "sms-events", "--partitions", "3")
    assert out.startswith(f"Topic {name}: 1 -> 3 partitions.")
    kt.wait_for_topic(name, 3)
    assert len(make_admin().list_topics(name, timeout=10).topics[name].partitions) == 3
    with pytest.raises(CommandError, match=f"topic {name} has 3 partitions; Kafka can only add "
                                           "partitions, so --partitions must be more than 3"):
        kafka("topics", "--alter", "--topic", "sms-events", "--partitions", "2")


def test_unknown_topic_is_a_one_line_error(kafka_prefix):
    with pytest.raises(CommandError, match=f"unknown topic 'nope' \\(looked for "
                                           f"'{kafka_prefix}nope' or 'nope'\\)"):
        kafka("topics", "--describe", "--topic", "nope")
    with pytest.raises(CommandError, match="topics --alter needs --topic T and --partitions N"):
        kafka("topics", "--alter", "--topic", "user-events")
    with pytest.raises(CommandError, match="groups --reset-offsets needs --topic T"):
        kafka("groups", "--reset-offsets", "--group", "g", "--to-earliest")


# --- tail -----------------------------------------------------------------------------------


def test_tail_prints_cloudevents_readably(topics, kafka_prefix):
    # given
    [event] = probes(1, keys=1)
    event.extra_headers = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
    kt.produce_events([event])
    kt.produce_raw(topic_name(TOPIC), [(b"k0", b"garbage", [])])
    # when
    out = kafka("tail", TOPIC, "--from-beginning", "--max", "2")
    # then
    lines = out.splitlines()
    head = lines[0].split("  ")
    assert head[0] == f"{kafka_prefix}analytics-events[{head[0].split('[')[1].split(']')[0]}]@0"
    assert head[1].endswith("Z")
    assert head[2:] == ["pipeline.probe", f"id={event.event_id}", "key=k0"]
    assert "traceparent=00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" in lines[1]
    assert "subject=k0" in lines[1]
    assert lines[2] == '  data: {"key": "k0", "probe_id": "test", "seq": 0}'
    assert "(not a CloudEvent: not a CloudEvent: missing header(s) ce_specversion, ce_id, " \
           "ce_type)  key=k0" in lines[3]
    assert lines[4] == "  value: garbage"


def test_tail_stops_after_the_timeout_without_records(topics):
    assert kafka("tail", TOPIC, "--timeout-ms", "300") == ""


# --- groups ---------------------------------------------------------------------------------


def _committed_by_partition(group: str) -> dict[int, int]:
    return {int(r["PARTITION"]): int(r["CURRENT-OFFSET"])
            for r in rows(kafka("groups", "--describe", "--group", group))}


def test_groups_describe_shows_the_lag_left_unconsumed_and_reset_rereads_as_no_ops(
        topics, probe_consumer, workers):
    # given: 30 records consumed, then 18 more arrive (non-transactional: offsets count
    # records one to one)
    name = probe_consumer()
    group = group_of(name)
    kt.produce_events(probes(30, keys=9), transactional=False)
    call_command("consume", TOPIC, "--consumer", name, "--max-records", "30",
                 "--poll-timeout", "0.2")
    consumed = Counter(r.partition for r in kt.read_all([topic_name(TOPIC)]))
    kt.produce_events(probes(18, keys=9, start=30), transactional=False)
    total = Counter(r.partition for r in kt.read_all([topic_name(TOPIC)]))
    # when
    table = rows(kafka("groups", "--describe", "--group", group))
    # then: one row per partition; the lag is exactly what was left unconsumed there
    assert [r["PARTITION"] for r in table] == ["0", "1", "2"]
    assert {r["GROUP"] for r in table} == {group}
    for r in table:
        p = int(r["PARTITION"])
        assert (int(r["CURRENT-OFFSET"]), int(r["LOG-END-OFFSET"]), int(r["LAG"])) == (
            consumed[p], total[p], total[p] - consumed[p])
        assert r["CONSUMER-ID"] == "-"  # nobody is consuming now
    assert sum(int(r["LAG"]) for r in table) == 18
    assert len(effects(name)) == 30
    assert (group, "Empty") in [tuple(r.split()) for r in kafka("groups", "--list").splitlines()]

    # given: the rest consumed
    worker = workers(name)
    run_until(worker, lambda: len(effects(name)) == 48)
    # a reset is refused while the group has an active member
    with pytest.raises(CommandError, match=f"consumer group '{group}' has 1 active member"):
        kafka("groups", "--reset-offsets", "--group", group, "--topic", TOPIC, "--to-earliest",
              "--execute")
    worker.close()
    end = _committed_by_partition(group)
    # a dry run shows the plan and changes nothing
    out = kafka("groups", "--reset-offsets", "--group", group, "--topic", TOPIC,
                "--to-earliest")
    assert [(r["PARTITION"], r["CURRENT-OFFSET"], r["NEW-OFFSET"]) for r in rows(out)] == [
        (str(p), str(end[p]), "0") for p in (0, 1, 2)]
    assert out.splitlines()[-1] == "Dry run: nothing changed. Add --execute to apply."
    assert _committed_by_partition(group) == end
    # when: executed
    out = kafka("groups", "--reset-offsets", "--group", group, "--topic", TOPIC,
                "--to-earliest", "--execute")
    assert out.splitlines()[-1] == (f"Offsets of group '{group}' on {topic_name(TOPIC)} reset.")
    assert _committed_by_partition(group) == {0: 0, 1: 0, 2: 0}
    # then: the consumer re-reads everything, and the inbox turns each record into a no-op
    worker = workers(name)
    duplicates_before = metrics.consumer_duplicates.value(consumer=name, topic=TOPIC)
    run_until(worker, lambda: worker.handled == 48)
    assert metrics.consumer_duplicates.value(consumer=name, topic=TOPIC) - \
        duplicates_before == 48
    assert len(effects(name)) == 48


def test_reset_to_latest_and_to_datetime(topics, probe_consumer):
    # given: a group that consumed nothing yet (no offsets) and 6 records
    name = probe_consumer()
    group = group_of(name)
    kt.produce_events(probes(6, keys=3), transactional=False)
    ends = Counter(r.partition for r in kt.read_all([topic_name(TOPIC)]))
    # when / then: --to-latest moves to the end of each partition
    out = kafka("groups", "--reset-offsets", "--group", group, "--topic", TOPIC, "--to-latest",
                "--execute")
    assert [(int(r["PARTITION"]), r["CURRENT-OFFSET"], int(r["NEW-OFFSET"]))
            for r in rows(out)] == [(p, "-", ends[p]) for p in (0, 1, 2)]
    # --to-datetime in the past: the first offset of each partition; in the future: the end
    out = kafka("groups", "--reset-offsets", "--group", group, "--topic", TOPIC,
                "--to-datetime", "2020-01-01T00:00:00Z")
    assert [int(r["NEW-OFFSET"]) for r in rows(out)] == [0, 0, 0]
    out = kafka("groups", "--reset-offsets", "--group", group, "--topic", TOPIC,
                "--to-datetime", "2999-01-01T00:00:00")
    assert [int(r["NEW-OFFSET"]) for r in rows(out)] == [ends[p] for p in (0, 1, 2)]
    with pytest.raises(CommandError, match="--to-datetime 'yesterday' is not an ISO 8601"):
        kafka("groups", "--reset-offsets", "--group", group, "--topic", TOPIC,
              "--to-datetime", "yesterday")


def test_describing_an_unknown_group_says_so():
    group = f"no-such-group-{uuid.uuid4().hex[:6]}"
    with pytest.raises(CommandError, match=f"consumer group '{group}' does not exist"):
        kafka("groups", "--describe", "--group", group)


# --- errors as one line ---------------------------------------------------------------------


@pytest.mark.parametrize(("args", "code", "message"), [
    (["topics", "--describe", "--topic", "no-such-topic"], 1,
     "CommandError: unknown topic 'no-such-topic'"),
    (["topics", "--alter", "--topic", "x", "--partitions", "zero"], 2,
     "manage.py kafka topics: error: argument --partitions: 'zero' is not a whole number"),
])
def test_bad_arguments_are_one_line_on_stderr_with_a_non_zero_exit(args, code, message):
    result = subprocess.run([sys.executable, "manage.py", "kafka", *args], cwd=ROOT,
                            env=kt.subprocess_environment(), capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == code
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(message), result.stderr
    assert "Traceback" not in result.stderr
