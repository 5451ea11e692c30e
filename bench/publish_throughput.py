"""Write path (issue 18): `publish_bulk` and `publish` against plain INSERTs of the same rows.

    .venv/bin/python bench/publish_throughput.py [--events 5000] [--rounds 7] [--single 2000]

1. Bulk: `--events` events of about 1 KiB in one transaction, through `publish_bulk` (catalogue
   lookup, serialisation, compiled validation, record size, COPY) and its commit, against the
   baseline: the same rows built in memory beforehand (no validation, no serialisation) and
   written by one plain multi-row INSERT, then committed. Two event kinds: `pipeline.probe`
   (a flat 1 KiB payload) and `notification.requested` (a nested 1 KiB context). Each round runs
   both, alternating which goes first; events/s are medians over the rounds, and the ratio is
   the median of the rounds' ratios. Target: publish_bulk >= 20,000 events/s.
2. One `publish` in a request: the time of a `publish("post.liked", ...)` call against a plain
   INSERT of a row built beforehand (the same SQL), call by call, alternating, inside one open
   transaction (a request's). Added time = median(publish) - median(INSERT). Target: <= 100 us.

Sanity checks (asserted): every round writes exactly its events, and the rows publish writes
equal the baseline's rows (payload, headers other than the id, key, topic, shard).
Runs on its own database (`showoff_bench_writepath`), DEBUG off (as in production: no query
log); prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import uuid

from _setup import setup_django

COLUMNS = "event_id, type, topic, key, shard_hash, headers, payload"


def probe_event(i: int):
    from outbox.services import Event

    return Event("pipeline.probe", {"probe_id": "bench", "key": f"user-{i % 1000}", "seq": i,
                                    "padding": "x" * 944})


def notification_event(i: int):
    from outbox.services import Event

    return Event("notification.requested", {
        "recipient_id": 1 + i % 5000, "kind": "post_liked", "actor_id": 7 + i % 13,
        "context": {"post_id": i, "post_text": "A day at the lake with friends 🌊 " * 8,
                    "actor_name": "Zoë Müller", "likes": [i, i + 1, i + 2],
                    "thread": {"depth": 2, "path": ["a", "b"], "ratio": 0.25}},
        "title": "Zoë liked your post", "body": "Your post is getting attention. " * 8,
        "channels": ["in_app", "push"], "source_event_id": str(uuid.UUID(int=i + 1)),
        "bulk_id": None, "requested_at": "2025-06-01T12:00:00.000Z"})


def truncate() -> None:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("TRUNCATE outbox_event")


def count() -> int:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM outbox_event")
        return cur.fetchone()[0]


def prebuilt_rows(events) -> list[tuple]:
    """What publish_bulk writes, built beforehand: the baseline inserts these as they are."""
    from django.utils import timezone

    from outbox.services import _Builder

    builder = _Builder(timezone.now(), None)
    return [tuple(builder.build(ev)[:7]) for ev in events]


def plain_insert(rows: list[tuple]) -> float:
    from django.db import connection, transaction

    sql = (f"INSERT INTO outbox_event ({COLUMNS}) VALUES "  # noqa: S608 - fixed names
           + ", ".join(["(%s, %s, %s, %s, %s, %s::jsonb, %s::jsonb)"] * len(rows)))
    params = [value for row in rows for value in row]
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(sql, params)
    return time.perf_counter() - started


def bulk(events) -> float:
    from django.db import transaction

    from outbox.services import publish_bulk

    started = time.perf_counter()
    with transaction.atomic():
        publish_bulk(events)
    return time.perf_counter() - started


def comparable(row: dict) -> tuple:
    headers = {k: v for k, v in row["headers"].items() if k not in ("ce_id", "ce_time")}
    return (row["type"], row["topic"], row["key"], row["shard_hash"],
            json.dumps(row["payload"], sort_keys=True), json.dumps(headers, sort_keys=True))


def rows_now() -> list[tuple]:
    from outbox.models import OutboxEvent

    return sorted(comparable(r) for r in OutboxEvent.objects.values(
        "type", "topic", "key", "shard_hash", "payload", "headers"))


def bench_bulk(make, n: int, rounds: int) -> dict:
    from django.utils import timezone

    from outbox.services import _Builder

    events = [make(i) for i in range(n)]
    payload_bytes = statistics.median(len(json.dumps(ev.data)) for ev in events)
    bulk_rates, insert_rates, ratios, build_rates = [], [], [], []
    for r in range(rounds):
        truncate()
        rows = prebuilt_rows(events)
        seconds = {}
        for variant in (("bulk", "insert") if r % 2 == 0 else ("insert", "bulk")):
            if variant == "bulk":
                seconds["bulk"] = bulk(events)
                assert count() == n, "publish_bulk did not write every event"
                bulk_rows = rows_now()
            else:
                seconds["insert"] = plain_insert(rows)
                assert count() == n, "the plain INSERT did not write every row"
                insert_rows = rows_now()
            truncate()
        assert bulk_rows == insert_rows, "publish_bulk wrote other rows than the baseline"
        started = time.perf_counter()
        builder = _Builder(timezone.now(), None)
        for ev in events:
            builder.build(ev)
        build_rates.append(n / (time.perf_counter() - started))
        bulk_rates.append(n / seconds["bulk"])
        insert_rates.append(n / seconds["insert"])
        ratios.append(seconds["insert"] / seconds["bulk"])
    return {
        "events": n,
        "payload_bytes_median": payload_bytes,
        "rounds": rounds,
        "publish_bulk_events_per_s": round(statistics.median(bulk_rates)),
        "baseline_plain_insert_events_per_s": round(statistics.median(insert_rates)),
        "ratio_publish_bulk_to_baseline": round(statistics.median(ratios), 3),
        "build_only_events_per_s": round(statistics.median(build_rates)),
        "publish_bulk_events_per_s_per_round": [round(x) for x in bulk_rates],
        "baseline_events_per_s_per_round": [round(x) for x in insert_rates],
        "target_events_per_s": 20_000,
        "target_met": statistics.median(bulk_rates) >= 20_000,
    }


def bench_single(n: int) -> dict:
    from django.db import connection, transaction

    from outbox.services import Event, publish

    def data(i: int) -> dict:
        return {"post_id": 1 + i % 100, "author_id": 3, "actor_id": 4 + i,
                "occurred_at": "2025-06-01T12:00:00.000Z", "like_count": i + 1}

    truncate()
    rows = prebuilt_rows([Event("post.liked", data(i)) for i in range(n)])
    sql = (f"INSERT INTO outbox_event ({COLUMNS}) "  # noqa: S608 - fixed names
           "VALUES (%s, %s, %s, %s, %s, %s::jsonb, %s::jsonb)")
    publish_ns, insert_ns = [], []
    with transaction.atomic(), connection.cursor() as cur:
        for i in range(n):
            for variant in (("publish", "insert") if i % 2 == 0 else ("insert", "publish")):
                if variant == "publish":
                    t0 = time.perf_counter_ns()
                    publish("post.liked", data(i))
                    publish_ns.append(time.perf_counter_ns() - t0)
                else:
                    t0 = time.perf_counter_ns()
                    cur.execute(sql, rows[i])
                    insert_ns.append(time.perf_counter_ns() - t0)
        assert count() == 2 * n, "not every call wrote its row"
    published = rows_now()
    assert published[::2] == published[1::2], "publish wrote other rows than the baseline"
    truncate()
    added = (statistics.median(publish_ns) - statistics.median(insert_ns)) / 1000
    return {
        "calls": n,
        "publish_us_median": round(statistics.median(publish_ns) / 1000, 1),
        "plain_insert_us_median": round(statistics.median(insert_ns) / 1000, 1),
        "added_us_median": round(added, 1),
        "publish_us_p90": round(statistics.quantiles(publish_ns, n=10)[-1] / 1000, 1),
        "plain_insert_us_p90": round(statistics.quantiles(insert_ns, n=10)[-1] / 1000, 1),
        "target_added_us": 100,
        "target_met": added <= 100,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--single", type=int, default=2000)
    args = parser.parse_args()
    os.environ["DEBUG"] = "false"
    setup_django(db="showoff_bench_writepath")
    result = {
        "benchmark": "publish_throughput",
        "cpu_count": os.cpu_count(),
        "load_average_at_start": os.getloadavg()[0],
        "bulk_probe_1kib": bench_bulk(probe_event, args.events, args.rounds),
        "bulk_notification_1kib": bench_bulk(notification_event, args.events, args.rounds),
        "single_publish_in_a_request": bench_single(args.single),
    }
    result["load_average_at_end"] = os.getloadavg()[0]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
