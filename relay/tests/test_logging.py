"""Structured logs: one event followed by its id and trace id from the API request that wrote it,
through the relay, to the consumer that applied it (in-process, and in real `run_relay` and
`consume` processes logging JSON)."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import transaction
from pythonjsonlogger.json import JsonFormatter
from rest_framework.test import APIClient

from outbox import tracing
from outbox.models import OutboxEvent
from outbox.services import publish
from relay import registry
from relay.consumer import ConsumerWorker
from relay.engine import Relay
from relay.testing import ManageProcess, delete_topics, subprocess_environment
from showoff.log import PipelineContextFilter, ReadableFormatter

from .consumer_support import TOPIC, create_effects_table, drop_effects_table, run_until
from .relay_helpers import create_relay_topics, drain

ROOT = Path(__file__).resolve().parents[2]
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE}-00f067aa0ba902b7-01"
EVENT_LOGGERS = ("outbox.publish", "relay.events", "relay.consumer")


@pytest.fixture
def relay_topics(kafka_prefix, settings):
    settings.KAFKA_CONSUMER_GROUP = f"test-{uuid.uuid4().hex[:8]}"
    names = create_relay_topics()
    yield names
    delete_topics(names)


@pytest.fixture
def json_log():
    """Every record, as the production JSON formatter writes it (settings.LOGGING), with the
    per-event loggers at DEBUG; returns a function giving the parsed lines."""
    config = {k: v for k, v in django_settings.LOGGING["formatters"]["json"].items()
              if k != "()"}
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter(**config))
    handler.addFilter(PipelineContextFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    levels = {name: logging.getLogger(name).level for name in (*EVENT_LOGGERS, "test.handler")}
    for name in levels:
        logging.getLogger(name).setLevel(logging.DEBUG)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    root.removeHandler(handler)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


@pytest.mark.django_db(transaction=True)
def test_one_event_is_followed_from_the_request_through_relay_to_consumer(relay_topics, json_log):
    # given: a consumer whose handler logs like a domain handler would
    name = f"test-{uuid.uuid4().hex[:8]}"

    def handle(event):
        logging.getLogger("test.handler").info("applied post %s", event.data["post_id"])

    registry.register(name, "post.created", handle)
    user = _user()
    api = APIClient()
    api.force_authenticate(user)
    try:
        # when: a request carrying a trace creates a post; the relay and the consumer run
        response = api.post("/api/posts/", {"text": "traced"}, format="json",
                            headers={"traceparent": TRACEPARENT})
        assert response.status_code == 201, response.content
        event_id = str(OutboxEvent.objects.get(type="post.created").event_id)
        relay = Relay(use_lock=False)
        relay.start()
        try:
            assert drain(relay) == 1
        finally:
            relay.close()
        worker = ConsumerWorker(name, ["post-events"], poll_timeout=0.2)
        worker.start()
        try:
            run_until(worker, lambda: worker.handled >= 1)
        finally:
            worker.close()
    finally:
        registry.unregister(name, "post.created", handle)

    # then: the event's lines, in order, each with its id, type and the request's trace
    lines = [line for line in json_log() if line.get("event_id") == event_id]
    assert [line["logger"] for line in lines] == [
        "outbox.publish", "relay.events", "test.handler", "relay.consumer"]
    assert {line["event_type"] for line in lines} == {"post.created"}
    assert {line["trace_id"] for line in lines} == {TRACE}
    assert all(line["traceparent"].startswith(f"00-{TRACE}-") for line in lines)
    assert lines[2]["message"] == f"applied post {response.json()['id']}"
    assert lines[3]["message"].startswith(f"consumer {name}: processed post-events[")
    assert all({"time", "level", "pid"} <= set(line) for line in lines)


def _user():
    from django.contrib.auth import get_user_model

    tag = uuid.uuid4().hex[:6]
    return get_user_model().objects.create_user(username=f"trace-{tag}",
                                                email=f"trace-{tag}@x.test", password="x-9Secret")


def _json_lines(text: str) -> list[dict]:
    lines = [line for line in text.splitlines() if line.strip()]
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"not a JSON log line: {line!r}\n{text}") from None
    return parsed


@pytest.mark.django_db(transaction=True)
def test_run_relay_and_consume_log_json_lines_naming_the_event(relay_topics, kafka_topic,
                                                                tmp_path):
    # given: an event written under a trace, and processes logging JSON with per-event lines
    kafka_topic(f"{TOPIC}.dlq", 3)
    create_effects_table()
    with tracing.use_traceparent(TRACEPARENT), transaction.atomic():
        event_id = str(publish("pipeline.probe", {"probe_id": "log", "key": "k1", "seq": 1}))
    name = f"test-{uuid.uuid4().hex[:8]}"
    env = {"LOG_FORMAT": "json", "LOG_LEVEL_EVENTS": "DEBUG", "LOG_LEVEL": "INFO"}
    try:
        # when
        relay = subprocess.run([sys.executable, "manage.py", "run_relay", "--once"], cwd=ROOT,
                               env=subprocess_environment(**env), capture_output=True,
                               text=True, timeout=120)
        consume = ManageProcess(["consume", TOPIC, "--consumer", name, "--max-records", "1",
                                 "--poll-timeout", "0.2"], imports=["relay.tests.consumer_support"],
                                log_dir=tmp_path, RELAY_TEST_CONSUMER=name, **env)
        assert consume.wait(120) == 0, consume.output()
    finally:
        drop_effects_table()
    # then: every line is JSON; the event's lines carry its id, type and trace
    assert relay.returncode == 0, relay.stderr
    relay_lines = _json_lines(relay.stdout + relay.stderr)
    consume_lines = _json_lines(consume.output())
    (delivered,) = [line for line in relay_lines if line.get("event_id") == event_id]
    assert (delivered["logger"], delivered["level"], delivered["event_type"],
            delivered["trace_id"], delivered["traceparent"]) == (
        "relay.events", "DEBUG", "pipeline.probe", TRACE, TRACEPARENT)
    assert any(line["message"].startswith("relay 0/1: started at") for line in relay_lines)
    handled = [line for line in consume_lines if line.get("event_id") == event_id]
    assert [(line["logger"], line["event_type"], line["trace_id"]) for line in handled] == [
        ("relay.consumer", "pipeline.probe", TRACE)]
    assert handled[0]["message"].startswith(f"consumer {name}: processed {TOPIC}[")
    assert {line["pid"] for line in consume_lines} == {consume.proc.pid}


def test_readable_lines_end_with_the_event_and_trace_they_belong_to():
    formatter = ReadableFormatter("%(levelname)s %(name)s: %(message)s")
    context = PipelineContextFilter()

    def line(msg: str) -> str:
        record = logging.LogRecord("relay.consumer", logging.INFO, __file__, 1, msg, (), None)
        context.filter(record)
        return formatter.format(record)

    assert line("idle") == "INFO relay.consumer: idle"
    with tracing.use_event("0d9e-id", "post.liked", TRACEPARENT):
        assert line("handled") == (f"INFO relay.consumer: handled [event=0d9e-id "
                                   f"type=post.liked trace={TRACE}]")
    with tracing.use_traceparent(TRACEPARENT):
        assert line("request") == f"INFO relay.consumer: request [trace={TRACE}]"
    assert tracing.current_event() is None


@pytest.mark.parametrize(("module", "expected"), [("showoff.settings.base", "readable"),
                                                   ("showoff.settings.production", "json")])
def test_production_logs_json_and_development_readable(module, expected):
    code = ("import django; django.setup(); from django.conf import settings; "
            "print(settings.LOGGING['handlers']['console']['formatter'])")
    env = {k: v for k, v in os.environ.items() if k != "LOG_FORMAT"}
    env.update(DJANGO_SETTINGS_MODULE=module, SECRET_KEY="k" * 60, ALLOWED_HOSTS="x.test",
               ACCOUNTS_PASSWORD_RESET_URL="https://x.test/r?t={token}",
               ACCOUNTS_EMAIL_VERIFICATION_URL="https://x.test/v?t={token}")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected


def test_an_unknown_log_format_is_a_clear_error():
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="showoff.settings.base", LOG_FORMAT="xml")
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "LOG_FORMAT='xml': choose one of readable, json." in result.stderr
