"""A broker stopped and restarted mid-stream. Runs a private single-node KRaft broker (its own
ports and data folder, the same jars), so the shared broker of the test run is never touched."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

from outbox.models import OutboxEvent
from relay.selectors import shard_states

from .relay_helpers import (
    ROOT,
    RelayProcess,
    Writers,
    assert_exactly_once_in_order,
    create_relay_topics,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateBroker:
    def __init__(self, base):
        local = os.environ.get("SHOWOFF_LOCAL_DIR", str(ROOT / ".local"))
        self.port = _free_port()
        self.env = {
            **os.environ,
            "SHOWOFF_LOCAL_DIR": str(base),
            "SHOWOFF_KAFKA_PORT": str(self.port),
            "SHOWOFF_KAFKA_CONTROLLER_PORT": str(_free_port()),
            "SHOWOFF_KAFKA_LIBS": os.path.join(local, "kafka", "libs"),
            "SHOWOFF_KAFKA_HEAP": "-Xms128m -Xmx384m",
        }

    def _services(self, action: str) -> None:
        result = subprocess.run([sys.executable, "scripts/services", action, "kafka"], cwd=ROOT,
                                env=self.env, capture_output=True, text=True, timeout=180)
        assert result.returncode == 0, result.stdout + result.stderr

    def up(self) -> None:
        self._services("up")

    def down(self) -> None:
        self._services("down")


@pytest.fixture
def private_broker(tmp_path, settings, kafka_prefix):
    broker = PrivateBroker(tmp_path / "broker")
    broker.up()
    settings.KAFKA_BROKERS = f"127.0.0.1:{broker.port}"
    yield broker
    broker.down()


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
    deadline = time.monotonic() + 120
    while True:
        (state,) = shard_states(1)
        if state.events_total >= OutboxEvent.objects.count() and state.backlog == 0:
            break
        assert relay.proc.poll() is None, relay.output()
        assert time.monotonic() < deadline, relay.output()
        time.sleep(0.2)
    assert relay.terminate() == 0, relay.output()
    # The outage was real: the relay's client saw the broker gone, and carried on.
    assert "Connection refused" in relay.output(), relay.output()
    assert_exactly_once_in_order(rolled_back=writers.rolled_back, expect_count=1500,
                                 contiguous=True)
