"""Notifications consumers: likes turned into notifications and push deliveries, per process.

    .venv/bin/python bench/notifications_routing.py [--likes 10000] [--rounds 3]

Two stages of one like's way to its author, each measured on its own consumer, in process (one
thread, the real `ConsumerWorker` and the real batch handlers), against the same runtime over the
same records with a batch handler that does nothing (registered for the same type, so both
apply and write inbox rows for every record; the ratio is what the stage costs on top of the
runtime's floor):

1. triggers, consumer `notifications` (post-events): `--likes` `post.liked` events, each by a
   different person on one of many posts, each becoming one `notification.requested` outbox
   row (trigger, blocks between the two users, the once-per-liker-and-post id, one
   `publish_bulk` per batch);
2. routing, consumer `notifications-route` (notification-events): `--likes` `post_liked`
   requests, each recipient with one push device, each becoming an in-app notification and a
   push delivery (recipients' settings, preferences and devices read once per batch, the
   title and body rendered from the kind's templates in the recipient's language, one INSERT
   for the notifications and one for the deliveries, the sends queued on Celery after the
   commit in chunks; the queue is this run's own and is emptied afterwards).

Interleaved rounds (the order alternates), everything each stage writes reset before each run,
medians. Reported per run: handled, applied (inbox rows), skipped. Asserted: each run handled
and applied every record once and skipped none; triggers wrote exactly one request per like;
routing wrote exactly one notification and one push delivery per request, all distinct.
`chain_likes_per_s_one_process` is computed (1 / (1/triggers + 1/routing)): one process running
both consumers, the relay between them elsewhere. Target: routing >= 2,000 likes/s.

Runs on its own database (`showoff_bench_notifications_routing`, created and migrated if
missing) and topic prefix; prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import uuid

from _setup import setup_django

NOOP = "bench-noop"


def _noop(events) -> None:
    return None


def _users(n: int, prefix: str) -> list[int]:
    from django.contrib.auth.hashers import make_password

    from accounts.models import User
    from notifications.models import Device

    password = make_password(None)
    for start in range(0, n, 5000):
        User.objects.bulk_create([User(username=f"{prefix}{i}", password=password)
                                  for i in range(start, min(n, start + 5000))])
    ids = list(User.objects.filter(username__startswith=prefix).order_by("pk")
               .values_list("pk", flat=True))
    Device.objects.bulk_create([Device(user_id=i, platform="android",
                                       token=f"bench-{i}-{uuid.uuid4().hex}") for i in ids],
                               batch_size=5000)
    return ids


def _consume(name: str, topics: list[str], n: int) -> dict:
    """Consumer `name` in a fresh group until it has handled n records: events/s from its
    first finished batch to its n-th record, and what it did."""
    from django.db import connection

    from relay import metrics
    from relay.consumer import ConsumerWorker

    skipped_before = metrics.consumer_skipped.total(consumer=name)
    worker = ConsumerWorker(name, topics, group_id=f"bench-{name}-{uuid.uuid4().hex[:6]}",
                            from_beginning=True, poll_timeout=0.2)
    worker.start()
    try:
        while worker.handled == 0:
            worker.step()
        first, t0 = worker.handled, time.perf_counter()
        while worker.handled < n:
            worker.step()
        rate = (worker.handled - first) / (time.perf_counter() - t0)
    finally:
        worker.close()
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM relay_inbox WHERE consumer = %s", [name])
        applied = cur.fetchone()[0]
    return {"events_per_s": round(rate, 1), "handled": worker.handled, "applied": applied,
            "skipped": int(metrics.consumer_skipped.total(consumer=name) - skipped_before)}


def _sql(statement: str, params=()) -> list:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(statement, params)
        return cur.fetchall() if cur.description else []


def _stage(name: str, topic: str, event_type: str, n: int, rounds: int, reset, check) -> dict:
    """Interleaved rounds of consumer `name` and the no-op baseline over the same records."""
    from relay import registry

    registry.register(NOOP, event_type, _noop, batch=True)
    try:
        runs: dict[str, list[dict]] = {name: [], NOOP: []}
        for r in range(rounds):
            for who in ([name, NOOP] if r % 2 == 0 else [NOOP, name]):
                reset()
                _sql("DELETE FROM relay_inbox WHERE consumer = ANY(%s)", [[name, NOOP]])
                result = _consume(who, [topic], n)
                assert result["handled"] == n, result
                assert result["applied"] == n and result["skipped"] == 0, result
                if who == name:
                    check()
                runs[who].append(result)
    finally:
        registry.unregister(NOOP, event_type, _noop)
    median = {who: statistics.median(r["events_per_s"] for r in rs) for who, rs in runs.items()}
    return {"runs": {"measured": runs[name], "noop_batch_handler": runs[NOOP]},
            "likes_per_s": median[name], "baseline_noop_batch_handler_per_s": median[NOOP],
            "ratio_to_noop": round(median[name] / median[NOOP], 3)}


def bench(n: int, rounds: int) -> dict:
    from django.conf import settings

    from notifications.handlers import ROUTE
    from notifications.triggers import CONSUMER as TRIGGERS
    from outbox.services import Event
    from relay import testing as kt
    from relay.kafka import topic_name

    names = []
    for t in ("post-events", "notification-events"):
        names += [kt.create_topic(topic_name(t), 3), kt.create_topic(topic_name(f"{t}.dlq"), 1)]
    try:
        ids = _users(2 * n, f"u{uuid.uuid4().hex[:6]}-")
        authors, fans = ids[:n], ids[n:]
        now = "2026-01-01T00:00:00Z"
        # 1. triggers: like i is fan i's like of author i's post (distinct likers and posts:
        # each is news, none suppressed by the once-per-liker-and-post rule)
        kt.produce_events([Event("post.liked", {
            "post_id": 1_000_000 + i, "author_id": authors[i], "actor_id": fans[i],
            "occurred_at": now, "like_count": 1}, event_id=uuid.uuid4())
            for i in range(n)], per_transaction=500)

        def requests_written() -> None:
            [(rows, distinct)] = _sql("SELECT count(*), count(DISTINCT event_id) FROM "
                                      "outbox_event WHERE type = 'notification.requested'")
            assert rows == distinct == n, (rows, distinct)

        triggers = _stage(TRIGGERS, "post-events", "post.liked", n, rounds,
                          lambda: _sql("TRUNCATE outbox_event"), requests_written)
        # 2. routing: the requests those likes make
        kt.produce_events([Event("notification.requested", {
            "recipient_id": authors[i], "kind": "post_liked", "actor_id": fans[i],
            "context": {"post_id": 1_000_000 + i, "like_count": 1}, "title": None,
            "body": None, "channels": None, "source_event_id": None, "bulk_id": None,
            "requested_at": now}, event_id=uuid.uuid4()) for i in range(n)],
            per_transaction=500)

        def routed() -> None:
            [(notes, requests, pushes, distinct)] = _sql(
                "SELECT (SELECT count(*) FROM notifications_notification), "
                "(SELECT count(DISTINCT request_id) FROM notifications_notification), "
                "(SELECT count(*) FROM notifications_delivery WHERE channel = 'push'), "
                "(SELECT count(DISTINCT notification_id) FROM notifications_delivery)")
            assert notes == requests == pushes == distinct == n, (notes, requests, pushes)

        routing = _stage(ROUTE, "notification-events", "notification.requested", n, rounds,
                         lambda: _sql("TRUNCATE notifications_notification CASCADE"), routed)
    finally:
        from notifications.tests.conftest import clear_queue

        clear_queue(settings.NOTIFICATIONS_CELERY_QUEUE)
        kt.delete_topics(names)
    chain = 1 / (1 / triggers["likes_per_s"] + 1 / routing["likes_per_s"])
    return {
        "likes": n, "batch_size": settings.CONSUMER_BATCH_SIZE,
        "triggers": triggers, "routing": routing,
        "chain_likes_per_s_one_process": round(chain, 1),
        "target_routing_likes_per_s": 2000,
        "target_met": routing["likes_per_s"] >= 2000,
        "sanity": {"every_record_applied_once": True, "one_request_per_like": True,
                   "one_notification_and_one_push_delivery_per_request": True},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--likes", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, help="CONSUMER_BATCH_SIZE for this run")
    args = parser.parse_args()
    if args.batch_size:
        os.environ["CONSUMER_BATCH_SIZE"] = str(args.batch_size)
    os.environ["NOTIFICATIONS_CELERY_QUEUE"] = f"bench-routing-{uuid.uuid4().hex[:8]}"
    os.environ["DJANGO_SETTINGS_MODULE"] = "showoff.settings.test"
    setup_django(db=os.environ.get("BENCH_DATABASE_NAME",
                                   "showoff_bench_notifications_routing"))
    from django.conf import settings

    settings.DEBUG = False
    _sql("TRUNCATE accounts_user, outbox_event, relay_inbox CASCADE")
    result = {"benchmark": "notifications_routing", "cpu_count": os.cpu_count(),
              "load_average_at_start": os.getloadavg()[0]}
    try:
        result.update(bench(args.likes, args.rounds))
    finally:
        _sql("TRUNCATE accounts_user, outbox_event, relay_inbox CASCADE")
    result["load_average_at_end"] = os.getloadavg()[0]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
