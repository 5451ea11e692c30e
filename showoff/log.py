"""Log records that say which event and trace they belong to.

`PipelineContextFilter` (on the console handler, so it sees every record, whichever logger
wrote it) adds to each record, where one exists:

- `traceparent` and `trace_id`: the W3C trace of the request or record being handled
  (`outbox.tracing`: set per request by `TraceparentMiddleware`, per record by the consumer);
- `event_id` and `event_type`: the event a consumer is handling (`outbox.tracing.use_event`).

A record that already carries one of these (passed with `extra=`, as the relay's per-event
lines and `publish` do) keeps its own. One event can then be followed from the API request
that wrote it (`publish`, logger `outbox.publish`), through the relay (`relay.events`) to each
consumer (`relay.consumer` and the handlers' own loggers) by its id or its trace id.

Formatters: `ReadableFormatter` (development: one line, the context in brackets at the end)
and python-json-logger's `JsonFormatter` (production: one JSON object per line, the context as
fields), chosen with LOG_FORMAT (settings/base.py LOGGING).
"""

from __future__ import annotations

import logging

from outbox import tracing

CONTEXT_FIELDS = ("event_id", "event_type", "trace_id", "traceparent")


class PipelineContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "traceparent", None) is None:
            current = tracing.current_traceparent()
            if current is not None:
                record.traceparent = current
        if getattr(record, "trace_id", None) is None:
            trace_id = tracing.trace_id_of(getattr(record, "traceparent", None))
            if trace_id is not None:
                record.trace_id = trace_id
        if getattr(record, "event_id", None) is None:
            event = tracing.current_event()
            if event is not None:
                record.event_id, record.event_type = event
        return True


class ReadableFormatter(logging.Formatter):
    """`time LEVEL logger: message [event=… type=… trace=…]` (the parts that exist)."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        line = super().formatMessage(record)
        parts = [f"{label}={value}" for label, value in (
            ("event", getattr(record, "event_id", None)),
            ("type", getattr(record, "event_type", None)),
            ("trace", getattr(record, "trace_id", None)),
        ) if value]
        return f"{line} [{' '.join(parts)}]" if parts else line

