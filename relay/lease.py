"""The relay's shard lock as a lease (DESIGN.md §3; RELAY_LOCK_LEASE_SECONDS).

A PostgreSQL advisory lock lives as long as the session that took it. A relay that is paused
(SIGSTOP, a hung host, a long GC-like stall) keeps its session, so a plain lock would keep the
hot standby out forever. Here the session that holds the lock sets `idle_session_timeout` (and
`idle_in_transaction_session_timeout`) to the lease once it holds it: PostgreSQL itself ends the
session, and so releases the lock, once the relay has sent nothing for that long. The relay's
writes (position copy, set-aside events) go through this session too (`write`), so a relay
paused inside one cannot keep a row locked from the relay that takes over. A heartbeat thread
checks the lock every third of the lease while the relay lives (a slow Kafka commit does not
stop it; a paused process stops every thread). Waiting for NOTIFY happens on another
connection, since a LISTEN wait is idle time to PostgreSQL.

The relay asks `ensure_held()` before each batch and, strictly, before every
`init_transactions()`: a relay that lost its lease must never fence the relay that took the
shard over. After a pause the heartbeat is late, so the check goes to the server.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import psycopg
from django.conf import settings
from django.db import connection

log = logging.getLogger("relay")


class LeaseLost(Exception):
    """The session holding the shard lock ended: another relay may own the shard now."""


def connection_params(application_name: str) -> dict:
    """psycopg connection parameters of the default database, for the relay's own sessions."""
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    params.pop("prepare_threshold", None)
    params.pop("server_side_binding", None)
    params["application_name"] = application_name
    params.setdefault("connect_timeout", 5)
    return params


def describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class Lease:
    def __init__(self, label: str, key: int, seconds: float):
        self.label = label
        self.key = key
        self.seconds = float(seconds)
        self._conn: psycopg.Connection | None = None
        self._io = threading.Lock()  # one statement at a time on the lock session
        self._last_ok = 0.0
        self._lost: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- taking it ------------------------------------------------------------------------------

    @property
    def held(self) -> bool:
        return self._conn is not None and self._lost is None

    def _connect(self, should_stop: Callable[[], bool]) -> bool:
        delay = 0.5
        while not should_stop():
            try:
                conn = psycopg.connect(**connection_params(f"showoff-relay-lock {self.label}"),
                                       autocommit=True)
                # A standby polls the lock at its own pace: no lease while it waits.
                conn.execute("SET idle_session_timeout = 0")
                self._conn = conn
                return True
            except psycopg.Error as exc:
                log.warning("relay %s: cannot reach PostgreSQL for the shard lock (%s); "
                            "waiting for it, retrying in %.1fs", self.label, describe(exc),
                            delay)
            time.sleep(delay)
            delay = min(delay * 2, 5)
        return False

    def acquire(self, should_stop: Callable[[], bool]) -> bool:
        """Wait (as a hot standby) until this process holds the shard lock; False if asked to
        stop first. Reconnects whenever PostgreSQL goes away meanwhile."""
        self.release()
        waited = False
        while not should_stop():
            if self._conn is None and not self._connect(should_stop):
                return False
            try:
                got = self._conn.execute("SELECT pg_try_advisory_lock(%s)", [self.key]
                                         ).fetchone()[0]
            except psycopg.Error as exc:
                log.warning("relay %s: lost the database session while waiting for the shard "
                            "lock (%s); reconnecting", self.label, describe(exc))
                self._close()
                continue
            if got:
                try:
                    ms = int(self.seconds * 1000)
                    self._conn.execute(f"SET idle_session_timeout = {ms:d}")
                    self._conn.execute(f"SET idle_in_transaction_session_timeout = {ms:d}")
                    # its writes are copies of Kafka's checkpoint: no WAL flush wait
                    self._conn.execute("SET synchronous_commit = off")
                except psycopg.Error as exc:
                    log.warning("relay %s: lost the database session just after taking the "
                                "shard lock (%s); reconnecting", self.label, describe(exc))
                    self._close()
                    continue
                if waited:
                    log.info("relay %s: lock acquired, taking over", self.label)
                self._lost = None
                self._last_ok = time.monotonic()
                self._stop.clear()
                self._thread = threading.Thread(target=self._beat, daemon=True,
                                                name=f"relay-lease-{self.label}")
                self._thread.start()
                return True
            if not waited:
                log.info("relay %s: another relay holds this shard; waiting as hot standby",
                         self.label)
                waited = True
            time.sleep(settings.RELAY_STANDBY_POLL_INTERVAL)
        return False

    # -- keeping it -----------------------------------------------------------------------------

    def _beat(self) -> None:
        interval = self.seconds / 3
        while not self._stop.wait(interval):
            try:
                self._query_held()
            except LeaseLost:
                return

    def _query_held(self) -> None:
        conn = self._conn
        if conn is None or self._lost is not None:
            raise LeaseLost(self._lost or "the shard lock was released")
        try:
            with self._io:
                held = conn.execute(
                    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' "
                    "AND pid = pg_backend_pid() AND granted AND objsubid = 1 "
                    "AND ((classid::bigint << 32) | objid::bigint) = %s)", [self.key]
                ).fetchone()[0]
        except psycopg.Error as exc:
            self._lost = (f"lost the database session holding the shard lock "
                          f"({describe(exc)})")
            raise LeaseLost(self._lost) from None
        if not held:
            self._lost = "the shard lock is no longer held by this relay's session"
            raise LeaseLost(self._lost)
        self._last_ok = time.monotonic()

    def ensure_held(self, *, strict: bool = False) -> None:
        """Raise `LeaseLost` unless the lock is still ours. Cheap when the heartbeat is
        recent; asks the server when `strict` or when the heartbeat is late (after a pause)."""
        if self._lost is not None:
            raise LeaseLost(self._lost)
        if strict or time.monotonic() - self._last_ok > self.seconds / 2:
            self._query_held()

    def write(self, statements: list[tuple[str, list]]) -> None:
        """Run the statements in one transaction on the lock session."""
        conn = self._conn
        if conn is None or self._lost is not None:
            raise LeaseLost(self._lost or "the shard lock was released")
        try:
            with self._io:
                if len(statements) == 1:  # one round trip, its own implicit transaction
                    conn.execute(*statements[0])
                else:
                    with conn.transaction():
                        for sql, params in statements:
                            conn.execute(sql, params)
        except psycopg.OperationalError as exc:
            if conn.closed or conn.broken:
                self._lost = (f"lost the database session holding the shard lock "
                              f"({describe(exc)})")
                raise LeaseLost(self._lost) from None
            raise
        self._last_ok = time.monotonic()

    # -- giving it up ---------------------------------------------------------------------------

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except psycopg.Error:
                pass

    def release(self) -> None:
        """End the session (PostgreSQL releases the lock with it)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5)
        self._thread = None
        self._close()

    @property
    def backend_pid(self) -> int | None:
        conn = self._conn
        return conn.info.backend_pid if conn is not None else None
