"""The `analytics` consumer in-process (real broker, real PostgreSQL): event-time buckets for
late events, the lateness horizon, idempotent rollups, retention, skipped foreign types."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from analytics import services
from analytics.models import (
    ActiveUserDay,
    ActiveUserHour,
    DailyMetric,
    DailyPerf,
    HourlyMetric,
    IngestReceipt,
    PerfSample,
    PostStats,
)
from outbox.services import Event
from relay import metrics as relay_metrics
from relay.models import InboxEntry

from .support import analytics_worker, create_topics, drain, produce_at

pytestmark = pytest.mark.django_db(transaction=True)


def _purchase(user_id: int, coins: int, price: int, currency: str = "USD") -> Event:
    return Event("coins.purchased", {
        "user_id": user_id, "order_id": f"00000000-0000-4000-8000-{coins:012d}",
        "package_id": None, "coins": coins, "price_minor": price, "currency": currency,
        "provider": "test", "transaction_id": coins}, event_id=uuid.uuid4())


def _daily(metric: str, day, dimension: str = "") -> int | None:
    row = DailyMetric.objects.filter(metric=metric, day=day, dimension=dimension).first()
    return row.value if row else None


def _hourly(metric: str, hour) -> int | None:
    row = HourlyMetric.objects.filter(metric=metric, hour=hour).first()
    return row.value if row else None


@pytest.fixture
def worker(kafka_topic):
    create_topics(kafka_topic)
    w = analytics_worker()
    yield w
    if w.consumer is not None:
        w.close()


def test_late_events_land_in_their_own_bucket_and_the_rollup_recomputes_them(worker):
    # given: purchases written now, 3 days ago (consumed late), twice the same event
    now = timezone.now()
    three_days_ago = now - timedelta(days=3)
    late = _purchase(5, 100, 499)
    produce_at([(_purchase(5, 50, 299), now), (late, three_days_ago),
                (_purchase(6, 70, 300, "EUR"), three_days_ago)])
    produce_at([(late, three_days_ago)])  # the same event id again (a redelivery)
    # when
    drain(worker, 3)
    first = services.rollup_run()
    snapshot = sorted(DailyMetric.objects.values_list("day", "metric", "dimension", "value"))
    second = services.rollup_run()
    # then: each in the day it happened, counted once; the second rollup changes nothing
    today, old = services.utc_day(now), services.utc_day(three_days_ago)
    assert (_daily("purchases", today), _daily("coins_purchased", today)) == (1, 50)
    assert (_daily("purchases", old), _daily("coins_purchased", old)) == (2, 170)
    assert _daily("revenue_minor", old, "USD") == 499
    assert _daily("revenue_minor", old, "EUR") == 300
    assert (_daily("dau", today), _daily("dau", old)) == (1, 2)
    assert _daily("wau", today) == 2 and _daily("mau", today) == 2
    assert _hourly("active_users", services.utc_hour(three_days_ago)) == 2
    assert old.isoformat() in first.days and old.isoformat() in second.days
    assert sorted(DailyMetric.objects.values_list("day", "metric", "dimension", "value")) \
        == snapshot
    assert InboxEntry.objects.filter(consumer="analytics").count() == 3


def test_an_event_past_the_horizon_counts_in_its_hour_but_not_in_active_users(worker):
    # given: a registration consumed ten days after it happened (the consumer was down)
    now = timezone.now()
    ten_days_ago = now - timedelta(days=10)
    services.rollup_run()  # an earlier run: the old day is outside its lookback
    produce_at([(Event("user.registered", {
        "user_id": 42, "username": "late", "email": None, "display_name": "",
        "registered_at": ten_days_ago.isoformat()}), ten_days_ago)])
    # when
    drain(worker, 1)
    run = services.rollup_run()
    # then: the signup is in its own day (recomputed because its hourly row changed), the
    # user is not counted active there (membership rows of that day may be pruned), and the
    # late arrival is counted in the hour it was processed
    old = services.utc_day(ten_days_ago)
    assert old.isoformat() in run.days
    assert _daily("signups", old) == 1
    assert _daily("dau", old) is None
    assert not ActiveUserDay.objects.exists()
    assert _hourly("late_beyond_horizon", services.utc_hour(timezone.now())) == 1


def _skipped_no_handler() -> float:
    return sum(relay_metrics.consumer_skipped.value(consumer="analytics", topic=t,
                                                    reason="no_handler")
               for t in ("analytics-events", "transaction-events"))


def test_types_without_an_analytics_handler_are_skipped(worker):
    # given: a pipeline probe (analytics-events) and a coins adjustment (transaction-events);
    # the counter is the process's, so earlier tests' skips are subtracted
    before = _skipped_no_handler()
    produce_at([
        (Event("pipeline.probe", {"probe_id": "p", "key": "k", "seq": 1}), timezone.now()),
        (Event("coins.adjusted", {"adjustment_id": 1, "user_id": 3, "amount": 5,
                                  "reason": "x", "operator_id": 1, "transaction_id": 9}),
         timezone.now()),
    ])
    # when
    for _ in range(15):
        worker.step()
    # then
    assert _skipped_no_handler() - before == 2
    assert not HourlyMetric.objects.exists()


def test_post_totals_and_unique_viewers(worker):
    # given: one post seen by a user twice, an anonymous device, liked, unliked, tipped
    now = timezone.now()
    t = now.isoformat()
    post = {"post_id": 77, "author_id": 1}
    envelope = {"device_id": "dev-a", "user_id": None, "client_event_id": "x",
                "session_id": None, "platform": "web", "app_version": "1.0",
                "occurred_at": t, "received_at": t}
    produce_at([(e, now) for e in [
        Event("post.viewed", {**post, "actor_id": 9, "occurred_at": t, "view_count": 1}),
        Event("post.viewed", {**post, "actor_id": None, "occurred_at": t, "view_count": 2}),
        Event("analytics.post_impression", {**envelope, "user_id": 9, "post_id": 77}),
        Event("analytics.watch_time", {**envelope, "post_id": 77, "watched_ms": 4000}),
        Event("post.liked", {**post, "actor_id": 9, "occurred_at": t, "like_count": 1}),
        Event("post.liked", {**post, "actor_id": 8, "occurred_at": t, "like_count": 2}),
        Event("post.unliked", {**post, "actor_id": 8, "occurred_at": t, "like_count": 1}),
        Event("post.commented", {**post, "actor_id": 8, "occurred_at": t, "comment_id": 1,
                                 "text": "hi", "comment_count": 1}),
        Event("coins.transferred", {"transfer_id": 1, "sender_id": 8, "recipient_id": 1,
                                    "amount": 25, "post_id": 77, "kind": "tip", "note": "",
                                    "transaction_id": 3}),
    ]])
    # when
    drain(worker, 9)
    # then
    s = PostStats.objects.get(post_id=77)
    assert (s.views, s.impressions, s.unique_viewers, s.likes, s.unlikes, s.comments, s.tips,
            s.tip_coins, s.watch_time_ms, s.watches) == (2, 1, 2, 2, 1, 1, 1, 25, 4000, 1)
    assert s.engagement_rate == round((2 - 1 + 1 + 1) / 2, 4)


def test_prune_keeps_what_late_events_still_need(db):
    # given: rows just inside and just outside each retention
    now = timezone.now()
    horizon = timedelta(hours=168)
    hour = services.utc_hour(now)
    ActiveUserHour.objects.create(hour=hour - horizon - timedelta(days=2), user_id=1)
    ActiveUserHour.objects.create(hour=hour - horizon, user_id=1)
    ActiveUserDay.objects.create(day=(now - horizon - timedelta(days=32)).date(), user_id=1)
    ActiveUserDay.objects.create(day=(now - horizon - timedelta(days=29)).date(), user_id=1)
    for days, eid in ((31, "00000000-0000-4000-8000-000000000001"),
                      (29, "00000000-0000-4000-8000-000000000002")):
        PerfSample.objects.create(event_id=eid, metric="app_start", platform="ios",
                                  app_version="1", occurred_at=now - timedelta(days=days),
                                  value_ms=100)
    old_receipt = IngestReceipt.objects.create(event_id="00000000-0000-4000-8000-00000000000a")
    IngestReceipt.objects.filter(pk=old_receipt.pk).update(
        received_at=now - horizon - timedelta(days=2))
    IngestReceipt.objects.create(event_id="00000000-0000-4000-8000-00000000000b")
    DailyPerf.objects.create(day=(now - timedelta(days=60)).date(), metric="app_start",
                             platform="*", app_version="*", samples=1, p50_ms=1, p95_ms=1,
                             mean_ms=1, computed_at=now)
    # when
    result = services.analytics_prune(now=now)
    again = services.analytics_prune(now=now)
    # then
    assert (result.active_hours, result.active_days, result.perf_samples, result.receipts) \
        == (1, 1, 1, 1)
    assert (again.active_hours, again.active_days, again.perf_samples, again.receipts) \
        == (0, 0, 0, 0)
    assert ActiveUserHour.objects.count() == 1 and ActiveUserDay.objects.count() == 1
    assert PerfSample.objects.get().event_id.hex.endswith("2")
    assert IngestReceipt.objects.get().event_id.hex.endswith("b")
    assert DailyPerf.objects.count() == 1  # rolled-up percentiles outlive their samples
