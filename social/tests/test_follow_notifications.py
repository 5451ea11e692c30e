"""The "new follower" notification: made by the notifications pipeline from `user.followed`,
and only on the channels the followed user's preferences allow."""

from __future__ import annotations

import pytest

from accounts.tests.fixtures import client_for
from notifications.models import Notification
from notifications.tests.helpers import consumed, handle
from outbox.models import OutboxEvent

pytestmark = pytest.mark.django_db


def _run_notifications() -> None:
    """The outbox's user.followed events through the notifications consumers' handlers."""
    for row in OutboxEvent.objects.filter(type="user.followed").order_by("id"):
        handle("notifications", consumed(row.type, row.payload, event_id=row.event_id))
    for row in OutboxEvent.objects.filter(type="notification.requested").order_by("id"):
        handle("notifications-route", consumed(row.type, row.payload, event_id=row.event_id))


def test_a_new_follower_is_announced_in_app(alice, bob, as_bob):
    as_bob.post(f"/api/users/{alice.pk}/follow/")
    _run_notifications()
    [n] = Notification.objects.filter(recipient=alice)
    assert (n.kind, n.actor_id, n.in_app) == ("new_follower", bob.pk, True)
    assert "started following you" in n.title


def test_no_new_follower_notification_when_the_user_turned_it_off(alice, bob, as_bob):
    resp = client_for(alice).patch("/api/notifications/preferences/", {"channels": [
        {"kind": "new_follower", "channel": channel, "enabled": False}
        for channel in ("in_app", "push", "email")]}, format="json")
    assert resp.status_code == 200
    as_bob.post(f"/api/users/{alice.pk}/follow/")
    _run_notifications()
    assert Notification.objects.filter(recipient=alice).count() == 0
