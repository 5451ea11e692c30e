"""Operator probes through the whole pipeline (`manage.py outbox probe`, tests, benchmarks)."""

from __future__ import annotations

from outbox.catalogue import TEXT, TIME, EventType, obj, register

register(
    EventType(
        type="pipeline.probe",
        topic="analytics-events",
        key="key",
        description="A probe sent through outbox, relay and consumers to measure and check them.",
        schema=obj(
            {
                "probe_id": {"type": "string", "minLength": 1, "maxLength": 100},
                "key": {"type": "string", "minLength": 1, "maxLength": 200},
                "seq": {"type": "integer", "minimum": 0},
                "sent_at": TIME,
                "padding": TEXT,
                "fail": {"type": "string", "enum": ["transient", "permanent"]},
            },
            required=["probe_id", "key", "seq"],
        ),
    ),
)
