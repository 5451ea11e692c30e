"""The admin: read-only records, the resend and start-sending actions, no secret shown."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from notifications import services
from notifications.models import BulkNotification, Delivery
from outbox.events.sms_events import seal

from .helpers import consumed, device, handle, make_user, request, route

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client):
    client.force_login(make_user(is_staff=True, is_superuser=True))
    return client


def test_every_notifications_admin_page_renders(admin_client):
    # given
    user = make_user()
    device(user)
    route(request(user))
    services.preferences_update(user=user, language="es", channels=[
        {"kind": "post_liked", "channel": "email", "enabled": True}])
    services.bulk_notification_create(created_by=None, kind="announcement", title="t",
                                      body="b", segment={"all": True})
    delivery = Delivery.objects.get()
    # then
    for path in ("notification", "delivery", "device", "preference", "notificationsettings",
                 "bulknotification"):
        assert admin_client.get(f"/admin/notifications/{path}/").status_code == 200, path
    page = admin_client.get(f"/admin/notifications/delivery/{delivery.pk}/change/")
    assert page.status_code == 200 and b"Someone liked your post" in page.content


def test_an_otp_delivery_shows_its_code_sealed(admin_client):
    # given
    handle("notifications-sms", consumed("sms.requested", {
        "phone": "+14155550123", "kind": "otp", "user_id": None, "body": None,
        "template": "phone_verification_code", "context": {"expires_in_minutes": 10},
        "secret": seal("777111"),
        "not_after": (timezone.now() + dt.timedelta(minutes=5)).isoformat(),
        "requested_at": timezone.now().isoformat()}))
    delivery = Delivery.objects.get()
    # when
    page = admin_client.get(f"/admin/notifications/delivery/{delivery.pk}/change/")
    # then
    assert b"(sealed)" in page.content
    assert delivery.payload["secret"].encode() not in page.content


def test_resending_a_sent_delivery_is_refused_with_the_reason(admin_client):
    # given
    user = make_user()
    device(user)
    route(request(user))
    delivery = Delivery.objects.get()
    services.delivery_send(delivery_id=delivery.pk)
    # when
    resp = admin_client.post("/admin/notifications/delivery/", {
        "action": "resend", "_selected_action": [str(delivery.pk)]}, follow=True)
    # then
    assert b"is sent; only failed or cancelled deliveries can be resent" in resp.content
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("sent", 1)


def test_a_bulk_send_is_drafted_in_the_admin_then_started_by_its_action(
        admin_client, django_capture_on_commit_callbacks):
    # given
    make_user()
    created = admin_client.post("/admin/notifications/bulknotification/add/", {
        "kind": "announcement", "title": "New feature", "body": "Duets are here.",
        "segment": '{"all": true}'})
    assert created.status_code == 302, created.content
    bulk = BulkNotification.objects.get()
    assert bulk.status == "draft"
    # when
    with django_capture_on_commit_callbacks() as queued:
        resp = admin_client.post("/admin/notifications/bulknotification/", {
            "action": "start_sending", "_selected_action": [str(bulk.pk)]}, follow=True)
    # then
    bulk.refresh_from_db()
    assert bulk.status == "queued"
    assert bulk.recipients_expected == 2  # the user and the admin
    assert f"Bulk {bulk.pk} queued for 2 recipients.".encode() in resp.content
    assert len(queued) == 1
    # and starting it again is refused
    again = admin_client.post("/admin/notifications/bulknotification/", {
        "action": "start_sending", "_selected_action": [str(bulk.pk)]}, follow=True)
    assert b"only a draft can be started" in again.content


def test_a_bad_bulk_segment_is_refused_by_the_admin_form(admin_client):
    resp = admin_client.post("/admin/notifications/bulknotification/add/", {
        "kind": "announcement", "title": "t", "body": "b", "segment": '{"everyone": 1}'})
    assert resp.status_code == 200
    assert b"Give {&quot;all&quot;: true} or filters" in resp.content
    assert BulkNotification.objects.count() == 0
