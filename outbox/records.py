"""The size of an event's Kafka record, known before it is written (KAFKA_MESSAGE_MAX_BYTES).

`publish` refuses an event whose record Kafka could never accept; the relay's producer
(`message.max.bytes`) and the topics (`max.message.bytes`) use the same limit, so an accepted
event is always deliverable.

The size counted is the worst case of a record batch (v2, KIP-98) that holds this one record:
- the batch header, 61 bytes, which the broker counts against the topic's `max.message.bytes`;
- the record's own fields at their largest varint sizes, 36 bytes: length (5), attributes (1),
  timestamp delta (10), offset delta (5), key length (5), value length (5), header count (5),
  exactly librdkafka's `RD_KAFKAP_MESSAGE_V2_MAX_OVERHEAD` that it adds to key + value +
  headers before refusing a message above `message.max.bytes`;
- the key, the value and each header as Kafka encodes them (zigzag varint length + bytes).

The value is what the relay sends: PostgreSQL's text of the `jsonb` payload (`payload::text`),
which is not the compact JSON that `publish` writes. `jsonb_text_length` predicts it exactly
(the test compares it with PostgreSQL's own output).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import orjson

RECORD_BATCH_OVERHEAD = 61
RECORD_MAX_OVERHEAD = 5 + 1 + 10 + 5 + 5 + 5 + 5


class NotJSONNumber(ValueError):
    """A NaN or infinite float: JSON (and PostgreSQL's jsonb) has no such number."""


def varint_size(n: int) -> int:
    """Bytes of Kafka's zigzag varint encoding of a non-negative int32 length."""
    zigzag = n << 1
    size = 1
    while zigzag >= 0x80:
        zigzag >>= 7
        size += 1
    return size


def utf8_length(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode())


def header_size(name: str, value: str) -> int:
    """Bytes of one record header: name and value, each with its varint length."""
    n = utf8_length(name)
    v = utf8_length(value)
    return varint_size(n) + n + varint_size(v) + v


def record_size(*, key_bytes: int, value_bytes: int, headers: Mapping[str, str] | None = None,
                headers_bytes: int = 0) -> int:
    """The most bytes a record batch holding only this record can take on the wire; the
    headers given as a mapping, or already summed (`header_size`) as `headers_bytes`."""
    if headers:
        headers_bytes += sum(header_size(name, value) for name, value in headers.items())
    return RECORD_BATCH_OVERHEAD + RECORD_MAX_OVERHEAD + key_bytes + value_bytes + headers_bytes


def _float_text_extra(f: float) -> int:
    """PostgreSQL prints a jsonb number as a plain decimal (`1e+16` → `10000000000000000`,
    `-0.0` → `0.0`); the difference from orjson's text of the same float, in bytes."""
    if not math.isfinite(f):
        raise NotJSONNumber(f"{f!r} is not a JSON number (NaN and infinity cannot be sent)")
    f = float(f)  # a float subclass (an enum member) as its value
    text = repr(f)  # the shortest digits that round-trip, as orjson's
    if "e" in text:
        text = format(Decimal(text), "f")
    if f == 0:
        text = text.lstrip("-")
    return len(text) - len(orjson.dumps(f))


# What JSON carries as one scalar whose text PostgreSQL prints as compact JSON does.
_SCALARS = frozenset({str, int, bool, type(None)})


def jsonb_text_extra(data: Any) -> int:
    """Bytes PostgreSQL's `jsonb::text` adds to compact JSON of `data`: a space after every
    `:` and `,` between items, and plain-decimal numbers. Raises `NotJSONNumber` for NaN and
    infinity (which a JSON encoder would otherwise write as `null` or `NaN`).

    `data` is walked as JSON sees it: dicts are objects, lists and tuples arrays, floats
    numbers, and everything else one value (strings, ints, and what the encoder turns into
    strings: UUIDs, datetimes, Decimals).
    """
    kind = type(data)
    if kind in _SCALARS:
        return 0
    if kind is dict or (kind is not list and isinstance(data, dict)):
        if not data:
            return 0
        extra = 2 * len(data) - 1
        for value in data.values():
            if type(value) not in _SCALARS:
                extra += jsonb_text_extra(value)
        return extra
    if kind is list or isinstance(data, list | tuple):
        if not data:
            return 0
        extra = len(data) - 1
        for value in data:
            if type(value) not in _SCALARS:
                extra += jsonb_text_extra(value)
        return extra
    if isinstance(data, float):
        return _float_text_extra(data)
    return 0


def jsonb_text_length(compact: bytes, data: Any) -> int:
    """Length of PostgreSQL's `jsonb::text` of `data`, given its compact JSON (no spaces,
    strings escaped as PostgreSQL escapes them, UTF-8 unescaped: orjson's output)."""
    return len(compact) + jsonb_text_extra(data)
