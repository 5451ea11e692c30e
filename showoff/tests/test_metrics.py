"""Prometheus metrics: the API's /metrics (HTTP, Celery, pipeline state), several gunicorn
workers adding up through PROMETHEUS_MULTIPROC_DIR, relay metrics, and the metrics ports of
run_relay, consume and a Celery worker."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import psycopg
import pytest
from celery import shared_task
from celery.contrib.testing.worker import start_worker
from django.db import connections, transaction
from prometheus_client.parser import text_string_to_metric_families

from outbox.models import OutboxEvent
from outbox.services import Event, publish_bulk
from relay import metrics as relay_metrics
from relay.engine import Relay
from relay.testing import ManageProcess, database_url, delete_topics, subprocess_environment
from relay.tests.relay_helpers import create_relay_topics, drain

ROOT = Path(__file__).resolve().parents[2]


# --- helpers --------------------------------------------------------------------------------


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """{(series name, frozenset of label items)}: value, from Prometheus text."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(text: str, name: str, **labels: str) -> float | None:
    return samples(text).get((name, frozenset(labels.items())))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fetch(url: str, timeout: float = 5) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - local test URL
        return resp.read().decode()


def wait_for(predicate, timeout: float = 60, what: str = "the condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except OSError as exc:  # the server is not listening yet
            last = exc
        else:
            if last:
                return last
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def scrape_until(url: str, name: str, expected: float, **labels: str) -> str:
    """Scrape `url` until the series shows `expected`; returns that scrape."""
    def scrape():
        text = fetch(url)
        return text if value(text, name, **labels) == expected else None

    return wait_for(scrape, what=f"{name}{labels} = {expected} at {url}")


def write_probes(n: int, *, keys: int = 3) -> list[str]:
    with transaction.atomic():
        ids = publish_bulk([Event("pipeline.probe", {"probe_id": "metrics", "key": f"m{i % keys}",
                                                     "seq": i}) for i in range(n)])
    return [str(i) for i in ids]


# --- the API's /metrics ---------------------------------------------------------------------


@pytest.mark.django_db
def test_metrics_count_requests_by_view_method_and_status(client):
    # given: what this process had counted so far (the counters are process-wide)
    before = client.get("/metrics").content.decode()
    # when
    for _ in range(3):
        assert client.get("/healthz").status_code == 200
    assert client.post("/healthz").status_code == 405
    assert client.get("/api/posts/999999999/").status_code == 404
    assert client.get("/no/such/page").status_code == 404
    response = client.get("/metrics")
    # then
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    after = response.content.decode()

    def delta(**labels):
        name = "showoff_http_requests_total"
        return (value(after, name, **labels) or 0) - (value(before, name, **labels) or 0)

    assert delta(view="healthz", method="GET", status="200") == 3
    assert delta(view="healthz", method="POST", status="405") == 1
    assert delta(view="post-detail", method="GET", status="404") == 1
    assert delta(view="unmatched", method="GET", status="404") == 1
    count = "showoff_http_request_seconds_count"
    assert (value(after, count, view="healthz", method="GET")
            - (value(before, count, view="healthz", method="GET") or 0)) == 3


@pytest.mark.django_db
def test_metrics_need_the_token_when_one_is_set(client, settings):
    settings.METRICS_AUTH_TOKEN = "s3cret-scrape-token"
    refused = client.get("/metrics")
    wrong = client.get("/metrics", headers={"Authorization": "Bearer nope"})
    allowed = client.get("/metrics", headers={"Authorization": "Bearer s3cret-scrape-token"})
    assert (refused.status_code, wrong.status_code, allowed.status_code) == (401, 401, 200)
    assert refused["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert b"showoff_http_requests_total" in allowed.content


@pytest.mark.django_db(transaction=True)
def test_metrics_read_the_outbox_backlog_its_age_and_the_transaction_holding_it_back(client):
    # given: three events nobody delivered, a second old, and a transaction left open elsewhere
    write_probes(3)
    holder = psycopg.connect(database_url())
    holder.execute("SELECT pg_current_xact_id()")  # holds an xid: pg_snapshot_xmin stays put
    time.sleep(1.1)
    try:
        # when
        text = client.get("/metrics").content.decode()
    finally:
        holder.rollback()
        holder.close()
    # then
    assert value(text, "showoff_pipeline_database_up") == 1
    assert value(text, "showoff_outbox_backlog_events", shard="0/1") == 3
    assert value(text, "showoff_outbox_oldest_undelivered_age_seconds", shard="0/1") >= 1.0
    assert value(text, "showoff_outbox_delivered_position_id", shard="0/1") == 0
    assert value(text, "showoff_postgres_oldest_transaction_age_seconds") >= 1.0


@pytest.mark.django_db(transaction=True)
def test_metrics_of_several_gunicorn_workers_add_up(tmp_path):
    # given: gunicorn with 3 workers sharing a PROMETHEUS_MULTIPROC_DIR
    port = free_port()
    prom_dir = tmp_path / "prometheus"
    prom_dir.mkdir()
    env = subprocess_environment(PROMETHEUS_MULTIPROC_DIR=str(prom_dir),
                                 ALLOWED_HOSTS="127.0.0.1", LOG_LEVEL="WARNING")
    log = open(tmp_path / "gunicorn.log", "wb")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "showoff.wsgi", "--workers", "3",
         "--bind", f"127.0.0.1:{port}", "--worker-class", "sync"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        # Ready when /metrics answers: a /healthz poll that timed out on our side under load
        # would still be served, and counted, after the baseline below is read.
        wait_for(lambda: fetch(f"{base}/metrics"), timeout=60, what="gunicorn")
        warm = value(fetch(f"{base}/metrics"), "showoff_http_requests_total",
                     view="healthz", method="GET", status="200") or 0
        # when: 60 requests from 6 concurrent clients, so every worker gets some
        errors: list[BaseException] = []

        def hammer():
            try:
                for _ in range(10):
                    fetch(f"{base}/healthz")
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=hammer) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors
        # then: every scrape, whichever worker answers it, counts all 60
        scrapes = [value(fetch(f"{base}/metrics"), "showoff_http_requests_total",
                         view="healthz", method="GET", status="200") for _ in range(6)]
        assert scrapes == [warm + 60] * 6
        writers = {p.name for p in prom_dir.glob("counter_*.db")}
        assert len(writers) >= 2, f"the requests reached one worker only: {writers}"
    finally:
        server.terminate()
        server.wait(30)
        log.close()


# --- relay metrics ----------------------------------------------------------------------------


@pytest.fixture
def relay_topics(kafka_prefix):
    names = create_relay_topics()
    yield names
    delete_topics(names)


@pytest.mark.django_db(transaction=True)
def test_relay_counts_batches_events_transaction_time_and_position(relay_topics, client):
    # given: 7 events; the counters are process-wide, so compare with before
    write_probes(7)
    last = OutboxEvent.objects.order_by("id").last()
    shard = "0/1"
    batches = relay_metrics.relay_batches.value(shard=shard)
    events = relay_metrics.relay_events.value(shard=shard)
    timed = relay_metrics.relay_transaction_seconds.count(shard=shard)
    relay = Relay(use_lock=False, batch_size=5)
    relay.start()
    # when: the 7 rows, written in one transaction, go in a batch of 5 and one of 2
    try:
        delivered = drain(relay)
    finally:
        relay.close()
    # then
    assert delivered == 7
    assert relay_metrics.relay_batches.value(shard=shard) - batches == 2
    assert relay_metrics.relay_events.value(shard=shard) - events == 7
    assert relay_metrics.relay_transaction_seconds.count(shard=shard) - timed == 2
    assert relay_metrics.relay_position_txid.value(shard=shard) == last.txid
    assert relay_metrics.relay_position_id.value(shard=shard) == last.id
    assert relay_metrics.relay_last_commit.value(shard=shard) == pytest.approx(time.time(),
                                                                               abs=60)
    text = client.get("/metrics").content.decode()
    assert value(text, "showoff_relay_position_id", shard=shard) == last.id
    assert value(text, "showoff_outbox_backlog_events", shard=shard) == 0
    assert value(text, "showoff_outbox_delivered_position_id", shard=shard) == last.id
    assert value(text, "showoff_outbox_delivered_tick_xmax", shard=shard) == \
        relay.position.cur.xmax == relay_metrics.relay_tick_xmax.value(shard=shard)


@pytest.mark.django_db(transaction=True)
def test_run_relay_and_consume_serve_their_metrics_on_a_port(relay_topics, kafka_topic,
                                                              tmp_path, settings):
    from relay.tests.consumer_support import create_effects_table, drop_effects_table

    # given: a backlog of 6 probes, a relay and a consumer each with a metrics port
    kafka_topic("analytics-events.dlq", 3)
    create_effects_table()
    write_probes(6)
    consumer = f"metrics-{uuid.uuid4().hex[:8]}"
    settings.KAFKA_CONSUMER_GROUP = f"test-{uuid.uuid4().hex[:8]}"
    relay_port, consume_port = free_port(), free_port()
    relay = ManageProcess(["run_relay", "--metrics-port", str(relay_port)], log_dir=tmp_path,
                          RELAY_POLL_INTERVAL="0.2")
    consume = ManageProcess(["consume", "analytics-events", "--consumer", consumer,
                             "--poll-timeout", "0.2", "--metrics-port", str(consume_port)],
                            imports=["relay.tests.consumer_support"], log_dir=tmp_path,
                            RELAY_TEST_CONSUMER=consumer)
    try:
        # when: both have done their work
        relay_text = scrape_until(f"http://127.0.0.1:{relay_port}/metrics",
                                  "showoff_relay_events_total", 6, shard="0/1")
        consume_text = scrape_until(f"http://127.0.0.1:{consume_port}/metrics",
                                    "showoff_consumer_processed_total", 6, consumer=consumer,
                                    topic="analytics-events")
        # then
        last = OutboxEvent.objects.order_by("id").last()
        assert value(relay_text, "showoff_relay_position_id", shard="0/1") == last.id
        assert value(relay_text, "showoff_relay_batches_total", shard="0/1") >= 1
        assert value(consume_text, "showoff_consumer_batch_records_sum",
                     consumer=consumer) == 6
        assert value(consume_text, "showoff_consumer_duplicates_total", consumer=consumer,
                     topic="analytics-events") is None
    finally:
        assert relay.terminate() == 0, relay.output()
        assert consume.terminate() == 0, consume.output()
        drop_effects_table()


def test_a_taken_metrics_port_is_a_clear_error(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "manage.py", "run_relay", "--metrics-port", str(port)],
            cwd=ROOT, env=subprocess_environment(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert f"cannot serve metrics on 127.0.0.1:{port}" in result.stderr
    assert "choose another --metrics-port" in result.stderr


# --- Celery -----------------------------------------------------------------------------------


@shared_task(name="showoff.tests.metrics_ok")
def metrics_ok() -> int:
    return 1


@shared_task(name="showoff.tests.metrics_boom")
def metrics_boom() -> None:
    raise ValueError("boom")


@shared_task(name="showoff.tests.metrics_flaky", bind=True, max_retries=3)
def metrics_flaky(self) -> str:
    if self.request.retries == 0:
        raise self.retry(countdown=0)
    return "ok"


def _task_count(task: str, outcome: str) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value("showoff_celery_tasks_total",
                                     {"task": task, "outcome": outcome}) or 0


@pytest.mark.django_db(transaction=True)
def test_celery_task_outcomes_are_counted_per_task_name(client):
    from showoff.celery import app

    # given: a real worker (a thread of this process) on a queue of this test
    queue = f"metrics-test-{uuid.uuid4().hex[:12]}"
    ok, boom, flaky = metrics_ok.name, metrics_boom.name, metrics_flaky.name
    before = client.get("/metrics").content.decode()
    flaky_done = _task_count(flaky, "success") + 1
    db = connections.databases["default"]
    max_age = db.get("CONN_MAX_AGE")
    db["CONN_MAX_AGE"] = 0
    try:
        with start_worker(app, pool="solo", perform_ping_check=False, queues=[queue],
                          shutdown_timeout=30):
            # when: one task succeeds, one fails, one is retried once and then succeeds
            metrics_ok.apply_async(queue=queue)
            metrics_boom.apply_async(queue=queue)
            metrics_flaky.apply_async(queue=queue)
            wait_for(lambda: _task_count(flaky, "success") >= flaky_done, timeout=60,
                     what="the retried task to succeed")
    finally:
        db["CONN_MAX_AGE"] = max_age
    after = client.get("/metrics").content.decode()

    # then
    def delta(task, outcome):
        name = "showoff_celery_tasks_total"
        return ((value(after, name, task=task, outcome=outcome) or 0)
                - (value(before, name, task=task, outcome=outcome) or 0))

    assert [delta(ok, "success"), delta(ok, "failure")] == [1, 0]
    assert [delta(boom, "failure"), delta(boom, "success")] == [1, 0]
    assert [delta(flaky, "retry"), delta(flaky, "success")] == [1, 1]
    assert (value(after, "showoff_celery_task_seconds_count", task=ok)
            - (value(before, "showoff_celery_task_seconds_count", task=ok) or 0)) == 1


@pytest.mark.django_db(transaction=True)
def test_a_celery_worker_serves_its_pool_processes_metrics(tmp_path):
    from showoff.celery import app

    # given: a prefork worker (2 pool processes) with a metrics port and a multiprocess folder
    queue = f"metrics-test-{uuid.uuid4().hex[:12]}"
    port = free_port()
    prom_dir = tmp_path / "prometheus"
    prom_dir.mkdir()
    env = subprocess_environment(PROMETHEUS_MULTIPROC_DIR=str(prom_dir),
                                 CELERY_METRICS_PORT=str(port), LOG_LEVEL="WARNING")
    log = open(tmp_path / "celery.log", "wb")  # noqa: SIM115 - closed below
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "showoff", "worker", "-Q", queue,
         "--pool", "prefork", "--concurrency", "2", "--without-gossip", "--without-mingle",
         "--without-heartbeat", "-l", "WARNING"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        wait_for(lambda: fetch(url) is not None, timeout=60, what="the worker's metrics port")
        # when: four runs of a real task, one of them with arguments it does not take
        for _ in range(3):
            app.send_task("relay.prune_inbox", queue=queue)
        app.send_task("relay.prune_inbox", args=[1, 2, 3], queue=queue)

        def counted():
            text = fetch(url)
            done = (value(text, "showoff_celery_tasks_total", task="relay.prune_inbox",
                          outcome="success") == 3
                    and value(text, "showoff_celery_tasks_total", task="relay.prune_inbox",
                              outcome="failure") == 1)
            return text if done else None

        # then: the main process serves what its pool processes counted
        text = wait_for(counted, timeout=60, what="3 successes and 1 failure")
        assert value(text, "showoff_celery_task_seconds_count", task="relay.prune_inbox") == 4
    finally:
        worker.terminate()
        worker.wait(60)
        log.close()


def test_relay_metrics_api_keeps_value_total_snapshot_and_text():
    # given: a consumer name no other test uses
    name = f"unit-{uuid.uuid4().hex[:8]}"
    # when
    relay_metrics.consumer_processed.inc(consumer=name, topic="a")
    relay_metrics.consumer_processed.inc(2, consumer=name, topic="b")
    relay_metrics.consumer_lag.set(7, consumer=name, topic="a", partition=1)
    relay_metrics.consumer_batch_seconds.observe(0.003, consumer=name)
    # then
    assert relay_metrics.consumer_processed.value(consumer=name, topic="a") == 1
    assert relay_metrics.consumer_processed.value(consumer=name, topic="c") == 0
    assert relay_metrics.consumer_processed.total(consumer=name) == 3
    assert relay_metrics.consumer_summary(name)["lag"] == 7
    snap = relay_metrics.snapshot()
    assert snap["showoff_consumer_processed_total"][f"consumer={name},topic=b"] == 2
    hist = snap["showoff_consumer_batch_seconds"][f"consumer={name}"]
    assert (hist["count"], sum(hist["counts"]), hist["counts"][2]) == (1, 1, 1)  # ≤ 0.005
    text = relay_metrics.render_prometheus()
    assert f'showoff_consumer_processed_total{{consumer="{name}",topic="b"}} 2\n' in text
    relay_metrics.consumer_lag.remove(consumer=name, topic="a", partition=1)
    assert relay_metrics.consumer_lag.value(consumer=name, topic="a", partition=1) is None
    with pytest.raises(ValueError, match="takes labels"):
        relay_metrics.consumer_processed.inc(consumer=name)


def test_a_metric_that_cannot_be_written_never_stops_the_caller(monkeypatch, caplog):
    # given: the metrics folder's disk is full
    class Full:
        def inc(self, amount):
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(relay_metrics.consumer_retries._prom, "labels", lambda **kw: Full())
    monkeypatch.setattr(relay_metrics, "_last_write_warning", float("-inf"))
    # In-process Celery workers started earlier in the session (celery.contrib.testing.worker
    # sets logging up) can leave the root logger at ERROR: capture this logger's warnings.
    caplog.set_level(logging.WARNING, logger="relay.metrics")
    # when
    relay_metrics.consumer_retries.inc(consumer="c", topic="t")
    relay_metrics.consumer_retries.inc(consumer="c", topic="t")
    # then: one warning, no exception
    warnings = [r.getMessage() for r in caplog.records if r.name == "relay.metrics"]
    assert warnings == ["metrics: could not record showoff_consumer_retries_total: "
                        "[Errno 28] No space left on device"]
