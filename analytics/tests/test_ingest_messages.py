"""POST /api/analytics/events/ answers with the schema's own sentences, exactly as before the
compiled validators (each item is now checked once, by the outbox batch that writes it), and
the response is exactly what its documented serializer gives."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.utils import timezone
from jsonschema import Draft202012Validator

from analytics.apis import IngestOutputSerializer
from analytics.metrics import CLIENT_TYPES, full_type
from analytics.services import _schema_errors, iso
from outbox import catalogue
from outbox.catalogue import EventValidationError

from .support import client_for, make_user

pytestmark = pytest.mark.django_db

URL = "/api/analytics/events/"
# What the schema refuses (the API's own checks, such as a decimal point in an integer or a NUL
# character, answer before the schema and are tested in test_ingest_api.py / test_limits.py).
BAD_PROPERTIES = [
    {"duration_ms": -1}, {"duration_ms": 86_400_001}, {"duration_ms": "12"},
    {"duration_ms": None}, {"post_id": 2**63}, {"endpoint": ""}, {"endpoint": "x" * 201},
    {"method": "FETCH"}, {"status": 600}, {"screen": ""}, {"screen": 7},
    {"previous_screen": "x" * 101}, {"post_id": 0}, {"post_id": "seven"},
    {"position": -5}, {"surface": "s" * 51}, {"watched_ms": -1}, {"video_id": 0},
    {"cold": "yes"}, {"colour": "red"}, {"colour": "red", "size": 3, "duration_ms": -2},
]


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def reference_errors(event_type: str, data: dict) -> dict[str, list[str]]:
    """What the API answered before: jsonschema's messages, grouped per field."""
    schema = catalogue.get(event_type).schema
    errors = sorted(Draft202012Validator(schema).iter_errors(data), key=lambda e: list(e.path))
    messages = [f"{'/'.join(str(p) for p in e.path) or '(root)'}: {e.message}" for e in errors]
    return _schema_errors(EventValidationError(event_type, messages)) if messages else {}


def test_every_schema_error_reads_as_jsonschema_words_it():
    # given: every client type with properties broken in many ways, one item each
    user = make_user()
    now = timezone.now()
    items, expected = [], []
    for short in CLIENT_TYPES:
        for n, props in enumerate(BAD_PROPERTIES):
            cid = f"{short}-{n}"
            items.append({"id": cid, "type": short, "occurred_at": _iso(now),
                          "session_id": "s-1", "properties": props})
            data = {**props, "device_id": "dev-9", "platform": "android",
                    "app_version": "3.1.0", "user_id": user.pk, "client_event_id": cid,
                    "session_id": "s-1", "occurred_at": iso(now), "received_at": iso(now)}
            expected.append(reference_errors(full_type(short), data))
    # when: in batches of at most the allowed size
    results = []
    for start in range(0, len(items), 100):
        response = client_for(user).post(URL, {
            "device_id": "dev-9", "platform": "android", "app_version": "3.1.0",
            "events": items[start:start + 100]}, format="json")
        assert response.status_code == 200, response.json()
        results += response.json()["results"]
    # then: the same verdicts and the same sentences, field by field
    assert [r["errors"] for r in results] == expected
    assert sum(1 for e in expected if e) >= 100  # most of them really are errors
    assert {"properties.duration_ms": ["-1 is less than the minimum of 0"]} in expected
    assert [r["status"] for r in results] == [
        "rejected" if e else "accepted" for e in expected]


def test_the_response_is_what_its_serializer_gives():
    # given: a batch with an accepted, a duplicate and a rejected item
    user = make_user()
    now = _iso(timezone.now())
    batch = {"device_id": "dev-2", "platform": "ios", "app_version": "2.0", "events": [
        {"id": "a", "type": "screen_view", "occurred_at": now, "properties": {"screen": "f"}},
        {"id": "a", "type": "screen_view", "occurred_at": now, "properties": {"screen": "f"}},
        {"id": "b", "type": "screen_view", "occurred_at": now, "properties": {"screen": ""}},
    ]}
    # when
    body = client_for(user).post(URL, batch, format="json").json()
    # then: exactly what IngestOutputSerializer renders for it (the documented shape)
    assert [r["status"] for r in body["results"]] == ["accepted", "duplicate", "rejected"]
    assert body == IngestOutputSerializer(body).data
    assert isinstance(body["results"][0]["event_id"], str)
    assert body["results"][2]["event_id"] is None
