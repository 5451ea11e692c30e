"""Data for every event type of the catalogue, drawn from its own JSON Schema (Hypothesis).

- `valid_samples(et, n)`: JSON values the schema accepts (checked with `jsonschema`), with
  Hypothesis' edge cases: empty and longest strings, bounds, unicode, nested objects;
- `pythonised(sample, schema, rng)`: the same data as a service would pass it: UUID objects for
  `format: uuid`, datetimes for `format: date-time`, Decimals, dates and nested containers in
  free-form objects;
- `invalid_variants(sample, schema, rng)`: each sample broken one way at a time (a missing
  required field, a wrong type, a bound crossed, a pattern or enum missed, an unknown field).

Used by the outbox tests and bench/validators.py.
"""

from __future__ import annotations

import copy
import random
import uuid
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from outbox.catalogue import EventType

TEXT = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"),
               max_size=12)
JSON_LEAF = (st.none() | st.booleans() | st.integers(-(2**70), 2**70)
             | st.floats(allow_nan=False, allow_infinity=False) | TEXT)
JSON = st.recursive(JSON_LEAF, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(TEXT, inner, max_size=4), max_leaves=12)


def _types(schema: dict) -> list[str]:
    t = schema.get("type")
    if t is None:
        return ["object"] if "properties" in schema else ["any"]
    return [t] if isinstance(t, str) else list(t)


def _merge(base: dict, sub: dict) -> dict:
    """`base` narrowed by one `anyOf` branch: its properties refined, its requirements added."""
    if not base:
        return sub
    merged = {**base, **{k: v for k, v in sub.items() if k not in ("properties", "required")}}
    props = dict(base.get("properties", {}))
    for name, prop in sub.get("properties", {}).items():
        props[name] = {**props.get(name, {}), **prop}
    if props:
        merged["properties"] = props
    required = base.get("required", [])
    merged["required"] = [*required, *[r for r in sub.get("required", []) if r not in required]]
    return merged


def strategy(schema: dict | bool) -> st.SearchStrategy:
    """Candidates for `schema` (mostly valid; the caller filters with the real validator)."""
    if schema is True or schema == {}:
        return JSON
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "const" in schema:
        return st.just(schema["const"])
    if "anyOf" in schema:
        base = {k: v for k, v in schema.items() if k != "anyOf"}
        return st.one_of(*[strategy(_merge(base, sub)) for sub in schema["anyOf"]])
    options = []
    for t in _types(schema):
        if t == "null":
            options.append(st.none())
        elif t == "boolean":
            options.append(st.booleans())
        elif t == "integer":
            options.append(st.integers(min_value=schema.get("minimum"),
                                       max_value=schema.get("maximum")))
        elif t == "number":
            options.append(st.floats(min_value=schema.get("minimum"),
                                     max_value=schema.get("maximum"), allow_nan=False,
                                     allow_infinity=False)
                           | st.integers(min_value=schema.get("minimum"),
                                         max_value=schema.get("maximum")))
        elif t == "string":
            lo, hi = schema.get("minLength", 0), schema.get("maxLength", 40)
            if "pattern" in schema:
                options.append(st.from_regex(schema["pattern"], fullmatch=True)
                               .filter(lambda s, lo=lo, hi=hi: lo <= len(s) <= hi))
            else:
                options.append(st.text(st.characters(exclude_categories=("Cs",),
                                                     exclude_characters="\x00"),
                                       min_size=lo, max_size=min(hi, lo + 40)))
        elif t == "array":
            items = schema.get("items", True)
            options.append(st.lists(strategy(items), min_size=schema.get("minItems", 0),
                                    max_size=min(schema.get("maxItems", 4), 4),
                                    unique=bool(schema.get("uniqueItems"))))
        elif t == "object":
            options.append(_object(schema))
        else:
            options.append(JSON)
    return st.one_of(*options)


def _object(schema: dict) -> st.SearchStrategy:
    props = schema.get("properties", {})
    required = [p for p in schema.get("required", []) if p in props]
    optional = [p for p in props if p not in required]
    fixed = st.fixed_dictionaries({p: strategy(props[p]) for p in required},
                                  optional={p: strategy(props[p]) for p in optional})
    if schema.get("additionalProperties", True) is False:
        return fixed
    lo = schema.get("minProperties", 0)
    hi = min(schema.get("maxProperties", 6), 6)
    extra = st.dictionaries(TEXT.filter(lambda k: k not in props), JSON, min_size=lo,
                            max_size=hi)
    return st.builds(lambda a, b: {**b, **a}, fixed, extra).filter(
        lambda d: lo <= len(d) <= schema.get("maxProperties", 10**9))


def valid_samples(et: EventType, n: int = 25) -> list[dict[str, Any]]:
    """`n` distinct-ish JSON samples `jsonschema` accepts for `et` (deterministic)."""
    reference = Draft202012Validator(et.schema)
    found: list[dict[str, Any]] = []

    @settings(max_examples=n, database=None, derandomize=True, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(strategy(et.schema).filter(reference.is_valid))
    def collect(value):
        found.append(copy.deepcopy(value))

    collect()
    return found


# --- the same data as services pass it ----------------------------------------------------------

def _rich(rng: random.Random, depth: int = 0) -> Any:
    """A Python value DjangoJSONEncoder turns into JSON: the types services really pass."""
    choices = [
        lambda: uuid.UUID(int=rng.getrandbits(128), version=4),
        lambda: datetime(2025, 1, 31, 12, 0, 0, rng.randrange(10**6), tzinfo=UTC)
        + timedelta(seconds=rng.randrange(10**6)),
        lambda: datetime(2025, 3, 1, 8, 30, rng.randrange(60)),  # naive
        lambda: date(2025, 1, 1) + timedelta(days=rng.randrange(1000)),
        lambda: time(rng.randrange(24), rng.randrange(60), 0, rng.choice([0, 123456])),
        lambda: timedelta(seconds=rng.randrange(10**5), microseconds=rng.randrange(10**6)),
        lambda: Decimal(rng.randrange(-10**8, 10**8)) / Decimal(100),
        lambda: Decimal("1E+3"),
        lambda: rng.choice(["Grüße 👋", "日本語", "a\"b\\c\n\t\x01", "\u2028\u2029", "", "ß" * 3]),
        lambda: rng.choice([0.1, -0.0, 1e16, 1.5e-7, 2.0**53 + 2, 123.456, 1e300]),
        lambda: rng.choice([2**64 + 1, -(2**63), 0, True, False, None]),
        lambda: (1, "two", 3.0),
    ]
    if depth < 2:
        choices += [
            lambda: {f"k{i}é": _rich(rng, depth + 1) for i in range(rng.randrange(1, 4))},
            lambda: [_rich(rng, depth + 1) for _ in range(rng.randrange(0, 4))],
        ]
    return rng.choice(choices)()


def pythonised(sample: dict[str, Any], schema: dict, rng: random.Random) -> dict[str, Any]:
    """`sample` as a service would pass it (see the module docstring); still valid once
    normalised, since each replacement encodes to the kind of string the schema asks for."""
    out = dict(sample)
    props = schema.get("properties", {})
    for name, value in sample.items():
        sub = props.get(name, {})
        fmt = sub.get("format") if isinstance(sub, dict) else None
        if isinstance(value, str) and fmt == "uuid":
            out[name] = uuid.UUID(int=rng.getrandbits(128), version=4)
        elif isinstance(value, str) and fmt == "date-time":
            out[name] = datetime(2025, 6, 1, tzinfo=UTC) + timedelta(
                seconds=rng.randrange(10**7), microseconds=rng.randrange(10**6))
        elif isinstance(value, dict) and isinstance(sub, dict) and "properties" not in sub \
                and sub.get("additionalProperties", True) is not False:
            room = sub.get("maxProperties", 50) - len(value)
            extra = {f"rich{i}": _rich(rng) for i in range(min(3, room))}
            out[name] = {**value, **extra}
    return out


# --- broken data ------------------------------------------------------------------------------

# A value of each JSON type, to put where the schema allows other types only.
_OF_TYPE = {"string": "12", "integer": 12, "number": 1.5, "boolean": True, "object": {"a": 1},
            "array": [1], "null": None}


def invalid_variants(sample: dict[str, Any], schema: dict, rng: random.Random
                     ) -> list[dict[str, Any]]:
    """`sample` broken one way at a time (not every variant is invalid: `if`/`anyOf` may still
    accept it; the tests count how many are)."""
    props = schema.get("properties", {})
    out: list[dict[str, Any]] = []
    for name in schema.get("required", []):
        out.append({k: v for k, v in sample.items() if k != name})
    out.append({**sample, "unexpected_field": 1})
    for name, sub in props.items():
        if not isinstance(sub, dict):
            continue
        types = _types(sub)
        allowed = set(types) | ({"integer"} if "number" in types else set())
        wrong = next((v for t, v in _OF_TYPE.items() if t not in allowed), None)
        if wrong is not None:
            out.append({**sample, name: wrong})
        if "minimum" in sub:
            out.append({**sample, name: sub["minimum"] - 1})
        if "maximum" in sub:
            out.append({**sample, name: sub["maximum"] + 1})
        if "maxLength" in sub:
            out.append({**sample, name: "é" * (sub["maxLength"] + 1)})
        if "minLength" in sub and sub["minLength"] > 0:
            out.append({**sample, name: ""})
        if "pattern" in sub:
            out.append({**sample, name: rng.choice(["no spaces allowed \x1c", "a\x85@b",
                                                    "ABC\n", "\u0661\u0662"])})
            out.append({**sample, name: "nul\x00"})
        if "enum" in sub:
            out.append({**sample, name: "not-a-member"})
        if sub.get("type") == "object" or "object" in types:
            out.append({**sample, name: {f"p{i}": i for i in range(60)}})
    return out
