"""`scripts/services up|status|down prometheus`: Debian's Prometheus, started idempotently,
scraping the processes the Procfile runs (ports read from their command lines) with the
project's alert rules. Runs on a private port and folder, never the developer's own."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import time
from pathlib import Path

import requests
import yaml

from relay.tests.prometheus_support import PrivatePrometheus

ROOT = Path(__file__).resolve().parents[1]


def _services_module():
    loader = importlib.machinery.SourceFileLoader("showoff_services", str(ROOT / "scripts" /
                                                                          "services"))
    spec = importlib.util.spec_from_loader("showoff_services", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def test_every_process_of_make_run_with_metrics_is_a_scrape_target():
    # when: the targets read from the repository's Procfile
    targets = _services_module().procfile_targets(ROOT / "Procfile")
    # then: the web's /metrics, the relay, the eight consumers and both Celery workers
    assert targets["showoff-api"] == [("web", "127.0.0.1:8000")]
    assert targets["showoff-relay"] == [("relay", "127.0.0.1:9101")]
    assert [name for name, _ in targets["showoff-consumers"]] == [
        f"consume-{t}" for t in ("user-events", "post-events", "transaction-events",
                                 "video-processing", "notification-events", "email-events",
                                 "sms-events", "analytics-events")]
    assert len({address for _, address in targets["showoff-consumers"]}) == 8
    assert targets["showoff-workers"] == [("fanout", "127.0.0.1:9131")]
    assert targets["showoff-celery"] == [("worker", "127.0.0.1:9121"),
                                         ("media", "127.0.0.1:9122")]
    # every long-running process but beat (which runs no task) is scraped
    procfile = [line.split(":")[0] for line in (ROOT / "Procfile").read_text().splitlines()]
    scraped = {name for job in targets.values() for name, _ in job}
    assert set(procfile) - scraped == {"beat"}


def test_prometheus_starts_once_scrapes_the_procfile_and_stops(tmp_path):
    # given: a Procfile of two processes, one of them this test's fake web target
    prometheus = PrivatePrometheus(tmp_path, (
        "web: python manage.py runserver 127.0.0.1:9 --noreload\n"
        "relay: python manage.py run_relay --metrics-port 10\n"))
    try:
        # when: started twice
        prometheus.start()
        first = (prometheus.local / "run" / "prometheus.pid").read_text()
        again = prometheus.services("up", "prometheus")
        # then: one process, configuration reloaded, the alert rules loaded, both targets
        assert again.returncode == 0, again.stderr
        assert "already running" in again.stdout and "configuration reloaded" in again.stdout
        assert (prometheus.local / "run" / "prometheus.pid").read_text() == first
        status = prometheus.services("status", "prometheus").stdout
        assert status.startswith(f"prometheus up       {prometheus.url}  pid {first}")
        config = yaml.safe_load((prometheus.local / "prometheus-server" / "prometheus.yml")
                                .read_text())
        assert config["rule_files"] == [str(ROOT / "monitoring" / "prometheus" / "alerts.yml")]
        rules = requests.get(f"{prometheus.url}/api/v1/rules", timeout=5).json()["data"]
        alerts = {r["name"] for g in rules["groups"] for r in g["rules"]}
        assert {"ShowoffRelayShardInactive", "ShowoffConsumerLagGrowing"} <= alerts
        deadline = time.monotonic() + 30
        while not prometheus.targets() and time.monotonic() < deadline:
            time.sleep(0.2)  # service discovery runs a moment after the start
        assert sorted((job, url) for job, url, _ in prometheus.targets()) == [
            ("showoff-api", "http://127.0.0.1:9/metrics"),
            ("showoff-relay", "http://127.0.0.1:10/metrics")]
    finally:
        prometheus.stop()
    # and stopped: nothing answers, status says so
    assert prometheus.services("status", "prometheus").stdout.startswith("prometheus down")
    assert not (prometheus.local / "run" / "prometheus.pid").exists()
