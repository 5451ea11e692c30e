"""W3C trace context for events: the request's `traceparent` travels on every event it causes.

`TraceparentMiddleware` takes the incoming header (or starts a trace) for each request; consumers
set it around each record they handle, so follow-up events carry the same trace id.

The event being handled (`use_event`) is kept beside it, so that log lines (see
showoff/log.py) name the event id, type and trace they belong to.
"""

from __future__ import annotations

import contextvars
import re
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager

_current: contextvars.ContextVar[str | None] = contextvars.ContextVar("traceparent",
                                                                      default=None)
# (event id, event type) of the record a consumer is handling, for log lines.
_current_event: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar(
    "pipeline_event", default=None)
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


def current_event() -> tuple[str, str] | None:
    """(event id, event type) of the event being handled in this context, if any."""
    return _current_event.get()


@contextmanager
def use_event(event_id: object, event_type: str, traceparent: str | None = None
              ) -> Iterator[None]:
    """Within the block, log lines carry this event's id and type, and its `traceparent`
    (when given; otherwise the current one stays)."""
    token = _current_event.set((str(event_id), event_type))
    trace_token = _current.set(traceparent) if traceparent is not None else None
    try:
        yield
    finally:
        if trace_token is not None:
            _current.reset(trace_token)
        _current_event.reset(token)


def trace_id_of(traceparent: str | None) -> str | None:
    """The 32-hex trace id of a valid `traceparent`, else None."""
    if not traceparent or not _VALID.match(traceparent):
        return None
    return traceparent.split("-")[1]


class TraceparentMiddleware:
    def __init__(self, get_response: Callable):
        self.get_response = get_response

    def __call__(self, request):
        traceparent = child_of(request.headers.get("traceparent"))
        with use_traceparent(traceparent):
            response = self.get_response(request)
        response["traceparent"] = traceparent
        return response
