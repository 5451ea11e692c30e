"""The records the relay sends are byte for byte what they were before orjson, COPY and the
compiled validators, for every event type of the catalogue.

`legacy_publish` is publish() as it was (commit e0c1c80): DjangoJSONEncoder round trip,
jsonschema, the ORM's INSERT. Both versions write the same event (same id, time and trace) in
turn; the relay's own query and encoding turn each row into a Kafka record, and the records must
be identical: topic, key, value bytes, header names, values and order.
"""

from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from types import SimpleNamespace

import pytest
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from jsonschema import Draft202012Validator

from outbox import catalogue, services
from outbox.models import OutboxEvent
from outbox.services import Event, publish, publish_bulk
from outbox.tracing import use_traceparent
from relay.cloudevents import encode

from .samples import pythonised, valid_samples

pytestmark = pytest.mark.django_db

NOW = datetime(2025, 5, 17, 9, 30, 15, 123456, tzinfo=UTC)
TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def legacy_publish(event_type: str, data, *, event_id: uuid.UUID, key=None) -> None:
    et = catalogue.get(event_type)
    data = json.loads(json.dumps(data, cls=DjangoJSONEncoder))
    errors = sorted(Draft202012Validator(et.schema).iter_errors(data), key=lambda e: list(e.path))
    assert not errors, errors
    key = key if key is not None else et.key_of(data)
    subject = str(data.get(et.subject or et.key)) if (et.subject or et.key) in data else None
    headers = catalogue.cloudevent_headers(et, event_id=event_id, time=NOW, subject=subject,
                                           traceparent=TRACE)
    OutboxEvent(event_id=event_id, type=et.type, topic=et.topic, key=key,
                shard_hash=services.shard_hash(key), headers=headers,
                payload=data).save(force_insert=True)


def relay_record(event_id: uuid.UUID):
    """The row as the relay reads it and the record it produces from it."""
    with connection.cursor() as cur:
        cur.execute("SELECT type, shard_hash, topic, key, headers::text, payload::text "
                    "FROM outbox_event WHERE event_id = %s", [event_id])
        type_, shard, topic, key, headers, payload = cur.fetchone()
    return type_, shard, encode(topic, key, json.loads(headers), payload)


def both_ways(event_type: str, data, *, bulk: bool) -> tuple:
    event_id = uuid.uuid4()
    with transaction.atomic():
        sid = transaction.savepoint()
        legacy_publish(event_type, data, event_id=event_id)
        before = relay_record(event_id)
        transaction.savepoint_rollback(sid)
        with use_traceparent(TRACE):
            if bulk:
                publish_bulk([Event(event_type, data, event_id=event_id)])
            else:
                publish(event_type, data, event_id=event_id)
        after = relay_record(event_id)
        transaction.set_rollback(True)
    return before, after


@pytest.fixture(autouse=True)
def fixed_clock(monkeypatch):
    monkeypatch.setattr(services, "timezone", SimpleNamespace(now=lambda: NOW))


@pytest.mark.parametrize("event_type", sorted(catalogue.all_types()))
def test_every_event_type_travels_as_the_same_bytes(event_type):
    # given: data drawn from the type's schema (edge cases, unicode, big integers, floats,
    # nested objects), each also as services pass it (UUIDs, datetimes, Decimals, ...)
    et = catalogue.get(event_type)
    rng = random.Random(event_type)
    samples = valid_samples(et, 12)
    cases = samples + [pythonised(s, et.schema, rng) for s in samples]
    assert len(cases) == 24
    for n, data in enumerate(cases):
        # when: the old and the new publish write it
        before, after = both_ways(event_type, data, bulk=n % 2 == 1)
        # then: the relay would send exactly the same record
        assert after == before, data


def test_services_python_values_become_the_same_json_as_before():
    # given: the values services really pass, nested, in a free-form context
    data = {
        "recipient_id": 7, "kind": "post_liked", "requested_at": NOW,
        "source_event_id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "context": {"when": datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
                    "naive": datetime(2025, 1, 2, 3, 4, 5),
                    "price": Decimal("12.50"), "big": 2**70, "ratio": 1e16, "tiny": 1.5e-7,
                    "text": "Grüße 👋 \"quoted\" back\\slash\n\u2028", "tuple": (1, "a"),
                    "nested": [{"deep": [Decimal("1E+3"), None, True]}]},
    }
    # when
    before, after = both_ways("notification.requested", data, bulk=False)
    # then: identical, and the value is the JSON PostgreSQL prints (as the relay sends it)
    assert after == before
    value = json.loads(after[2][2])
    assert value["requested_at"] == "2025-05-17T09:30:15.123Z"
    assert value["context"]["when"] == "2025-01-02T03:04:05.678Z"
    assert value["context"]["price"] == "12.50"
    assert value["context"]["big"] == 2**70
    assert value["context"]["tuple"] == [1, "a"]
    assert value["source_event_id"] == "12345678-1234-5678-1234-567812345678"
