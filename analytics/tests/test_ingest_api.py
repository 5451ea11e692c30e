"""POST /api/analytics/events/: per-item validation, dedupe, limits, clock correction."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from analytics.models import IngestReceipt
from analytics.services import client_event_uuid
from outbox.models import OutboxEvent

from .support import client_for, make_user

pytestmark = pytest.mark.django_db

URL = "/api/analytics/events/"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _batch(events, **extra):
    return {"device_id": "dev-1", "platform": "ios", "app_version": "2.3.0", "events": events,
            **extra}


def _item(cid: str, type_: str = "screen_view", *, at: datetime | None = None, **props):
    props = props or ({"screen": "feed"} if type_ == "screen_view" else {})
    return {"id": cid, "type": type_, "occurred_at": _iso(at or timezone.now()),
            "session_id": "s-1", "properties": props}


def test_valid_items_are_accepted_and_invalid_ones_rejected_with_reasons():
    # given: a signed-in client's batch mixing good and bad items
    user = make_user()
    now = timezone.now()
    batch = _batch([
        _item("c1", "screen_view", screen="feed"),
        _item("c2", "app_start", duration_ms=850, cold=True),
        {"id": "c3", "type": "teleport", "occurred_at": _iso(now), "properties": {}},
        _item("c4", "api_latency", duration_ms=-3, endpoint="/api/posts/"),
        _item("c5", "post_impression", post_id=7, user_id=99),
        {"id": "c6", "type": "session_start", "occurred_at": "yesterday"},
        "not an object",
        _item("c8", "screen_view", screen="x", colour="red"),
        _item("c9", "watch_time", post_id=7, watched_ms=12_000),
    ])
    # when
    response = client_for(user).post(URL, batch, format="json")
    # then
    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["accepted"], body["duplicates"], body["rejected"]) == (3, 0, 6)
    by_index = {r["index"]: r for r in body["results"]}
    assert [by_index[i]["status"] for i in range(9)] == [
        "accepted", "accepted", "rejected", "rejected", "rejected", "rejected", "rejected",
        "rejected", "accepted"]
    assert by_index[2]["errors"]["type"][0].startswith("Unknown event type 'teleport'")
    assert by_index[3]["errors"] == {"properties.duration_ms": [
        "-3 is less than the minimum of 0"]}
    assert by_index[4]["errors"] == {"properties": [
        "user_id cannot be set here (set by the batch or the server)."]}
    assert "occurred_at" in by_index[5]["errors"]
    assert by_index[6]["errors"] == {"non_field_errors": ["Each event must be a JSON object."]}
    assert "'colour' was unexpected" in by_index[7]["errors"]["properties"][0]
    # the accepted ones are outbox events on analytics-events, keyed by device
    rows = {r.payload["client_event_id"]: r for r in OutboxEvent.objects.all()}
    assert sorted(rows) == ["c1", "c2", "c9"]
    c2 = rows["c2"]
    assert c2.type == "analytics.app_start" and c2.topic == "analytics-events"
    assert c2.key == "dev-1"
    assert c2.event_id == client_event_uuid(user_id=user.pk, device_id="dev-1",
                                            client_event_id="c2")
    assert str(c2.event_id) == by_index[1]["event_id"]
    assert {k: c2.payload[k] for k in ("user_id", "platform", "app_version", "duration_ms",
                                       "cold", "session_id", "device_id")} == {
        "user_id": user.pk, "platform": "ios", "app_version": "2.3.0", "duration_ms": 850,
        "cold": True, "session_id": "s-1", "device_id": "dev-1"}


def test_a_retried_batch_and_a_repeated_id_are_duplicates_and_published_once():
    # given
    user = make_user()
    client = client_for(user)
    items = [_item("a"), _item("b"), _item("a")]
    # when: sent, then sent again (a retry after a lost response)
    first = client.post(URL, _batch(items), format="json").json()
    second = client.post(URL, _batch(items), format="json").json()
    # then
    assert [r["status"] for r in first["results"]] == ["accepted", "accepted", "duplicate"]
    assert [r["status"] for r in second["results"]] == ["duplicate"] * 3
    assert (second["accepted"], second["duplicates"]) == (0, 3)
    assert OutboxEvent.objects.count() == 2
    assert IngestReceipt.objects.count() == 2


def test_the_same_client_id_from_another_user_or_device_is_another_event():
    # given
    alice, bob = make_user(), make_user()
    # when
    client_for(alice).post(URL, _batch([_item("same")]), format="json")
    client_for(bob).post(URL, _batch([_item("same")]), format="json")
    client_for(None).post(URL, _batch([_item("same")], device_id="dev-2"), format="json")
    response = client_for(None).post(URL, _batch([_item("same")], device_id="dev-2"),
                                     format="json")
    # then: three events; the anonymous retry was a duplicate
    assert response.json()["duplicates"] == 1
    assert sorted((r.payload["user_id"] or 0, r.key) for r in OutboxEvent.objects.all()) == [
        (0, "dev-2"), (alice.pk, "dev-1"), (bob.pk, "dev-1")]


def test_sent_at_corrects_a_wrong_device_clock():
    # given: a device whose clock is two hours behind
    now = timezone.now()
    skew = timedelta(hours=2)
    item = _item("late-clock", at=now - skew - timedelta(minutes=5))
    # when
    body = client_for(None).post(URL, _batch([item], sent_at=_iso(now - skew)),
                                 format="json").json()
    # then: stored at the server time it happened (to within the request's own duration)
    assert body["accepted"] == 1
    stored = datetime.fromisoformat(OutboxEvent.objects.get().payload["occurred_at"]
                                    .replace("Z", "+00:00"))
    assert abs(stored - (now - timedelta(minutes=5))) < timedelta(seconds=5)


def test_items_too_old_or_in_the_future_are_rejected():
    now = timezone.now()
    body = client_for(None).post(URL, _batch([
        _item("old", at=now - timedelta(hours=169)),
        _item("future", at=now + timedelta(minutes=10)),
        _item("late-but-ok", at=now - timedelta(hours=160)),
    ]), format="json").json()
    assert [r["status"] for r in body["results"]] == ["rejected", "rejected", "accepted"]
    assert body["results"][0]["errors"]["occurred_at"][0].startswith("Too old")
    assert "future" in body["results"][1]["errors"]["occurred_at"][0]


@pytest.mark.parametrize("batch, field", [
    ({"platform": "ios", "app_version": "1", "events": [{}]}, "device_id"),
    ({"device_id": "bad id!", "platform": "ios", "app_version": "1", "events": [{}]},
     "device_id"),
    ({"device_id": "d", "platform": "symbian", "app_version": "1", "events": [{}]},
     "platform"),
    ({"device_id": "d", "platform": "ios", "app_version": "1", "events": []}, "events"),
    ({"device_id": "d", "platform": "ios", "app_version": "1", "events": "x"}, "events"),
    ({"device_id": "d", "platform": "ios", "app_version": "", "events": [{}]}, "app_version"),
])
def test_a_bad_batch_is_a_400_naming_the_field(batch, field):
    response = client_for(None).post(URL, batch, format="json")
    assert response.status_code == 400
    assert response.json()["type"] == "validation_error"
    assert list(response.json()["errors"]) == [field]
    assert OutboxEvent.objects.count() == 0


def test_batches_over_the_size_limit_are_refused(settings):
    settings.ANALYTICS_MAX_BATCH_EVENTS = 3
    response = client_for(None).post(URL, _batch([_item(f"i{n}") for n in range(4)]),
                                     format="json")
    assert response.status_code == 400
    assert response.json()["errors"]["events"] == [
        "At most 3 events per batch (4 sent); send the rest in another request."]
    assert OutboxEvent.objects.count() == 0


def test_batches_are_rate_limited_per_user_and_per_ip(settings):
    # given: 2 batches a minute
    settings.ANALYTICS_INGEST_RATE = "2/min"
    alice, bob = make_user(), make_user()
    a = client_for(alice)
    # when
    codes = [a.post(URL, _batch([_item(f"r{n}")]), format="json").status_code
             for n in range(3)]
    other_user = client_for(bob).post(URL, _batch([_item("b")]), format="json")
    anon = [client_for(None, ip="192.0.2.1").post(URL, _batch([_item(f"x{n}")]),
                                                  format="json") for n in range(3)]
    # then
    assert codes == [200, 200, 429]
    assert other_user.status_code == 200
    assert [r.status_code for r in anon] == [200, 200, 429]
    assert anon[2].json()["type"] == "throttled" and anon[2].json()["retry_after"] > 0
    assert OutboxEvent.objects.count() == 5
