"""`manage.py dlq list` with no topic: one line per dead-letter topic (how many letters, how
many still pending, which consumers, oldest and newest), so an operator sees at a glance
where to look."""

from __future__ import annotations

import uuid
from io import StringIO

import pytest
from django.core.management import call_command

from outbox.catalogue import TOPICS
from relay import dlq
from relay import testing as kt
from relay.kafka import topic_name

from .test_dlq import table

pytestmark = pytest.mark.django_db


def _letter(consumer: str, when: str) -> tuple[bytes, bytes, list]:
    headers = [("ce_specversion", b"1.0"), ("ce_id", str(uuid.uuid4()).encode()),
               ("ce_type", b"post.liked"), (dlq.H_CONSUMER, consumer.encode()),
               (dlq.H_TIME, when.encode()), (dlq.H_ATTEMPTS, b"5")]
    return b"k", b"{}", headers


def test_list_without_a_topic_gives_an_overview_of_every_dead_letter_topic(kafka_topic,
                                                                            kafka_prefix):
    # given: post-events.dlq with three letters of two consumers, user-events.dlq empty, and
    # the other dead-letter topics not created under this test's prefix
    kafka_topic("post-events.dlq", 2)
    kafka_topic("user-events.dlq", 1)
    kt.produce_raw(topic_name("post-events.dlq"), [
        _letter("notifications", "2025-01-02T10:00:00Z"),
        _letter("analytics", "2025-01-01T09:00:00Z"),
        _letter("notifications", "2025-01-03T11:00:00Z"),
    ])
    # when
    out = StringIO()
    call_command("dlq", "list", stdout=out)
    overview, footer = out.getvalue().split("\n\n")
    rows = table(overview)
    # then
    assert rows[0] == ["DLQ-TOPIC", "LETTERS", "PENDING", "REPLAYED", "APPLIED", "CONSUMERS",
                       "OLDEST", "NEWEST"]
    by_topic = {r[0]: r[1:] for r in rows[1:]}
    assert list(by_topic) == [f"{kafka_prefix}{t}.dlq" for t in TOPICS]
    assert by_topic[f"{kafka_prefix}post-events.dlq"] == [
        "3", "3", "0", "0", "analytics,notifications", "2025-01-01T09:00:00Z",
        "2025-01-03T11:00:00Z"]
    assert by_topic[f"{kafka_prefix}user-events.dlq"] == ["0", "0", "0", "0", "-", "-", "-"]
    assert by_topic[f"{kafka_prefix}sms-events.dlq"] == [
        "missing", "-", "-", "-", "-", "-", "-"]
    assert footer.rstrip() == (
        "3 dead letter(s), 3 pending. Details: manage.py dlq list <topic>. Missing topics: "
        "manage.py kafka create-topics.")
