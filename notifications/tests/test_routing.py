"""`notification.requested` → the in-app notification and the channels, by preferences."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from django.utils import timezone

from notifications import services
from notifications.models import Delivery, Notification, NotificationSettings, Preference
from relay.registry import PermanentError

from .helpers import device, events, make_user, request, route

pytestmark = pytest.mark.django_db


def test_a_request_creates_one_in_app_notification_and_one_push_delivery_per_device():
    # given
    author, fan = make_user(display_name="Ann"), make_user(display_name="Bob")
    phone, tablet = device(author, "token-phone"), device(author, "token-tablet", "ios")
    event = request(author, actor_id=fan.pk, context={"post_id": 7, "like_count": 2})
    # when
    route(event)
    # then
    [n] = Notification.objects.all()
    assert (n.request_id, n.recipient_id, n.kind, n.actor_id, n.in_app) == (
        event.id, author.pk, "post_liked", fan.pk, True)
    assert (n.title, n.body) == ("Bob liked your post", "Your post has 2 likes.")
    pushes = Delivery.objects.order_by("address")
    assert [(d.channel, d.address, d.device_id, d.status, d.notification_id) for d in pushes] == [
        ("push", "token-phone", phone.pk, "pending", n.pk),
        ("push", "token-tablet", tablet.pk, "pending", n.pk),
    ]
    assert pushes[0].payload == {
        "title": "Bob liked your post", "body": "Your post has 2 likes.", "platform": "android",
        "data": {"notification_id": str(n.pk), "kind": "post_liked", "post_id": "7"}}
    # likes are not emailed by default
    assert events("email.requested") == []


def test_routing_the_same_request_twice_makes_one_notification_and_one_delivery():
    # given
    author = make_user()
    device(author)
    event = request(author)
    route(event)
    # when
    route(event)
    # then
    assert Notification.objects.count() == 1
    assert Delivery.objects.count() == 1


def test_opting_out_of_push_for_likes_suppresses_the_push_not_the_in_app_one():
    # given
    author = make_user()
    device(author)
    services.preferences_update(user=author, channels=[
        {"kind": "post_liked", "channel": "push", "enabled": False}])
    # when
    route(request(author))
    # then
    assert Notification.objects.filter(recipient=author, in_app=True).count() == 1
    assert Delivery.objects.count() == 0


def test_opting_out_of_in_app_keeps_it_out_of_the_inbox_while_push_still_goes():
    # given
    author = make_user()
    device(author)
    services.preferences_update(user=author, channels=[
        {"kind": "post_liked", "channel": "in_app", "enabled": False}])
    # when
    route(request(author))
    # then
    [n] = Notification.objects.all()
    assert n.in_app is False
    assert Notification.objects.inbox(author).count() == 0
    assert Delivery.objects.filter(channel="push").count() == 1


def test_every_channel_off_records_nothing():
    # given
    author = make_user()
    for channel in ("in_app", "push", "email"):
        Preference.objects.create(user=author, kind="post_liked", channel=channel,
                                  enabled=False)
    # when
    route(request(author))
    # then
    assert Notification.objects.count() == 0


def test_marketing_is_off_by_default_everywhere():
    # given
    user = make_user()
    device(user)
    # when
    route(request(user, kind="marketing", title="Sale", body="50% off coins"))
    # then
    assert Notification.objects.count() == 0
    assert events("email.requested") == []


def test_marketing_email_goes_to_users_who_opted_in():
    # given
    user = make_user(email="fan@example.com", display_name="Fan")
    services.preferences_update(user=user, channels=[
        {"kind": "marketing", "channel": "email", "enabled": True}])
    event = request(user, kind="marketing", title="Sale", body="50% off coins")
    # when
    route(event)
    # then
    [n] = Notification.objects.all()
    assert n.in_app is False
    [email] = events("email.requested")
    assert email == {
        "to": "fan@example.com", "user_id": user.pk, "template": "marketing",
        "kind": "marketing", "context": {"title": "Sale", "body": "50% off coins",
                                         "recipient_name": "Fan"},
        "language": "en-us", "notification_id": n.pk,
        "requested_at": email["requested_at"]}


def test_a_withdrawal_is_emailed_by_default_and_texted_when_chosen():
    # given
    user = make_user(email="w@example.com", phone="+14155550123",
                     phone_verified_at=timezone.now())
    services.preferences_update(user=user, channels=[
        {"kind": "withdrawal_completed", "channel": "sms", "enabled": True}])
    # when
    route(request(user, kind="withdrawal_completed",
                  context={"withdrawal_id": 3, "amount": 1000, "fee": 0,
                           "payout_reference": "PO-9"}))
    # then
    [n] = Notification.objects.all()
    [email] = events("email.requested")
    assert (email["template"], email["context"]["title"], email["context"]["body"]) == (
        "transactional", "Your withdrawal was sent",
        "1000 coins are on their way (reference PO-9).")
    [sms] = events("sms.requested")
    assert {k: sms[k] for k in ("phone", "kind", "user_id", "template", "context",
                                "notification_id")} == {
        "phone": "+14155550123", "kind": "alert", "user_id": user.pk,
        "template": "notification", "notification_id": n.pk,
        "context": {"title": "Your withdrawal was sent",
                    "body": "1000 coins are on their way (reference PO-9)."}}


def test_an_unverified_phone_gets_no_sms():
    # given
    user = make_user(phone=None)
    services.preferences_update(user=user, channels=[
        {"kind": "withdrawal_completed", "channel": "sms", "enabled": True}])
    # when
    route(request(user, kind="withdrawal_completed",
                  context={"withdrawal_id": 3, "amount": 1, "fee": 0, "payout_reference": "x"}))
    # then
    assert events("sms.requested") == []


def test_quiet_hours_defer_push_to_their_end():
    # given: quiet all day long except one minute from now, in Berlin time
    user = make_user()
    device(user)
    tz = "Europe/Berlin"
    now = timezone.now().astimezone(dt.UTC)
    from zoneinfo import ZoneInfo

    local = now.astimezone(ZoneInfo(tz))
    start = (local - dt.timedelta(hours=1)).time().replace(second=0, microsecond=0)
    end = (local + dt.timedelta(hours=2)).time().replace(second=0, microsecond=0)
    NotificationSettings.objects.create(user=user, quiet_hours_start=start,
                                        quiet_hours_end=end, timezone=tz)
    # when
    route(request(user))
    # then
    [push] = Delivery.objects.all()
    expected_end = (local + dt.timedelta(hours=2)).replace(second=0, microsecond=0)
    assert push.next_attempt_at == expected_end
    assert push.deferred_reason.startswith("quiet hours until ")
    assert Notification.objects.inbox(user).count() == 1  # in-app is never held back


def test_the_recipients_language_translates_the_text():
    # given
    author, fan = make_user(), make_user(display_name="Bob")
    services.preferences_update(user=author, language="es")
    # when
    route(request(author, actor_id=fan.pk, context={"like_count": 3}))
    # then
    [n] = Notification.objects.all()
    assert (n.title, n.body) == ("A Bob le gustó tu publicación",
                                 "Tu publicación tiene 3 me gusta.")


def test_a_bulk_request_uses_its_own_text():
    # given
    user = make_user()
    # when
    route(request(user, kind="announcement", title="Maintenance tonight",
                  body="From 2 to 3 UTC."))
    # then
    [n] = Notification.objects.all()
    assert (n.kind, n.title, n.body) == ("announcement", "Maintenance tonight",
                                         "From 2 to 3 UTC.")


def test_a_request_can_narrow_the_channels():
    # given
    user = make_user()
    device(user)
    # when
    route(request(user, channels=["in_app"]))
    # then
    assert Notification.objects.count() == 1
    assert Delivery.objects.count() == 0


def test_an_inactive_recipient_gets_nothing():
    # given
    user = make_user(is_active=False)
    device(user)
    # when
    route(request(user))
    # then
    assert Notification.objects.count() == 0


def test_a_missing_recipient_or_an_unknown_kind_is_dead_lettered():
    # given
    user = make_user()
    ghost = request(user)
    ghost.data["recipient_id"] = 999_999
    unknown = request(user, kind="made_up")
    # then
    with pytest.raises(PermanentError, match="no user 999999"):
        route(ghost)
    with pytest.raises(PermanentError, match="unknown notification kind 'made_up'"):
        route(unknown)
    assert Notification.objects.count() == 0


def test_request_ids_of_derived_events_are_stable():
    # given: the same request routed in two databases would publish the same email event id
    user = make_user(email="x@example.com")
    event = request(user, kind="video_failed", context={"video_id": 1, "reason": "bad"})
    # when
    route(event)
    # then
    from outbox.models import OutboxEvent

    [row] = OutboxEvent.objects.filter(type="email.requested")
    assert row.event_id == uuid.uuid5(services._NAMESPACE, f"{event.id}:email")
