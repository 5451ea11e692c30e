"""docs/events.md, generated from the event catalogue: every type with its topic, record key,
schema version, the consumers that handle it, its JSON Schema and an example of its data.

`python manage.py event_catalogue` writes the page; `outbox/tests/test_catalogue_page.py` fails
when the committed page differs from what the catalogue generates (a type added, a schema
changed, a handler registered), naming the command to run. The output depends on the code only
(not on settings such as OUTBOX_SCHEMA_BASE_URI), so every machine generates the same bytes.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from django.conf import settings

from .catalogue import TOPICS, EventType, all_types
from .examples import example_for

PAGE = Path(settings.BASE_DIR) / "docs" / "events.md"


def _handlers() -> dict[str, list[str]]:
    """Event type -> the consumers (apps) that handle it. Only handlers declared in an app's
    `handlers.py`: handlers tests register for a moment must not change the page."""
    from relay.registry import all_registrations

    out: dict[str, set[str]] = defaultdict(set)
    for reg in all_registrations():
        if getattr(reg.fn, "__module__", "").endswith(".handlers"):
            out[reg.event_type].add(reg.consumer)
    return {t: sorted(c) for t, c in out.items()}


def _anchor(event_type: str) -> str:
    """GitHub's anchor of a `### post.created` heading: dots dropped."""
    return event_type.replace(".", "").lower()


def _json(value) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


def _type_section(et: EventType, handled_by: list[str]) -> list[str]:
    consumers = ", ".join(f"`{c}`" for c in handled_by) or "none (no handler registered)"
    return [
        f"### {et.type}",
        "",
        et.description or "(no description in the catalogue)",
        "",
        "| topic | record key | schema | handled by |",
        "| --- | --- | --- | --- |",
        f"| `{et.topic}` | `data.{et.key}` | v{et.version}, "
        f"`ce_dataschema` = `<OUTBOX_SCHEMA_BASE_URI>{et.type}/v{et.version}` | {consumers} |",
        "",
        "Example `data` (the record's value):",
        "",
        "```json",
        _json(example_for(et)),
        "```",
        "",
        "<details><summary>JSON Schema</summary>",
        "",
        "```json",
        _json(et.schema),
        "```",
        "",
        "</details>",
        "",
    ]


def render() -> str:
    types = all_types()
    handlers = _handlers()
    by_topic: dict[str, list[EventType]] = defaultdict(list)
    for et in types.values():
        by_topic[et.topic].append(et)
    lines = [
        "# Event catalogue",
        "",
        "[README](../README.md) · Contributors. Every event type the system publishes, "
        "generated from the catalogue (`outbox/events/<topic>.py`) by "
        "`python manage.py event_catalogue`: do not edit this page by hand, a test fails when "
        "it is stale.",
        "",
        "Each event is a CloudEvent 1.0 in Kafka's binary mode: the record key is the field "
        "named below (the aggregate id, so one aggregate's events keep their order on one "
        "partition), the record value is `data` as JSON, and the attributes travel as headers: "
        "`ce_specversion`, `ce_id` (the event's UUID, the dedupe key), `ce_source`, `ce_type`, "
        "`ce_time`, `ce_subject`, `ce_dataschema`, `content-type: application/json`, and "
        "`traceparent` when a request caused it. `publish` refuses data that does not match the "
        "schema; consumers dead-letter such records to `<topic>.dlq`. Every example below "
        "passes its schema (checked when the page is generated).",
        "",
        "| topic | event types | dead-letter topic |",
        "| --- | --- | --- |",
    ]
    for topic in TOPICS:
        names = sorted(et.type for et in by_topic.get(topic, []))
        links = ", ".join(f"[{n}](#{_anchor(n)})" for n in names) or "none yet"
        lines.append(f"| `{topic}` | {links} | `{topic}.dlq` |")
    lines.append("")
    for topic in TOPICS:
        lines += [f"## {topic}", ""]
        for et in sorted(by_topic.get(topic, []), key=lambda e: e.type):
            lines += _type_section(et, handlers.get(et.type, []))
    return "\n".join(lines).rstrip("\n") + "\n"
