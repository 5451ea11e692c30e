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
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
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
