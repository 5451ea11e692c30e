"""Through the real relay and the real consumers (in-process, on this test's own topics):
registration → welcome email, OTP → one SMS with the code, a like → in-app + push, with
Celery sending in this process (eager) so the locmem and in-memory outboxes can be read."""

from __future__ import annotations

import pytest
from django.core import mail

from notifications.backends.push import MemoryPushBackend
from notifications.backends.sms import MemorySmsBackend
from notifications.models import Delivery, Notification
from outbox.events.sms_events import unseal
from posts import services as posts
from relay import dlq
from relay.models import InboxEntry

from .helpers import client_for, device, events, make_user

pytestmark = pytest.mark.django_db(transaction=True)


def test_registration_sends_one_welcome_email_with_the_users_name(pipeline):
    # when
    resp = client_for(None).post("/api/auth/register/", {
        "username": "ann", "password": "correct-Horse-battery-9", "email": "ann@example.com",
        "display_name": "Ann Example"})
    assert resp.status_code == 201, resp.content
    pipeline.run_until(lambda: len(mail.outbox) >= 2)
    pipeline.settle()
    # then: the welcome, and the verification link (accounts/tests/test_recovery_pipeline.py)
    assert sorted(m.subject for m in mail.outbox) == [
        "Confirm your email address for ShowOff", "Welcome to ShowOff, Ann Example!"]
    [msg] = [m for m in mail.outbox if m.subject.startswith("Welcome")]
    assert msg.to == ["ann@example.com"]
    assert msg.body.startswith("Hi Ann Example,\n\nWelcome to ShowOff!")
    assert "Hi Ann Example," in msg.alternatives[0][0]
    [welcome] = Notification.objects.filter(kind="welcome")
    assert welcome.title == "Welcome to ShowOff, Ann Example!"
    [email] = Delivery.objects.filter(channel="email", notification__isnull=False)
    assert (email.status, email.attempts, email.notification_id) == ("sent", 1, welcome.pk)


def test_an_otp_request_sends_exactly_one_sms_with_the_code(pipeline):
    # given
    user = make_user()
    # when
    resp = client_for(user).post("/api/me/phone/code/", {"phone": "+14155550123"})
    assert resp.status_code in (200, 201, 202), resp.content
    pipeline.run_until(lambda: len(MemorySmsBackend.outbox) >= 1,
                       consumers=["notifications-sms"])
    pipeline.settle(consumers=["notifications-sms"])
    # then
    [event] = events("sms.requested")
    code = unseal(event["secret"])
    [(message, key)] = MemorySmsBackend.outbox
    assert message.to == "+14155550123"
    assert message.body == (f"Your ShowOff code is {code}. It expires in 10 minutes. "
                            "Never share it.")
    [delivery] = Delivery.objects.filter(channel="sms")
    assert (str(delivery.pk), delivery.status) == (key, "sent")
    assert code not in str(delivery.payload)


def test_a_like_gives_the_author_one_in_app_notification_and_one_push_unless_opted_out(
        pipeline):
    # given
    author, fan, other = (make_user(display_name="Ann"), make_user(display_name="Bob"),
                          make_user(display_name="Cy"))
    device(author, "ann-phone")
    post = posts.post_create(author=author, text="my first video")
    # when
    posts.post_like(post_id=post.pk, user=fan)
    pipeline.run_until(lambda: len(MemoryPushBackend.outbox) >= 1)
    pipeline.settle()
    # then
    [n] = Notification.objects.filter(recipient=author)
    assert (n.kind, n.title, n.actor_id) == ("post_liked", "Bob liked your post", fan.pk)
    [(message, key)] = MemoryPushBackend.outbox
    assert (message.token, message.title, message.data["post_id"]) == (
        "ann-phone", "Bob liked your post", str(post.pk))
    assert key == str(Delivery.objects.get(notification=n).pk)
    # when: the author turns push off for likes, and someone else likes it
    client_for(author).patch("/api/notifications/preferences/", {"channels": [
        {"kind": "post_liked", "channel": "push", "enabled": False}]}, format="json")
    posts.post_like(post_id=post.pk, user=other)
    pipeline.run_until(lambda: Notification.objects.filter(recipient=author).count() >= 2)
    pipeline.settle()
    # then: in-app yes, push no
    titles = list(Notification.objects.filter(recipient=author).order_by("id")
                  .values_list("title", flat=True))
    assert titles == ["Bob liked your post", "Cy liked your post"]
    assert len(MemoryPushBackend.outbox) == 1
    assert Delivery.objects.filter(channel="push").count() == 1
    assert client_for(author).get("/api/notifications/unread-count/").json() == {"unread": 2}


def test_like_unlike_like_again_notifies_the_author_once(pipeline):
    # given: Ann's post and phone; Bob likes it, unlikes it and likes it again through the API
    ann, bob = make_user(display_name="Ann"), make_user(display_name="Bob")
    device(ann, "ann-phone")
    post = posts.post_create(author=ann, text="my video")
    api = client_for(bob)
    url = f"/api/posts/{post.pk}/like/"
    assert api.post(url).status_code in (200, 201)
    assert api.delete(url).status_code in (200, 204)
    assert api.post(url).status_code in (200, 201)
    # when: everything is relayed and consumed
    pipeline.run_until(lambda: len(events("post.liked")) == 2
                       and InboxEntry.objects.filter(consumer="notifications").count() >= 2)
    pipeline.run_until(lambda: len(MemoryPushBackend.outbox) >= 1)
    pipeline.settle()
    # then: the two likes asked for one notification: one in-app line, one push
    assert len(events("post.liked")) == 2
    assert len(events("notification.requested")) == 1
    [n] = Notification.objects.filter(recipient=ann)
    assert (n.kind, n.title, n.actor_id) == ("post_liked", "Bob liked your post", bob.pk)
    assert len(MemoryPushBackend.outbox) == 1
    assert client_for(ann).get("/api/notifications/unread-count/").json() == {"unread": 1}
    # when: Bob unlikes and likes once more, after Ann has read it
    client_for(ann).post("/api/notifications/read-all/")
    api.delete(url)
    api.post(url)
    pipeline.run_until(lambda: len(events("post.liked")) == 3
                       and InboxEntry.objects.filter(consumer="notifications").count() >= 3)
    pipeline.settle()
    # then: still one
    assert Notification.objects.filter(recipient=ann).count() == 1
    assert len(MemoryPushBackend.outbox) == 1


def test_a_request_for_a_user_that_does_not_exist_is_dead_lettered_not_retried(pipeline):
    # given
    from django.db import transaction

    from notifications import services

    with transaction.atomic():
        event_id = services.notification_request(recipient_id=987_654, kind="announcement",
                                                 title="hi", body="there")
    # when
    pipeline.run_until(lambda: InboxEntry.objects.filter(event_id=event_id).exists()
                       or pipeline.consumer("notifications-route").handled >= 1,
                       consumers=["notifications-route"])
    # then
    [letter] = dlq.read_dead_letters("notification-events")
    assert letter.original_event_id == str(event_id)
    assert letter.attempts == 1
    assert "no user 987654" in letter.reason
    assert Notification.objects.count() == 0
