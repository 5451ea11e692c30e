"""`publish`: the one way to emit an event.

A service calls it inside its own `transaction.atomic()` block, so the event is committed with
the domain change or not at all. The relay (`manage.py run_relay`) delivers it to Kafka exactly
once, in commit order.

Everything is checked before anything is written: the type (catalogue), the data (its schema),
the record key and the size of the Kafka record (KAFKA_MESSAGE_MAX_BYTES). Speed
(bench/publish_throughput.py): each event is serialised once (orjson), validated by its type's
compiled validator, and `publish_bulk` streams its rows with one COPY; a large one sends each
chunk while it builds the next (PostgreSQL parses and inserts one while Python builds the
other), inside a savepoint that a refused event rolls back.
"""

from __future__ import annotations

import json
import logging
import os
import time
import zlib
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from typing import Any, NamedTuple
from uuid import UUID

import orjson
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.utils import timezone

from . import catalogue, records, tracing

# One DEBUG line per event written (LOG_LEVEL_EVENTS=DEBUG), to follow an event end to end.
log = logging.getLogger("outbox.publish")

_COLUMNS = "event_id, type, topic, key, shard_hash, headers, payload"
_INSERT = (f"INSERT INTO outbox_event ({_COLUMNS}) "  # noqa: S608 - fixed names
           "VALUES (%s, %s, %s, %s, %s, %s::jsonb, %s::jsonb)")
_COPY = f"COPY outbox_event ({_COLUMNS}) FROM STDIN"
# Datetimes, dates and times go to DjangoJSONEncoder (as before: milliseconds, "Z"), not to
# orjson's own format; dataclasses too, so that they are refused as before.
_ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
_DJANGO_ENCODER = DjangoJSONEncoder()
_CE_ID_SIZE = records.header_size("ce_id", str(UUID(int=0)))


class OutboxError(RuntimeError):
    pass


class NotInTransaction(OutboxError):
    pass


class EventTooLarge(catalogue.EventValidationError):
    """The event's Kafka record would exceed KAFKA_MESSAGE_MAX_BYTES: Kafka would refuse it."""

    def __init__(self, event_type: str, *, size: int, limit: int):
        self.size = size
        self.limit = limit
        super().__init__(event_type, [
            f"(record): the Kafka record would be {size} bytes (key + value + headers + record "
            f"overhead), above KAFKA_MESSAGE_MAX_BYTES={limit}; send less data (store large "
            "content elsewhere and send its reference), or raise the limit on the brokers, the "
            "topics and the producer together"])


@dataclass
class Event:
    """One event for `publish_bulk`."""

    type: str
    data: Mapping[str, Any]
    key: str | None = None
    event_id: UUID | None = None
    subject: str | None = None
    extra_headers: Mapping[str, str] = field(default_factory=dict)


class _Row(NamedTuple):
    # The outbox columns, in _COLUMNS order, then what the log line needs.
    event_id: UUID
    type: str
    topic: str
    key: str
    shard_hash: int
    headers_json: str
    payload_json: str
    headers: dict[str, str]


def new_event_id() -> UUID:
    """A UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, the version and variant, 74 random
    bits from the OS. Unique as a v4 is, but ids grow with time: the outbox's `event_id` index
    and every consumer's inbox take new ids at their right edge instead of on random pages
    (fewer page splits and random reads once they outgrow memory). It tells when the event was
    made, which `ce_time` says anyway."""
    rand = int.from_bytes(os.urandom(10), "big")
    return UUID(int=((time.time_ns() // 1_000_000) << 80) | (0x7 << 76)
                | (((rand >> 62) & 0xFFF) << 64) | (0b10 << 62) | (rand & ((1 << 62) - 1)))


def shard_hash(key: str) -> int:
    """Stable across processes, machines and Python versions (unlike `hash()`)."""
    return zlib.crc32(key.encode()) & 0x7FFFFFFF


def _serialise(event_type: str, data: Mapping[str, Any]) -> tuple[dict[str, Any], bytes, int]:
    """(data as JSON will carry it, its compact JSON, the length of PostgreSQL's text of it).

    UUIDs, datetimes and Decimals become JSON strings exactly as DjangoJSONEncoder writes them,
    so the JSON is the same as before orjson (a test compares the bytes on the wire).
    """
    try:
        compact = orjson.dumps(data, default=_DJANGO_ENCODER.default, option=_ORJSON_OPTIONS)
    except orjson.JSONEncodeError:
        # What orjson refuses and the standard library accepts (integers beyond 64 bits, keys
        # that are not strings) goes the standard library's way, as before; what neither can
        # encode raises the standard library's TypeError, as before.
        normalised = json.loads(json.dumps(data, cls=DjangoJSONEncoder))
        try:
            compact = json.dumps(normalised, ensure_ascii=False,
                                 separators=(",", ":")).encode()
        except UnicodeEncodeError:
            raise catalogue.EventValidationError(event_type, [
                "(data): a string holds a lone UTF-16 surrogate, which JSON text cannot carry"
            ]) from None
        walked: Any = normalised
    else:
        normalised = orjson.loads(compact)
        walked = data
    try:
        length = records.jsonb_text_length(compact, walked)
    except records.NotJSONNumber as exc:
        raise catalogue.EventValidationError(event_type, [f"(data): {exc}"]) from None
    return normalised, compact, length


# (type, source, schema base URI) -> the CloudEvents headers every event of the type carries
# and their size in a Kafka record: computed once, not per event.
_STATIC_HEADERS: dict[tuple[str, str, str], tuple[dict[str, str], int]] = {}


def _static_headers(et: catalogue.EventType, source: str, base_uri: str
                    ) -> tuple[dict[str, str], int]:
    cache_key = (et.type, source, base_uri)
    found = _STATIC_HEADERS.get(cache_key)
    if found is None:
        headers = {
            "ce_specversion": "1.0",
            "ce_source": source,
            "ce_type": et.type,
            "ce_dataschema": f"{base_uri}{et.type}/v{et.version}",  # et.dataschema
            "content-type": "application/json",
        }
        found = _STATIC_HEADERS[cache_key] = (
            headers, sum(records.header_size(name, value) for name, value in headers.items()))
    return found


class _Builder:
    """Builds the rows of one `publish` / `publish_bulk` call (one time, one trace)."""

    def __init__(self, now: datetime, traceparent: str | None):
        # The same as catalogue.cloudevent_headers, computed once per call rather than per event.
        self.ce_time = now.isoformat().replace("+00:00", "Z")
        self.traceparent = traceparent
        self.source = settings.OUTBOX_EVENT_SOURCE
        self.base_uri = settings.OUTBOX_SCHEMA_BASE_URI
        self.limit = settings.KAFKA_MESSAGE_MAX_BYTES
        # The headers of this call that are not the type's: its time and trace.
        self.call_headers = {"ce_time": self.ce_time}
        if traceparent:
            self.call_headers["traceparent"] = traceparent
        self.call_headers_size = sum(records.header_size(name, value)
                                     for name, value in self.call_headers.items())

    def build(self, ev: Event) -> _Row:
        et = catalogue.get(ev.type)
        data, compact, value_length = _serialise(et.type, ev.data)
        et.validate(data)
        key = ev.key if ev.key is not None else et.key_of(data)
        if not key:
            raise catalogue.EventValidationError(ev.type, ["the record key is empty"])
        event_id = ev.event_id or new_event_id()
        subject_field = et.subject or et.key
        subject = ev.subject or (str(data[subject_field]) if subject_field in data else None)
        static, static_size = _static_headers(et, self.source, self.base_uri)
        headers = {**static, **self.call_headers, "ce_id": str(event_id)}
        headers_size = static_size + self.call_headers_size + _CE_ID_SIZE
        if subject:
            headers["ce_subject"] = subject
            headers_size += records.header_size("ce_subject", subject)
        for name, value in ev.extra_headers.items():
            if name.startswith("ce_") and name in headers:
                raise OutboxError(f"header {name} is set by the catalogue and cannot be "
                                  "overridden")
            if name in headers:
                headers_size -= records.header_size(name, headers[name])
            headers[name] = str(value)
            headers_size += records.header_size(name, headers[name])
        size = records.record_size(key_bytes=records.utf8_length(key),
                                   value_bytes=value_length, headers_bytes=headers_size)
        if size > self.limit:
            raise EventTooLarge(et.type, size=size, limit=self.limit)
        return _Row(event_id, et.type, et.topic, key, shard_hash(key),
                    orjson.dumps(headers).decode(), compact.decode(), headers)


def _require_atomic(connection) -> None:
    if not connection.in_atomic_block:
        raise NotInTransaction(
            "publish() must be called inside transaction.atomic(), in the same transaction as "
            "the change it announces; otherwise the event and the change can diverge."
        )


def publish(
    event_type: str,
    data: Mapping[str, Any],
    *,
    key: str | None = None,
    event_id: UUID | None = None,
    subject: str | None = None,
    headers: Mapping[str, str] | None = None,
    using: str = DEFAULT_DB_ALIAS,
) -> UUID:
    """Validate `data` against the catalogue and write one outbox row; returns the event id.

    Raises `NotInTransaction` outside `transaction.atomic()`, `UnknownEventType` for a type not
    in the catalogue, `EventValidationError` for data that fails its schema and `EventTooLarge`
    (an `EventValidationError`) for an event whose Kafka record would exceed
    KAFKA_MESSAGE_MAX_BYTES; nothing is written in those cases.
    """
    connection = connections[using]
    _require_atomic(connection)
    row = _Builder(timezone.now(), tracing.current_traceparent()).build(
        Event(event_type, data, key=key, event_id=event_id, subject=subject,
              extra_headers=headers or {}))
    with _raw_cursor(connection, _INSERT) as cur:
        cur.execute(_INSERT, row[:7])
    _log_published([row])
    return row.event_id


# A publish_bulk of at least this many events streams: its COPY starts once these are built.
_STREAM_AFTER = 250


def publish_bulk(events: Iterable[Event], *, using: str = DEFAULT_DB_ALIAS) -> list[UUID]:
    """Write many events with one COPY (the seed's `publishBulkNotifications`).

    One bad event writes none: it raises as `publish` would, and the caller's transaction goes
    on without any of the call's rows. The rows go to PostgreSQL in one statement, so the
    outbox's statement-level NOTIFY fires once. Up to _STREAM_AFTER events are all checked
    before the COPY starts; a larger call sends each chunk of rows while it builds the next,
    inside a savepoint: an event refused further on ends the COPY and rolls the savepoint
    back. Callers fanning out to very many recipients call this per batch, each in its own
    transaction.
    """
    connection = connections[using]
    _require_atomic(connection)
    builder = _Builder(timezone.now(), tracing.current_traceparent())
    events = iter(events)
    rows = [builder.build(ev) for ev in islice(events, _STREAM_AFTER)]
    if len(rows) < _STREAM_AFTER:
        return _write(rows, using)

    def all_rows() -> Iterator[_Row]:
        yield from rows[:]  # (a copy: the loop below appends to `rows`)
        for ev in events:
            row = builder.build(ev)
            rows.append(row)
            yield row

    with transaction.atomic(using=using):  # a savepoint: the caller's transaction is open
        _copy(all_rows(), using)
    _log_published(rows)
    return [row.event_id for row in rows]


class EventBatch:
    """`publish_bulk` in two steps, for a caller that checks events one by one and then writes
    some of them (analytics ingestion answers each client item on its own).

    `add` checks an event exactly as `publish` does (type, schema, key, record size) and raises
    as it would, writing nothing; `publish` writes the added events (or those of `event_ids`)
    with one COPY, inside the caller's transaction. Each event is serialised and validated once.
    """

    def __init__(self) -> None:
        self._builder = _Builder(timezone.now(), tracing.current_traceparent())
        self._rows: list[_Row] = []

    def add(self, event: Event) -> UUID:
        row = self._builder.build(event)
        self._rows.append(row)
        return row.event_id

    def publish(self, *, event_ids: Iterable[UUID] | None = None,
                using: str = DEFAULT_DB_ALIAS) -> list[UUID]:
        _require_atomic(connections[using])
        rows = self._rows
        if event_ids is not None:
            wanted = set(event_ids)
            rows = [row for row in rows if row.event_id in wanted]
        return _write(rows, using)


def _write(rows: list[_Row], using: str) -> list[UUID]:
    """Rows already built and checked: one COPY (none when empty), logged; their event ids."""
    if rows:
        _copy(rows, using)
        _log_published(rows)
    return [row.event_id for row in rows]


# COPY's text format: a backslash, tab, newline or carriage return inside a value is escaped.
# The JSON texts need only their backslashes doubled: orjson and json.dumps write no raw
# control characters and no whitespace between tokens.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_COPY_CHUNK = 256 * 1024  # characters sent to PostgreSQL per write


def _copy_line(row: _Row) -> str:
    headers = row.headers_json.replace("\\", "\\\\")
    payload = row.payload_json.replace("\\", "\\\\")
    return (f"{row.event_id}\t{row.type}\t{row.topic}\t{row.key.translate(_COPY_ESCAPES)}\t"
            f"{row.shard_hash}\t{headers}\t{payload}\n")


def _copy(rows: Iterable[_Row], using: str) -> None:
    """The rows go in chunks, each written as COPY text here (psycopg's per-row write_row costs
    four times as much). `rows` may be a generator that builds them as they go: an exception
    it raises ends the COPY (CopyFail: PostgreSQL keeps none of its rows) and propagates."""
    label = f"{_COPY} -- {len(rows)} rows" if isinstance(rows, list) else f"{_COPY} -- streamed"
    with _raw_cursor(connections[using], label) as cur, cur.copy(_COPY) as copy:
        chunk: list[str] = []
        size = 0
        for row in rows:
            line = _copy_line(row)
            chunk.append(line)
            size += len(line)
            if size >= _COPY_CHUNK:
                copy.write("".join(chunk))
                chunk, size = [], 0
        if chunk:
            copy.write("".join(chunk))


@contextmanager
def _raw_cursor(connection, logged_sql: str) -> Iterator[Any]:
    """A psycopg cursor on the connection of the caller's transaction (open: publish requires
    an atomic block). Django's own cursor wrapper costs more than the INSERT's own client work
    and has no COPY; its error translation and query log are kept here."""
    connection.validate_no_broken_transaction()  # as Django's cursor() does
    started = time.monotonic()
    with connection.wrap_database_errors, connection.connection.cursor() as cur:
        yield cur
    if connection.queries_logged:
        # Django's query log (DEBUG, assertNumQueries) sees these statements too.
        connection.queries_log.append({"sql": logged_sql,
                                       "time": f"{time.monotonic() - started:.3f}"})


def _log_published(rows: list[_Row]) -> None:
    if not log.isEnabledFor(logging.DEBUG):
        return
    for row in rows:
        log.debug("wrote %s %s for %s (key %s) in the open transaction", row.type,
                  row.event_id, row.topic, row.key,
                  extra={"event_id": str(row.event_id), "event_type": row.type,
                         "traceparent": row.headers.get("traceparent")})
