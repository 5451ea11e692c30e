"""The exactly-once relay: outbox rows → Kafka, per key in commit order (DESIGN.md §3).

Protocol, per shard:

1. Hold the shard's lock, a lease (relay/lease.py): a PostgreSQL advisory lock on a session
   that PostgreSQL ends when the relay stops heartbeating (paused, hung host), so a hot standby
   takes over within RELAY_LOCK_LEASE_SECONDS.
2. `init_transactions()` with each of the shard's two `transactional.id`s (they name the
   prefix and the shard layout): fences any zombie with the same ids and resolves its open
   transactions. The relay's Kafka transactions alternate between the two producers, one
   transaction at a time: a transaction begun on the producer whose commit just returned finds
   the coordinator still writing that commit's markers, and librdkafka waits 20 ms before
   asking again (CONCURRENT_TRANSACTIONS); on the other producer it starts at once. Each
   transaction still begins only after the previous one committed, so the log order and the
   checkpoints (latest by offset) are as with one producer.
3. Read the shard's last checkpoint from the compacted checkpoint topic with `read_committed`,
   from the beginning up to the high watermark: the position `(S_prev, S_cur, cursor_id)`
   (relay/position.py). The same topic holds the layout record: a relay of another shard
   layout refuses to start.
4. Loop: read the next batch of the current tick (rows visible in S_cur, not in S_prev, in id
   order, after cursor_id); when the tick is exhausted take `S_cur := pg_current_snapshot()`
   (autocommit, no transaction id of our own) and go on from `S_prev := S_cur`. Produce the
   batch plus one checkpoint record in one Kafka transaction; commit; then record the position
   in the database (for admin, metrics and retention; Kafka stays the source of truth).

Because the position advances only inside the same Kafka transaction as the events, a crash at
any point either commits both or neither: a restart re-reads the checkpoint and resumes exactly
after the last committed event. A commit or abort whose outcome is not known (any timeout) is
never retried on the same producer: the producer is rebuilt, `init_transactions()` fences the
old epoch's delayed requests, and the checkpoint says whether the batch landed (Jepsen's
defence, DESIGN.md §8). Fencing errors, including librdkafka's `_FATAL` raised by `produce()`
once the producer is fenced, stop the relay. A record Kafka refuses as too large is set aside
(relay_set_aside table, admin, metric, log line) and the shard moves on.

PostgreSQL going away (restart, failover) never stops the process: every step waits for it with
a log line, and a reconnect re-checks that the position is not ahead of the database (a restore
restarts transaction ids) before reading again.
"""

from __future__ import annotations

import logging
import signal
import time
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import quote

import orjson
import psycopg
from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, TopicPartition
from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection, transaction

from outbox.catalogue import CHECKPOINT_TOPIC, TOPICS

from . import metrics
from .kafka import (
    KafkaUnavailable,
    check_connection,
    describe_failure,
    ensure_enabled,
    make_admin,
    make_consumer,
    make_producer,
    topic_name,
)
from .lease import Lease, LeaseLost, connection_params
from .models import RelayPosition
from .position import START, Position, Restored, Snapshot

log = logging.getLogger("relay")

LAYOUT_KEY = b"layout"
# Errors that mean another producer with our transactional.id took over. `produce()` on a
# producer that already hit a fatal error raises `_FATAL` with `fatal()` false: it is the same
# fencing, seen again, and must never lead to a rebuild (which would fence the new owner).
FENCING_CODES = {KafkaError._FENCED, KafkaError._FATAL, KafkaError.PRODUCER_FENCED,
                 KafkaError.INVALID_PRODUCER_EPOCH}
SIZE_CODES = {KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE}
# A tick with more rows than this many batches left is walked along the primary key (each
# batch reads only its own rows) instead of sorted out of the transaction id index.
WALK_AFTER_BATCHES = 2
# Seconds between database copies of the position while batches follow each other.
POSITION_COPY_INTERVAL = 0.25


class RelayError(RuntimeError):
    """The relay cannot go on; the message says why and what to do. Exit non-zero."""


class Fenced(RelayError):
    pass


class IndefiniteOutcome(Exception):
    """A commit or abort whose result is unknown (timeout): rebuild and re-read the checkpoint."""


class SizeRefused(Exception):
    """The broker refused the batch as too large: deliver its rows one by one."""


@dataclass(frozen=True)
class Shard:
    shards: int = 1
    shard: int = 0

    def __post_init__(self) -> None:
        if self.shards < 1 or not 0 <= self.shard < self.shards:
            raise RelayError(
                f"--shard must be between 0 and --shards - 1 (got shard {self.shard} of "
                f"{self.shards})."
            )

    @property
    def label(self) -> str:
        return f"{self.shard}/{self.shards}"

    @property
    def transactional_id(self) -> str:
        """Names the client, the topic prefix and the layout; each part is %-quoted, so no two
        (prefix, shards, shard) give the same id (`a1`+`12` is not `a11`+`2`)."""
        client = quote(settings.KAFKA_CLIENT_ID, safe="")
        prefix = quote(settings.KAFKA_TOPIC_PREFIX, safe="")
        return f"relay:{client}:{prefix}:shard-{self.shard}-of-{self.shards}"

    @property
    def transactional_ids(self) -> tuple[str, str]:
        """The two producers' ids (transactions alternate between them): the shard's id, and
        the same with `:b` (no quoted part contains `:`, so still unambiguous)."""
        return (self.transactional_id, f"{self.transactional_id}:b")

    @property
    def legacy_transactional_id(self) -> str:
        """The id of the relay before ticks (ambiguous; fenced once on upgrade)."""
        prefix = settings.KAFKA_TOPIC_PREFIX
        return f"{settings.KAFKA_CLIENT_ID}.relay.{prefix}{self.shards}-{self.shard}"

    @property
    def checkpoint_key(self) -> bytes:
        return f"{self.shards}/{self.shard}".encode()

    @property
    def lock_key(self) -> int:
        raw = f"showoff.relay:{settings.KAFKA_TOPIC_PREFIX}:{self.shards}:{self.shard}".encode()
        # Two 32-bit halves → one signed 64-bit advisory lock key.
        value = (zlib.crc32(raw) << 32) | zlib.crc32(raw[::-1])
        return value - (1 << 64) if value >= (1 << 63) else value


@dataclass
class Stats:
    events: int = 0
    batches: int = 0
    aborts: int = 0
    rebuilds: int = 0
    set_aside: int = 0
    last_commit_at: float | None = None


@dataclass
class Batch:
    """Rows of one tick read after `position`'s cursor. `remaining`: rows of the tick after
    this batch (known after a sorted read), `max_id`: the tick's largest id."""

    position: Position
    rows: list[tuple]
    remaining: int | None = None
    max_id: int | None = None

    @property
    def last_id(self) -> int:
        return self.rows[-1][0]


@dataclass
class Checkpoints:
    """What one read of checkpoint partitions found."""

    own: dict | None = None
    layout: dict | None = None
    layouts_seen: set[int] = field(default_factory=set)


def _now() -> datetime:
    return datetime.now(UTC)


def _dumps(value: dict) -> bytes:
    return orjson.dumps(value)


class Relay:
    def __init__(
        self,
        *,
        shard: Shard | None = None,
        batch_size: int | None = None,
        poll_interval: float | None = None,
        use_lock: bool = True,
        trust_db_position: bool = False,
        reanchor: bool = False,
        layout_change: bool = False,
    ) -> None:
        self.shard = shard or Shard()
        self.batch_size = batch_size or settings.RELAY_BATCH_SIZE
        self.poll_interval = poll_interval if poll_interval is not None else \
            settings.RELAY_POLL_INTERVAL
        self.use_lock = use_lock
        self.trust_db_position = trust_db_position
        self._reanchor = reanchor
        # Run by `--change-layout` on a retired layout's shard: the layout record names the
        # new layout, and that is expected.
        self._layout_change = layout_change
        # `--change-layout` drains a retired shard up to this snapshot, not further.
        self.barrier: Snapshot | None = None
        self.shutdown = False
        self.stats = Stats()
        self.position: Position = Position(START, START)
        self.producer = None  # the producer of the next transaction (one of _producers)
        self._producers: list = []
        self._turn = 0
        self.started = False
        self.lease: Lease | None = None
        self._listen: psycopg.Connection | None = None
        self._checkpoint_topic = topic_name(CHECKPOINT_TOPIC)
        self._checkpoint_partition = 0
        self._checkpoint_partitions = 1
        self._topic_names = {t: topic_name(t) for t in TOPICS}
        # The current tick: exhausted once a read returned its last rows; walked along the
        # primary key up to `_walk_max_id` when large.
        self._tick_done = False
        self._walk_max_id: int | None = None
        # Rows the broker refused as too large in a batch: delivered one by one up to this id.
        self._singles_until = 0
        self._refused_ids: set[int] = set()
        # The next batch is read on a second connection while Kafka commits this one.
        self._pool: ThreadPoolExecutor | None = None
        self._prefetch: tuple[Position, bool, Future] | None = None
        self._position_dirty = False  # the database copy is behind (PostgreSQL was away)
        self._recorded_at = 0.0
        self._recorded_cur: Snapshot | None = None
        self._recorded_by_batch = False
        self._dirty_by_batch = False
        # A batch failed (aborted, producer rebuilt): step again at once, it is not the end.
        self.retry_now = False
        self._recheck_position = False
        self._last_summary = time.monotonic()
        self._summary_events = 0
        self._last_txid: int | None = None  # the last delivered row (admin, metrics)
        self._last_row_id: int | None = None
        self._unrecorded_events = 0
        self._unrecorded_batches = 0

    # -- lifecycle ------------------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        def stop(signum, frame):
            log.info("relay %s: signal %s, finishing the current batch", self.shard.label,
                     signum)
            self.shutdown = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)

    def run(self, *, once: bool = False) -> None:
        """Run until SIGTERM (or, with `once`, until the backlog is delivered)."""
        ensure_enabled("run_relay")
        metrics.relay_starting(self.shard.label)  # a standby until it holds the lock
        try:
            while not self.shutdown:
                try:
                    if not self._ready():
                        break
                    delivered = self.step()
                    self._maybe_summary()
                    if delivered or self.retry_now:
                        self.retry_now = False
                        continue
                    if once:
                        self.flush_position()
                        break
                    self._wait(self.poll_interval)
                except LeaseLost as exc:
                    self._stand_down(str(exc))
                    if once:
                        raise RelayError(f"relay {self.shard.label}: {exc}") from None
                except (DatabaseError, psycopg.Error) as exc:
                    self._wait_for_database(exc)
        finally:
            self.close()

    def close(self) -> None:
        if self.started and self._position_dirty:
            try:
                self._record_position(0)
            except (DatabaseError, psycopg.Error, LeaseLost) as exc:
                log.warning("relay %s: the last database copy of the position was not "
                            "written (%s); Kafka's checkpoint has it", self.shard.label, exc)
        if self.started:
            self._log_summary(final=True)
        self._discard_prefetch()
        if self._pool is not None:
            # The lambda resolves `connection` in the prefetch thread: its own connection.
            try:
                self._pool.submit(lambda: connection.close()).result()
            except DatabaseError:
                pass
            self._pool.shutdown(wait=True)
            self._pool = None
        self._drop_producer(flush=True)
        self._close_listen()
        if self.lease is not None:
            self.lease.release()
            self.lease = None
        metrics.relay_active.set(0, shard=self.shard.label)

    def _ready(self) -> bool:
        """Lock, producer and position in place (waiting for each as needed)."""
        if self.use_lock:
            if self.lease is None:
                self.lease = Lease(self.shard.label, self.shard.lock_key,
                                   settings.RELAY_LOCK_LEASE_SECONDS)
            if self.started:
                self.lease.ensure_held()  # LeaseLost: the caller stands down first
            elif not self.lease.held and not self.lease.acquire(lambda: self.shutdown):
                return False
        if not self.started:
            self.start()
            if not self.started:
                return False
        if self._recheck_position:
            # Back from a PostgreSQL outage: is this still the database of our position?
            self._check_position_sane()
            self._recheck_position = False
            if self._position_dirty:
                self._record_position(0)
        return True

    def _stand_down(self, why: str) -> None:
        """The lease is gone: another relay may own the shard now. Stop delivering without
        touching Kafka (no init_transactions, which would fence the new owner) and wait as a
        standby; the position is re-read from Kafka if the lock comes back."""
        log.warning("relay %s: %s; stopped delivering, waiting to take the shard again",
                    self.shard.label, why)
        metrics.relay_active.set(0, shard=self.shard.label)
        self._discard_prefetch()
        self._drop_producer()
        self.started = False
        if self.lease is not None:
            self.lease.release()

    # -- database side --------------------------------------------------------------------------

    def _wait_for_database(self, exc: BaseException) -> None:
        """PostgreSQL restarted or is unreachable: wait for it, then re-check the position."""
        self._discard_prefetch()
        self._close_listen()
        connection.close()
        if self._pool is not None:
            try:
                self._pool.submit(lambda: connection.close()).result()
            except DatabaseError:
                pass
        where = f"{connection.settings_dict.get('HOST')}:{connection.settings_dict.get('PORT')}"
        log.warning("relay %s: PostgreSQL at %s is unavailable (%s); waiting for it",
                    self.shard.label, where, str(exc).strip().splitlines()[0] if str(exc)
                    else type(exc).__name__)
        delay = 0.5
        waited = time.monotonic()
        while not self.shutdown:
            time.sleep(delay)
            try:
                with connection.cursor() as cur:
                    cur.execute("SELECT 1")
            except DatabaseError as again:
                connection.close()
                log.warning("relay %s: still waiting for PostgreSQL at %s (%s); retrying in "
                            "%.1fs", self.shard.label, where,
                            str(again).strip().splitlines()[0] if str(again) else "error",
                            min(delay * 2, 5))
                delay = min(delay * 2, 5)
                continue
            log.info("relay %s: PostgreSQL is back after %.1fs; re-checking the position "
                     "against it", self.shard.label, time.monotonic() - waited)
            break
        self._recheck_position = True

    def _connect_listen(self) -> psycopg.Connection:
        if self._listen is None:
            conn = psycopg.connect(**connection_params(f"showoff-relay-listen {self.shard.label}"),
                                   autocommit=True)
            # Waiting for notifications is idle time: never let a server-wide
            # idle_session_timeout end this session.
            conn.execute("SET idle_session_timeout = 0")
            conn.execute("LISTEN showoff_outbox")
            self._listen = conn
        return self._listen

    def _close_listen(self) -> None:
        if self._listen is not None:
            try:
                self._listen.close()
            except psycopg.Error:
                pass
            self._listen = None

    def _shard_filter(self, shards: int | None = None, shard: int | None = None) -> str:
        shards = shards or self.shard.shards
        shard = self.shard.shard if shard is None else shard
        # Only integers are formatted into the SQL (S608 below is a false alarm).
        if shards == 1:
            return ""
        return f" AND shard_hash %% {shards:d} = {shard:d}"

    def snapshot(self) -> Snapshot:
        with connection.cursor() as cur:
            cur.execute("SELECT pg_current_snapshot()::text")
            return Snapshot.parse(cur.fetchone()[0])

    def read_sql(self, position: Position, *, walk_max_id: int | None = None,
                 limit: int | None = None) -> tuple[str, list]:
        """The statement `read` runs (tests EXPLAIN it)."""
        limit = limit or self.batch_size
        shard_sql = self._shard_filter()
        if walk_max_id is not None:
            tick, params = position.tick_sql(refined=False)
            sql = ("SELECT id, txid::text, topic, key, headers::text, payload::text "
                   f"FROM outbox_event WHERE id > %s AND id <= %s AND {tick}{shard_sql} "
                   "ORDER BY id LIMIT %s")
            return sql, [position.cursor_id, walk_max_id, *params, limit]
        # Ids of the tick come from the transaction id index (PgQ's refined range plus the
        # explicit list); only the batch's own rows are then fetched whole. The window counts
        # the tick, to walk a large one along the primary key instead.
        tick, params = position.tick_sql(refined=True)
        sql = ("SELECT o.id, o.txid::text, o.topic, o.key, o.headers::text, "
               "o.payload::text, t.total, t.max_id FROM (SELECT id, count(*) OVER () AS "
               "total, max(id) OVER () AS max_id FROM outbox_event "
               f"WHERE {tick} AND id > %s{shard_sql} ORDER BY id LIMIT %s) t "
               "JOIN outbox_event o ON o.id = t.id ORDER BY o.id")
        return sql, [*params, position.cursor_id, limit]

    def read(self, position: Position, *, walk_max_id: int | None = None,
             limit: int | None = None) -> Batch:
        """The next rows of `position`'s tick after its cursor, in id order. Autocommit: one
        read-only statement, no transaction id of our own, so the relay never holds back the
        snapshots it reads (DESIGN.md §8)."""
        sql, args = self.read_sql(position, walk_max_id=walk_max_id, limit=limit)
        with connection.cursor() as cur:
            cur.execute(sql, args)
            rows = cur.fetchall()
        if walk_max_id is not None or not rows:
            return Batch(position, rows)
        total, max_id = rows[0][6], rows[0][7]
        return Batch(position, [r[:6] for r in rows], remaining=total - len(rows),
                     max_id=max_id)

    def _read_next(self, position: Position, tick_done: bool, walk_max_id: int | None,
                   limit: int) -> Batch:
        """The batch after `position`: from its tick, or from a new tick when it is done."""
        if not tick_done:
            batch = self.read(position, walk_max_id=walk_max_id, limit=limit)
            if batch.rows:
                return batch
        if self.barrier is not None:
            return self.read(position.next_tick(self.barrier), limit=limit)
        return self.read_new_tick(position, limit=limit)

    def new_tick_sql(self, position: Position, *, limit: int | None = None
                     ) -> tuple[str, list]:
        """The first batch of the tick after `position`'s, and its `S_cur`, in one statement:
        `pg_current_snapshot()` is taken in the statement (an InitPlan, so its xmax still
        bounds the index range) and returned with the rows, or alone when the tick is empty."""
        limit = limit or self.batch_size
        prev = position.cur
        cur = "(SELECT cur FROM s)"
        parts = [f"(txid >= %s::xid8 AND txid < pg_snapshot_xmax({cur}) "
                 f"AND pg_visible_in_snapshot(txid, {cur}))"]
        params: list = [str(prev.xmax)]
        if prev.xip:
            # PgQ's explicit list: the ids running in S_prev that S_cur shows finished
            parts.append(f"txid = ANY(ARRAY(SELECT x FROM unnest(%s::xid8[]) AS x "
                         f"WHERE pg_visible_in_snapshot(x, {cur})))")
            params.append("{" + ",".join(str(x) for x in prev.xip) + "}")
        tick = "(" + " OR ".join(parts) + ")"
        if position.restored is not None:
            # the restored rows belong to the re-anchor's tick only
            rsql, rparams = position.restored.sql()
            tick, params = f"({tick} AND NOT {rsql})", [*params, *rparams]
        sql = ("WITH s AS MATERIALIZED (SELECT pg_current_snapshot() AS cur), "
               "t AS (SELECT id, count(*) OVER () AS total, max(id) OVER () AS max_id "
               f"FROM outbox_event WHERE {tick}{self._shard_filter()} ORDER BY id LIMIT %s) "
               "SELECT s.cur::text, o.id, o.txid::text, o.topic, o.key, o.headers::text, "
               "o.payload::text, t.total, t.max_id FROM s LEFT JOIN (t JOIN outbox_event o "
               "ON o.id = t.id) ON true ORDER BY o.id")
        return sql, [*params, limit]

    def read_new_tick(self, position: Position, *, limit: int | None = None) -> Batch:
        sql, args = self.new_tick_sql(position, limit=limit)
        with connection.cursor() as cur:
            cur.execute(sql, args)
            rows = cur.fetchall()
        tick = position.next_tick(Snapshot.parse(rows[0][0]))
        if rows[0][1] is None:
            return Batch(tick, [])
        return Batch(tick, [r[1:7] for r in rows], remaining=rows[0][7] - len(rows),
                     max_id=rows[0][8])

    def _start_prefetch(self, after: Position, tick_done: bool, walk_max_id: int | None,
                        limit: int) -> None:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="relay-prefetch")

        def read() -> Batch:
            close_old_connections()  # this thread's own connection, as a request would
            return self._read_next(after, tick_done, walk_max_id, limit)

        self._prefetch = (after, tick_done, self._pool.submit(read))

    def _take_prefetch(self) -> Batch | None:
        """The batch read during the last commit, if it follows the current position."""
        if self._prefetch is None:
            return None
        after, tick_done, future = self._prefetch
        self._prefetch = None
        if after != self.position or tick_done != self._tick_done:
            future.cancel()
            return None
        batch = future.result()  # a DatabaseError surfaces here, as from read()
        if not batch.rows:
            if batch.position != self.position:
                # An empty tick: nothing to deliver between its snapshots, so the position
                # moves on in memory (no checkpoint needed).
                self._enter_tick(batch.position)
                self._tick_done = True
            return None  # read again now: more may have committed since
        return batch

    def _discard_prefetch(self) -> None:
        if self._prefetch is not None:
            self._prefetch[2].cancel()
            self._prefetch = None

    def _enter_tick(self, position: Position) -> None:
        self.position = position
        self._walk_max_id = None
        self._tick_done = False

    def _next_batch(self) -> Batch | None:
        limit = 1 if self.position.cursor_id < self._singles_until else self.batch_size
        batch = self._take_prefetch() if limit == self.batch_size else None
        if batch is None:
            batch = self._read_next(self.position, self._tick_done, self._walk_max_id, limit)
        if batch.position.cur != self.position.cur:
            self._enter_tick(batch.position)
        if not batch.rows:
            self._tick_done = True
            return None
        return batch

    def _wait(self, timeout: float) -> None:
        listen = self._connect_listen()
        deadline = time.monotonic() + timeout
        while not self.shutdown:
            # In slices, so the lease is checked while idle too, and a held-back copy of the
            # position is written when due.
            left = deadline - time.monotonic()
            if left <= 0:
                return
            slice_ = min(left, 1.0)
            if self._position_dirty:
                slice_ = max(0.0, min(slice_, self._recorded_at + POSITION_COPY_INTERVAL
                                      - time.monotonic()))
            for _ in listen.notifies(timeout=slice_, stop_after=1):
                return  # one is enough: the next read sees everything committed
            if self._position_dirty:
                self._record_idle_position()
            if self.lease is not None:
                self.lease.ensure_held()

    def flush_position(self) -> None:
        """Write the held-back database copy of the position now (tests, `--once`, exit)."""
        if self.started and self._position_dirty:
            self._record_position(0)

    def _record_position(self, events: int, *, force: bool = True) -> None:
        """The database copy of the position (after the Kafka commit). A trigger skips a write
        that would move it backwards (a zombie's late copy). Losing the last few copies in a
        PostgreSQL crash only leaves it behind (retention deletes less), so the short
        transaction skips the WAL flush wait. Under load, copies are written at most every
        POSITION_COPY_INTERVAL (and whenever the relay goes idle): a copy per batch would cost
        a round trip and a commit per Kafka transaction for nothing Kafka needs. A copy that
        fails (PostgreSQL away) is written when the database is back, counts included."""
        self._unrecorded_events += events
        self._unrecorded_batches += 1 if events else 0
        self._position_dirty = True
        self._dirty_by_batch = self._dirty_by_batch or events > 0
        if not force and time.monotonic() - self._recorded_at < POSITION_COPY_INTERVAL:
            return
        now = _now()
        pos = self.position
        restored = pos.restored
        last_commit = (datetime.fromtimestamp(self.stats.last_commit_at, UTC)
                       if self.stats.last_commit_at else None)
        self._write([
            (
                "INSERT INTO relay_position (shards, shard, s_prev, s_cur, cursor_id, "
                "restored_max_id, restored_snapshot, txid, last_id, transactional_id, "
                "events_total, batches_total, last_commit_at, updated_at) "
                "VALUES (%s, %s, %s::pg_snapshot, %s::pg_snapshot, %s, %s, %s::pg_snapshot, "
                "%s::xid8, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (shards, shard) DO UPDATE SET s_prev = EXCLUDED.s_prev, "
                "s_cur = EXCLUDED.s_cur, cursor_id = EXCLUDED.cursor_id, "
                "restored_max_id = EXCLUDED.restored_max_id, "
                "restored_snapshot = EXCLUDED.restored_snapshot, "
                "txid = coalesce(EXCLUDED.txid, relay_position.txid), "
                "last_id = coalesce(EXCLUDED.last_id, relay_position.last_id), "
                "transactional_id = EXCLUDED.transactional_id, "
                "events_total = relay_position.events_total + EXCLUDED.events_total, "
                "batches_total = relay_position.batches_total + EXCLUDED.batches_total, "
                "last_commit_at = coalesce(EXCLUDED.last_commit_at, "
                "relay_position.last_commit_at), updated_at = EXCLUDED.updated_at",
                [self.shard.shards, self.shard.shard, str(pos.prev), str(pos.cur),
                 pos.cursor_id, restored.max_id if restored else None,
                 str(restored.snapshot) if restored else None,
                 str(self._last_txid) if self._last_txid is not None else None,
                 self._last_row_id, self.shard.transactional_id, self._unrecorded_events,
                 self._unrecorded_batches, last_commit, now],
            ),
        ])
        self._position_dirty = False
        self._unrecorded_events = self._unrecorded_batches = 0
        self._recorded_at = time.monotonic()
        self._recorded_cur = pos.cur
        metrics.relay_tick_xmax.set(pos.cur.xmax, shard=self.shard.label)
        self._recorded_by_batch, self._dirty_by_batch = self._dirty_by_batch, False

    def _record_idle_position(self) -> None:
        """While idle the position moves over empty ticks in memory only (no Kafka transaction
        for nothing). `(S_prev, S_cur, 0)` at an empty tick says no more than the Kafka
        checkpoint does (everything visible in S_prev, the end of the last delivered tick, is
        in Kafka), and lets retention delete that tick too: written once after a delivery, then
        at most every 10 s."""
        if not self.started:
            return
        if self._position_dirty:
            # the last batches' copy, held back while busy; still not on the path of the
            # next events: `_wait` writes it once it is due
            if time.monotonic() - self._recorded_at >= POSITION_COPY_INTERVAL:
                self._record_position(0)
            return
        if self.position.cursor_id or self._recorded_cur is None:
            return
        if self.position.cur == self._recorded_cur:
            return
        if self._recorded_by_batch or time.monotonic() - self._recorded_at > 10:
            self._record_position(0)

    def _check_position_sane(self) -> None:
        """A position ahead of this database's transaction ids means a restore or a move to
        another cluster (ids restart): the relay would wait forever, or skip rows."""
        current = self.snapshot()
        if self.position.cur.xmax > current.xmax:
            raise RelayError(
                f"relay {self.shard.label}: the checkpoint {self.position} is ahead of this "
                f"database's transaction ids (next {current.xmax}). The database was restored "
                "or moved to another cluster, which restarts transaction ids, so the relay "
                "would wait forever. Re-anchor: make sure every event up to the checkpoint was "
                "delivered, delete those outbox rows, then start once with `run_relay "
                "--reanchor` (it delivers every row left in the outbox, restored ones "
                "included, then goes on with new ones)."
            )

    def _record_set_aside(self, position: Position, rows: list[tuple[tuple, str, int]]) -> None:
        """Before the Kafka commit that moves past them (idempotent: a retried batch finds the
        rows already there), so an operator always sees what was not delivered."""
        statements = []
        for row, reason, size in rows:
            row_id, txid, topic, key, headers, payload = row
            statements.append((
                "INSERT INTO relay_set_aside (outbox_id, event_id, txid, type, topic, key, "
                "headers, payload, size_bytes, limit_bytes, reason, shards, shard, position, "
                "set_aside_at) SELECT %s, (%s::jsonb ->> 'ce_id')::uuid, %s::xid8, "
                "%s::jsonb ->> 'ce_type', %s, %s, %s::jsonb, %s::jsonb, %s, %s, %s, %s, %s, %s, "
                "now() ON CONFLICT (event_id) DO NOTHING",
                [row_id, headers, txid, headers, topic, key, headers, payload, size,
                 settings.KAFKA_MESSAGE_MAX_BYTES, reason, self.shard.shards, self.shard.shard,
                 str(position)],
            ))
        self._write(statements)

    def _write(self, statements: list[tuple[str, list]]) -> None:
        """The relay's only writes (position copy, set-aside events), in one short transaction.
        With a lease they go through the lock session, whose idle-in-transaction timeout is the
        lease: a relay paused inside one never keeps the row locked from the relay that takes
        the shard over (PostgreSQL ends the session, lock and transaction together)."""
        if self.lease is not None:
            self.lease.write(statements)  # synchronous_commit is off on that session
            return
        close_old_connections()
        with transaction.atomic(), connection.cursor() as cur:
            cur.execute("SET LOCAL synchronous_commit TO off")
            for sql, params in statements:
                cur.execute(sql, params)

    # -- Kafka side ------------------------------------------------------------------------------

    def _new_producer(self, transactional_id: str | None = None):
        limit = settings.KAFKA_MESSAGE_MAX_BYTES
        return make_producer(
            "relay",
            **{
                "transactional.id": transactional_id or self.shard.transactional_id,
                "transaction.timeout.ms": settings.RELAY_TRANSACTION_TIMEOUT_MS,
                "linger.ms": 2,
                "batch.num.messages": 10000,
                "queue.buffering.max.messages": max(100000, self.batch_size * 4),
                # What publish() accepts (KAFKA_MESSAGE_MAX_BYTES) the producer sends, and
                # the topics take (create-topics sets their max.message.bytes to the same).
                "message.max.bytes": limit,
                "batch.size": min(limit, 1_000_000),
            },
        )

    def _drop_producer(self, *, flush: bool = False) -> None:
        """Drop both producers (never one alone: a rebuild re-inits both ids)."""
        olds, self.producer, self._producers, self._turn = self._producers, None, [], 0
        for old in olds:
            try:
                if flush:
                    old.flush(5)
                else:
                    old.purge()
            except Exception as exc:  # noqa: BLE001 - the old producer is discarded either way
                log.debug("relay %s: discarding the old producer: %s", self.shard.label, exc)

    def _init_producers(self) -> None:
        """A producer per transactional id, each `init_transactions()`ed, the lease checked
        before each: both ids are fenced (and their open transactions resolved) before the
        checkpoint is read, so a zombie's last commit on either is in what the read finds."""
        for tid in self.shard.transactional_ids:
            if self.lease is not None:
                self.lease.ensure_held(strict=True)
            producer = self._new_producer(tid)
            self._producers.append(producer)
            producer.init_transactions(settings.RELAY_COMMIT_TIMEOUT_SECONDS)
        self._turn = 0
        self.producer = self._producers[0]

    def _next_producer(self) -> None:
        """After a commit returned: the next transaction goes to the other producer."""
        if len(self._producers) > 1:
            self._turn = (self._turn + 1) % len(self._producers)
            self.producer = self._producers[self._turn]

    def _wait_for_kafka(self) -> bool:
        """Until the brokers answer (a supervisor keeps a relay started during an outage);
        wrong credentials or certificates stop it at once with the setting to fix."""
        delay = 0.5
        while not self.shutdown:
            try:
                check_connection(timeout=10, role="relay")
                return True
            except KafkaUnavailable as exc:
                if not exc.retriable:
                    raise RelayError(f"relay {self.shard.label}: {exc}") from None
                log.warning("relay %s: %s Retrying in %.1fs.", self.shard.label, exc, delay)
            time.sleep(delay)
            delay = min(delay * 2, 10)
        return False

    def start(self) -> None:
        """init_transactions, then read the checkpoint; retried until the broker answers.
        With a lease, it is checked just before each init_transactions: a relay that lost its
        shard never fences the one that took it."""
        if not self._wait_for_kafka():
            return
        try:
            self._check_topics()
        except KafkaException as exc:
            raise RelayError(f"relay {self.shard.label}: {describe_failure(exc.args[0])}") \
                from None
        delay = 0.5
        while not self.shutdown:
            try:
                self._init_producers()
                found = self.read_checkpoints()
                self._check_layout(found)
                if self._reanchor:
                    self.reanchor()
                    self._reanchor = False
                else:
                    self._enter_tick(self._resolve_start(found))
                    self._check_position_sane()
                break
            except KafkaException as exc:
                err = exc.args[0]
                self._drop_producer()
                if self._fenced(err):
                    raise Fenced(self._fatal_message(err)) from None
                log.warning("relay %s: Kafka not ready (%s); retrying in %.1fs",
                            self.shard.label, err.str(), delay)
            except (TimeoutError, IndefiniteOutcome) as exc:
                self._drop_producer()
                log.warning("relay %s: %s; retrying in %.1fs", self.shard.label, exc, delay)
            time.sleep(delay)
            delay = min(delay * 2, 10)
        else:
            return
        self._singles_until = 0
        self._recheck_position = False
        self.started = True
        metrics.relay_active.set(1, shard=self.shard.label)
        log.info("relay %s: started at %s as %s", self.shard.label, self.position,
                 " and ".join(self.shard.transactional_ids))

    def _check_layout(self, found: Checkpoints) -> None:
        """One shard layout at a time (DESIGN.md §3): the layout record in the checkpoint topic
        names it; a relay of another layout refuses, saying what to do."""
        shards = self.shard.shards
        layout = found.layout
        change = (f"change the layout: stop every relay, run `manage.py run_relay --shards "
                  f"{shards} --change-layout` once, then start the {shards}-shard relays")
        if self._layout_change:
            return
        if layout is not None:
            if int(layout["shards"]) != shards:
                raise RelayError(
                    f"relay {self.shard.label}: the outbox is relayed with "
                    f"{layout['shards']} shard(s) (layout record in {self._checkpoint_topic}, "
                    f"since {layout.get('at', '?')}), and this relay was started with --shards "
                    f"{shards}. Start it with --shards {layout['shards']}, or {change}."
                )
            if layout.get("state") == "changing":
                raise RelayError(
                    f"relay {self.shard.label}: a change to {shards} shard(s) was started and "
                    f"did not finish; run `manage.py run_relay --shards {shards} "
                    "--change-layout` again to finish it, then start the relays."
                )
            return
        others = sorted(found.layouts_seen - {shards})
        if not others and found.own is None:
            db_other = RelayPosition.objects.exclude(shards=shards).values_list(
                "shards", flat=True).first()
            others = [db_other] if db_other is not None else []
        if others:
            raise RelayError(
                f"relay {self.shard.label}: the outbox was relayed with {others[0]} shard(s) "
                f"before, and this relay was started with --shards {shards}. Start it with "
                f"--shards {others[0]}, or {change}."
            )
        # The first relay of this layout (or the first since the upgrade): say so in Kafka.
        self._write_layout({"shards": shards, "state": "active", "at": _now().isoformat()})

    def _write_layout(self, value: dict) -> None:
        self.producer.begin_transaction()
        self._produce(self._checkpoint_topic, LAYOUT_KEY, _dumps(value), None, partition=0)
        self._commit()

    def _resolve_start(self, found: Checkpoints) -> Position:
        if found.own is not None:
            if "s_prev" not in found.own:
                self._fence_legacy()
            return Position.from_record(found.own)
        db = RelayPosition.objects.filter(shards=self.shard.shards,
                                          shard=self.shard.shard).first()
        if db is not None:
            if self.trust_db_position:
                log.warning("relay %s: no Kafka checkpoint; resuming from the database copy "
                            "%s as asked", self.shard.label, db.position)
                return db.position
            raise RelayError(
                f"relay {self.shard.label}: the Kafka checkpoint topic has no checkpoint for this "
                f"shard, but the database says it delivered up to {db.position}. The checkpoint "
                "topic was deleted or recreated. Starting from zero would deliver every "
                "remaining outbox row again. If that is wrong, restart with "
                "--trust-db-position to resume from the database copy (it may repeat the last "
                "batch at most)."
            )
        return Position(START, START)

    def _fence_legacy(self) -> None:
        """Upgrading from the relay before ticks: its transactional.id differs from ours, so
        our init_transactions does not fence a zombie of it. Do it once here."""
        producer = self._new_producer(self.shard.legacy_transactional_id)
        producer.init_transactions(settings.RELAY_COMMIT_TIMEOUT_SECONDS)
        producer.flush(1)
        log.info("relay %s: upgraded from a (txid, id) checkpoint; fenced the old "
                 "transactional.id %s", self.shard.label, self.shard.legacy_transactional_id)

    def _check_topics(self) -> None:
        md = make_admin("relay").list_topics(timeout=30)
        wanted = [self._checkpoint_topic, *self._topic_names.values()]
        missing = [t for t in wanted if t not in md.topics or md.topics[t].error is not None]
        if missing:
            raise RelayError(
                f"topic(s) {', '.join(missing)} do not exist. Create them with "
                "`python manage.py kafka create-topics`."
            )
        self._checkpoint_partitions = len(md.topics[self._checkpoint_topic].partitions)
        # One checkpoint partition per shard where possible: then only this shard's producer
        # writes to it, and after init_transactions its end is stable.
        self._checkpoint_partition = self.shard.shard % self._checkpoint_partitions

    def read_checkpoints(self, timeout: float = 60) -> Checkpoints:
        """This shard's last checkpoint, and the layout record (partition 0)."""
        found = Checkpoints()
        for partition in sorted({0, self._checkpoint_partition}):
            for key, value in self._read_partition(partition, timeout).items():
                if key == LAYOUT_KEY:
                    found.layout = value
                elif key == self.shard.checkpoint_key:
                    found.own = value
                else:
                    shards, _, _ = key.decode(errors="replace").partition("/")
                    if shards.isdigit():
                        found.layouts_seen.add(int(shards))
        if found.own is not None:
            found.layouts_seen.add(self.shard.shards)
        return found

    def read_checkpoint(self) -> Position | None:
        own = self.read_checkpoints().own
        return Position.from_record(own) if own is not None else None

    def _read_partition(self, partition: int, timeout: float) -> dict[bytes, dict]:
        """Last value per key of one checkpoint partition, read with read_committed from the
        beginning to the high watermark (DESIGN.md §8: never "last offset - 1")."""
        tp = TopicPartition(self._checkpoint_topic, partition)
        probe = make_consumer("relay-checkpoint", "showoff-relay-checkpoint-probe",
                              **{"isolation.level": "read_uncommitted"})
        try:
            # The true end (high watermark), not the last stable offset.
            low, high = probe.get_watermark_offsets(tp, timeout=10, cached=False)
        finally:
            probe.close()
        if high <= low:
            return {}
        reader = make_consumer(
            "relay-checkpoint", "showoff-relay-checkpoint-reader",
            **{"enable.partition.eof": True, "isolation.level": "read_committed"},
        )
        last: dict[bytes, dict] = {}
        deadline = time.monotonic() + timeout
        try:
            reader.assign([TopicPartition(tp.topic, tp.partition, OFFSET_BEGINNING)])
            while True:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"checkpoint partition {tp.topic}[{tp.partition}] did not reach its "
                        f"end ({high}) within {timeout}s"
                    )
                msg = reader.poll(0.5)
                if msg is None:
                    continue
                if msg.error():
                    if msg.error().code() == KafkaError._PARTITION_EOF:
                        if msg.offset() >= high:
                            break
                        continue
                    raise KafkaException(msg.error())
                if msg.key() is not None and msg.value():
                    try:
                        last[msg.key()] = orjson.loads(msg.value())
                    except orjson.JSONDecodeError:
                        log.warning("relay %s: ignoring a checkpoint record that is not JSON at "
                                    "%s[%s]@%s", self.shard.label, tp.topic, tp.partition,
                                    msg.offset())
                if msg.offset() + 1 >= high:
                    break
        finally:
            reader.close()
        return last

    def reanchor(self) -> None:
        """After a restore or a move to another cluster: deliver every row left in the outbox
        (those restored with the old cluster's transaction ids too), then new ones. The
        largest id is read before the snapshot, so a row written after it has a larger id and
        a row written before it has a transaction id below the snapshot's xmax."""
        with connection.cursor() as cur:
            cur.execute("SELECT coalesce(max(id), 0) FROM outbox_event")
            max_id = cur.fetchone()[0]
        snap = self.snapshot()
        self.position = Position(START, snap, 0, Restored(max_id, snap))
        self._enter_tick(self.position)
        self.producer.begin_transaction()
        self._produce_checkpoint(self.position, reanchored=True)
        self._commit()
        RelayPosition.objects.filter(shards=self.shard.shards, shard=self.shard.shard).delete()
        self._last_txid = self._last_row_id = None
        self._record_position(0)
        log.warning("relay %s: re-anchored: delivers the %s rows up to id %d first (restored "
                    "ones included), then everything after %s", self.shard.label,
                    "outbox", max_id, snap)

    def _fenced(self, err: KafkaError) -> bool:
        return err.fatal() or err.code() in FENCING_CODES

    def _fatal_message(self, err: KafkaError) -> str:
        if err.code() in FENCING_CODES or "fenced" in err.str().lower():
            return (
                f"relay {self.shard.label}: fenced by a newer relay with transactional.id "
                f"{self.shard.transactional_id} ({err.str()}). Another relay process owns this "
                "shard now; this one stops. Run one relay per shard (the shard lock does that "
                "unless it was bypassed)."
            )
        return f"relay {self.shard.label}: fatal Kafka error: {err.str()}"

    def _produce(self, topic: str, key: bytes, value: bytes, headers, partition=None) -> None:
        while True:
            try:
                if partition is None:
                    self.producer.produce(topic, value=value, key=key, headers=headers)
                else:
                    self.producer.produce(topic, value=value, key=key, headers=headers,
                                          partition=partition)
                return
            except BufferError:
                self.producer.poll(0.05)

    def _produce_checkpoint(self, position: Position, **extra) -> None:
        value = position.to_record(shards=self.shard.shards, shard=self.shard.shard,
                                   at=_now().isoformat(), **extra)
        self._produce(self._checkpoint_topic, self.shard.checkpoint_key, _dumps(value), None,
                      partition=self._checkpoint_partition)

    def _check_lease(self) -> None:
        if self.lease is not None:
            self.lease.ensure_held()

    def step(self) -> int:
        """Deliver at most one batch; returns the number of events committed to Kafka (0 when
        nothing new committed)."""
        self._check_lease()
        batch = self._next_batch()
        if batch is None:
            self._record_idle_position()
            return 0
        rows = batch.rows
        after = batch.position.after(batch.last_id)
        # Sorted reads tell how much of the tick is left: a large rest is walked along the
        # primary key, each batch reading only its own rows.
        walk_max_id = self._walk_max_id
        if batch.remaining is not None:
            walk_max_id = batch.max_id if batch.remaining > WALK_AFTER_BATCHES * \
                self.batch_size else None
        tick_done = batch.remaining == 0 if batch.remaining is not None else \
            len(rows) < self.batch_size
        started = time.monotonic()
        aside: list[tuple[tuple, str, int]] = []
        try:
            self.producer.begin_transaction()
            # The per-row path, with its lookups bound once (it is most of the relay's Python).
            produce, loads, names = self.producer.produce, orjson.loads, self._topic_names
            refused = self._refused_ids
            for row in rows:
                row_id, _txid, topic, key, headers, payload = row
                if refused and row_id in refused:
                    aside.append((row, "refused by the broker as too large", -1))
                    continue
                hdrs = loads(headers)  # a dict of str: librdkafka encodes the values
                value = payload.encode()
                target = names.get(topic) or topic_name(topic)
                try:
                    try:
                        produce(target, value, key.encode(), headers=hdrs)
                    except BufferError:  # the local queue is full: wait for room, as _produce
                        self._produce(target, key.encode(), value, hdrs)
                except KafkaException as exc:
                    if exc.args[0].code() not in SIZE_CODES:
                        raise
                    size = len(value) + len(key.encode()) + sum(
                        len(k) + len(v.encode()) for k, v in hdrs.items())
                    aside.append((row, f"larger than message.max.bytes "
                                       f"({settings.KAFKA_MESSAGE_MAX_BYTES})", size))
            self._produce_checkpoint(after)
            if aside:
                self._record_set_aside(after, aside)
            if self._singles_until <= batch.last_id and (
                    not tick_done or len(rows) >= self.batch_size):
                # A backlog: read the next batch while Kafka commits this one. Caught up (a
                # partial batch ending its tick), no: a read taken now would miss everything
                # committed during the commit, and those events would wait a whole extra
                # Kafka transaction; reading after the commit takes them in the next one.
                self._start_prefetch(after, tick_done, walk_max_id, self.batch_size)
            self._commit()
        except KafkaException as exc:
            self._discard_prefetch()
            err = exc.args[0]
            if self._fenced(err):
                raise Fenced(self._fatal_message(err)) from None
            self.retry_now = True
            if err.txn_requires_abort():
                self._abort(err)
                if err.code() in SIZE_CODES:
                    self._size_refused(batch)
                return 0
            self._rebuild(f"unexpected Kafka error {err.str()}")
            return 0
        except IndefiniteOutcome as exc:
            self._discard_prefetch()
            self.retry_now = True
            self._rebuild(str(exc))
            if not self.started or self.position != after:
                return 0
            # The checkpoint says the commit landed: account for the batch as delivered (the
            # database copy's counts, metrics, set-aside reports), as a confirmed commit does.
        except BaseException:
            # A database error (or anything else) inside the Kafka transaction: abort it, so
            # nothing of this batch is committed, and let the caller deal with the error.
            self._discard_prefetch()
            self._abort_quietly()
            raise
        return self._committed(batch, after, walk_max_id, tick_done, aside, started)

    def _committed(self, batch: Batch, after: Position, walk_max_id: int | None,
                   tick_done: bool, aside: list[tuple[tuple, str, int]], started: float) -> int:
        """After a batch's Kafka commit: the position in memory, stats, metrics, set-aside
        reports and the database copy."""
        rows = batch.rows
        self.position = after
        self._walk_max_id = walk_max_id
        self._tick_done = tick_done
        self._last_txid, self._last_row_id = int(rows[-1][1]), batch.last_id
        self.stats.events += len(rows) - len(aside)
        self.stats.batches += 1
        self.stats.last_commit_at = time.time()
        delivered = [r for r in rows if all(r is not a[0] for a in aside)] if aside else rows
        metrics.relay_committed(self.shard.label, delivered, seconds=time.monotonic() - started,
                                position=(self._last_txid, batch.last_id),
                                at=self.stats.last_commit_at)
        for row, reason, size in aside:
            self._report_set_aside(row, reason, size)
        self._summary_events += len(rows)
        log.debug("relay %s: committed %d events up to %s in %.1f ms", self.shard.label,
                  len(rows), after, (time.monotonic() - started) * 1000)
        self._record_position(len(rows) - len(aside), force=False)
        return len(rows)

    def _report_set_aside(self, row: tuple, reason: str, size: int) -> None:
        headers = orjson.loads(row[4])
        self.stats.set_aside += 1
        self._refused_ids.discard(row[0])
        metrics.relay_set_aside.inc(shard=self.shard.label, reason="too_large")
        log.error(
            "relay %s: set aside event %s (%s for %s, key %s, outbox id %d%s): %s; Kafka would "
            "never accept it, so it was not delivered and the shard moved on. It is listed in "
            "the admin under Relay > Set-aside events.", self.shard.label,
            headers.get("ce_id"), headers.get("ce_type"), row[2], row[3], row[0],
            f", {size} bytes" if size >= 0 else "", reason,
            extra={"event_id": headers.get("ce_id"), "event_type": headers.get("ce_type")},
        )

    def _size_refused(self, batch: Batch) -> None:
        """The broker refused the batch as too large (a record above the topic's
        max.message.bytes): deliver this batch's rows one per transaction; a row refused alone
        is set aside."""
        if len(batch.rows) == 1:
            self._refused_ids.add(batch.rows[0][0])
        else:
            self._singles_until = batch.last_id
        log.warning("relay %s: the broker refused a batch as too large; delivering its %d "
                    "row(s) one by one to find the record", self.shard.label, len(batch.rows))
        # The failed batch leaves the producer needing an epoch bump: start clean.
        self._rebuild("a batch was refused as too large")

    def _abort(self, err: KafkaError) -> None:
        self.stats.aborts += 1
        metrics.relay_aborts.inc(shard=self.shard.label)
        log.warning("relay %s: abortable error (%s); aborting and retrying the batch",
                    self.shard.label, err.str())
        try:
            self.producer.abort_transaction(settings.RELAY_COMMIT_TIMEOUT_SECONDS)
        except KafkaException as exc:
            if self._fenced(exc.args[0]):
                raise Fenced(self._fatal_message(exc.args[0])) from None
            self._rebuild(f"abort outcome unknown: {exc.args[0].str()}")
            return
        time.sleep(0.2)

    def _abort_quietly(self) -> None:
        if self.producer is None:
            return
        try:
            self.producer.abort_transaction(settings.RELAY_COMMIT_TIMEOUT_SECONDS)
        except KafkaException as exc:
            # Unknown outcome: start clean (init_transactions resolves it) next time.
            log.warning("relay %s: abort failed (%s); the producer is rebuilt",
                        self.shard.label, exc.args[0].str())
            self._drop_producer()
            self.started = False

    def _commit(self) -> None:
        """One commit attempt. Anything but success, an abortable error or fencing leaves the
        outcome unknown (a timeout, retriable or not): never retried on this producer."""
        try:
            self.producer.commit_transaction(settings.RELAY_COMMIT_TIMEOUT_SECONDS)
        except KafkaException as exc:
            err = exc.args[0]
            if self._fenced(err) or err.txn_requires_abort():
                raise
            raise IndefiniteOutcome(f"commit outcome unknown: {err.str()}") from None
        self._next_producer()

    def _rebuild(self, why: str) -> None:
        """After an indefinite outcome: new producer, init_transactions (the epoch bump fences
        delayed requests of the old one), and the checkpoint tells whether the batch landed."""
        self.stats.rebuilds += 1
        metrics.relay_rebuilds.inc(shard=self.shard.label)
        log.warning("relay %s: %s; rebuilding the producer and re-reading the checkpoint",
                    self.shard.label, why)
        self._discard_prefetch()
        self._drop_producer()
        self.started = False
        singles, refused = self._singles_until, set(self._refused_ids)
        self.start()
        if self.started:
            self._singles_until, self._refused_ids = singles, refused

    # -- reporting ------------------------------------------------------------------------------

    def _maybe_summary(self) -> None:
        if time.monotonic() - self._last_summary >= settings.RELAY_SUMMARY_INTERVAL:
            self._log_summary()

    def _log_summary(self, final: bool = False) -> None:
        elapsed = max(time.monotonic() - self._last_summary, 1e-9)
        lag = self.lag_seconds()
        log.info(
            "relay %s: %s%d events in %d batches (%.0f/s over %.0fs), position %s, lag %s",
            self.shard.label, "final: " if final else "", self.stats.events,
            self.stats.batches, self._summary_events / elapsed, elapsed, self.position,
            f"{lag:.1f}s" if lag == lag else "n/a",  # NaN: PostgreSQL did not answer
        )
        self._last_summary = time.monotonic()
        self._summary_events = 0

    def lag_seconds(self) -> float:
        """Age of the oldest undelivered row of this shard (0 when none)."""
        try:
            condition, params = self.position.undelivered_sql()
            with connection.cursor() as cur:
                cur.execute(
                    "SELECT EXTRACT(EPOCH FROM now() - min(created_at)) FROM outbox_event "
                    f"WHERE {condition}" + self._shard_filter(), params,
                )
                value = cur.fetchone()[0]
            return float(value) if value is not None else 0.0
        except Exception:  # noqa: BLE001 - reporting must never stop the relay
            return float("nan")

    def has_backlog(self) -> bool:
        """Committed rows of this shard not in Kafka yet (for tests and `--once`)."""
        condition, params = self.position.undelivered_sql()
        with connection.cursor() as cur:
            cur.execute("SELECT EXISTS (SELECT 1 FROM outbox_event WHERE "
                        f"{condition}{self._shard_filter()})", params)
            return cur.fetchone()[0]


