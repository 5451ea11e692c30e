"""The Event pipeline page over time, against a real Prometheus scraping real processes.

A private Prometheus (started by `scripts/services up prometheus`, own port and data folder)
scrapes, every second, the test's live server (the API's /metrics: outbox backlog from
PostgreSQL, consumer-group lag and dead letters from the brokers) and a `run_relay` process's
metrics port. The chart queries of relay/history.py are then checked against what really
happened: the backlog before the relay started, the relay's deliveries, the lag Kafka reported,
the dead letter a consumer wrote. The page is then opened in headless Chromium and its lights
and charts are read from the rendered elements.
"""

from __future__ import annotations

import re
import time

import pytest

from conftest import admin_sign_in, save_screenshot
from relay import history
from relay.consumer import group_for
from relay.kafka import topic_name
from relay.testing import ManageProcess

from . import consumer_support as cs
from .consumer_support import TOPIC
from .prometheus_support import PrivatePrometheus, free_port
from .test_pipeline_page import _caught_up, _probe, _staff, _write, all_topics  # noqa: F401

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

effects_table, probe_consumer, workers = cs.effects_table, cs.probe_consumer, cs.workers

# Two minutes in one-second steps: every scrape of the test is a point of its own.
TEST_WINDOW = history.Window("test", "last two minutes", 120, 1, "5s", "%H:%M:%S")


def _chart(result: history.History, slug: str):
    return next(c for c in result.charts if c.slug == slug)


def _seen(values) -> list[float]:
    return [v for v in values if v is not None]


def test_the_charts_show_what_prometheus_scraped_from_the_relay_api_and_kafka(
        all_topics, probe_consumer, workers, live_server, browser, tmp_path, settings):  # noqa: F811
    # given: 6 probes written, no relay yet
    name = probe_consumer()
    _write([_probe(i, key=f"k{i % 3}") for i in range(6)])
    relay_port = free_port()
    port = live_server.url.rsplit(":", 1)[1]
    prometheus = PrivatePrometheus(tmp_path, (
        f"web: python manage.py runserver 127.0.0.1:{port} --noreload\n"
        f"relay: python manage.py run_relay --metrics-port {relay_port}\n")).start()
    relay = None
    try:
        # Prometheus scrapes the waiting backlog, and its age growing, for a few seconds
        prometheus.wait_for('showoff_outbox_backlog_events{shard="0/1"}', lambda v: v == 6)
        prometheus.wait_for('showoff_outbox_oldest_undelivered_age_seconds{shard="0/1"}',
                            lambda v: v >= 3)
        # when: the relay (its own process, scraped on its metrics port) delivers them, then
        # 6 more, one of which its consumer will dead-letter
        relay = ManageProcess(["run_relay", "--metrics-port", str(relay_port)],
                              log_dir=tmp_path, RELAY_POLL_INTERVAL="0.2")
        prometheus.wait_for('showoff_relay_events_total{shard="0/1"}', lambda v: v == 6)
        _write([_probe(i, key=f"k{i % 3}") for i in range(6, 11)]
               + [_probe(11, fail="permanent")])
        prometheus.wait_for('showoff_relay_events_total{shard="0/1"}', lambda v: v == 12)
        prometheus.wait_for('showoff_outbox_backlog_events{shard="0/1"}', lambda v: v == 0)
        # the records wait in Kafka: the group's lag as the brokers report it
        # (the 12 records plus the relay's commit markers, which land a moment after the
        # commit returns: wait until Prometheus shows what the brokers' end offsets say)
        lag = prometheus.wait_for(
            f'sum(showoff_kafka_consumergroup_lag{{consumer="{name}"}})',
            lambda v: v >= 12 and v == _end_total())
        time.sleep(3)  # a few more scrapes at that lag
        # then the consumer applies them and dead-letters the bad one
        _caught_up(workers(name), group_for(name))
        prometheus.wait_for(f'sum(showoff_kafka_consumergroup_lag{{consumer="{name}"}})',
                            lambda v: v == 0)
        prometheus.wait_for(f'showoff_kafka_dead_letters{{topic="{TOPIC}"}}', lambda v: v == 1)
        time.sleep(2)
        settings.PROMETHEUS_URL = prometheus.url

        # then: the chart queries, over the last two minutes in one-second steps
        past = history.pipeline_history(TEST_WINDOW)
        assert past.error == "", past.error
        assert [c.slug for c in past.charts] == [
            "relay-throughput", "backlog-age", "consumer-lag", "dead-letters"]
        age = _seen(_chart(past, "backlog-age").series["0/1"])
        assert max(age) >= 3 and age[-1] == 0
        throughput = _seen(_chart(past, "relay-throughput").series["0/1"])
        assert max(throughput) > 0  # events/s while it delivered the second 6
        # exactly the lag Kafka reported before the consumer ran: 12 records plus the relay's
        # commit markers (from the brokers' end offsets, independently of the chart's query)
        lags = _seen(_chart(past, "consumer-lag").series[name])
        assert max(lags) == lag == _end_total()
        assert lags[-1] == 0 and all(float(v).is_integer() for v in lags)
        dead = _seen(_chart(past, "dead-letters").series[TOPIC])
        assert dead[0] == 0 and dead[-1] == 1
        assert past.relay_active == {"0/1": 1.0}

        # and the page, in a browser: lights on top, the last hour's charts, readable
        staff = _staff()
        admin_sign_in(browser, live_server, staff, "/admin/pipeline/?range=1h", "x-Secret-9")
        page = browser.execute_script("""
          const lights = Array.from(document.querySelectorAll('#state li.light')).map(l => ({
            kind: l.dataset.kind, name: l.dataset.name, level: l.dataset.level,
            reason: l.querySelector('.reason').textContent,
            runbook: (l.querySelector('a.runbook') || {}).href || null}));
          const charts = Array.from(document.querySelectorAll('#history figure.chart')).map(f => ({
            chart: f.dataset.chart, unit: f.dataset.unit,
            panels: Array.from(f.querySelectorAll('svg.chart-panel')).map(s => ({
              heading: s.dataset.panel,
              yTitle: s.querySelector('.y-axis .axis-title').textContent,
              xTitle: s.querySelector('.x-axis .axis-title').textContent,
              yTicks: Array.from(s.querySelectorAll('.y-axis text.tick')).map(t => t.textContent),
              titles: Array.from(s.querySelectorAll('.point title')).map(t => t.textContent)}))}));
          const top = document.querySelector('#state').getBoundingClientRect().top;
          const tables = document.querySelector('#relay-shards').getBoundingClientRect().top;
          return {lights, charts, stateAboveTables: top < tables};""")
        assert page["stateAboveTables"]
        lights = {(li["kind"], li["name"]): li for li in page["lights"]}
        assert lights[("shard", "0/1")]["level"] == "ok"
        assert lights[("shard", "0/1")]["reason"] == "all delivered"
        assert lights[("group", name)]["level"] == "ok"
        # the app's own `analytics` group reads this topic too, and no process of it runs:
        # red, which group, how many records wait, since when, and where to read what to do
        analytics = lights[("group", "analytics")]
        assert analytics["level"] == "bad"
        assert re.fullmatch(r"no consumer running; \d+ records wait, since \d\d:\d\d UTC",
                            analytics["reason"]), analytics
        assert analytics["runbook"] == (
            f"{live_server.url}/admin/pipeline/runbook/#2-messages-not-consumed")
        assert lights[("dead-letters", "Dead letters")]["level"] == "warn"
        assert f"1 in {TOPIC}" in lights[("dead-letters", "Dead letters")]["reason"]
        charts = {c["chart"]: c for c in page["charts"]}
        assert list(charts) == ["relay-throughput", "backlog-age", "consumer-lag",
                                "dead-letters"]
        for chart in charts.values():
            for panel in chart["panels"]:
                assert panel["yTitle"] == chart["unit"] and panel["xTitle"] == "time (UTC)"
        for slug in ("consumer-lag", "dead-letters"):  # counts: whole-number axes
            for panel in charts[slug]["panels"]:
                assert all(re.fullmatch(r"\d[\d,]*", t) for t in panel["yTicks"]), panel
        mine = next(p for p in charts["consumer-lag"]["panels"] if p["heading"] == name)
        # every point has its hover value; the hour's 15-second steps end caught up
        assert mine["titles"] and mine["titles"][-1].endswith(f": {name} 0 records")
        save_screenshot(browser, "pipeline-page")
    finally:
        prometheus.stop()
        if relay is not None:
            assert relay.terminate() == 0, relay.output()


def _end_total() -> int:
    """The analytics topic's end offsets (last stable offsets), summed, from the brokers."""
    from relay.admin_pipeline import topics_state

    return next(t.end_total for t in topics_state() if t.name == topic_name(TOPIC))
