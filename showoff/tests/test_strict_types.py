"""Strict JSON types on every write endpoint, driven by the OpenAPI schema: a value of another
JSON type than the schema declares ({"text": 12345}, {"amount": "10"}) is a 400 naming the field,
never coerced; and write endpoints take JSON only (files: multipart), as the schema says."""

from __future__ import annotations

import pytest
from drf_spectacular.generators import SchemaGenerator
from rest_framework_simplejwt.tokens import RefreshToken

from accounts.tests.fixtures import client_for, make_user
from posts import services as post_services
from posts.models import Post

# Values of every other JSON type than the declared one.
WRONG = {
    "string": [12345, True, ["x"]],
    "integer": ["10", 10.5, True],
    "number": ["1.5", True],
    "boolean": ["true", 1, "yes"],
    "array": ["x", {"a": 1}],
    "object": ["x", [1]],
}


def _schema() -> dict:
    return SchemaGenerator().get_schema(request=None, public=True)


def _resolve(schema: dict, node: dict) -> dict:
    """Follow $ref, and the allOf/oneOf wrappers spectacular puts around enums and nullables."""
    while True:
        if "$ref" in node:
            node = schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[-1]]
        elif "allOf" in node and len(node["allOf"]) == 1:
            node = node["allOf"][0]
        elif "oneOf" in node:
            options = [o for o in node["oneOf"]
                       if _resolve(schema, o).get("enum") != [None]]
            node = options[0]
        else:
            return node


def _cases(schema: dict, node: dict, depth: int = 0):
    """(body, where the error must be) for each property, and one level into nested objects
    and arrays of objects."""
    node = _resolve(schema, node)
    for name, prop in node.get("properties", {}).items():
        prop = _resolve(schema, prop)
        if prop.get("readOnly"):
            continue
        kind = prop.get("type") or ("string" if "enum" in prop and all(
            isinstance(v, str) for v in prop["enum"] if v is not None) else None)
        for value in WRONG.get(kind, []):
            yield {name: value}, (name,)
        if depth == 0 and kind == "object" and prop.get("properties"):
            for body, where in _cases(schema, prop, depth + 1):
                yield {name: body}, (name, *where)
        if depth == 0 and kind == "array" and _resolve(schema, prop.get("items", {})).get(
                "properties"):
            for body, where in _cases(schema, prop["items"], depth + 1):
                yield {name: [body]}, (name, "0", *where)


def _json_write_operations(schema: dict):
    for path, item in schema["paths"].items():
        for method, op in item.items():
            content = op.get("requestBody", {}).get("content", {})
            if "application/json" in content:
                yield method, path, content["application/json"]["schema"]


def test_write_endpoints_take_json_only_files_as_multipart():
    schema = _schema()
    bodies = {(m.upper(), p): sorted(op.get("requestBody", {}).get("content", {}))
              for p, item in schema["paths"].items() for m, op in item.items()
              if "requestBody" in op}
    odd = {op: types for op, types in bodies.items()
           if types not in (["application/json"], ["multipart/form-data"],
                            ["application/octet-stream"])}
    assert odd == {}
    assert bodies[("PUT", "/api/me/avatar/")] == ["multipart/form-data"]
    assert bodies[("POST", "/api/media/videos/")] == ["multipart/form-data"]
    assert bodies[("POST", "/api/posts/")] == ["application/json"]


@pytest.mark.django_db
def test_a_form_body_on_a_json_endpoint_is_a_415(as_alice):
    resp = as_alice.generic("POST", "/api/posts/", "text=hello",
                            content_type="application/x-www-form-urlencoded")
    assert resp.status_code == 415
    assert resp.json() == {"type": "unsupported_media_type", "detail": 'Unsupported media type '
                           '"application/x-www-form-urlencoded" in request.'}
    assert Post.objects.count() == 0


@pytest.mark.django_db
def test_the_issue_examples_are_refused_and_nothing_is_written():
    # given
    user = make_user()
    other = make_user()
    client = client_for(user)
    # when
    post = client.post("/api/posts/", {"text": 12345}, format="json")
    transfer = client.post("/api/coins/transfers/", {"recipient_id": other.pk, "amount": "10"},
                           format="json")
    # then
    assert post.status_code == 400
    assert post.json()["errors"] == {"text": ["Expected a string, got an integer."]}
    assert transfer.status_code == 400
    assert transfer.json()["errors"] == {"amount": ["Expected an integer, got a string."]}
    assert Post.objects.count() == 0


@pytest.mark.django_db
def test_every_json_write_endpoint_refuses_values_of_the_wrong_json_type():
    # given: a staff user (the staff-only endpoints are reached too) with a post to edit
    schema = _schema()
    user = make_user(is_staff=True)
    post = post_services.post_create(author=user, text="mine")
    token = f"Bearer {RefreshToken.for_user(user).access_token}"
    path_values = {"post_id": post.pk, "user_id": user.pk}
    checked: list[str] = []
    failures: list[str] = []
    for method, template, body_schema in _json_write_operations(schema):
        try:
            path = template.format(**path_values)
        except KeyError:
            continue  # only the webhook (a raw signed body, no declared properties)
        for body, where in _cases(schema, body_schema):
            # when
            client = client_for(None)
            client.credentials(HTTP_AUTHORIZATION=token)
            resp = getattr(client, method)(path, body, format="json")
            # then
            label = f"{method.upper()} {template} {body!r}"
            checked.append(label)
            if resp.status_code != 400:
                failures.append(f"{label}: {resp.status_code} {resp.content[:200]!r}")
                continue
            errors = resp.json().get("errors", {})
            for key in where:
                errors = errors.get(key, {}) if isinstance(errors, dict) else {}
            if not (isinstance(errors, list) and errors[0].startswith("Expected ")):
                failures.append(f"{label}: {resp.json()}")
    assert failures == [], "\n".join(failures)
    assert len(checked) >= 100


def test_the_schema_description_covers_every_area_and_states_the_rules():
    description = _schema()["info"]["description"]
    # every area under /api/ is named
    for area in ("accounts", "posts", "video", "coins", "notifications", "analytics"):
        assert area in description, area
    assert "Types are strict" in description
    assert "JSON (`Content-Type: application/json`)" in description


@pytest.mark.django_db
def test_a_string_longer_than_the_schemas_max_length_is_refused_even_with_spaces_around_it():
    # (DRF would trim the spaces first, and accept what the schema says is too long)
    user = make_user()
    resp = client_for(user).post("/api/notifications/devices/",
                                 {"platform": "android", "token": "   " + "t" * 511},
                                 format="json")
    assert resp.status_code == 400
    assert resp.json()["errors"] == {"token": [
        "Ensure this field has no more than 512 characters."]}
