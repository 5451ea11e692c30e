"""POST /api/analytics/events/ never repeats a huge client input back in its results."""

from __future__ import annotations

import pytest
from django.utils import timezone

from .support import client_for, make_user

pytestmark = pytest.mark.django_db


def test_a_100_kb_property_is_rejected_without_being_echoed_back():
    # given: an item whose property value, property name and id are each 100 KB
    huge = "z" * 100_000
    now = timezone.now().isoformat()
    batch = {"device_id": "dev-1", "platform": "ios", "app_version": "2.3.0", "events": [
        {"id": "c1", "type": "screen_view", "occurred_at": now, "properties": {"screen": huge}},
        {"id": "c2", "type": "screen_view", "occurred_at": now,
         "properties": {"screen": "feed", huge: 1}},
        {"id": huge, "type": huge, "occurred_at": now, "properties": {}},
    ]}
    # when
    response = client_for(make_user()).post("/api/analytics/events/", batch, format="json")
    # then: each item is rejected with its reason, and the answer stays small
    assert response.status_code == 200, response.content[:500]
    body = response.json()
    assert [r["status"] for r in body["results"]] == ["rejected"] * 3
    assert len(response.content) < 3_000
    assert [r["id"] for r in body["results"]][:2] == ["c1", "c2"]
    assert "characters cut" in body["results"][2]["id"]
    for result in body["results"]:
        for field, messages in result["errors"].items():
            # at most 300 characters of the input, plus the note of how much was cut
            assert len(field) <= 340
            assert all(len(m) <= 340 for m in messages), (field, messages)
