"""Bulk sends: fanned out in batches (each one transaction and one `publish_bulk` INSERT) with
memory that does not grow with the number of recipients; 10,000 users end with 10,000 in-app
notifications through the real relay and the real consumer."""

from __future__ import annotations

import tracemalloc

import pytest
from django.contrib.auth.hashers import make_password
from django.db import connection

from accounts.models import User
from notifications import services
from notifications.models import BulkNotification, Notification
from outbox.models import OutboxEvent

from .helpers import make_user

RECIPIENTS = 10_000
BATCH = 500


def _users(n: int, prefix: str) -> None:
    password = make_password(None)
    User.objects.bulk_create(
        [User(username=f"{prefix}{i}", password=password) for i in range(n)], batch_size=2000)


def _traced(fn) -> tuple[object, int]:
    tracemalloc.start()
    try:
        result = fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak


@pytest.mark.django_db(transaction=True)
def test_a_bulk_send_to_10000_users_ends_with_10000_in_app_notifications_in_bounded_memory(
        pipeline):
    # given: 10,000 users (and one inactive, who is left out)
    _users(RECIPIENTS, "bulk")
    make_user(is_active=False)
    staff = User.objects.create(username="operator", is_staff=True)
    bulk = services.bulk_notification_create(
        created_by=staff, kind="announcement", title="We are live", body="Welcome aboard.",
        channels=["in_app"], segment={"all": True})
    BulkNotification.objects.filter(pk=bulk.pk).update(status="queued")
    # when: the fan-out runs: a warm-up batch, two batches traced, eight batches traced,
    # then the rest (untraced: tracing slows every allocation down)
    services.bulk_notification_fan_out(bulk_id=bulk.pk, batch_size=BATCH, max_batches=1)
    small, small_peak = _traced(lambda: services.bulk_notification_fan_out(
        bulk_id=bulk.pk, batch_size=BATCH, max_batches=2))
    large, large_peak = _traced(lambda: services.bulk_notification_fan_out(
        bulk_id=bulk.pk, batch_size=BATCH, max_batches=8))
    rest = services.bulk_notification_fan_out(bulk_id=bulk.pk, batch_size=BATCH)
    # then: four times the recipients, not more memory (one batch's worth, a few MB)
    assert (small, large, rest) == (2 * BATCH, 8 * BATCH, RECIPIENTS + 1 - 11 * BATCH)
    assert large_peak < 1.5 * small_peak, (small_peak, large_peak)
    assert large_peak < 16 * 1024 * 1024, large_peak
    bulk.refresh_from_db()
    assert (bulk.status, bulk.recipients_published, bulk.batches) == (
        "completed", RECIPIENTS + 1, 21)
    assert OutboxEvent.objects.filter(type="notification.requested").count() == RECIPIENTS + 1
    # and each batch was its own transaction: 21 distinct transaction ids
    with connection.cursor() as cur:
        cur.execute("SELECT count(DISTINCT txid) FROM outbox_event "
                    "WHERE type = 'notification.requested'")
        assert cur.fetchone()[0] == 21

    # when: relayed and consumed
    pipeline.run_until(
        lambda: Notification.objects.filter(bulk=bulk).count() >= RECIPIENTS + 1,
        consumers=["notifications-route"], timeout=170)
    # then
    assert Notification.objects.filter(bulk=bulk, in_app=True).count() == RECIPIENTS + 1
    assert Notification.objects.filter(bulk=bulk).values("recipient").distinct().count() \
        == RECIPIENTS + 1
    assert set(Notification.objects.filter(bulk=bulk).values_list("title", "body")
               .distinct()) == {("We are live", "Welcome aboard.")}


@pytest.mark.django_db
def test_a_second_fan_out_run_sends_nobody_twice():
    # given: a bulk half fanned out when its worker died, then queued again
    _users(30, "again")
    bulk = services.bulk_notification_create(created_by=None, kind="announcement", title="t",
                                             body="b", segment={"all": True})
    BulkNotification.objects.filter(pk=bulk.pk).update(status="queued")
    services.bulk_notification_fan_out(bulk_id=bulk.pk, batch_size=10, max_batches=2)
    # when
    services.bulk_notification_fan_out(bulk_id=bulk.pk, batch_size=10)
    services.bulk_notification_fan_out(bulk_id=bulk.pk, batch_size=10)
    # then
    recipients = [e.payload["recipient_id"] for e in
                  OutboxEvent.objects.filter(type="notification.requested")]
    assert len(recipients) == len(set(recipients)) == 30


@pytest.mark.django_db
def test_segments_pick_their_users():
    # given
    old = make_user()
    verified = make_user(phone="+14155550100")
    User.objects.filter(pk=verified.pk).update(phone_verified_at="2026-01-01T00:00:00Z")
    User.objects.filter(pk=old.pk).update(date_joined="2020-01-01T00:00:00Z")
    # then
    def ids(segment):
        return sorted(services.bulk_recipients(segment).values_list("pk", flat=True))

    assert ids({"phone_verified": True}) == [verified.pk]
    assert ids({"joined_before": "2021-01-01"}) == [old.pk]
    assert ids({"user_ids": [old.pk]}) == [old.pk]
    assert ids({"all": True}) == sorted([old.pk, verified.pk])


@pytest.mark.django_db
def test_marketing_bulk_reaches_only_users_who_opted_in():
    # given
    from .helpers import request, route

    fan, other = make_user(email="f@example.com"), make_user(email="o@example.com")
    services.preferences_update(user=fan, channels=[
        {"kind": "marketing", "channel": "email", "enabled": True}])
    # when: the fanned-out requests are routed
    for user in (fan, other):
        route(request(user, kind="marketing", title="Offer", body="Coins -20%"))
    # then
    assert [e.payload["to"] for e in OutboxEvent.objects.filter(type="email.requested")] == [
        "f@example.com"]
