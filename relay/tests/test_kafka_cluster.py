"""One broker of a three-node KRaft cluster killed (-9) while the relay and a consumer stream
events: nothing lost, nothing duplicated, and both keep going on the two nodes left.

The cluster is private to this test (`scripts/services up kafka --cluster 3` with its own folder
and free ports, 384 MiB of heap per node), so the shared broker of the test run is untouched.
Topics are created as production creates them: replication factor 3, min.insync.replicas 2.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka.admin import ConfigResource, ResourceType

from outbox.catalogue import CHECKPOINT_TOPIC
from outbox.models import OutboxEvent
from relay import testing as kt
from relay.kafka import make_admin, topic_name
from relay.models import InboxEntry
from relay.monitoring import kafka_state
from relay.selectors import delivered_condition
from relay.topics import create_topics, desired_topics

from . import consumer_support as cs
from .relay_helpers import RelayProcess, Writers, assert_exactly_once_in_order

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

effects_table = cs.effects_table
ROOT = Path(__file__).resolve().parents[2]
EVENTS = 1500


def _free_range(n: int) -> int:
    """First port of `n` consecutive free ports."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + n >= 65535:
            continue
        free = True
        for port in range(base, base + n):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    free = False
                    break
        if free:
            return base
    raise RuntimeError(f"no {n} consecutive free ports")


class PrivateCluster:
    size = 3

    def __init__(self, base: Path):
        local = os.environ.get("SHOWOFF_LOCAL_DIR", str(ROOT / ".local"))
        self.base = base
        self.port = _free_range(self.size)
        self.env = {
            **os.environ,
            "SHOWOFF_LOCAL_DIR": str(base),
            "SHOWOFF_KAFKA_CLUSTER_PORT": str(self.port),
            "SHOWOFF_KAFKA_CLUSTER_CONTROLLER_PORT": str(_free_range(self.size)),
            "SHOWOFF_KAFKA_CLUSTER_HEAP": "-Xms128m -Xmx384m",
            "SHOWOFF_KAFKA_LIBS": os.path.join(local, "kafka", "libs"),
        }
        self.bootstrap = ",".join(f"127.0.0.1:{self.port + i}" for i in range(self.size))

    def services(self, action: str) -> str:
        result = subprocess.run(
            [sys.executable, "scripts/services", action, "kafka", "--cluster", str(self.size)],
            cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=180)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def pid(self, node_id: int) -> int:
        return int((self.base / "run" / f"kafka-cluster-{node_id}.pid").read_text())

    def kill9(self, node_id: int) -> None:
        os.kill(self.pid(node_id), signal.SIGKILL)


@pytest.fixture
def cluster(tmp_path, settings, kafka_prefix):
    cluster = PrivateCluster(tmp_path / "cluster")
    started = cluster.services("up")
    assert f"KAFKA_BROKERS={cluster.bootstrap}" in started, started
    settings.KAFKA_BROKERS = cluster.bootstrap
    settings.KAFKA_REPLICATION_FACTOR = 3
    settings.KAFKA_MIN_INSYNC_REPLICAS = 2
    settings.RELAY_CHECKPOINT_PARTITIONS = 2
    yield cluster
    cluster.services("down")


def _partitions(admin, topic: str) -> dict[int, tuple[int, list[int], list[int]]]:
    """partition -> (leader, replicas, in-sync replicas)."""
    md = admin.list_topics(topic=topic, timeout=10).topics[topic]
    return {p.id: (p.leader, sorted(p.replicas), sorted(p.isrs)) for p in md.partitions.values()}


def _wait(what: str, done, timeout: float, *procs) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        for p in procs:
            assert p.proc.poll() is None, f"{what}: process exited:\n{p.output()}"
        assert time.monotonic() < deadline, (
            f"{what}: not within {timeout}s\n" + "\n".join(p.output()[-3000:] for p in procs))
        time.sleep(0.2)


def _delivered() -> int:
    """Outbox rows the relay's database copy of its position says are in Kafka."""
    condition, params = delivered_condition(1)
    return OutboxEvent.objects.extra(  # noqa: S610 - the position's own SQL
        where=[condition], params=params).count()


def test_a_broker_killed_mid_stream_loses_and_duplicates_nothing(cluster, effects_table,
                                                                 tmp_path):
    admin = make_admin("test-cluster")
    # given: every topic at replication factor 3 and min.insync.replicas 2, as in production
    create_topics()
    specs = desired_topics()
    for spec in specs:
        kt.wait_for_topic(spec.name, spec.partitions)
    for spec in specs:
        layout = _partitions(admin, spec.name)
        assert all(replicas == [1, 2, 3] and isr == [1, 2, 3]
                   for _, replicas, isr in layout.values()), (spec.name, layout)
    configs = admin.describe_configs(
        [ConfigResource(ResourceType.TOPIC, s.name) for s in specs])
    for resource, future in configs.items():
        assert future.result(10)["min.insync.replicas"].value == "2", resource

    # and the relay and a consumer running, events being written by two threads meanwhile
    name = f"cluster-{uuid.uuid4().hex[:6]}"
    relay = RelayProcess(tmp_path, "--batch-size", "50")
    consumer = kt.ManageProcess(
        ["consume", cs.TOPIC, "--consumer", name, "--poll-timeout", "0.2", "--batch-size", "50"],
        imports=[cs.__name__], log_dir=tmp_path, RELAY_TEST_CONSUMER=name,
        CONSUMER_SUMMARY_INTERVAL="1")
    writers = Writers(threads=2, events=EVENTS, pause=0.25).start()
    relay.wait_for("started at", timeout=60)
    consumer.wait_for("assigned", timeout=60)
    _wait("first effects", lambda: len(cs.effects(name)) >= 150, 60, relay, consumer)

    # when: the broker leading the relay's checkpoint partition is killed -9, mid-stream
    victim = _partitions(admin, topic_name(CHECKPOINT_TOPIC))[0][0]
    survivors = sorted({1, 2, 3} - {victim})
    cluster.kill9(victim)
    delivered_at_kill, applied_at_kill = _delivered(), len(cs.effects(name))
    assert writers.alive(), "the stream ended before the kill: nothing was tested"

    # then: with the broker still down, the relay commits and the consumer applies 300 more
    _wait("progress with a broker down",
          lambda: _delivered() >= delivered_at_kill + 300
          and len(cs.effects(name)) >= applied_at_kill + 300, 90, relay, consumer)
    writers.join()
    committed = OutboxEvent.objects.count()
    assert committed == EVENTS
    _wait("everything delivered", lambda: _delivered() == committed, 90, relay, consumer)
    _wait("everything applied", lambda: len(cs.effects(name)) >= committed, 90, relay, consumer)
    # the broker really was gone the whole time: two brokers, and it is out of every ISR
    md = admin.list_topics(timeout=10)
    assert sorted(md.brokers) == survivors
    for topic in (topic_name(cs.TOPIC), topic_name(CHECKPOINT_TOPIC)):
        assert all(victim not in isr and len(isr) == 2
                   for _, _, isr in _partitions(admin, topic).values()), topic
    # the API's /metrics reads it from the brokers too (relay/monitoring.py, the source of the
    # ShowoffKafkaUnderReplicated alert): every partition under-replicated, none offline
    _wait("the metrics seeing every partition under-replicated", lambda: (
        (state := kafka_state()).brokers == 2 and state.under_replicated == state.partitions
        and sum(state.partitions.values()) >= 17), 60, relay, consumer)
    assert sum(kafka_state().offline.values()) == 0
    # (both clients saw it go: their connections to it were refused, and they carried on)
    assert "Connection refused" in relay.output(), relay.output()
    assert "Connection refused" in consumer.output(), consumer.output()
    assert relay.terminate() == 0, relay.output()
    assert consumer.terminate() == 0, consumer.output()

    # and: every committed event is in Kafka once, in per-key commit order (read_committed),
    # no rolled-back one
    assert_exactly_once_in_order(rolled_back=writers.rolled_back, expect_count=EVENTS)
    # and the consumer applied each exactly once
    applied = Counter(event_id for event_id, _ in cs.effects(name))
    assert [e for e, c in applied.items() if c > 1] == []
    expected = {str(e) for e in OutboxEvent.objects.values_list("event_id", flat=True)}
    assert set(applied) == expected
    assert InboxEntry.objects.filter(consumer=name).count() == EVENTS

    # finally: `up` again restarts only the dead node, which catches up and rejoins every ISR
    restarted = cluster.services("up")
    assert [f"kafka-{n}: already running" in restarted for n in survivors] == [True, True]
    _wait("the node back in sync", lambda: all(
        isr == [1, 2, 3] for _, _, isr in _partitions(admin, topic_name(cs.TOPIC)).values()), 60)
    assert kafka_state().under_replicated[topic_name(cs.TOPIC)] == 0
