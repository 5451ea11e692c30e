"""A broker stopped and restarted, or paused, mid-stream. Runs a private single-node KRaft broker
(its own ports and data folder, the same jars; started once for this module), so the shared
broker of the test run is never touched."""

from __future__ import annotations

import time

import pytest

from outbox.models import OutboxEvent
from relay.selectors import shard_states

from .private_services import PrivateBroker
from .relay_helpers import (
    RelayProcess,
    Writers,
    assert_exactly_once_in_order,
    create_relay_topics,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture(scope="module")
def _broker(tmp_path_factory):
    broker = PrivateBroker(tmp_path_factory.mktemp("broker"))
    broker.up()
    yield broker
    broker.resume()
    broker.down()


@pytest.fixture
def private_broker(_broker, settings, kafka_prefix):
    settings.KAFKA_BROKERS = f"127.0.0.1:{_broker.port}"
    yield _broker
    _broker.resume()


def _wait_all_delivered(relay: RelayProcess, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        (state,) = shard_states(1)
        if state.backlog == 0 and state.events_total >= OutboxEvent.objects.count():
            return
        assert relay.proc.poll() is None, relay.output()
        assert time.monotonic() < deadline, relay.output()
        time.sleep(0.2)


def test_relay_recovers_from_a_broker_restart(private_broker, tmp_path):
    create_relay_topics()
    writers = Writers(threads=2, events=1500, pause=0.03).start()
    relay = RelayProcess(tmp_path, "--batch-size", "50")
    relay.wait_for("started at")
    time.sleep(1.5)

    # when: the only broker goes away mid-stream and comes back
    private_broker.down()
    time.sleep(3)
    private_broker.up()
    writers.join()

    # then: the same relay process delivers everything by itself
    _wait_all_delivered(relay)
    assert relay.terminate() == 0, relay.output()
    # The outage was real: the relay's client saw the broker gone, and carried on.
    assert "Connection refused" in relay.output(), relay.output()
    assert_exactly_once_in_order(rolled_back=writers.rolled_back, expect_count=1500,
                                 contiguous=True)


def test_a_commit_of_unknown_outcome_rebuilds_the_producer_and_loses_nothing(private_broker,
                                                                              tmp_path):
    """Jepsen's defence (DESIGN.md §8): the broker paused longer than the commit timeout while
    commits are in flight; the commit's outcome is unknown, so the relay never retries it on the
    same producer: it rebuilds, init_transactions() fences the old epoch, and the checkpoint
    says whether the batch landed. Nothing lost, duplicated or reordered."""
    create_relay_topics()
    writers = Writers(threads=2, events=10**9, pause=0.02).start()
    relay = RelayProcess(tmp_path, "--batch-size", "20", RELAY_COMMIT_TIMEOUT_SECONDS="3")
    relay.wait_for("started at", timeout=60)
    deadline = time.monotonic() + 60
    while shard_states(1)[0].events_total < 100:
        assert time.monotonic() < deadline, relay.output()
        time.sleep(0.05)
    # when: the broker stops answering for 10 s, mid-stream, then resumes
    private_broker.pause()
    time.sleep(10)
    private_broker.resume()
    relay.wait_for("rebuilding the producer", timeout=60)
    time.sleep(2)
    writers.stop()
    writers.join()
    # then: the same process delivers everything
    _wait_all_delivered(relay)
    assert relay.terminate() == 0, relay.output()
    out = relay.output()
    assert "commit outcome unknown" in out, out
    assert "not confirmed yet" not in out  # never retried on the same producer
    assert_exactly_once_in_order(rolled_back=writers.rolled_back, expect_count=writers.written,
                                 contiguous=True)
