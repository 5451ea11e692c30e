"""Keyset (cursor) pages for lists that are not one ordered queryset: the home feed (a merge of
the timeline table and celebrities' posts) and ranked search results.

A cursor is the position of the last item of a page (for example `[score, id]`), JSON in
URL-safe base64: opaque to clients, and checked on the way back in. Anything this API did not
hand out is a 400 `invalid_cursor`, never a 404 or a database error.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Sequence
from typing import Any

from rest_framework import serializers
from rest_framework.utils.urls import replace_query_param

from .drf import MAX_ID, InvalidCursor, page_size_param

CURSOR_PARAM = "cursor"
PAGE_SIZE_PARAM = "page_size"


def encode_cursor(position: Sequence[Any]) -> str:
    raw = json.dumps(list(position), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(request, kinds: Sequence[type]) -> tuple | None:
    """The position in `?cursor=`, each part of the given kind (`int`: a positive bigint id,
    `float`: a finite number); None without a cursor. Raises InvalidCursor otherwise."""
    encoded = request.query_params.get(CURSOR_PARAM)
    if encoded is None:
        return None
    try:
        # Strict: a lenient decode drops foreign characters, so junk could become a position.
        raw = base64.b64decode(encoded + "=" * (-len(encoded) % 4), altchars=b"-_",
                               validate=True)
        position = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise InvalidCursor()
    if not isinstance(position, list) or len(position) != len(kinds):
        raise InvalidCursor()
    out = []
    for value, kind in zip(position, kinds, strict=True):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidCursor()
        if kind is int and not (isinstance(value, int) and 0 < value <= MAX_ID):
            raise InvalidCursor()
        if kind is float and not math.isfinite(value):
            raise InvalidCursor()
        out.append(kind(value))
    return tuple(out)


def page_size(request, *, default: int = 20, maximum: int = 100) -> int:
    """`?page_size=`, read as every paged list of the API reads it (showoff.drf)."""
    return page_size_param(request, default=default, maximum=maximum, name=PAGE_SIZE_PARAM)


def next_link(request, position: Sequence[Any] | None) -> str | None:
    if position is None:
        return None
    return replace_query_param(request.build_absolute_uri(), CURSOR_PARAM,
                               encode_cursor(position))


def page_serializer(item: serializers.Serializer, name: str) -> type[serializers.Serializer]:
    """The OpenAPI shape of a keyset page of `item`s: `{next, results}`."""
    return type(name, (serializers.Serializer,), {
        "next": serializers.URLField(allow_null=True, help_text="The next page, or null at "
                                     "the end. Follow it as given."),
        "results": type(item)(many=True),
    })
