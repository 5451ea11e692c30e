"""Check the writers' rule of DESIGN.md §3: a service publishes an event only after it holds the
lock of the row the event's key names.

Why it matters: the relay delivers a tick (the transactions that committed between two
snapshots) in `id` order, the order of the `publish` calls. Two writers of one key that publish
before serialising on the key's row can publish in one order and commit in the other, and Kafka
then shows the key's events out of commit order.

`assert_publishes_after_lock` holds the row locked (FOR NO KEY UPDATE: it conflicts with the
FOR UPDATE / FOR NO KEY UPDATE / UPDATE a writer of the row takes) from a separate connection,
runs the service in a thread, and waits until the service's session is blocked by that lock, or
has published, or has finished. It must be blocked, and not have published; once the lock is
released it must publish. A service that publishes first, or never takes the lock, fails.

The Kafka side (posts/ and coins/ `test_kafka_commit_order.py`): `relay_running` delivers while
concurrent writers commit, `take_transaction_id` gives a writer's transaction its id before it
locks (as a request that wrote something else first), and `txid_id_order` shows the order the
relay used before ticks, which those tests prove wrong for the same run.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

import psycopg
from django.db import connection


def assert_publishes_after_lock(monkeypatch, *, module: ModuleType, event_type: str,
                                lock_sql: str, lock_params: list[Any],
                                call: Callable[[], Any], timeout: float = 30) -> None:
    published = threading.Event()
    if hasattr(module, "publish"):
        real = module.publish

        def spy(type_, *args, **kwargs):
            if type_ == event_type:
                published.set()
            return real(type_, *args, **kwargs)

        monkeypatch.setattr(module, "publish", spy)
    if hasattr(module, "publish_bulk"):
        real_bulk = module.publish_bulk

        def spy_bulk(events, *args, **kwargs):
            events = list(events)
            if any(ev.type == event_type for ev in events):
                published.set()
            return real_bulk(events, *args, **kwargs)

        monkeypatch.setattr(module, "publish_bulk", spy_bulk)

    params = connection.get_connection_params()
    service_pid: list[int] = []
    errors: list[BaseException] = []

    def run() -> None:
        from django.db import connection as thread_connection

        try:
            thread_connection.ensure_connection()
            service_pid.append(thread_connection.connection.info.backend_pid)
            call()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
        finally:
            thread_connection.close()

    with psycopg.connect(**params) as holder, psycopg.connect(**params, autocommit=True) as mon:
        rows = holder.execute(lock_sql, lock_params).fetchall()
        assert rows, f"the lock query found no row: {lock_sql} {lock_params}"
        holder_pid = holder.info.backend_pid
        thread = threading.Thread(target=run)
        thread.start()
        blocked = False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not (published.is_set() or errors):
            if service_pid and not thread.is_alive():
                break
            if service_pid:
                (blocked,) = mon.execute("SELECT %s = ANY(pg_blocking_pids(%s))",
                                         [holder_pid, service_pid[0]]).fetchone()
                if blocked:
                    break
            time.sleep(0.01)
        was_published = published.is_set()
        holder.commit()  # release the lock whatever happened, so the thread can finish
        thread.join(timeout)
    assert not errors, errors
    assert not was_published, f"{event_type} was published before its key's row was locked"
    assert blocked, f"the service never waited for its key's row lock ({event_type})"
    assert published.is_set(), f"{event_type} was not published once the lock was released"


# --- through the relay to Kafka --------------------------------------------------------------

@contextmanager
def relay_running(*, batch_size: int = 50) -> Iterator[None]:
    """An in-process relay delivering in its own thread while the block runs (so its ticks
    interleave with the writers' commits), then everything committed by the block's end."""
    from django.db import connections

    from relay.engine import Relay

    stop = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        relay = Relay(use_lock=False, batch_size=batch_size)
        try:
            relay.start()
            while not stop.is_set():
                if not relay.step():
                    time.sleep(0.005)
            while relay.step():  # what committed before the block ended
                pass
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
        finally:
            relay.close()
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(180)
    assert not thread.is_alive(), "the relay did not finish"
    assert not errors, errors


def take_transaction_id() -> int:
    """What a request that wrote something before its main change (an idempotency key, a view
    row, an audit row) has done: its transaction holds an id from now on, before it locks."""
    with connection.cursor() as cur:
        cur.execute("SELECT pg_current_xact_id()::text")
        return int(cur.fetchone()[0])


def txid_id_order(event_type: str, key: str) -> list[dict]:
    """The key's payloads in `(txid, id)` order: how the relay before ticks delivered them."""
    with connection.cursor() as cur:
        cur.execute("SELECT payload::text FROM outbox_event WHERE type = %s AND key = %s "
                    "ORDER BY txid, id", [event_type, key])
        return [json.loads(p) for (p,) in cur.fetchall()]


def run_threads(calls: list[Callable[[], Any]]) -> None:
    """Run each call in its own thread (own database connection); raise the first error."""
    from django.db import connections

    errors: list[BaseException] = []

    def run(call: Callable[[], Any]) -> None:
        try:
            call()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(c,)) for c in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors


def older_commits_last(older: Callable[[], Any], younger: Callable[[], Any]) -> None:
    """The interleaving a `(txid, id)` order gets wrong: T1 takes its transaction id first and
    waits; T2 (with its own, younger id) runs `younger` and commits; then T1 runs `older`
    and commits last."""
    from django.db import transaction

    first_has_id, second_done = threading.Event(), threading.Event()

    def t1() -> None:
        with transaction.atomic():
            take_transaction_id()
            first_has_id.set()
            assert second_done.wait(30)
            older()

    def t2() -> None:
        assert first_has_id.wait(30)
        with transaction.atomic():
            take_transaction_id()
            younger()
        second_done.set()

    run_threads([t1, t2])
