"""The admin's "Event pipeline" page: a lighter Kafka UI inside the admin (staff only).

`/admin/pipeline/` shows, in one page:

- the state at a glance: a green / amber / red light per dependency, relay shard and consumer
  group with the reason and a link to the runbook section (relay/pipeline_status.py);
- the last hour or day (`?range=1h|1d`) from Prometheus: relay throughput and backlog age per
  shard, consumer lag per group, dead letters per topic (relay/history.py); without
  PROMETHEUS_URL, or when it does not answer, the page says so and keeps everything else;

- health of the database, Kafka and Redis (showoff/health.py's checks);
- relay shards: position (the tick S_prev → S_cur being delivered and the cursor in it), the
  last delivered row, last commit, backlog and the age of the oldest undelivered event
  (relay/selectors.py), events set aside as too large, and the oldest open PostgreSQL
  transaction (it no longer holds delivery back, but keeps vacuum from cleaning up);
- topics under KAFKA_TOPIC_PREFIX with their partitions, leaders, in-sync replicas and end
  offsets (the `kafka topics --describe` code in relay/cli.py);
- consumer groups of this environment with the lag per partition (`kafka groups --describe`),
  and consumers registered in the code whose group does not exist yet;
- dead letters per `<topic>.dlq`, each linking to `/admin/pipeline/dlq/<topic>/`, the listing
  of `manage.py dlq list` (relay/dlq.py).

`/admin/pipeline/runbook/` shows docs/runbook.md, where the lights and the alerts link.

Access: the admin's own check (an active staff member, else the admin login) plus the
`relay.view_relayposition` permission (else 403). Kafka is asked only when its health check
passed, so a broker outage shows as "down" at once instead of a page waiting on timeouts.

The URLs are included before `admin.site.urls` in showoff/urls.py; importing this module
points the admin index at a template that links here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaException, TopicPartition
from confluent_kafka.admin import OffsetSpec
from django.conf import settings
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path

from outbox.catalogue import TOPICS
from showoff import charts
from showoff.health import CHECKS

from . import cli, dlq, history, pipeline_status
from .consumer import group_for
from .kafka import KafkaDisabled, dlq_topic_name, topic_name
from .monitoring import KafkaState, kafka_state
from .registry import all_registrations
from .runbook import runbook_html
from .selectors import oldest_open_transaction, set_aside_count, shard_states

PERMISSION = "relay.view_relayposition"
DLQ_PAGE_LIMIT = 500  # newest dead letters shown on the listing page


@dataclass
class Check:
    name: str
    up: bool
    detail: str
    latency_ms: float


@dataclass
class TopicRow:
    name: str
    partitions: list[dict[str, Any]]  # id, leader, replicas, isr, end
    configs: dict[str, str]
    replication_factor: int

    @property
    def end_total(self) -> int:
        return sum(p["end"] or 0 for p in self.partitions)


@dataclass
class GroupRow:
    group: str
    consumer: str
    state: str
    members: int
    partitions: list[cli.GroupPartition] = field(default_factory=list)
    error: str = ""

    @property
    def lag(self) -> int:
        return sum(p.lag or 0 for p in self.partitions)


@dataclass
class DeadLetterRow:
    logical: str
    topic: str
    count: int | None
    error: str = ""


def health_checks() -> list[Check]:
    out = []
    for name, check in CHECKS.items():
        started = time.perf_counter()
        try:
            detail, up = check(), True
        except Exception as exc:  # noqa: BLE001 - any failure is "down", shown with its reason
            detail, up = f"{type(exc).__name__}: {exc}", False
        out.append(Check(name, up, detail, round((time.perf_counter() - started) * 1000, 1)))
    return out


def _offsets(tps: list[TopicPartition], spec) -> dict[tuple[str, int], int]:
    admin_client = cli._admin()  # held until the answers are in
    return cli._offsets(admin_client, tps, spec)


def topics_state() -> list[TopicRow]:
    described = cli.topics_describe()
    tps = [TopicPartition(t.name, p[0]) for t in described for p in t.partitions]
    ends = _offsets(tps, OffsetSpec.latest)
    return [
        TopicRow(
            name=t.name,
            partitions=[{"id": pid, "leader": leader, "replicas": replicas, "isr": isr,
                         "end": ends.get((t.name, pid))}
                        for pid, leader, replicas, isr in t.partitions],
            configs=t.configs, replication_factor=t.replication_factor,
        )
        for t in described
    ]


def groups_state() -> list[GroupRow]:
    """This environment's consumer groups (`{KAFKA_CONSUMER_GROUP}.{prefix}<name>`), and the
    groups of consumers registered in the code that Kafka does not know yet."""
    prefix = f"{settings.KAFKA_CONSUMER_GROUP}.{settings.KAFKA_TOPIC_PREFIX}"
    listed = {g: state for g, state in cli.groups_list() if g.startswith(prefix)}
    expected = {group_for(r.consumer): r.consumer for r in all_registrations()}
    rows = []
    for group in sorted(set(listed) | set(expected)):
        consumer = expected.get(group) or group.removeprefix(prefix)
        if group not in listed:
            rows.append(GroupRow(group, consumer, "not started", 0,
                                 error="no such group yet: its consumer has never run"))
            continue
        try:
            desc = cli.groups_describe(group)
        except cli.CliError as exc:
            rows.append(GroupRow(group, consumer, listed[group], 0, error=str(exc)))
            continue
        rows.append(GroupRow(group, consumer, desc.state, desc.members, desc.partitions))
    return rows


def dead_letters_state(topics: list[TopicRow]) -> list[DeadLetterRow]:
    """Records per `<topic>.dlq`: end minus earliest offset (dead letters are written without
    transactions, so every offset is one record)."""
    present = {t.name: t for t in topics}
    rows = []
    tps = []
    for logical in TOPICS:
        name = dlq_topic_name(logical)
        if name in present:
            tps += [TopicPartition(name, p["id"]) for p in present[name].partitions]
    earliest = _offsets(tps, OffsetSpec.earliest)
    latest = _offsets(tps, OffsetSpec.latest)
    for logical in TOPICS:
        name = dlq_topic_name(logical)
        if name not in present:
            rows.append(DeadLetterRow(logical, name, None, "topic missing: run "
                                                           "`manage.py kafka create-topics`"))
            continue
        count = sum(latest[(name, p["id"])] - earliest[(name, p["id"])]
                    for p in present[name].partitions)
        rows.append(DeadLetterRow(logical, name, count))
    return rows


def _kafka_error(exc: BaseException) -> str:
    if isinstance(exc, KafkaException):
        return f"Kafka error: {cli._kafka_message(exc)}"
    return str(exc)


def _require_permission(request: HttpRequest) -> None:
    if not request.user.has_perm(PERMISSION):
        raise PermissionDenied("The event pipeline page needs the permission to view relay "
                               "positions.")


def pipeline_view(request: HttpRequest) -> HttpResponse:
    _require_permission(request)
    checks = health_checks()
    kafka = next(c for c in checks if c.name == "kafka")
    errors: dict[str, str] = {}
    topics: list[TopicRow] = []
    groups: list[GroupRow] = []
    dead: list[DeadLetterRow] = []
    cluster: KafkaState | None = None
    if not settings.KAFKA_ENABLED:
        errors["kafka"] = "Kafka is disabled (KAFKA_ENABLED=false): outbox rows wait for it."
    elif not kafka.up:
        errors["kafka"] = f"Kafka is down: {kafka.detail}"
    else:
        try:
            topics = topics_state()
            dead = dead_letters_state(topics)
        except (cli.CliError, KafkaException, KafkaDisabled) as exc:
            errors["topics"] = _kafka_error(exc)
        try:
            groups = groups_state()
        except (cli.CliError, KafkaException, KafkaDisabled) as exc:
            errors["groups"] = _kafka_error(exc)
        try:
            cluster = kafka_state()
        except (KafkaException, KafkaDisabled) as exc:
            errors["cluster"] = _kafka_error(exc)
    database_up = next(c for c in checks if c.name == "database").up
    shards = shard_states() if database_up else []
    holder = oldest_open_transaction() if database_up else None
    set_aside = set_aside_count() if database_up else 0
    window = request.GET.get("range", "1h")
    past = history.pipeline_history(window)
    lights = pipeline_status.lights(checks=checks, shards=shards, holder=holder, kafka=cluster,
                                    history=past, now=time.time(), set_aside=set_aside)
    context = {
        **admin.site.each_context(request),
        "title": "Event pipeline",
        "lights": lights,
        "worst": max((light.level for light in lights),
                     key=[pipeline_status.OK, pipeline_status.WARN,
                          pipeline_status.BAD].index, default=pipeline_status.OK),
        "history": past,
        "windows": history.WINDOWS.values(),
        # One plot at 640 px, or a small multiple per shard, group or topic, three a row.
        "history_charts": [{"chart": c, "html": charts.render(c, width=640, height=220,
                                                              panel_width=330,
                                                              panel_height=150)}
                           for c in past.charts],
        "chart_css": charts.CSS,
        "checks": checks,
        "errors": errors,
        "shards": shards,
        "holder": holder,
        "set_aside": set_aside,
        "topics": topics,
        "groups": groups,
        "dead_letters": dead,
        "prefix": settings.KAFKA_TOPIC_PREFIX,
        "brokers": settings.KAFKA_BROKERS,
    }
    return render(request, "admin/relay/pipeline.html", context)


def dlq_view(request: HttpRequest, topic: str) -> HttpResponse:
    _require_permission(request)
    if topic not in TOPICS:
        raise Http404(f"unknown topic {topic!r}")
    consumer = request.GET.get("consumer") or None
    error = ""
    letters: list[dlq.DeadLetter] = []
    status: dict[tuple[int, int], str] = {}
    try:
        letters = dlq.read_dead_letters(topic, timeout=20)
        if consumer:
            letters = [d for d in letters if d.consumer == consumer]
        status = dlq.status_of(letters)
    except (dlq.DeadLetterError, KafkaException, KafkaDisabled) as exc:
        error = _kafka_error(exc)
    total = len(letters)
    shown = letters[-DLQ_PAGE_LIMIT:][::-1]  # newest first
    rows = [{"letter": d, "status": status.get((d.dlq_partition, d.dlq_offset), "?"),
             "time": d.h(dlq.H_TIME)} for d in shown]
    context = {
        **admin.site.each_context(request),
        "title": f"Dead letters of {topic}",
        "topic": topic,
        "dlq_topic": dlq_topic_name(topic),
        "source_topic": topic_name(topic),
        "consumer": consumer,
        "consumers": sorted({d.consumer for d in letters if d.consumer}),
        "rows": rows,
        "total": total,
        "limit": DLQ_PAGE_LIMIT,
        "error": error,
    }
    return render(request, "admin/relay/dlq.html", context)


def runbook_view(request: HttpRequest) -> HttpResponse:
    """docs/runbook.md, rendered (any staff member: it is documentation, not data)."""
    context = {
        **admin.site.each_context(request),
        "title": "Runbook: the event pipeline",
        "runbook": runbook_html(),
    }
    return render(request, "admin/relay/runbook.html", context)


urlpatterns = [
    path("", admin.site.admin_view(pipeline_view), name="admin-pipeline"),
    path("runbook/", admin.site.admin_view(runbook_view), name="admin-pipeline-runbook"),
    path("dlq/<str:topic>/", admin.site.admin_view(dlq_view), name="admin-pipeline-dlq"),
]

# The admin index links to the page (templates/admin/relay/index.html extends the stock index).
admin.site.index_template = "admin/relay/index.html"
