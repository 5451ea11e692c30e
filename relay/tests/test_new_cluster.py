"""A brand-new Kafka cluster: the group coordinator is not ready until `__consumer_offsets`
exists and is loaded. librdkafka 2.16's AdminClient.list_consumer_group_offsets crashed the
process (SIGSEGV) in that window, which took down the first `make test` on every fresh machine
(in /metrics) and would take down a web worker answering a scrape, or `kafka groups
--describe`, on a new cluster. Each check runs in a child process, so a crash is a failed
assertion with the exit status rather than the end of the test run."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from .private_services import PrivateBroker
from .relay_helpers import ROOT

pytestmark = pytest.mark.timeout(300)

SCRIPT = r"""
import json, time
import django
django.setup()
from django.core.management import call_command
from relay import cli
from relay.consumer import group_for
from relay.monitoring import KafkaCollector
from relay.registry import all_registrations

def scrape():
    families = {f.name: f for f in KafkaCollector(timeout=10).collect()}
    up = families["showoff_kafka_up"].samples[0].value
    lag = {f"{s.labels['consumer']}|{s.labels['topic']}": s.value
           for s in (families["showoff_kafka_consumergroup_lag"].samples
                     if "showoff_kafka_consumergroup_lag" in families else [])}
    return up, lag

call_command("kafka", "create-topics", verbosity=0)
# Right after the topics: no consumer group has ever been used, __consumer_offsets is missing.
# Scrape until the partitions' leaders answer (the first scrapes may say "down"), so that a
# scrape reaches the consumer groups before anything has asked for a coordinator.
deadline = time.monotonic() + 30
while True:
    first_up, first_lag = scrape()
    if first_up == 1 or time.monotonic() > deadline:
        break
    time.sleep(0.2)
group = sorted({group_for(r.consumer) for r in all_registrations()})[0]
try:
    describe = f"described {cli.groups_describe(group).group}"
except cli.CliError as exc:
    describe = f"refused: {exc}"
# Once the coordinator is loaded, every registered consumer has its lag again.
wanted = {r.consumer for r in all_registrations()}
deadline = time.monotonic() + 60
while True:
    up, lag = scrape()
    if (up == 1 and {k.split("|")[0] for k in lag} == wanted) or time.monotonic() > deadline:
        break
    time.sleep(0.5)
print(json.dumps({"first_up": first_up, "first_lag": first_lag, "describe": describe,
                  "up": up, "lag": lag, "consumers": sorted(wanted)}))
"""


def test_metrics_and_group_commands_survive_a_new_cluster_whose_coordinator_is_not_ready(
        tmp_path_factory):
    broker = PrivateBroker(tmp_path_factory.mktemp("new-cluster"))
    broker.up()
    try:
        env = {**broker.env, "KAFKA_BROKERS": f"127.0.0.1:{broker.port}",
               "DJANGO_SETTINGS_MODULE": "showoff.settings.test"}
        run = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=240)
    finally:
        broker.down()
    assert run.returncode == 0, (f"exit status {run.returncode} (-11 is SIGSEGV)\n"
                                 f"{run.stdout[-3000:]}\n{run.stderr[-3000:]}")
    out = json.loads(run.stdout.strip().splitlines()[-1])
    # The first scrape that reached the groups found no coordinator ready: it reports the
    # brokers up and a real lag or none (nothing was ever written: 0), never a made-up one.
    assert out["first_up"] == 1
    assert set(out["first_lag"].values()) <= {0}
    assert out["describe"].startswith(("described", "refused")), out["describe"]
    # Later the brokers answer, and every registered consumer has its lag on every topic it
    # reads, all 0.
    assert out["up"] == 1
    assert {key.split("|")[0] for key in out["lag"]} == set(out["consumers"])
    assert set(out["lag"].values()) == {0}
