"""Everything the ingestion API accepts, the `analytics` consumer can apply.

Every field of every client event type is sent at its limits through
`POST /api/analytics/events/`: the largest and smallest accepted values are accepted and then
applied by the real consumer (real broker, real PostgreSQL) without a retry or a dead letter;
one step past each limit (and text PostgreSQL cannot store, impossible dates, out-of-range clock
corrections) is rejected per item with a field error, and never reaches the stream.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from analytics.models import PerfSample, PostStats
from outbox.models import OutboxEvent
from relay import dlq
from relay import metrics as relay_metrics
from relay import testing as kt
from relay.models import InboxEntry

from .support import analytics_worker, client_for, create_topics, drain, make_user

URL = "/api/analytics/events/"
BIGINT_MAX = 2**63 - 1
DAY_MS = 86_400_000


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _batch(items, *, device_id="dev-1", **extra):
    return {"device_id": device_id, "platform": "android", "app_version": "1.0",
            "events": items, **extra}


def _item(cid: str, type_: str, props: dict, *, at: datetime | None = None, **extra):
    return {"id": cid, "type": type_, "occurred_at": _iso(at or timezone.now()),
            "properties": props, **extra}


@pytest.mark.django_db(transaction=True)
def test_every_field_at_its_limits_is_accepted_and_applied_by_the_consumer(kafka_topic):
    # given: one item per type with every field at its upper limit, and at its lower one
    create_topics(kafka_topic)
    user = make_user()
    now = timezone.now()
    oldest = now - timedelta(hours=settings.ANALYTICS_MAX_LATENESS_HOURS) + timedelta(minutes=5)
    newest = now + timedelta(seconds=settings.ANALYTICS_MAX_CLOCK_SKEW_SECONDS - 30)
    text = "é😀" * 32  # 64 characters, multi-byte in UTF-8
    upper = [
        _item("a" * 64, "app_start", {"duration_ms": DAY_MS, "cold": True}, at=newest,
              session_id="s" * 64),
        _item("u1", "api_latency", {"duration_ms": DAY_MS, "endpoint": "/" + "e" * 199,
                                    "method": "DELETE", "status": 599}, at=newest),
        _item("u2", "screen_view", {"screen": "😀" * 100, "previous_screen": "p" * 100}),
        _item("u3", "session_start", {}),
        _item("u4", "session_end", {"duration_ms": DAY_MS}),
        _item("u5", "post_impression", {"post_id": BIGINT_MAX, "position": 100_000,
                                        "surface": "s" * 50}),
        _item("u6", "watch_time", {"post_id": BIGINT_MAX, "watched_ms": DAY_MS,
                                   "video_id": BIGINT_MAX}, session_id=text),
    ]
    lower = [
        _item("l0", "app_start", {"duration_ms": 0, "cold": False}, at=oldest),
        _item("l1", "api_latency", {"duration_ms": 0, "endpoint": "/", "method": "GET",
                                    "status": 0}, at=oldest),
        _item("l2", "screen_view", {"screen": "x", "previous_screen": None}, session_id=None),
        _item("l4", "session_end", {"duration_ms": 0}),
        _item("l5", "post_impression", {"post_id": 1, "position": 0, "surface": ""}),
        _item("l6", "watch_time", {"post_id": 1, "watched_ms": 0, "video_id": None}),
    ]
    device = "D" * 40 + "a.b_c:d-" + "9" * 16  # 64 characters of every allowed kind
    version = "1." + "0" * 28 + "+b"  # 32 characters
    # when: sent by a signed-in client whose clock is an hour fast (corrected by sent_at) and
    # by an anonymous one
    fast = timedelta(hours=1)
    for item in upper:
        item["occurred_at"] = _iso(datetime.fromisoformat(item["occurred_at"]) + fast)
    signed = client_for(user).post(URL, _batch(upper, device_id=device, app_version=version,
                                               sent_at=_iso(timezone.now() + fast)),
                                   format="json")
    anonymous = client_for(None).post(URL, _batch(lower), format="json")
    # then: all accepted
    assert signed.status_code == 200, signed.json()
    assert anonymous.status_code == 200, anonymous.json()
    assert [r["status"] for r in signed.json()["results"]] == ["accepted"] * len(upper), \
        signed.json()
    assert [r["status"] for r in anonymous.json()["results"]] == ["accepted"] * len(lower), \
        anonymous.json()
    accepted = len(upper) + len(lower)
    assert OutboxEvent.objects.count() == accepted
    # when: the relay delivers them and the analytics consumer runs
    assert kt.deliver_outbox() == accepted
    worker = analytics_worker()
    try:
        drain(worker, accepted)
    finally:
        worker.close()
    # then: every one applied once, none retried or dead-lettered
    assert InboxEntry.objects.filter(consumer="analytics").count() == accepted
    assert relay_metrics.consumer_retries.total(consumer="analytics") == 0
    assert relay_metrics.consumer_dead_lettered.total(consumer="analytics") == 0
    assert [d for t in ("analytics-events",) for d in dlq.read_dead_letters(t)] == []
    top = PostStats.objects.get(post_id=BIGINT_MAX)
    assert (top.impressions, top.watches, top.watch_time_ms, top.unique_viewers) == (
        1, 1, DAY_MS, 1)
    first = PostStats.objects.get(post_id=1)
    assert (first.impressions, first.watches, first.watch_time_ms, first.unique_viewers) == (
        1, 1, 0, 1)
    assert sorted(PerfSample.objects.values_list("metric", "value_ms", "app_version")) == [
        ("api_latency", 0, "1.0"), ("api_latency", DAY_MS, version),
        ("app_start", 0, "1.0"), ("app_start", DAY_MS, version)]


@pytest.mark.parametrize(("item", "field", "message"), [
    (_item("c", "post_impression", {"post_id": BIGINT_MAX + 1}), "properties.post_id",
     f"{BIGINT_MAX + 1} is greater than the maximum of {BIGINT_MAX}"),
    (_item("c", "post_impression", {"post_id": 0}), "properties.post_id",
     "0 is less than the minimum of 1"),
    (_item("c", "watch_time", {"post_id": 1, "watched_ms": 1, "video_id": BIGINT_MAX + 1}),
     "properties.video_id", f"{BIGINT_MAX + 1} is greater than the maximum of {BIGINT_MAX}"),
    (_item("c", "watch_time", {"post_id": 1, "watched_ms": DAY_MS + 1}),
     "properties.watched_ms", f"{DAY_MS + 1} is greater than the maximum of {DAY_MS}"),
    (_item("c", "app_start", {"duration_ms": -1}), "properties.duration_ms",
     "-1 is less than the minimum of 0"),
    (_item("c", "app_start", {"duration_ms": 1.0}), "properties.duration_ms",
     "A whole number is required (no decimal point)."),
    (_item("c", "app_start", {"duration_ms": 1.5}), "properties.duration_ms",
     "A whole number is required (no decimal point)."),
    (_item("c", "post_impression", {"post_id": 1e18}), "properties.post_id",
     "A whole number is required (no decimal point)."),
    (_item("c", "api_latency", {"duration_ms": 1, "endpoint": "/", "status": 600}),
     "properties.status", "600 is greater than the maximum of 599"),
    (_item("c", "post_impression", {"post_id": 1, "position": 100_001}), "properties.position",
     "100001 is greater than the maximum of 100000"),
    (_item("c", "api_latency", {"duration_ms": 1, "endpoint": "/" + "e" * 200}),
     "properties.endpoint", "is too long"),
    (_item("c", "screen_view", {"screen": "s" * 101}), "properties.screen",
     "is too long"),
    (_item("c", "screen_view", {"screen": ""}), "properties.screen",
     "should be non-empty"),
    (_item("c", "post_impression", {"post_id": 1, "surface": "s" * 51}), "properties.surface",
     "is too long"),
    (_item("c" * 65, "session_start", {}), "id",
     "A string of 1 to 64 characters, unique per device, is required."),
    (_item("c", "session_start", {}, session_id="s" * 65), "session_id",
     "A string of at most 64 characters, or null."),
    (_item("c", "screen_view", {"screen": "a\x00b"}), "properties.screen",
     "Text cannot contain the NUL character (U+0000) or unpaired surrogates."),
    (_item("c", "screen_view", {"screen": "a\ud800b"}), "properties.screen",
     "Text cannot contain the NUL character (U+0000) or unpaired surrogates."),
    (_item("c\x00", "session_start", {}), "id",
     "Text cannot contain the NUL character (U+0000) or unpaired surrogates."),
    (_item("c", "session_start", {}, session_id="\udfff"), "session_id",
     "Text cannot contain the NUL character (U+0000) or unpaired surrogates."),
    ({"id": "c", "type": "session_start", "occurred_at": "2025-02-30T10:00:00Z"},
     "occurred_at", "An ISO 8601 date and time with a time zone is required, "
                    "e.g. 2025-01-31T12:00:00.000Z."),
    ({"id": "c", "type": "session_start", "occurred_at": "2025-01-30T10:00:00+99:00"},
     "occurred_at", "An ISO 8601 date and time with a time zone is required, "
                    "e.g. 2025-01-31T12:00:00.000Z."),
])
@pytest.mark.django_db
def test_one_step_past_a_limit_is_rejected_with_the_field_and_never_published(item, field,
                                                                             message):
    # when: sent as JSON text (with \\u escapes: the body is ASCII whatever the item holds)
    body = json.dumps(_batch([item, _item("ok", "session_start", {})]))
    response = client_for(None).post(URL, body, content_type="application/json")
    # then: that item rejected with its field's error, the valid one beside it accepted
    assert response.status_code == 200, response.json()
    bad, good = response.json()["results"]
    assert bad["status"] == "rejected"
    assert any(message in error for error in bad["errors"][field]), bad["errors"]
    assert good["status"] == "accepted"
    assert OutboxEvent.objects.count() == 1


@pytest.mark.parametrize(("sent_at", "error"), [
    ("9999-12-31T23:59:59Z", "Out of range after clock correction: check the device clock, "
                             "sent_at and occurred_at."),
    ("0001-01-01T00:00:00Z", "This time is in the future (after clock correction); check the "
                             "device clock or send sent_at."),
])
@pytest.mark.django_db
def test_a_clock_correction_out_of_range_rejects_the_items_not_the_request(sent_at, error):
    # when: a batch whose sent_at is absurd (the correction would leave the calendar)
    response = client_for(None).post(URL, _batch([_item("c", "session_start", {})],
                                                 sent_at=sent_at), format="json")
    # then
    assert response.status_code == 200, response.content[:500]
    [result] = response.json()["results"]
    assert result["status"] == "rejected"
    assert result["errors"] == {"occurred_at": [error]}
    assert OutboxEvent.objects.count() == 0


def test_the_event_schema_refuses_what_the_consumer_could_not_store():
    """No database: the catalogue's schema alone."""
    # given: events built past the API (another publisher, a replayed dead letter)
    from outbox import catalogue

    base = {"device_id": "d", "user_id": None, "client_event_id": "c", "session_id": None,
            "platform": "web", "app_version": "1", "occurred_at": "2025-01-31T12:00:00.000Z",
            "received_at": "2025-01-31T12:00:00.000Z"}
    cases = {
        "post_id": {**base, "post_id": BIGINT_MAX + 1},
        "user_id": {**base, "user_id": BIGINT_MAX + 1, "post_id": 1},
        "client_event_id": {**base, "client_event_id": "a\x00", "post_id": 1},
        "occurred_at": {**base, "occurred_at": "2025-01-31 12:00", "post_id": 1},
    }
    for where, data in cases.items():
        with pytest.raises(catalogue.EventValidationError) as exc:
            catalogue.validate("analytics.post_impression", data)
        assert any(e.startswith(f"{where}: ") for e in exc.value.errors), exc.value.errors
    # and the largest valid one passes
    catalogue.validate("analytics.post_impression", {**base, "user_id": BIGINT_MAX,
                                                     "post_id": BIGINT_MAX})


def test_an_impossible_time_in_a_consumed_event_falls_back_instead_of_failing():
    from analytics.metrics import effects_of

    fallback = datetime(2025, 1, 31, 12, tzinfo=UTC)
    fx = effects_of("post.liked", {"post_id": 1, "author_id": 2, "actor_id": 3,
                                   "occurred_at": "2025-02-30T10:00:00Z", "like_count": 1},
                    event_time=fallback)
    assert fx.time == fallback
    assert fx.post == {"likes": 1}
