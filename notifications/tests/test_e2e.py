"""End to end in the production shape: `run_relay` and two `consume` processes (the triggers,
`notifications`, and the router, `notifications-route`) as subprocesses, a real Celery worker
(in this process, on this test's own Redis queue) sending through the in-memory push backend.

Both consumers are killed with SIGKILL mid-stream and restarted; every like still gives its
author exactly one in-app notification and exactly one push."""

from __future__ import annotations

import time
import uuid
from collections import Counter

import pytest
from celery.contrib.testing.worker import start_worker
from django.db import connections

from notifications import services
from notifications import tasks as notification_tasks  # noqa: F401 - registers the tasks
from notifications.backends.push import MemoryPushBackend
from notifications.models import Delivery, Notification
from posts import services as posts
from relay.models import InboxEntry
from relay.testing import ManageProcess, create_topic, delete_topics
from relay.tests.relay_helpers import RelayProcess, create_relay_topics

from .helpers import client_for, device, make_user

pytestmark = pytest.mark.django_db(transaction=True)

LIKES = 100


def wait_for(predicate, *, timeout: float, what: str, every: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture
def topics(kafka_prefix):
    names = create_relay_topics()
    dlqs = [f"{kafka_prefix}{t}.dlq" for t in ("post-events", "notification-events")]
    for name in dlqs:
        create_topic(name, 3)
    yield
    delete_topics(names + dlqs)


@pytest.fixture
def celery_worker(channel_backends):
    """A real Celery worker (a thread of this process) on the test's queue."""
    from showoff.celery import app

    db = connections.databases["default"]
    max_age = db.get("CONN_MAX_AGE")
    db["CONN_MAX_AGE"] = 0  # the worker thread closes its connection after each task
    queue = channel_backends.NOTIFICATIONS_CELERY_QUEUE
    with start_worker(app, pool="solo", perform_ping_check=False, queues=[queue],
                      shutdown_timeout=30) as worker:
        yield worker
    db["CONN_MAX_AGE"] = max_age


def _consumers(env: dict[str, str], log_dir) -> list[ManageProcess]:
    return [
        ManageProcess(["consume", "post-events", "--consumer", "notifications",
                       "--batch-size", "5", "--poll-timeout", "0.2"], log_dir=log_dir, **env),
        ManageProcess(["consume", "notification-events", "--batch-size", "2",
                       "--poll-timeout", "0.2"], log_dir=log_dir, **env),
    ]


def test_likes_give_exactly_one_notification_and_one_push_each_through_kill_9(
        topics, celery_worker, channel_backends, tmp_path, settings):
    # given: A's post and a phone; LIKES people like it
    author = make_user(display_name="Ann")
    phone = device(author, "ann-phone")
    post = posts.post_create(author=author, text="my video")
    fans = [make_user() for _ in range(LIKES)]
    for fan in fans:
        posts.post_like(post_id=post.pk, user=fan)
    # A killed member holds its partitions until its session times out: keep that short.
    env = {"KAFKA_CONSUMER_GROUP": f"e2e-{uuid.uuid4().hex[:8]}",
           "CONSUMER_SESSION_TIMEOUT_MS": "6000",
           "NOTIFICATIONS_CELERY_QUEUE": channel_backends.NOTIFICATIONS_CELERY_QUEUE}
    relay = RelayProcess(tmp_path)
    triggers, router = _consumers(env, tmp_path)
    try:
        # when: both consumers are killed -9 while the stream is flowing, then restarted
        wait_for(lambda: Notification.objects.count() >= 3, timeout=90,
                 what="the first notifications")
        triggers.kill9()
        router.kill9()
        at_kill = Notification.objects.count()
        triggers, router = _consumers(env, tmp_path)
        wait_for(lambda: Notification.objects.count() >= LIKES, timeout=90,
                 what=f"{LIKES} notifications")
        # a kill between a commit and its Celery message leaves a delivery unqueued: the beat
        # sweep's job, run here by hand
        settings.NOTIFICATIONS_SWEEP_GRACE_SECONDS = 0
        services.deliveries_dispatch_due()
        wait_for(lambda: Delivery.objects.filter(status="sent").count() >= LIKES, timeout=60,
                 what=f"{LIKES} pushes sent")
        time.sleep(1.0)  # anything doubled would show up by now
    finally:
        for proc in (triggers, router):
            if proc.proc.poll() is None:
                proc.terminate()
        relay.terminate()
    # then: the kill really was mid-way
    print(f"notifications at the kill: {at_kill} of {LIKES}")
    assert 0 < at_kill < LIKES, at_kill
    notifications = list(Notification.objects.filter(recipient=author))
    assert len(notifications) == LIKES
    assert sorted(n.actor_id for n in notifications) == sorted(f.pk for f in fans)
    deliveries = list(Delivery.objects.filter(channel="push"))
    assert Counter(d.notification_id for d in deliveries) == {n.pk: 1 for n in notifications}
    assert {(d.status, d.device_id, d.attempts) for d in deliveries} == {("sent", phone.pk, 1)}
    sent_keys = [key for _, key in MemoryPushBackend.outbox]
    assert sorted(sent_keys) == sorted(str(d.pk) for d in deliveries)
    assert InboxEntry.objects.filter(consumer="notifications-route").count() == LIKES
    assert InboxEntry.objects.filter(consumer="notifications").count() == LIKES

    # when: A opts out of push for likes; one more like comes in
    client_for(author).patch("/api/notifications/preferences/", {"channels": [
        {"kind": "post_liked", "channel": "push", "enabled": False}]}, format="json")
    late = make_user(display_name="Late")
    posts.post_like(post_id=post.pk, user=late)
    relay = RelayProcess(tmp_path)
    triggers, router = _consumers(env, tmp_path)
    try:
        wait_for(lambda: Notification.objects.filter(actor=late).exists(), timeout=90,
                 what="the late like's notification")
        time.sleep(1.0)
    finally:
        for proc in (triggers, router, relay):
            proc.terminate()
    # then: in-app yes, push no
    [n] = Notification.objects.filter(actor=late)
    assert (n.in_app, n.title) == (True, "Late liked your post")
    assert Delivery.objects.filter(notification=n).count() == 0
    assert len(MemoryPushBackend.outbox) == LIKES
