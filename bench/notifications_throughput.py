"""Notifications throughput.

    .venv/bin/python bench/notifications_throughput.py [--notifications 5000]
                                                       [--recipients 100000] [--batch 1000]
                                                       [--rounds 3] [--parts routing,bulk]

1. Routing: N `notification.requested` (a like; in-app + push to one device each, in-memory
   push backend) are relayed to Kafka, then consumed by `manage.py consume notification-events`
   (a subprocess) while a Celery worker subprocess sends the pushes. Figures: notifications/s
   routed (in-app notification + push delivery recorded), pushes/s sent, and, as the baseline
   measured in the same run, the same consumer runtime over the same records with a no-op
   handler (the ratio is what routing costs on top of the runtime's own floor).
2. Bulk fan-out: one bulk send to R recipients (`bulk_notification_fan_out`, batches of
   `--batch`), against `publish_bulk` of the same events pre-built in memory with the same batch
   size (the INSERT floor), in `--rounds` interleaved rounds (the order alternates, each
   from an empty outbox), medians; RSS is sampled during the fan-out (its growth shows memory
   does not grow with R). Asserted: each fan-out published every recipient once.

Runs on its own database (`showoff_bench_notifications`, truncated first) and its own topics.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import uuid

from _setup import ROOT, rss_kib, setup_django

NOOP = "bench-noop"


def _truncate() -> None:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("TRUNCATE accounts_user, outbox_event, relay_position, relay_inbox "
                    "CASCADE")


def _users(n: int, prefix: str, *, devices: bool) -> list[int]:
    from django.contrib.auth.hashers import make_password

    from accounts.models import User
    from notifications.models import Device

    password = make_password(None)
    for start in range(0, n, 5000):
        User.objects.bulk_create([User(username=f"{prefix}{i}", password=password)
                                  for i in range(start, min(n, start + 5000))])
    ids = list(User.objects.filter(username__startswith=prefix).order_by("pk")
               .values_list("pk", flat=True))
    if devices:
        Device.objects.bulk_create([Device(user_id=i, platform="android",
                                           token=f"bench-token-{i}-{uuid.uuid4().hex}")
                                    for i in ids], batch_size=5000)
    return ids


def _relay_all() -> None:
    from relay.engine import Relay

    relay = Relay(use_lock=False)
    relay.start()
    try:
        while relay.step():
            pass
    finally:
        relay.close()


def _manage(args: list[str], env: dict[str, str], log: str) -> subprocess.Popen:
    from relay.testing import subprocess_environment

    return subprocess.Popen([sys.executable, "-m", "relay.testing", *args], cwd=ROOT,
                            env=subprocess_environment(**env), stdout=open(log, "wb"),  # noqa: SIM115
                            stderr=subprocess.STDOUT)


def _wait(predicate, timeout: float, what: str, procs=()) -> float:
    started = time.perf_counter()
    while not predicate():
        for p in procs:
            if p.poll() is not None:
                raise SystemExit(f"a subprocess exited ({p.returncode}) while waiting for "
                                 f"{what}; see its log")
        if time.perf_counter() - started > timeout:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)
    return time.perf_counter() - started


def _consume(consumer: str, n: int, env: dict[str, str], log: str, done) -> float:
    """Seconds for a `consume notification-events` subprocess to handle n records, counted
    from its first handled record (start-up and group join excluded)."""
    from relay.models import InboxEntry

    proc = _manage(["consume", "notification-events", "--consumer", consumer], env, log)
    try:
        _wait(lambda: InboxEntry.objects.filter(consumer=consumer).exists(), 120,
              f"{consumer} to start", [proc])
        first = InboxEntry.objects.filter(consumer=consumer).order_by("processed_at").first()
        started = time.perf_counter()
        _wait(lambda: done(), 3600, f"{consumer} to handle {n} records", [proc])
        last = InboxEntry.objects.filter(consumer=consumer).order_by("-processed_at").first()
        wall = time.perf_counter() - started
    finally:
        proc.terminate()
        proc.wait(60)
    # Database clock: from the first record's commit to the last one's.
    span = (last.processed_at - first.processed_at).total_seconds()
    return max(span, 1e-9) if span > 0 else wall


def bench_routing(n: int, prefix: str) -> dict:
    from django.db import transaction

    from notifications.models import Delivery, Notification
    from outbox.catalogue import CHECKPOINT_TOPIC, TOPICS
    from outbox.services import Event, publish_bulk
    from relay.models import InboxEntry
    from relay.topics import TopicSpec, create_topics

    create_topics([*(TopicSpec(t, 3, 1) for t in TOPICS),
                   TopicSpec("notification-events.dlq", 3, 1),
                   TopicSpec(CHECKPOINT_TOPIC, 4, 1, {"cleanup.policy": "compact"})])
    ids = _users(n + 1, f"r{uuid.uuid4().hex[:6]}-", devices=True)
    actor, recipients = ids[0], ids[1:]
    now = "2026-01-01T00:00:00Z"
    with transaction.atomic():
        publish_bulk([Event("notification.requested", {
            "recipient_id": r, "kind": "post_liked", "actor_id": actor,
            "context": {"post_id": 1, "like_count": 3}, "title": None, "body": None,
            "channels": None, "source_event_id": None, "bulk_id": None, "requested_at": now})
            for r in recipients])
    _relay_all()

    queue = f"bench-notifications-{uuid.uuid4().hex[:8]}"
    env = {"KAFKA_CONSUMER_GROUP": f"bench-{uuid.uuid4().hex[:8]}",
           "NOTIFICATIONS_PUSH_BACKEND": "memory", "NOTIFICATIONS_CELERY_QUEUE": queue,
           "RELAY_TEST_IMPORTS": "notifications_throughput", "PYTHONPATH": str(ROOT / "bench"),
           "CONSUMER_BATCH_SIZE": "200", "LOG_LEVEL": "WARNING"}
    log_dir = ROOT / ".local" / "log"
    log_dir.mkdir(parents=True, exist_ok=True)

    # baseline: the runtime with a no-op handler, same records
    noop_seconds = _consume(
        NOOP, n, env, str(log_dir / "bench-notifications-noop.log"),
        lambda: InboxEntry.objects.filter(consumer=NOOP).count() >= n)

    # routing (the pushes are queued in Redis meanwhile), then a Celery worker sends them
    route_seconds = _consume(
        "notifications-route", n, env, str(log_dir / "bench-notifications-route.log"),
        lambda: Notification.objects.count() >= n)
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "showoff", "worker", "-Q", queue,
         "--concurrency", "2", "--without-gossip", "--without-mingle", "--without-heartbeat",
         "-n", f"{queue}@%h", "--loglevel", "WARNING"],
        cwd=ROOT, env={**os.environ, "DJANGO_SETTINGS_MODULE": "showoff.settings.test",
                       **env},
        stdout=open(log_dir / "bench-notifications-worker.log", "wb"),  # noqa: SIM115
        stderr=subprocess.STDOUT)
    try:
        _wait(lambda: Delivery.objects.filter(status="sent").exists(), 120,
              "the worker's first push", [worker])
        first = Delivery.objects.filter(status="sent").order_by("sent_at").first().sent_at
        _wait(lambda: Delivery.objects.filter(status="sent").count() >= n, 3600,
              "every push to be sent", [worker])
        last = Delivery.objects.filter(status="sent").order_by("-sent_at").first().sent_at
        push_seconds = max((last - first).total_seconds(), 1e-9)
    finally:
        worker.terminate()
        worker.wait(60)
    from notifications.tests.conftest import clear_queue

    clear_queue(queue)
    assert Delivery.objects.filter(channel="push").count() == n
    return {
        "notifications": n,
        "noop_handler_records_per_s": round(n / noop_seconds, 1),
        "routed_notifications_per_s": round(n / route_seconds, 1),
        "routing_vs_noop_ratio": round(noop_seconds / route_seconds, 3),
        "pushes_sent_per_s": round(n / push_seconds, 1),
        "push_backend": "memory",
        "note": "routed = in-app notification + one push delivery row per record, committed "
                "with the record's inbox row, and its send queued on Celery; then a Celery "
                "worker (prefork, concurrency 2) sends the pushes (claim, send, record)",
    }


def bench_bulk(recipients: int, batch: int, rounds: int) -> dict:
    """Fan-out and its baseline in interleaved rounds (the order alternates), each from an
    empty outbox; medians."""
    import statistics

    from django.db import connection, transaction

    from notifications import services
    from notifications.models import BulkNotification
    from outbox.services import Event, publish_bulk

    ids = _users(recipients, f"b{uuid.uuid4().hex[:6]}-", devices=False)

    def empty_outbox() -> None:
        with connection.cursor() as cur:
            cur.execute("TRUNCATE outbox_event")

    def fan_out() -> dict:
        bulk = services.bulk_notification_create(created_by=None, kind="announcement",
                                                 title="Bench", body="Fan-out",
                                                 segment={"all": True})
        BulkNotification.objects.filter(pk=bulk.pk).update(status="queued")
        empty_outbox()
        samples: list[int] = []
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                samples.append(rss_kib())
                time.sleep(0.05)

        rss_before = rss_kib()
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        started = time.perf_counter()
        published = services.bulk_notification_fan_out(bulk_id=bulk.pk, batch_size=batch)
        seconds = time.perf_counter() - started
        stop.set()
        sampler.join()
        rss_peak = max(samples + [rss_kib()])
        bulk.refresh_from_db()
        # sanity: every recipient once, and the outbox holds exactly those events
        assert published == bulk.recipients_published == len(ids), (published, len(ids))
        with connection.cursor() as cur:
            cur.execute("SELECT count(*), count(DISTINCT key) FROM outbox_event")
            assert cur.fetchone() == (len(ids), len(ids))
        return {"per_s": published / seconds, "seconds": seconds, "batches": bulk.batches,
                "rss_growth_mib": (rss_peak - rss_before) / 1024, "bulk_id": bulk.pk}

    def baseline() -> dict:
        # the same events, built in memory beforehand, written with publish_bulk in batches of
        # the same size (what validating and writing them alone costs)
        empty_outbox()
        events = [Event("notification.requested", {
            "recipient_id": r, "kind": "announcement", "actor_id": None, "context": {},
            "title": "Bench", "body": "Fan-out", "channels": None, "source_event_id": None,
            "bulk_id": 1, "requested_at": "2026-01-01T00:00:00Z"}) for r in ids]
        started = time.perf_counter()
        for i in range(0, len(events), batch):
            with transaction.atomic():
                publish_bulk(events[i:i + batch])
        seconds = time.perf_counter() - started
        return {"per_s": len(events) / seconds, "seconds": seconds}

    runs: dict[str, list[dict]] = {"fan_out": [], "baseline": []}
    for r in range(rounds):
        order = ("fan_out", "baseline") if r % 2 == 0 else ("baseline", "fan_out")
        for what in order:
            runs[what].append(fan_out() if what == "fan_out" else baseline())
    empty_outbox()
    ratios = [b["seconds"] / f["seconds"] for f, b in zip(runs["fan_out"], runs["baseline"],
                                                           strict=True)]
    fan = statistics.median(x["per_s"] for x in runs["fan_out"])
    return {
        "recipients": len(ids),
        "batch_size": batch,
        "rounds": rounds,
        "batches_per_fan_out": runs["fan_out"][0]["batches"],
        "fan_out_recipients_per_s": round(fan, 1),
        "fan_out_rounds_per_s": [round(x["per_s"], 1) for x in runs["fan_out"]],
        "baseline_publish_bulk_prebuilt_per_s": round(statistics.median(
            x["per_s"] for x in runs["baseline"]), 1),
        "baseline_rounds_per_s": [round(x["per_s"], 1) for x in runs["baseline"]],
        "fan_out_vs_baseline_ratio": round(statistics.median(ratios), 3),
        "rss_growth_during_fan_out_mib": round(max(x["rss_growth_mib"]
                                                   for x in runs["fan_out"]), 1),
        "target_recipients_per_s": 20_000,
        "meets_target": fan >= 20_000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--notifications", type=int, default=5000)
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3, help="bulk fan-out rounds")
    parser.add_argument("--parts", default="routing,bulk",
                        help="which parts to run: routing, bulk or both (comma-separated)")
    args = parser.parse_args()
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    if not parts or parts - {"routing", "bulk"}:
        parser.error("--parts takes routing, bulk or routing,bulk")
    os.environ.setdefault("BENCH_DATABASE_NAME", "showoff_bench_notifications")
    os.environ["DJANGO_SETTINGS_MODULE"] = "showoff.settings.test"
    prefix = setup_django(db=os.environ["BENCH_DATABASE_NAME"])
    from django.conf import settings

    settings.DEBUG = False
    _truncate()
    result = {"benchmark": "notifications_throughput",
              "cpu_count": os.cpu_count(), "load_average_at_start": os.getloadavg()[0]}
    try:
        if "routing" in parts:
            result["routing"] = bench_routing(args.notifications, prefix)
            _truncate()
        if "bulk" in parts:
            result["bulk_fan_out"] = bench_bulk(args.recipients, args.batch, args.rounds)
    finally:
        from outbox.catalogue import CHECKPOINT_TOPIC, TOPICS
        from relay.testing import delete_topics

        delete_topics([f"{prefix}{t}" for t in (*TOPICS, "notification-events.dlq",
                                                CHECKPOINT_TOPIC)])
        _truncate()
    result["load_average_at_end"] = os.getloadavg()[0]
    print(json.dumps(result, indent=2))


# Imported by the baseline consumer subprocess (RELAY_TEST_IMPORTS): a no-op handler for
# notification.requested under its own consumer name.
if __name__ != "__main__" and os.environ.get("RELAY_TEST_IMPORTS") == "notifications_throughput":
    from relay import registry

    registry.register(NOOP, "notification.requested", lambda event: None)

if __name__ == "__main__":
    main()
