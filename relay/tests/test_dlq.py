"""`manage.py dlq list|replay`: dead letters shown with their reason, replayed exactly once."""

from __future__ import annotations

import uuid
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from outbox.models import OutboxEvent
from relay import dlq
from relay import testing as kt
from relay.kafka import topic_name

from . import consumer_support as cs
from .consumer_support import BROKEN_KEYS, TOPIC, effects, probes, run_until

pytestmark = pytest.mark.django_db(transaction=True)

effects_table, probe_consumer, topics, workers = (
    cs.effects_table, cs.probe_consumer, cs.topics, cs.workers)


def dlq_cmd(*args: str) -> str:
    out = StringIO()
    call_command("dlq", *args, stdout=out)
    return out.getvalue()


def table(text: str) -> list[list[str]]:
    lines = text.splitlines()
    header = lines[0]
    starts = [i for i, ch in enumerate(header) if ch != " " and (i == 0 or header[i - 1] == " ")]
    return [[line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
            for line in lines]


def test_list_shows_reason_origin_attempts_and_status(topics, probe_consumer, workers):
    # given: one permanent failure and one that exhausts its retries
    name = probe_consumer()
    BROKEN_KEYS.add("t0")
    [perm] = probes(1, keys=1, prefix="p", fail="permanent")
    [trans] = probes(1, keys=1, prefix="t", start=1, fail="transient")
    kt.produce_events([perm, trans])
    worker = workers(name)
    run_until(worker, lambda: worker.handled >= 2)
    # when
    rows = table(dlq_cmd("list", TOPIC))
    # then
    assert rows[0] == ["DLQ-OFFSET", "TIME", "CONSUMER", "EVENT-ID", "TYPE", "ORIGIN",
                       "ATTEMPTS", "STATUS", "REASON"]
    by_id = {r[3]: r for r in rows[1:]}
    assert set(by_id) == {str(perm.event_id), str(trans.event_id)}
    p, t = by_id[str(perm.event_id)], by_id[str(trans.event_id)]
    assert (p[2], p[4], p[6], p[7], p[8]) == (name, "pipeline.probe", "1", "pending",
                                              "PermanentError: probe 0 can never succeed")
    assert (t[6], t[7], t[8]) == ("3", "pending",
                                  "ConnectionResetError: probe 1: downstream unavailable")
    assert t[5].startswith(f"{TOPIC}[") and t[5].endswith("]@0")
    # and: after a replay the status follows the event through the outbox and the consumer
    BROKEN_KEYS.clear()
    dlq_cmd("replay", TOPIC, "--event-id", str(trans.event_id))
    statuses = {r[3]: r[7] for r in table(dlq_cmd("list", TOPIC, "--consumer", name))[1:]}
    assert statuses == {str(perm.event_id): "pending", str(trans.event_id): "replayed"}
    kt.deliver_outbox()
    run_until(worker, lambda: worker.handled >= 3)
    statuses = {r[3]: r[7] for r in table(dlq_cmd("list", TOPIC))[1:]}
    assert statuses == {str(perm.event_id): "pending", str(trans.event_id): "applied"}
    assert effects(name) == [(str(trans.event_id), 1)]


def test_a_replay_that_fails_again_is_dead_lettered_again_and_replayed_once_more(
        topics, probe_consumer, workers):
    # given: a dead letter replayed while the handler is still broken
    name = probe_consumer()
    BROKEN_KEYS.add("c0")
    [event] = probes(1, keys=1, prefix="c", fail="transient")
    kt.produce_events([event])
    worker = workers(name)
    run_until(worker, lambda: worker.handled >= 1)
    dlq_cmd("replay", TOPIC, "--all")
    kt.deliver_outbox()
    run_until(worker, lambda: worker.handled >= 2)
    letters = dlq.read_dead_letters(TOPIC)
    assert len(letters) == 2
    assert letters[1].h(dlq.H_REPLAY_OF) == str(event.event_id)
    assert letters[1].original_event_id == str(event.event_id)
    # when: fixed, and everything replayed (both dead letters name the same event)
    BROKEN_KEYS.clear()
    out = dlq_cmd("replay", TOPIC, "--all")
    kt.deliver_outbox(OutboxEvent.objects.order_by("-id").values_list("event_id",
                                                                      flat=True)[:1])
    run_until(worker, lambda: worker.handled >= 3)
    # then: one replay published (the newest dead letter), applied once under the original id
    assert out.count("replayed") == 1
    assert effects(name) == [(str(event.event_id), 0)]
    assert OutboxEvent.objects.count() == 2  # the two replays, each written once


def test_replay_reports_what_cannot_be_replayed_and_exits_non_zero(
        topics, probe_consumer, workers):
    # given: an undecodable record and a permanent failure
    name = probe_consumer()
    kt.produce_raw(topic_name(TOPIC), [(b"k0", b"\x00\x01", [])])
    [perm] = probes(1, keys=1, fail="permanent")
    kt.produce_events([perm])
    worker = workers(name)
    run_until(worker, lambda: worker.handled >= 2)
    # when
    out = StringIO()
    with pytest.raises(CommandError, match=r"1 of 2 dead letter\(s\) could not be replayed"):
        call_command("dlq", "replay", TOPIC, "--all", stdout=out)
    # then: the good one was still replayed
    results = {r[1]: r[3] for r in table(out.getvalue())[1:]}
    assert results[str(perm.event_id)] == "replayed"
    assert "cannot replay" in results.values()
    assert OutboxEvent.objects.get().headers[dlq.H_REPLAY_FOR] == name


def test_a_dead_letter_older_than_the_inbox_retention_is_not_replayed(topics, settings):
    # given: a well-formed dead letter written 15 days ago, inbox rows kept 14 days
    settings.INBOX_RETENTION_HOURS = 14 * 24
    event_id = str(uuid.uuid4())
    headers = [("ce_specversion", b"1.0"), ("ce_id", event_id.encode()),
               ("ce_type", b"pipeline.probe"), (dlq.H_CONSUMER, b"someone"),
               (dlq.H_TIME, b"2020-01-01T00:00:00Z"), (dlq.H_ATTEMPTS, b"5")]
    kt.produce_raw(topic_name(f"{TOPIC}.dlq"),
                   [(b"k0", b'{"probe_id": "p", "key": "k0", "seq": 1}', headers)])
    # when
    out = StringIO()
    with pytest.raises(CommandError, match=r"1 of 1 dead letter\(s\) could not be replayed"):
        call_command("dlq", "replay", TOPIC, "--all", stdout=out)
    # then
    assert "beyond INBOX_RETENTION_HOURS=336" in out.getvalue()
    assert OutboxEvent.objects.count() == 0


def test_replaying_an_unknown_event_id_names_it(topics):
    missing = str(uuid.uuid4())
    with pytest.raises(CommandError, match=f"no dead letter in .*analytics-events.dlq for "
                                           f"event\\(s\\) {missing}"):
        dlq_cmd("replay", TOPIC, "--event-id", missing)


def test_list_of_an_empty_dlq_and_of_an_unknown_topic(topics, kafka_prefix):
    assert dlq_cmd("list", TOPIC) == f"{kafka_prefix}analytics-events.dlq holds no dead letters.\n"
    with pytest.raises(CommandError, match="unknown topic 'nope'; topics are: user-events"):
        dlq_cmd("list", "nope")
