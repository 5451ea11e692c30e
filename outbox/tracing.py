"""W3C trace context for events: the request's `traceparent` travels on every event it causes.

`TraceparentMiddleware` takes the incoming header (or starts a trace) for each request; consumers
set it around each record they handle, so follow-up events carry the same trace id.
"""

from __future__ import annotations

import contextvars
import re
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager

_current: contextvars.ContextVar[str | None] = contextvars.ContextVar("traceparent",
                                                                      default=None)
_VALID = re.compile(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")


def new_traceparent() -> str:
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


def child_of(traceparent: str | None) -> str:
    """Same trace, new span id; a missing or malformed parent starts a new trace."""
    if not traceparent or not _VALID.match(traceparent):
        return new_traceparent()
    trace_id = traceparent.split("-")[1]
    return f"00-{trace_id}-{secrets.token_hex(8)}-01"


def current_traceparent() -> str | None:
    return _current.get()


@contextmanager
def use_traceparent(traceparent: str | None) -> Iterator[None]:
    token = _current.set(traceparent)
    try:
        yield
    finally:
        _current.reset(token)


class TraceparentMiddleware:
    def __init__(self, get_response: Callable):
        self.get_response = get_response

    def __call__(self, request):
        traceparent = child_of(request.headers.get("traceparent"))
        with use_traceparent(traceparent):
            response = self.get_response(request)
        response["traceparent"] = traceparent
        return response
