from __future__ import annotations

import time
import uuid

import psycopg
import pytest
from django.db import DataError, IntegrityError, connection, transaction

from outbox.catalogue import EventValidationError, UnknownEventType
from outbox.models import OutboxEvent
from outbox.services import Event, NotInTransaction, publish, publish_bulk, shard_hash
from outbox.tracing import use_traceparent

PROBE = {"probe_id": "p", "key": "k-1", "seq": 1}


@pytest.mark.django_db
def test_publish_outside_atomic_raises_and_writes_nothing():
    # pytest-django wraps the test in a transaction; leave it to be truly outside.
    with pytest.raises(NotInTransaction, match="inside transaction.atomic"):
        connection.in_atomic_block = False
        try:
            publish("pipeline.probe", PROBE)
        finally:
            connection.in_atomic_block = True
    assert OutboxEvent.objects.count() == 0


@pytest.mark.django_db
def test_publish_writes_a_cloudevent_row_with_its_transaction_id():
    with use_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"):
        with transaction.atomic():
            event_id = publish("pipeline.probe", PROBE)
            with connection.cursor() as cur:
                cur.execute("select pg_current_xact_id()::text")
                txid = int(cur.fetchone()[0])
    row = OutboxEvent.objects.get()
    assert row.event_id == event_id
    assert row.txid == txid
    assert (row.type, row.topic, row.key) == ("pipeline.probe", "analytics-events", "k-1")
    assert row.shard_hash == shard_hash("k-1")
    assert row.payload == PROBE
    h = row.headers
    assert h["ce_specversion"] == "1.0"
    assert h["ce_id"] == str(event_id)
    assert h["ce_type"] == "pipeline.probe"
    assert h["ce_subject"] == "k-1"
    assert h["ce_dataschema"].endswith("pipeline.probe/v1")
    assert h["content-type"] == "application/json"
    assert h["traceparent"] == "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    assert h["ce_time"].endswith("Z")


@pytest.mark.django_db
def test_unknown_type_raises_and_writes_nothing():
    with pytest.raises(UnknownEventType, match="no.such"):
        with transaction.atomic():
            publish("no.such", {"x": 1})
    assert OutboxEvent.objects.count() == 0


@pytest.mark.django_db
def test_invalid_data_raises_with_the_field_and_writes_nothing():
    with pytest.raises(EventValidationError) as info:
        with transaction.atomic():
            publish("pipeline.probe", {"probe_id": "p", "key": "k", "seq": -1, "extra": 1})
    assert any(e.startswith("seq:") for e in info.value.errors)
    assert any("extra" in e for e in info.value.errors)
    assert OutboxEvent.objects.count() == 0


@pytest.mark.django_db
def test_rolled_back_transaction_leaves_no_event():
    with pytest.raises(RuntimeError):
        with transaction.atomic():
            publish("pipeline.probe", PROBE)
            raise RuntimeError("domain failure")
    assert OutboxEvent.objects.count() == 0


@pytest.mark.django_db
def test_publish_bulk_is_one_insert_and_all_or_nothing(django_assert_num_queries):
    events = [Event("pipeline.probe", {**PROBE, "seq": i}) for i in range(50)]
    with transaction.atomic():
        with django_assert_num_queries(1):
            ids = publish_bulk(events)
    assert len(set(ids)) == 50
    assert OutboxEvent.objects.count() == 50
    assert sorted(OutboxEvent.objects.values_list("payload__seq", flat=True)) == list(range(50))

    bad = [Event("pipeline.probe", PROBE), Event("pipeline.probe", {"seq": 1})]
    with pytest.raises(EventValidationError):
        with transaction.atomic():
            publish_bulk(bad)
    assert OutboxEvent.objects.count() == 50


@pytest.mark.django_db
def test_same_event_id_twice_is_refused():
    event_id = uuid.uuid4()
    with transaction.atomic():
        publish("pipeline.probe", PROBE, event_id=event_id)
    with pytest.raises(IntegrityError):
        with transaction.atomic():
            publish("pipeline.probe", PROBE, event_id=event_id)


@pytest.mark.django_db
def test_rows_are_immutable():
    with transaction.atomic():
        publish("pipeline.probe", PROBE)
    with pytest.raises(IntegrityError, match="immutable"):
        with transaction.atomic():
            OutboxEvent.objects.update(key="other")


@pytest.mark.django_db(transaction=True)
def test_commit_notifies_the_relay_and_rollback_does_not():
    params = connection.get_connection_params()
    with psycopg.connect(**params, autocommit=True) as listener:
        listener.execute("LISTEN showoff_outbox")
        with pytest.raises(RuntimeError):
            with transaction.atomic():
                publish("pipeline.probe", PROBE)
                raise RuntimeError
        assert list(listener.notifies(timeout=0.5)) == []
        with transaction.atomic():
            publish_bulk([Event("pipeline.probe", PROBE) for _ in range(3)])
        got = list(listener.notifies(timeout=2, stop_after=1))
        assert [n.channel for n in got] == ["showoff_outbox"]



@pytest.mark.django_db(transaction=True)
def test_a_transaction_of_many_bulk_writes_wakes_the_relay_once():
    # given: a listener, and a transaction with a single publish and two large bulk writes
    params = connection.get_connection_params()
    with psycopg.connect(**params, autocommit=True) as listener:
        listener.execute("LISTEN showoff_outbox")
        with transaction.atomic():
            publish("pipeline.probe", PROBE)
            publish_bulk([Event("pipeline.probe", {**PROBE, "seq": i}) for i in range(3000)])
            publish_bulk([Event("pipeline.probe", {**PROBE, "seq": i}) for i in range(10)])
            # nothing is delivered before the commit
            assert list(listener.notifies(timeout=0.3)) == []
        # when: it commits
        got = list(listener.notifies(timeout=1))
    # then: one notification (NOTIFY folds a transaction's identical ones), every row there
    assert [n.channel for n in got] == ["showoff_outbox"]
    assert OutboxEvent.objects.count() == 3011


@pytest.mark.django_db
def test_bulk_rows_are_the_rows_publish_writes():
    # given: the same event written by publish and by publish_bulk (ids differ), one trace
    with use_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"):
        with transaction.atomic():
            one = publish("pipeline.probe", PROBE)
            many = publish_bulk([Event("pipeline.probe", PROBE, subject="s",
                                       extra_headers={"x-replay": "1"})])[0]
    # then: every column alike but the id, the subject and the extra header
    a, b = (OutboxEvent.objects.get(event_id=i) for i in (one, many))
    assert (a.type, a.topic, a.key, a.shard_hash, a.payload, a.txid) == (
        b.type, b.topic, b.key, b.shard_hash, b.payload, b.txid)
    assert {k: v for k, v in b.headers.items() if k not in ("ce_id", "ce_time")} == {
        **{k: v for k, v in a.headers.items() if k not in ("ce_id", "ce_time")},
        "ce_subject": "s", "x-replay": "1"}
    assert b.id > a.id


@pytest.mark.django_db
def test_a_string_postgresql_cannot_store_is_refused_as_before_or_with_a_reason():
    # \u0000 is refused by PostgreSQL's jsonb at the INSERT, as before; a lone surrogate is
    # refused before anything is written
    with pytest.raises(DataError):
        with transaction.atomic():
            publish("pipeline.probe", {**PROBE, "padding": "a\x00b"})
    with pytest.raises(EventValidationError, match="lone UTF-16 surrogate"):
        with transaction.atomic():
            publish("pipeline.probe", {**PROBE, "padding": "a\ud800b"})
    assert OutboxEvent.objects.count() == 0


@pytest.mark.django_db
def test_what_only_the_standard_library_encodes_is_still_accepted():
    # orjson refuses integers above 64 bits and keys that are not strings; they are written
    # as before (PostgreSQL keeps big integers exactly)
    data = {"recipient_id": 7, "kind": "k", "requested_at": "2025-01-01T00:00:00Z",
            "context": {1: "one", None: "none", 2.5: "float key", "big": 2**70}}
    with transaction.atomic():
        event_id = publish("notification.requested", data)
    row = OutboxEvent.objects.get(event_id=event_id)
    assert row.payload["context"] == {"1": "one", "null": "none", "2.5": "float key",
                                      "big": 2**70}


@pytest.mark.django_db
def test_what_neither_encoder_can_encode_raises_the_same_type_error():
    with pytest.raises(TypeError, match="Object of type set is not JSON serializable"):
        with transaction.atomic():
            publish("pipeline.probe", {**PROBE, "padding": {1, 2}})
    assert OutboxEvent.objects.count() == 0

def test_importing_one_events_module_first_does_not_hide_the_others():
    import subprocess
    import sys

    # Before Django's app registry loads anything (as a module-level import would).
    code = ("import os; os.environ['DJANGO_SETTINGS_MODULE']='showoff.settings.test';"
            "import outbox.events.pipeline; from outbox import catalogue;"
            "print(catalogue.get('user.registered').topic)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.stdout.strip() == "user-events", out.stderr


@pytest.mark.django_db
def test_bulk_rows_keep_tabs_newlines_and_backslashes_in_keys_and_data():
    # COPY's text format gives these characters a meaning: they must arrive as they were
    key = "a\tb\nc\\d\re\\N"
    data = {**PROBE, "key": key, "padding": "\\N \\. \t \n \\\\ \" end\\"}
    with transaction.atomic():
        publish_bulk([Event("pipeline.probe", data), Event("pipeline.probe", data, key="\\.")])
    rows = sorted(OutboxEvent.objects.values_list("key", "payload"), key=lambda r: r[0])
    assert rows == sorted([(key, data), ("\\.", data)], key=lambda r: r[0])


def publish_in_own_transaction() -> uuid.UUID:
    with transaction.atomic():
        return publish("pipeline.probe", PROBE)


@pytest.mark.django_db
def test_publish_in_a_broken_transaction_says_so_as_django_does():
    from django.db.transaction import TransactionManagementError

    event_id = publish_in_own_transaction()
    with transaction.atomic():
        with pytest.raises(IntegrityError):  # a failed save breaks the transaction
            OutboxEvent.objects.create(event_id=event_id, type="t", topic="t", key="k",
                                       shard_hash=0, headers={}, payload={})
        with pytest.raises(TransactionManagementError, match="current transaction"):
            publish("pipeline.probe", PROBE)
        with pytest.raises(TransactionManagementError, match="current transaction"):
            publish_bulk([Event("pipeline.probe", PROBE)])
        transaction.set_rollback(True)


@pytest.mark.django_db
@pytest.mark.parametrize("bad", ["invalid", "too_large", "caller_error"])
def test_a_large_bulk_refused_late_writes_none_of_it_and_the_callers_transaction_goes_on(
        bad, settings):
    """A large publish_bulk sends its first rows while it still builds the rest: an event
    refused after those (or the caller's own iterator failing) ends it with the same error as
    before, none of its rows are kept, and the caller's transaction is still usable."""
    from outbox.services import _STREAM_AFTER, EventTooLarge

    settings.KAFKA_MESSAGE_MAX_BYTES = 100_000
    late = _STREAM_AFTER + 1500  # well after the COPY started

    def events():
        for i in range(late + 500):
            if i == late:
                if bad == "invalid":
                    yield Event("pipeline.probe", {"probe_id": "p", "key": "k"})  # no seq
                    continue
                if bad == "too_large":
                    yield Event("pipeline.probe", {**PROBE, "seq": i, "padding": "x" * 200_000})
                    continue
                raise RuntimeError("the caller's generator failed")
            yield Event("pipeline.probe", {**PROBE, "seq": i})

    expected = {"invalid": EventValidationError, "too_large": EventTooLarge,
                "caller_error": RuntimeError}[bad]
    with transaction.atomic():
        before = publish("pipeline.probe", {**PROBE, "seq": 1_000_001})
        with pytest.raises(expected) as raised:
            publish_bulk(events())
        after = publish("pipeline.probe", {**PROBE, "seq": 1_000_002})  # it goes on
    if bad == "invalid":
        assert "seq" in str(raised.value)
    assert sorted(OutboxEvent.objects.values_list("event_id", flat=True)) == sorted(
        [before, after])


@pytest.mark.django_db
def test_a_large_bulk_writes_every_event_once_in_order():
    from outbox.services import _STREAM_AFTER

    n = _STREAM_AFTER * 3 + 7
    with transaction.atomic():
        ids = publish_bulk(Event("pipeline.probe", {**PROBE, "seq": i}) for i in range(n))
    rows = list(OutboxEvent.objects.order_by("id").values_list("event_id", "payload__seq"))
    assert [r[0] for r in rows] == ids
    assert [r[1] for r in rows] == list(range(n))


def test_event_ids_are_uuid7_unique_and_growing_with_time():
    from outbox.services import new_event_id

    ids = [new_event_id() for _ in range(50_000)]
    assert len(set(ids)) == len(ids)
    assert {u.version for u in ids} == {7} and {u.variant for u in ids} == {uuid.RFC_4122}
    # the first 48 bits are the Unix time in milliseconds, so ids of later milliseconds sort
    # after earlier ones (inside one millisecond the random bits decide)
    stamps = [u.int >> 80 for u in ids]
    assert stamps == sorted(stamps)
    assert abs(stamps[-1] - time.time() * 1000) < 60_000


@pytest.mark.django_db
def test_publish_and_publish_bulk_give_uuid7_ids_unless_the_caller_gives_one():
    given = uuid.uuid4()
    with transaction.atomic():
        one = publish("pipeline.probe", PROBE)
        bulk = publish_bulk([Event("pipeline.probe", PROBE),
                             Event("pipeline.probe", PROBE, event_id=given)])
    assert one.version == bulk[0].version == 7 and bulk[1] == given
    assert set(OutboxEvent.objects.values_list("event_id", flat=True)) == {one, *bulk}
