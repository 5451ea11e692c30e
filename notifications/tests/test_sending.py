"""Sending deliveries: one attempt at a time, retries with backoff, then `failed` with the
reason; invalid tokens; leases; resends; OTP sealing and expiry; email headers."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core import mail
from django.utils import timezone

from notifications import services
from notifications.backends import Rejected, TransientError
from notifications.backends.push import MemoryPushBackend
from notifications.backends.sms import MemorySmsBackend
from notifications.models import Delivery, Device, NotificationSettings
from outbox.events.sms_events import seal

from .helpers import consumed, device, handle, make_user, request, route

pytestmark = pytest.mark.django_db


def _push(user, token="tok-1") -> Delivery:
    device(user, token)
    route(request(user, context={"like_count": 1}))
    return Delivery.objects.get(channel="push")


def _send(delivery: Delivery) -> str:
    return services.delivery_send(delivery_id=delivery.pk)


def test_a_push_is_sent_with_the_delivery_id_as_its_idempotency_key():
    # given
    delivery = _push(make_user())
    # when
    outcome = _send(delivery)
    # then
    delivery.refresh_from_db()
    assert outcome == "sent"
    [(message, key)] = MemoryPushBackend.outbox
    assert (message.token, message.title, key) == ("tok-1", "Someone liked your post",
                                                   str(delivery.pk))
    assert (delivery.status, delivery.attempts, delivery.provider_message_id) == (
        "sent", 1, "memory-push-1")
    assert delivery.sent_at is not None and delivery.lease_until is None


def test_a_sent_delivery_is_never_sent_again():
    # given
    delivery = _push(make_user())
    _send(delivery)
    # when
    outcome = _send(delivery)
    # then
    assert outcome == "sent"
    assert len(MemoryPushBackend.outbox) == 1


def test_a_provider_failure_is_retried_with_backoff_then_failed_with_the_error(
        django_capture_on_commit_callbacks, settings):
    # given: the provider is down for every attempt
    settings.NOTIFICATIONS_RETRY_BACKOFF_SECONDS = 10
    settings.NOTIFICATIONS_RETRY_BACKOFF_MAX_SECONDS = 3600
    delivery = _push(make_user())
    MemoryPushBackend.failures.extend(TransientError("503 UNAVAILABLE") for _ in range(3))
    delays = []
    # when: three attempts, each after the previous one's backoff
    for _ in range(3):
        Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
        with django_capture_on_commit_callbacks() as callbacks:
            outcome = _send(delivery)
        delivery.refresh_from_db()
        if outcome == "pending":
            delays.append(round((delivery.next_attempt_at - timezone.now()).total_seconds()))
            assert len(callbacks) == 1  # the retry is queued with its countdown
    # then
    assert outcome == "failed"
    assert delays == [10, 20]
    assert (delivery.status, delivery.attempts, delivery.last_error) == (
        "failed", 3, "TransientError: 503 UNAVAILABLE")
    assert [h["outcome"] for h in delivery.history] == ["retry", "retry", "failed"]
    assert MemoryPushBackend.outbox == []


def test_a_retry_waits_for_the_providers_retry_after(settings):
    # given
    settings.NOTIFICATIONS_RETRY_BACKOFF_MAX_SECONDS = 3600
    delivery = _push(make_user())
    MemoryPushBackend.failures.append(TransientError("429 QUOTA_EXCEEDED", retry_after=120))
    # when
    _send(delivery)
    # then
    delivery.refresh_from_db()
    wait = (delivery.next_attempt_at - timezone.now()).total_seconds()
    assert 118 < wait <= 120
    assert _send(delivery) == "not_due"  # an early message does not jump the wait


def test_an_invalid_token_fails_at_once_and_removes_the_device():
    # given
    user = make_user()
    delivery = _push(user, token="dead-token")
    MemoryPushBackend.invalid_tokens.add("dead-token")
    # when
    outcome = _send(delivery)
    # then
    delivery.refresh_from_db()
    assert outcome == "failed"
    assert (delivery.attempts, delivery.device_id) == (1, None)
    assert "UNREGISTERED" in delivery.last_error
    assert Device.objects.filter(user=user).count() == 0
    with pytest.raises(services.ResendRefused, match="no longer registered"):
        services.delivery_resend(delivery_id=delivery.pk)


def test_a_rejected_message_is_not_retried():
    # given
    delivery = _push(make_user())
    MemoryPushBackend.failures.append(Rejected("400 INVALID_ARGUMENT: bad payload"))
    # when
    outcome = _send(delivery)
    # then
    delivery.refresh_from_db()
    assert (outcome, delivery.attempts, delivery.last_error) == (
        "failed", 1, "400 INVALID_ARGUMENT: bad payload")


def test_a_delivery_being_sent_is_not_sent_by_a_second_worker():
    # given: another worker claimed it a moment ago
    delivery = _push(make_user())
    Delivery.objects.filter(pk=delivery.pk).update(
        status="sending", attempts=1, lease_until=timezone.now() + dt.timedelta(minutes=2))
    # when
    outcome = _send(delivery)
    # then
    assert outcome == "in_flight"
    assert MemoryPushBackend.outbox == []


def test_a_worker_that_died_mid_send_is_replaced_after_its_lease_with_the_same_key(settings):
    # given: a claim whose lease ran out (the worker was killed -9)
    settings.NOTIFICATIONS_SWEEP_GRACE_SECONDS = 0
    delivery = _push(make_user())
    Delivery.objects.filter(pk=delivery.pk).update(
        status="sending", attempts=1, lease_until=timezone.now() - dt.timedelta(seconds=1))
    # when: the sweep finds it and a worker sends it
    from showoff.celery import app

    app.conf.task_always_eager = True
    try:
        queued = services.deliveries_dispatch_due()
    finally:
        app.conf.task_always_eager = False
    # then
    delivery.refresh_from_db()
    assert queued == 1
    assert (delivery.status, delivery.attempts) == ("sent", 2)
    [(_, key)] = MemoryPushBackend.outbox
    assert key == str(delivery.pk)


def test_a_late_outcome_of_an_expired_claim_does_not_overwrite_the_newer_one():
    # given: attempt 1's lease expired and attempt 2 took over
    delivery = _push(make_user())
    Delivery.objects.filter(pk=delivery.pk).update(status="sending", attempts=2)
    # when: attempt 1 comes back late with an error
    outcome = services._delivery_record_outcome(delivery_id=delivery.pk, attempt=1,
                                                kind="transient", provider_id="",
                                                error="timeout", retry_after=None)
    # then
    delivery.refresh_from_db()
    assert outcome == "superseded"
    assert (delivery.status, delivery.attempts, delivery.last_error) == ("sending", 2, "")


def test_resending_a_failed_delivery_sends_it_with_a_fresh_round_of_attempts():
    # given
    admin = make_user(is_staff=True)
    delivery = _push(make_user())
    MemoryPushBackend.failures.append(Rejected("401 THIRD_PARTY_AUTH_ERROR"))
    _send(delivery)
    # when
    services.delivery_resend(delivery_id=delivery.pk, by=admin)
    outcome = _send(delivery)
    # then
    delivery.refresh_from_db()
    assert outcome == "sent"
    assert (delivery.status, delivery.attempts, delivery.last_error) == ("sent", 1, "")
    assert [h["outcome"] for h in delivery.history] == ["rejected", "resend", "sent"]
    assert delivery.history[1]["by"] == admin.username
    assert [key for _, key in MemoryPushBackend.outbox] == [str(delivery.pk)]


def test_a_sent_delivery_cannot_be_resent():
    delivery = _push(make_user())
    _send(delivery)
    with pytest.raises(services.ResendRefused, match="is sent; only failed or cancelled"):
        services.delivery_resend(delivery_id=delivery.pk)


# --- SMS ------------------------------------------------------------------------------------


def _sms_event(phone="+14155550123", *, kind="otp", user=None, secret="123456",
               not_after=None, **extra):
    data = {"phone": phone, "kind": kind, "user_id": user.pk if user else None,
            "body": None, "template": "phone_verification_code",
            "context": {"expires_in_minutes": 10},
            "secret": seal(secret) if secret else None,
            "not_after": not_after or (timezone.now() + dt.timedelta(minutes=10)).isoformat(),
            "requested_at": timezone.now().isoformat()}
    data.update(extra)
    return consumed("sms.requested", data)


def test_an_otp_is_stored_sealed_and_opened_only_to_send():
    # given
    user = make_user()
    handle("notifications-sms", _sms_event(user=user, secret="654321"))
    delivery = Delivery.objects.get(channel="sms")
    # then: the row holds no readable code
    assert "654321" not in str(delivery.payload)
    # when
    _send(delivery)
    # then
    [(message, key)] = MemorySmsBackend.outbox
    assert message.to == "+14155550123"
    assert message.body == ("Your ShowOff code is 654321. It expires in 10 minutes. "
                            "Never share it.")
    assert 590 <= message.validity_seconds <= 600
    assert key == str(delivery.pk)


def test_an_otp_ignores_quiet_hours_other_sms_wait_for_their_end():
    # given: a user inside quiet hours right now
    user = make_user(phone="+14155550123", phone_verified_at=timezone.now())
    now = timezone.now()
    NotificationSettings.objects.create(
        user=user, timezone="UTC",
        quiet_hours_start=(now - dt.timedelta(hours=1)).time().replace(second=0, microsecond=0),
        quiet_hours_end=(now + dt.timedelta(hours=1)).time().replace(second=0, microsecond=0))
    # when
    handle("notifications-sms", _sms_event(user=user))
    handle("notifications-sms", _sms_event(user=user, kind="alert", secret=None,
                                           template=None, body="Login from a new device",
                                           not_after=None))
    # then
    otp, alert = Delivery.objects.order_by("created_at")
    assert otp.deferred_reason == "" and otp.next_attempt_at <= timezone.now()
    assert alert.deferred_reason.startswith("quiet hours until ")
    assert alert.next_attempt_at > now + dt.timedelta(minutes=55)


def test_marketing_sms_needs_an_opt_in_and_an_otp_does_not():
    # given
    user = make_user()
    services.preferences_update(user=user, channels=[
        {"kind": "marketing", "channel": "sms", "enabled": False}])
    # when
    handle("notifications-sms", _sms_event(user=user, kind="marketing", secret=None,
                                           template=None, body="Sale!", not_after=None))
    handle("notifications-sms", _sms_event(user=user))
    # then
    assert list(Delivery.objects.values_list("payload__kind", flat=True)) == ["otp"]


def test_an_expired_code_is_not_sent():
    # given: the code expired while the record waited
    handle("notifications-sms", _sms_event(
        not_after=(timezone.now() - dt.timedelta(seconds=1)).isoformat()))
    delivery = Delivery.objects.get()
    # when
    outcome = _send(delivery)
    # then
    assert (delivery.status, delivery.last_error) == ("cancelled",
                                                      "expired before it could be sent")
    assert outcome == "cancelled"
    assert MemorySmsBackend.outbox == []


def test_the_same_sms_request_twice_records_one_delivery():
    event = _sms_event()
    handle("notifications-sms", event)
    handle("notifications-sms", event)
    assert Delivery.objects.count() == 1


def test_an_unknown_sms_template_or_a_bad_seal_is_dead_lettered():
    from relay.registry import PermanentError

    with pytest.raises(PermanentError, match="no SMS template 'nope'"):
        handle("notifications-sms", _sms_event(template="nope"))
    event = _sms_event()
    event.data["secret"] = "not-a-fernet-token"
    with pytest.raises(PermanentError, match="sealed secret cannot be opened"):
        handle("notifications-sms", event)


# --- email ----------------------------------------------------------------------------------


def _email_event(user, template="notification", **extra):
    data = {"to": user.email, "user_id": user.pk, "template": template, "kind": None,
            "context": {"title": "Your video is ready", "body": "Go & see"},
            "language": None, "notification_id": None,
            "requested_at": timezone.now().isoformat()}
    data.update(extra)
    return consumed("email.requested", data)


def test_an_email_is_rendered_and_sent_with_the_delivery_id_as_message_id():
    # given
    user = make_user(email="ann@example.com", display_name="Ann")
    handle("notifications-email", _email_event(user))
    delivery = Delivery.objects.get(channel="email")
    # when
    outcome = _send(delivery)
    # then
    [msg] = mail.outbox
    assert outcome == "sent"
    assert (msg.to, msg.subject) == (["ann@example.com"], "Your video is ready")
    assert msg.extra_headers["Message-ID"] == f"<{delivery.pk}@showoff.life>"
    assert "Hi Ann," in msg.body and "Go & see" in msg.body
    html, mimetype = msg.alternatives[0]
    assert mimetype == "text/html" and "Go &amp; see" in html
    delivery.refresh_from_db()
    assert delivery.provider_message_id == f"<{delivery.pk}@showoff.life>"


def test_a_marketing_email_needs_an_opt_in_and_carries_a_working_unsubscribe_link(client):
    # given: one user opted in, one did not
    fan, other = make_user(email="fan@example.com"), make_user(email="other@example.com")
    services.preferences_update(user=fan, channels=[
        {"kind": "marketing", "channel": "email", "enabled": True}])
    # when
    for user in (fan, other):
        handle("notifications-email", _email_event(user, template="marketing",
                                                   kind="marketing"))
    for delivery in Delivery.objects.all():
        _send(delivery)
    # then
    [msg] = mail.outbox
    assert msg.to == ["fan@example.com"]
    url = msg.extra_headers["List-Unsubscribe"].strip("<>")
    assert msg.extra_headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert f"Unsubscribe: {url}" in msg.body
    assert url.startswith("http://127.0.0.1:8000/api/notifications/unsubscribe/")
    path = url.removeprefix("http://127.0.0.1:8000")
    # when: the link is opened (a page), then confirmed (what one-click clients POST)
    page = client.get(path)
    confirmed = client.post(path)
    # then
    assert page.status_code == 200 and b"Stop receiving news and offers" in page.content
    assert confirmed.status_code == 200 and b"You are unsubscribed." in confirmed.content
    assert services.selectors.preferences_get(user_id=fan.pk).overrides[
        ("marketing", "email")] is False
    # and the next marketing email is not sent
    handle("notifications-email", _email_event(fan, template="marketing", kind="marketing"))
    assert Delivery.objects.filter(address="fan@example.com").count() == 1


def test_a_forged_unsubscribe_link_changes_nothing(client):
    # given
    user = make_user()
    token = services.unsubscribe_token(user_id=user.pk)
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    # when
    resp = client.post(f"/api/notifications/unsubscribe/{forged}/")
    # then
    assert resp.status_code == 400 and b"not valid" in resp.content
    assert services.selectors.preferences_get(user_id=user.pk).overrides == {}


def test_an_email_refused_by_the_server_fails_without_retry(settings):
    # given
    settings.EMAIL_BACKEND = "notifications.tests.test_sending.RefusingBackend"
    user = make_user(email="gone@example.com")
    handle("notifications-email", _email_event(user))
    delivery = Delivery.objects.get()
    # when
    outcome = _send(delivery)
    # then
    delivery.refresh_from_db()
    assert (outcome, delivery.attempts) == ("failed", 1)
    assert delivery.last_error == "recipient refused: {'gone@example.com': (550, b'no such user')}"


class RefusingBackend:
    def __init__(self, *args, **kwargs):
        pass

    def send_messages(self, messages):
        import smtplib

        raise smtplib.SMTPRecipientsRefused({"gone@example.com": (550, b"no such user")})


def test_dispatch_due_queues_deliveries_due_after_quiet_hours(django_capture_on_commit_callbacks,
                                                              settings):
    # given: one deferred past its end, one deferred to the future, one freshly queued
    settings.NOTIFICATIONS_SWEEP_GRACE_SECONDS = 60
    user = make_user()
    for token in ("a", "b", "c"):
        device(user, f"token-{token}")
    route(request(user))
    past, future, fresh = Delivery.objects.order_by("address")
    now = timezone.now()
    Delivery.objects.filter(pk=past.pk).update(next_attempt_at=now - dt.timedelta(seconds=1),
                                               deferred_reason="quiet hours until …")
    Delivery.objects.filter(pk=future.pk).update(next_attempt_at=now + dt.timedelta(hours=1),
                                                 deferred_reason="quiet hours until …")
    # when
    from showoff.celery import app

    app.conf.task_always_eager = True
    try:
        queued = services.deliveries_dispatch_due()
    finally:
        app.conf.task_always_eager = False
    # then
    assert queued == 1
    assert [d.address for d in Delivery.objects.filter(status="sent")] == ["token-a"]
    assert fresh.status == "pending"
