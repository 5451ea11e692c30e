"""The compiled validators decide exactly as `jsonschema` did, with the same messages."""

from __future__ import annotations

import random

import pytest
from jsonschema import Draft202012Validator

from outbox import catalogue
from outbox.catalogue import EventType, EventValidationError, obj

from .samples import invalid_variants, valid_samples

TYPES = sorted(catalogue.all_types())


def reference_messages(schema: dict, data) -> list[str]:
    """The messages publish() raised before the compiled validators (jsonschema alone)."""
    errors = sorted(Draft202012Validator(schema).iter_errors(data), key=lambda e: list(e.path))
    return [f"{'/'.join(str(p) for p in e.path) or '(root)'}: {e.message}" for e in errors]


def outcome(et: EventType, data) -> list[str]:
    try:
        et.validate(data)
    except EventValidationError as exc:
        assert exc.event_type == et.type
        assert str(exc) == f"invalid {et.type} event: {'; '.join(exc.errors)}"
        return exc.errors
    return []


def test_every_type_is_compiled_when_the_catalogue_loads():
    assert len(TYPES) >= 30
    assert all(catalogue.get(t)._compiled is not None for t in TYPES)


@pytest.mark.parametrize("event_type", TYPES)
def test_compiled_validation_decides_and_words_errors_as_jsonschema(event_type):
    # given: valid data drawn from the type's schema, and each sample broken in many ways
    et = catalogue.get(event_type)
    rng = random.Random(event_type)
    valid = valid_samples(et, 20)
    candidates = list(valid)
    for sample in valid:
        candidates += invalid_variants(sample, et.schema, rng)
    reference = Draft202012Validator(et.schema)
    # when / then: the same verdict and the same messages for every candidate, and the fast
    # validator never lets through what jsonschema refuses
    invalid = 0
    for data in candidates:
        expected = reference_messages(et.schema, data)
        assert outcome(et, data) == expected, data
        compiled_ok = _compiled_accepts(et, data)
        assert not (compiled_ok and not reference.is_valid(data)), data
        invalid += bool(expected)
    assert len(valid) == 20
    broken = len(candidates) - len(valid)
    assert invalid >= 0.9 * broken, (invalid, broken)  # the variants really are invalid


def _compiled_accepts(et: EventType, data) -> bool:
    import fastjsonschema

    try:
        et._compiled(data)
    except fastjsonschema.JsonSchemaException:
        return False
    return True


def test_messages_are_the_same_sentences_as_before():
    et = catalogue.get("pipeline.probe")
    assert outcome(et, {"probe_id": "p", "key": "k", "seq": -1, "extra": 1}) == [
        "(root): Additional properties are not allowed ('extra' was unexpected)",
        "seq: -1 is less than the minimum of 0",
    ]
    assert outcome(catalogue.get("post.liked"), {"post_id": "7"}) == [
        "(root): 'author_id' is a required property",
        "(root): 'actor_id' is a required property",
        "(root): 'occurred_at' is a required property",
        "(root): 'like_count' is a required property",
        "post_id: '7' is not of type 'integer'",
    ]


def test_a_trailing_newline_before_a_patterns_end_is_still_accepted_as_before():
    # Python's `$` also matches before a final newline; fastjsonschema's anchor does not, so
    # jsonschema decides, and keeps accepting what it accepted before.
    data = {"user_id": 1, "order_id": "0" * 36, "package_id": None, "coins": 10,
            "price_minor": 99, "currency": "USD\n", "provider": "test", "transaction_id": 1}
    assert reference_messages(catalogue.get("coins.purchased").schema, data) == []
    assert not _compiled_accepts(catalogue.get("coins.purchased"), data)
    assert outcome(catalogue.get("coins.purchased"), data) == []


@pytest.mark.parametrize("space", ["\x1c", "\x1d", "\x1e", "\x1f", "\x85"])
def test_python_whitespace_in_an_email_is_refused_as_before(space):
    # The reason for fastjsonschema over jsonschema-rs: the Rust regex engine's \s lacks these.
    data = {"to": f"a{space}@b.org", "template": "welcome", "requested_at": "2025-01-01T00:00Z"}
    assert outcome(catalogue.get("email.requested"), data) == [
        f"to: {data['to']!r} does not match '^[^@\\\\s]+@[^@\\\\s]+$'"]


@pytest.mark.parametrize(("extra", "named"), [
    ({"$ref": "#/$defs/x"}, "$ref"),
    ({"properties": {"k": {"type": "string"},
                     "a": {"type": "array", "prefixItems": [{"type": "integer"}]}}},
     "prefixItems"),
    ({"properties": {"k": {"type": "string"},
                     "a": {"type": "object", "dependentRequired": {"b": ["c"]}}}},
     "dependentRequired"),
    ({"anyOf": [{"type": "object", "unevaluatedProperties": False}]}, "unevaluatedProperties"),
])
def test_a_schema_the_compiled_validator_would_misread_is_refused_at_registration(extra, named):
    schema = {**obj({"k": {"type": "string"}}), **extra}
    et = EventType(type="test.misread", topic="analytics-events", key="k", schema=schema)
    with pytest.raises(ValueError, match=r"test\.misread") as info:
        catalogue.register(et)
    assert named in str(info.value)
    assert "test.misread" not in catalogue.all_types()


def test_const_is_compiled_as_the_same_constraint_and_a_property_named_const_is_untouched():
    et = EventType(type="test.const", topic="analytics-events", key="k", schema=obj({
        "k": {"type": "string"}, "const": {"type": "integer", "not": {"const": 0}},
        "flag": {"anyOf": [{"const": "on"}, {"type": "null"}]}}))
    et.compile()
    for data, ok in [({"k": "a", "const": 5, "flag": "on"}, True),
                     ({"k": "a", "const": 0, "flag": None}, False),
                     ({"k": "a", "const": 5, "flag": "off"}, False),
                     ({"k": "a", "const": "5", "flag": None}, False)]:
        assert _compiled_accepts(et, data) is ok, data
        assert (outcome(et, data) == []) is ok, data
