"""docs/events.md is generated from the event catalogue, shows every type with a valid example,
and a stale page fails the suite."""

from __future__ import annotations

import json
import re

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from outbox import catalogue_page
from outbox.catalogue import EventType, EventValidationError, all_types, obj
from outbox.examples import example_for


def test_the_committed_event_catalogue_page_is_what_the_catalogue_generates():
    committed = catalogue_page.PAGE.read_text()
    assert committed == catalogue_page.render(), (
        "docs/events.md is stale: run `python manage.py event_catalogue` and commit it")


def test_every_event_type_is_on_the_page_with_topic_key_schema_and_a_valid_example():
    # given: the page, cut into one section per type
    page = catalogue_page.render()
    sections = dict(re.findall(r"^### (\S+)\n(.*?)(?=^### |^## |\Z)", page, re.S | re.M))
    types = all_types()
    # then: every type, and nothing else
    assert sorted(sections) == sorted(types)
    assert len(types) >= 40
    for name, et in types.items():
        body = sections[name]
        assert f"| `{et.topic}` | `data.{et.key}` | v{et.version}," in body, name
        example, schema = (json.loads(block) for block in
                           re.findall(r"```json\n(.*?)```", body, re.S))
        assert schema == et.schema, name
        et.validate(example)  # raises if the page shows data `publish` would refuse
        assert example[et.key] not in (None, ""), name
    # the topic table links each type to its section
    assert "[post.created](#postcreated)" in page
    assert "### post.created\n" in page


def test_the_command_writes_the_page_and_check_fails_when_it_is_stale(tmp_path, capsys):
    # given: a page written by the command
    path = tmp_path / "events.md"
    call_command("event_catalogue", "--output", str(path))
    assert path.read_text() == catalogue_page.render()
    call_command("event_catalogue", "--output", str(path), "--check")
    assert "is up to date" in capsys.readouterr().out
    # when: someone edits it by hand
    path.write_text(path.read_text().replace("### post.created", "### post.made"))
    # then
    with pytest.raises(CommandError, match=r"events.md is stale: run `python manage.py "
                                           r"event_catalogue` and commit the result"):
        call_command("event_catalogue", "--output", str(path), "--check")


def test_an_example_that_does_not_fit_its_schema_is_refused_by_name():
    et = EventType(type="demo.thing", topic="post-events", key="post_id",
                   schema=obj({"post_id": {"type": "integer", "minimum": 1}}),
                   example={"post_id": 0})
    with pytest.raises(EventValidationError) as caught:
        example_for(et)
    assert caught.value.event_type == "demo.thing"
    assert caught.value.errors == [
        "post_id: 0 is less than the minimum of 1",
        "declare an example that fits: EventType(..., example={...})"]
