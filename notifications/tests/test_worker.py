"""A real Celery worker (a thread of this process, on this test's own Redis queue): a provider
failure is retried with backoff, then the delivery stays `failed` with the error; the admin's
resend action sends it."""

from __future__ import annotations

import time
from datetime import datetime

import pytest
from celery.contrib.testing.worker import start_worker
from django.db import connections

from notifications import tasks as notification_tasks  # noqa: F401 - registers the tasks
from notifications.backends import TransientError
from notifications.backends.push import MemoryPushBackend
from notifications.models import Delivery

from .helpers import device, make_user, request, route

pytestmark = pytest.mark.django_db(transaction=True)


def wait_for(predicate, *, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture
def celery_worker(channel_backends):
    from showoff.celery import app

    db = connections.databases["default"]
    max_age = db.get("CONN_MAX_AGE")
    db["CONN_MAX_AGE"] = 0  # the worker thread closes its connection after each task
    with start_worker(app, pool="solo", perform_ping_check=False,
                      queues=[channel_backends.NOTIFICATIONS_CELERY_QUEUE],
                      shutdown_timeout=30) as worker:
        yield worker
    db["CONN_MAX_AGE"] = max_age


def test_a_provider_outage_is_retried_with_backoff_then_failed_and_the_admin_resends_it(
        celery_worker, channel_backends, client):
    # given: the push provider answers 503 to every attempt
    channel_backends.NOTIFICATIONS_RETRY_BACKOFF_SECONDS = 0.3
    channel_backends.NOTIFICATIONS_RETRY_BACKOFF_MAX_SECONDS = 5
    author = make_user()
    device(author, "ann-phone")
    MemoryPushBackend.failures.extend(
        TransientError("FCM 503 UNAVAILABLE: The service is currently unavailable.")
        for _ in range(3))
    # when: a notification is routed (the send is queued after the commit)
    route(request(author, context={"like_count": 1}))
    wait_for(lambda: Delivery.objects.filter(status="failed").exists(), timeout=30,
             what="the delivery to fail")
    # then: three attempts, the second 0.3 s and the third 0.6 s after the one before
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.attempts) == ("failed", 3)
    assert delivery.last_error == ("TransientError: FCM 503 UNAVAILABLE: The service is "
                                   "currently unavailable.")
    history = delivery.history
    assert [(h["attempt"], h["outcome"]) for h in history] == [
        (1, "retry"), (2, "retry"), (3, "failed")]
    assert [h["retry_in"] for h in history[:2]] == [0.3, 0.6]
    at = [datetime.fromisoformat(h["at"]) for h in history]
    assert (at[1] - at[0]).total_seconds() >= 0.3
    assert (at[2] - at[1]).total_seconds() >= 0.6
    assert MemoryPushBackend.outbox == []

    # when: the provider is back and an operator resends it from the admin
    admin = make_user(is_staff=True, is_superuser=True)
    client.force_login(admin)
    resp = client.post("/admin/notifications/delivery/", {
        "action": "resend", "_selected_action": [str(delivery.pk)]}, follow=True)
    assert b"1 delivery queued to be sent again." in resp.content
    wait_for(lambda: Delivery.objects.filter(status="sent").exists(), timeout=30,
             what="the resent delivery to be sent")
    # then
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_error) == ("sent", 1, "")
    assert delivery.history[3]["outcome"] == "resend"
    assert delivery.history[3]["by"] == admin.username
    [(message, key)] = MemoryPushBackend.outbox
    assert (message.token, key) == ("ann-phone", str(delivery.pk))
