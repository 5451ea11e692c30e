"""Prometheus metrics: `/metrics` of the API, HTTP and Celery metrics, and the pipeline's state.

Several processes: prometheus_client keeps values in process memory, so behind gunicorn with N
workers a scrape would see one worker's figures (DESIGN.md §8). With `PROMETHEUS_MULTIPROC_DIR`
set in the environment of every process *before it starts* (and the folder emptied before the
group starts), each process writes its values into its own files there and `/metrics` adds up
the files of every process: web workers, and on the same host the relay, the consumers and the
Celery workers too (relay/metrics.py). Without it, `/metrics` shows this process only, which is
right for one process (runserver).

What `/metrics` serves:

- `showoff_http_requests_total{view,method,status}` and `showoff_http_request_seconds{view,method}`
  (`PrometheusMiddleware`; `view` is the URL name, `unmatched` for paths no view matched);
- `showoff_celery_tasks_total{task,outcome}` (success, failure, retry, revoked) and
  `showoff_celery_task_seconds{task}` (Celery's signals, connected in showoff/celery.py);
- relay and consumer metrics (relay/metrics.py) of the processes sharing the folder;
- read from the database at each scrape (`PipelineCollector`): per relay shard the outbox
  backlog, the age of the oldest undelivered event, the delivered position and the last
  delivery time; and the age of the oldest open transaction in the PostgreSQL cluster, which
  holds every delivery back while it lasts (relay/selectors.py);
- read from the Kafka brokers at each scrape (`relay.monitoring.KafkaCollector`): brokers,
  under-replicated and offline partitions, every consumer group's lag and members (whether its
  processes run or not), and the records in each dead-letter topic.

`METRICS_AUTH_TOKEN`, when set, is required as `Authorization: Bearer <token>`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils.crypto import constant_time_compare
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, multiprocess
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from relay import metrics as relay_metrics  # noqa: F401 - registers the relay's metrics too
from relay.monitoring import KafkaCollector

log = logging.getLogger("showoff.metrics")

if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)

_HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_TASK_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

http_requests = Counter(
    "showoff_http_requests_total", "HTTP requests answered, by view, method and status.",
    ["view", "method", "status"])
http_request_seconds = Histogram(
    "showoff_http_request_seconds", "Seconds to answer an HTTP request, by view and method.",
    ["view", "method"], buckets=_HTTP_BUCKETS)
celery_tasks = Counter(
    "showoff_celery_tasks_total",
    "Celery task runs by task name and outcome (success, failure, retry, revoked).",
    ["task", "outcome"])
celery_task_seconds = Histogram(
    "showoff_celery_task_seconds", "Seconds per Celery task run, by task name.", ["task"],
    buckets=_TASK_BUCKETS)


def multiprocess_mode() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


# --- HTTP -----------------------------------------------------------------------------------


class PrometheusMiddleware:
    """Counts and times every request. First in MIDDLEWARE, so the time covers all the others.

    Labels stay few: the URL's name (not its path, which carries ids), a known method or
    `other`, the status code."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest):
        started = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        view = (match.view_name or match.route or "unnamed") if match else "unmatched"
        method = request.method if request.method in _METHODS else "other"
        http_requests.labels(view, method, str(response.status_code)).inc()
        http_request_seconds.labels(view, method).observe(time.perf_counter() - started)
        return response


# --- Celery (connected in showoff/celery.py) -------------------------------------------------

_task_started: dict[str, float] = {}


def celery_task_prerun(task_id: str | None) -> None:
    if task_id:
        _task_started[task_id] = time.perf_counter()


def celery_task_postrun(task_name: str, task_id: str | None) -> None:
    started = _task_started.pop(task_id, None) if task_id else None
    if started is not None:
        celery_task_seconds.labels(task_name).observe(time.perf_counter() - started)


def celery_task_outcome(task_name: str, outcome: str) -> None:
    celery_tasks.labels(task_name, outcome).inc()


def serve_multiprocess(port: int, addr: str) -> None:
    """Serve every process's metrics of PROMETHEUS_MULTIPROC_DIR on `addr:port` (a Celery
    worker's main process does this for its pool's children)."""
    import prometheus_client

    if not multiprocess_mode():
        raise RuntimeError(
            "CELERY_METRICS_PORT needs PROMETHEUS_MULTIPROC_DIR: the worker's pool processes "
            "count their tasks in that folder, and the main process serves what they counted."
        )
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    prometheus_client.start_http_server(port, addr=addr, registry=registry)


# --- the pipeline, read at scrape time ------------------------------------------------------


class PipelineCollector(Collector):
    """Outbox backlog and delivery state per relay shard, from the database at each scrape."""

    def collect(self) -> Iterator[Metric]:
        from django.db import DatabaseError

        from relay.selectors import oldest_open_transaction, set_aside_count, shard_states

        up = GaugeMetricFamily(
            "showoff_pipeline_database_up",
            "1 when the database answered this scrape's outbox queries, else 0.")
        try:
            states = shard_states()
            oldest = oldest_open_transaction()
            set_aside = set_aside_count()
        except DatabaseError as exc:
            log.warning("metrics: the outbox state could not be read: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        families = {
            "backlog": GaugeMetricFamily(
                "showoff_outbox_backlog_events",
                "Outbox events not yet delivered to Kafka, per relay shard.", labels=["shard"]),
            "age": GaugeMetricFamily(
                "showoff_outbox_oldest_undelivered_age_seconds",
                "Age of the oldest outbox event not yet delivered, per relay shard (0: none).",
                labels=["shard"]),
            "txid": GaugeMetricFamily(
                "showoff_outbox_delivered_position_txid",
                "Transaction id of the last delivered outbox row (the relay's database copy).",
                labels=["shard"]),
            "id": GaugeMetricFamily(
                "showoff_outbox_delivered_position_id",
                "Id of the last delivered outbox row (the relay's database copy).",
                labels=["shard"]),
            "xmax": GaugeMetricFamily(
                "showoff_outbox_delivered_tick_xmax",
                "xmax of the snapshot ending the tick the shard delivers (the relay's database "
                "copy of its position).", labels=["shard"]),
            "last": GaugeMetricFamily(
                "showoff_outbox_last_delivery_timestamp_seconds",
                "Unix time of the shard's last relay commit (absent before the first).",
                labels=["shard"]),
        }
        for s in states:
            shard = f"{s.shard}/{s.shards}"
            families["backlog"].add_metric([shard], s.backlog)
            families["age"].add_metric([shard], s.lag_seconds)
            families["txid"].add_metric([shard], s.txid or 0)
            families["id"].add_metric([shard], s.last_id or 0)
            families["xmax"].add_metric([shard], s.position.cur.xmax)
            if s.last_commit_at is not None:
                families["last"].add_metric([shard], s.last_commit_at.timestamp())
        yield from families.values()
        holder = GaugeMetricFamily(
            "showoff_postgres_oldest_transaction_age_seconds",
            "Age of the oldest open transaction in the PostgreSQL cluster (0: none). It does "
            "not hold delivery back, but keeps vacuum from cleaning up.")
        holder.add_metric([], float(oldest["age_seconds"] or 0) if oldest else 0.0)
        yield holder
        aside = GaugeMetricFamily(
            "showoff_relay_set_aside_events",
            "Outbox events the relay set aside because Kafka would never accept them (admin: "
            "Relay > Set-aside events).")
        aside.add_metric([], set_aside)
        yield aside


class _ThisProcess(Collector):
    """prometheus_client's default registry (this process) inside another registry."""

    def collect(self) -> Iterator[Metric]:
        return REGISTRY.collect()


def registry_for_scrape() -> CollectorRegistry:
    registry = CollectorRegistry()
    if multiprocess_mode():
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(_ThisProcess())
    registry.register(PipelineCollector())
    registry.register(KafkaCollector())
    return registry


@never_cache
@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    token = settings.METRICS_AUTH_TOKEN
    if token and not constant_time_compare(request.headers.get("Authorization", ""),
                                           f"Bearer {token}"):
        return HttpResponse("Metrics need `Authorization: Bearer <METRICS_AUTH_TOKEN>`.\n",
                            status=401, content_type="text/plain; charset=utf-8",
                            headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    # The text format 0.0.4 unless the scraper asks for OpenMetrics or a newer text format.
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    return HttpResponse(encode(registry_for_scrape()), content_type=content_type)
