"""KAFKA_MESSAGE_MAX_BYTES: publish refuses, before writing, an event whose Kafka record Kafka
could never accept; what it accepts, Kafka accepts."""

from __future__ import annotations

import json
import random
import uuid

import pytest
from confluent_kafka import KafkaError, KafkaException
from django.db import connection, transaction

from outbox import catalogue, records
from outbox.catalogue import EventValidationError
from outbox.models import OutboxEvent
from outbox.services import Event, EventTooLarge, publish, publish_bulk
from relay.cloudevents import encode
from relay.kafka import make_producer
from relay.testing import read_all

from .samples import pythonised, valid_samples

pytestmark = pytest.mark.django_db


def pg_text_length(payloads: list) -> list[int]:
    with connection.cursor() as cur:
        cur.execute("SELECT octet_length(p::jsonb::text) FROM unnest(%s::text[]) AS p",
                    [[json.dumps(p, ensure_ascii=False) for p in payloads]])
        return [n for (n,) in cur.fetchall()]


def test_the_value_length_is_postgresqls_text_of_the_payload_for_every_event_type():
    # given: samples of every type, also with services' Python values, and awkward floats
    from outbox.services import _serialise

    rng = random.Random(5)
    cases = []
    for et in catalogue.all_types().values():
        for sample in valid_samples(et, 8):
            cases += [sample, pythonised(sample, et.schema, rng)]
    cases.append({"floats": [1e16, 1.5e-7, -0.0, 0.0, 5e-324, 1e300, 123.456, 2.0**53, 0.1]})
    # when: the length publish predicts, and the length PostgreSQL prints
    predicted, normalised = [], []
    for data in cases:
        data_json, _, length = _serialise("test", data)
        predicted.append(length)
        normalised.append(data_json)
    # then
    assert predicted == pg_text_length(normalised)


def record_of(event_id) -> tuple[str, bytes, bytes, list[tuple[str, bytes]]]:
    """The record the relay produces for this outbox row."""
    with connection.cursor() as cur:
        cur.execute("SELECT topic, key, headers::text, payload::text FROM outbox_event "
                    "WHERE event_id = %s", [event_id])
        topic, key, headers, payload = cur.fetchone()
    return encode(topic, key, json.loads(headers), payload)


def probe(padding: int, key: str = "k-1") -> dict:
    return {"probe_id": "size", "key": key, "seq": 1, "padding": "é" * padding}


def size_of(data: dict) -> int:
    """The record size publish computes for `data`, by publishing it in a rolled back
    savepoint with no limit."""
    sid = transaction.savepoint()
    try:
        from django.test import override_settings

        with override_settings(KAFKA_MESSAGE_MAX_BYTES=10**9):
            event_id = publish("pipeline.probe", data)
        _, key, value, headers = record_of(event_id)
        return records.record_size(key_bytes=len(key), value_bytes=len(value),
                                   headers=dict((k, v.decode()) for k, v in headers))
    finally:
        transaction.savepoint_rollback(sid)


def test_an_event_one_byte_over_the_limit_is_refused_before_anything_is_written(settings):
    with transaction.atomic():
        # given: the size of an event's record, and a limit just below it
        size = size_of(probe(500))
        settings.KAFKA_MESSAGE_MAX_BYTES = size - 1
        # when
        with pytest.raises(EventTooLarge) as info:
            publish("pipeline.probe", probe(500))
        # then: a sentence naming the type, the size and the limit; nothing written, and the
        # caller's transaction goes on (the refusal came before any SQL)
        assert info.value.size == size and info.value.limit == size - 1
        assert str(info.value) == (
            f"invalid pipeline.probe event: (record): the Kafka record would be {size} bytes "
            f"(key + value + headers + record overhead), above KAFKA_MESSAGE_MAX_BYTES="
            f"{size - 1}; send less data (store large content elsewhere and send its "
            "reference), or raise the limit on the brokers, the topics and the producer "
            "together")
        assert isinstance(info.value, EventValidationError)
        assert OutboxEvent.objects.count() == 0
        # at the limit it is accepted
        settings.KAFKA_MESSAGE_MAX_BYTES = size
        publish("pipeline.probe", probe(500))
    assert OutboxEvent.objects.count() == 1


def test_one_oversize_event_in_a_bulk_writes_none(settings):
    settings.KAFKA_MESSAGE_MAX_BYTES = 4000
    events = [Event("pipeline.probe", probe(10, f"k{i}")) for i in range(100)]
    events.insert(57, Event("pipeline.probe", probe(3000, "big")))
    with pytest.raises(EventTooLarge, match="pipeline.probe"):
        with transaction.atomic():
            publish_bulk(events)
    assert OutboxEvent.objects.count() == 0


def test_headers_and_key_count_towards_the_limit(settings):
    # given: the same data, once with a long extra header
    with transaction.atomic():
        size = size_of(probe(100))
        settings.KAFKA_MESSAGE_MAX_BYTES = size + 50
        publish("pipeline.probe", probe(100))
        # when / then: 60 more header bytes cross the limit
        with pytest.raises(EventTooLarge):
            publish("pipeline.probe", probe(100), headers={"x-note": "n" * 50})
        with pytest.raises(EventTooLarge):
            publish("pipeline.probe", probe(100), key="k" * 60)


def test_nan_and_infinity_are_refused_with_a_reason_not_written_as_null():
    data = {"recipient_id": 1, "kind": "k", "requested_at": "2025-01-01T00:00:00Z",
            "context": {"score": float("nan")}}
    with pytest.raises(EventValidationError, match=r"nan is not a JSON number"):
        with transaction.atomic():
            publish("notification.requested", data)
    data["context"] = {"deep": [float("-inf")]}
    with pytest.raises(EventValidationError, match=r"-inf is not a JSON number"):
        with transaction.atomic():
            publish("notification.requested", data)
    assert OutboxEvent.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_what_publish_accepts_at_the_limit_kafka_accepts_and_a_larger_record_it_refuses(
        kafka_topic, settings):
    # given: a topic and a producer both limited to L bytes, as the relay configures them
    limit = 3000
    topic = kafka_topic("analytics-events", config={"max.message.bytes": str(limit)})
    producer = make_producer("test-size", **{"message.max.bytes": limit})
    with transaction.atomic():
        size = size_of(probe(100))
    # "é" is two bytes: pad to one byte short, then lengthen the probe id to fill it exactly
    padding = 100 + (limit - size) // 2
    probe_id = "size" + "s" * ((limit - size) % 2)
    settings.KAFKA_MESSAGE_MAX_BYTES = limit
    with transaction.atomic():
        exact = publish("pipeline.probe", probe(padding) | {"probe_id": probe_id})
    physical, key, value, headers = record_of(exact)
    assert records.record_size(key_bytes=len(key), value_bytes=len(value),
                               headers={k: v.decode() for k, v in headers}) == limit
    # when: the record of an event at exactly the limit is produced, as the relay would
    errors: list = []
    producer.produce(physical, key=key, value=value, headers=headers,
                     on_delivery=lambda err, msg: errors.append(err))
    assert producer.flush(30) == 0
    # then: Kafka took it
    assert errors == [None]
    assert [r.value for r in read_all([topic])] == [value]
    # and one byte more is refused by publish, while a record Kafka's own check sees as too
    # large is refused by the producer (so the limit is not vacuous)
    with pytest.raises(EventTooLarge):
        with transaction.atomic():
            publish("pipeline.probe", probe(padding) | {"probe_id": probe_id + "s"})
    with pytest.raises(KafkaException) as info:
        producer.produce(physical, key=key, value=value + b" " * 100, headers=headers)
    assert info.value.args[0].code() == KafkaError.MSG_SIZE_TOO_LARGE
    assert uuid.UUID(dict(headers)["ce_id"].decode()) == exact
