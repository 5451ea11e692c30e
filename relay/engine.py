"""The exactly-once relay: outbox rows → Kafka, in commit order (DESIGN.md §3).

Protocol, per shard:

1. Hold the shard's PostgreSQL advisory lock (a second process waits as a hot standby).
2. `init_transactions()` with the shard's stable `transactional.id`: fences any zombie with the
   same id and resolves its open transaction.
3. Read the shard's last checkpoint from the compacted checkpoint topic with `read_committed`,
   from the beginning up to the high watermark. That `(txid, id)` is the position.
4. Loop: read the next batch in `(txid, id)` order, only from transactions older than every
   running one (`txid < pg_snapshot_xmin(pg_current_snapshot())`); produce the batch plus one
   checkpoint record in one Kafka transaction; commit; then record the position in the
   database (for admin, metrics and retention; Kafka stays the source of truth).

Because the position advances only inside the same Kafka transaction as the events, a crash at
any point either commits both or neither: a restart re-reads the checkpoint and resumes exactly
after the last committed event.
"""

from __future__ import annotations

import json
import logging
import signal
import time
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

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
from .models import RelayPosition

log = logging.getLogger("relay")

Position = tuple[int, int]  # (txid, id)


class RelayError(RuntimeError):
    """The relay cannot go on; the message says why and what to do. Exit non-zero."""


class Fenced(RelayError):
    pass


class IndefiniteOutcome(Exception):
    """A commit or abort whose result is unknown (timeout): rebuild and re-read the checkpoint."""


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
    last_commit_at: float | None = None


def _now() -> datetime:
    return datetime.now(UTC)


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
    ) -> None:
        self.shard = shard or Shard()
        self.batch_size = batch_size or settings.RELAY_BATCH_SIZE
        self.poll_interval = poll_interval if poll_interval is not None else \
            settings.RELAY_POLL_INTERVAL
        self.use_lock = use_lock
        self.trust_db_position = trust_db_position
        self._reanchor = reanchor
        self.shutdown = False
        self.stats = Stats()
        self.position: Position = (0, 0)
        self.producer = None
        self._pg: psycopg.Connection | None = None  # advisory lock + LISTEN
        self._checkpoint_topic = topic_name(CHECKPOINT_TOPIC)
        self._checkpoint_partition = 0
        self._topic_names = {t: topic_name(t) for t in TOPICS}
        self._last_lock_check = 0.0
        # The next batch is read on a second connection while Kafka commits this one.
        self._pool: ThreadPoolExecutor | None = None
        self._prefetch: tuple[Position, Future] | None = None
        self._last_summary = time.monotonic()
        self._summary_events = 0

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
        self._connect_pg()
        metrics.relay_starting(self.shard.label)  # a standby until it holds the lock
        if self.use_lock and not self._acquire_lock():
            return  # shut down while waiting as standby
        try:
            self.start()
            while not self.shutdown:
                try:
                    delivered = self.step()
                except DatabaseError as exc:
                    # PostgreSQL restarted or the connection dropped: nothing was committed to
                    # Kafka for an unread batch, so reconnect and go on from the same position.
                    log.warning("relay %s: database error (%s); reconnecting",
                                self.shard.label, exc)
                    connection.close()
                    time.sleep(1)
                    continue
                self._maybe_summary()
                if delivered:
                    continue
                if self._has_pending():
                    # Rows are committed but an older transaction is still open somewhere:
                    # they become deliverable when it ends. Poll briefly, don't sleep long.
                    if once:
                        time.sleep(0.01)
                        continue
                    self._wait(0.005)
                elif once:
                    break
                else:
                    self._wait(self.poll_interval)
        finally:
            self.close()

    def close(self) -> None:
        metrics.relay_active.set(0, shard=self.shard.label)
        self._log_summary(final=True)
        self._discard_prefetch()
        if self._pool is not None:
            # The lambda resolves `connection` in the prefetch thread: its own connection.
            self._pool.submit(lambda: connection.close()).result()
            self._pool.shutdown(wait=True)
            self._pool = None
        if self.producer is not None:
            self.producer.flush(5)
            self.producer = None
        if self._pg is not None:
            self._pg.close()
            self._pg = None

    # -- database side --------------------------------------------------------------------------

    def _connect_pg(self) -> None:
        params = connection.get_connection_params()
        params.pop("cursor_factory", None)
        params.pop("context", None)
        self._pg = psycopg.connect(**params, autocommit=True)
        self._pg.execute("LISTEN showoff_outbox")

    def _acquire_lock(self) -> bool:
        assert self._pg is not None
        waited = False
        while not self.shutdown:
            got = self._pg.execute("SELECT pg_try_advisory_lock(%s)",
                                   [self.shard.lock_key]).fetchone()[0]
            if got:
                if waited:
                    log.info("relay %s: lock acquired, taking over", self.shard.label)
                return True
            if not waited:
                log.info("relay %s: another relay holds this shard; waiting as hot standby",
                         self.shard.label)
                waited = True
            time.sleep(settings.RELAY_STANDBY_POLL_INTERVAL)
        return False

    def _check_lock(self) -> None:
        # The lock lives as long as our session. If the session is gone another relay may
        # already own the shard (it will fence us anyway); stop rather than compete.
        if not self.use_lock or time.monotonic() - self._last_lock_check < 1.0:
            return
        self._last_lock_check = time.monotonic()
        try:
            assert self._pg is not None
            self._pg.execute("SELECT 1")
        except psycopg.Error as exc:
            raise RelayError(
                f"relay {self.shard.label}: lost the database session holding the shard lock "
                f"({exc}); exiting so a standby can take over."
            ) from None

    def _shard_filter(self) -> str:
        # Only integers are formatted into the SQL (S608 below is a false alarm).
        if self.shard.shards == 1:
            return ""
        return f" AND shard_hash %% {self.shard.shards:d} = {self.shard.shard:d}"

    def fetch(self, position: Position | None = None) -> list[tuple]:
        sql = (
            # The text copy of txid gets its own name: `ORDER BY txid` must sort the xid8
            # column, not a text output column of the same name ("10" < "9").
            "SELECT id, txid::text AS txid_text, topic, key, headers::text, payload::text "
            "FROM outbox_event WHERE (txid, id) > (%s::xid8, %s) "
            "AND txid < pg_snapshot_xmin(pg_current_snapshot())"
            + self._shard_filter()
            + " ORDER BY outbox_event.txid, outbox_event.id LIMIT %s"
        )
        # Autocommit: a single read-only statement, no transaction id of our own, so the
        # relay never holds back its own snapshot horizon (DESIGN.md §8).
        with connection.cursor() as cur:
            txid, last_id = position or self.position
            cur.execute(sql, [str(txid), last_id, self.batch_size])
            return cur.fetchall()

    def _start_prefetch(self, after: Position) -> None:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="relay-prefetch")

        def read() -> list[tuple]:
            close_old_connections()  # this thread's own connection, as a request would
            return self.fetch(after)

        self._prefetch = (after, self._pool.submit(read))

    def _take_prefetch(self) -> list[tuple] | None:
        """Rows read during the last commit, if they follow the current position."""
        if self._prefetch is None:
            return None
        after, future = self._prefetch
        self._prefetch = None
        if after != self.position:
            future.cancel()
            return None
        rows = future.result()  # a DatabaseError surfaces here, as from fetch()
        return rows or None  # nothing then: read again, more may have committed since

    def _discard_prefetch(self) -> None:
        if self._prefetch is not None:
            self._prefetch[1].cancel()
            self._prefetch = None

    def _has_pending(self) -> bool:
        sql = (
            "SELECT EXISTS (SELECT 1 FROM outbox_event WHERE (txid, id) > (%s::xid8, %s)"
            + self._shard_filter() + ")"
        )
        with connection.cursor() as cur:
            cur.execute(sql, [str(self.position[0]), self.position[1]])
            return cur.fetchone()[0]

    def _wait(self, timeout: float) -> None:
        assert self._pg is not None
        # One notification is enough to wake us; the next fetch sees everything committed.
        for _ in self._pg.notifies(timeout=timeout, stop_after=1):
            break

    def _record_position(self, txid: int, last_id: int, events: int) -> None:
        close_old_connections()
        now = _now()
        # A copy of the Kafka checkpoint for admin, metrics and retention. Losing the last
        # few copies in a PostgreSQL crash only leaves it behind (retention deletes less), so
        # this short transaction skips the WAL flush wait.
        with transaction.atomic(), connection.cursor() as cur:
            cur.execute("SET LOCAL synchronous_commit TO off")
            cur.execute(
                "INSERT INTO relay_position (shards, shard, txid, last_id, transactional_id, "
                "events_total, batches_total, last_commit_at, updated_at) "
                "VALUES (%s, %s, %s::xid8, %s, %s, %s, 1, %s, %s) "
                "ON CONFLICT (shards, shard) DO UPDATE SET txid = EXCLUDED.txid, "
                "last_id = EXCLUDED.last_id, transactional_id = EXCLUDED.transactional_id, "
                "events_total = relay_position.events_total + EXCLUDED.events_total, "
                "batches_total = relay_position.batches_total + 1, "
                "last_commit_at = EXCLUDED.last_commit_at, updated_at = EXCLUDED.updated_at",
                [self.shard.shards, self.shard.shard, str(txid), last_id,
                 self.shard.transactional_id, events, now, now],
            )

    def _check_position_sane(self) -> None:
        with connection.cursor() as cur:
            cur.execute("SELECT pg_snapshot_xmax(pg_current_snapshot())::text")
            next_txid = int(cur.fetchone()[0])
        if self.position[0] >= next_txid:
            raise RelayError(
                f"relay {self.shard.label}: the checkpoint ({self.position[0]}, "
                f"{self.position[1]}) is ahead of this database's transaction ids (next "
                f"{next_txid}). The database was restored or moved, which restarts transaction "
                "ids, so the relay would wait forever. Re-anchor: make sure every event up to "
                "the checkpoint was delivered, delete those outbox rows, then start once with "
                "`run_relay --reanchor` to write a fresh checkpoint at the start of the outbox."
            )

    # -- Kafka side ------------------------------------------------------------------------------

    def _new_producer(self):
        return make_producer(
            "relay",
            **{
                "transactional.id": self.shard.transactional_id,
                "transaction.timeout.ms": settings.RELAY_TRANSACTION_TIMEOUT_MS,
                "linger.ms": 2,
                "batch.num.messages": 10000,
                "queue.buffering.max.messages": max(100000, self.batch_size * 4),
            },
        )

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
        """init_transactions, then read the checkpoint; retried until the broker answers."""
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
                self.producer = self._new_producer()
                self.producer.init_transactions(30)
                checkpoint = self.read_checkpoint()
                break
            except KafkaException as exc:
                err = exc.args[0]
                if err.fatal():
                    raise Fenced(self._fatal_message(err)) from None
                log.warning("relay %s: Kafka not ready (%s); retrying in %.1fs",
                            self.shard.label, err.str(), delay)
            except (TimeoutError, IndefiniteOutcome) as exc:
                log.warning("relay %s: %s; retrying in %.1fs", self.shard.label, exc, delay)
            self.producer = None
            time.sleep(delay)
            delay = min(delay * 2, 10)
        else:
            return
        if self._reanchor:
            self._reanchor = False
            self.reanchor()
        else:
            self.position = self._resolve_start(checkpoint)
            self._check_position_sane()
        log.info("relay %s: started at (%s, %s) as %s", self.shard.label, *self.position,
                 self.shard.transactional_id)
        metrics.relay_active.set(1, shard=self.shard.label)

    def _resolve_start(self, checkpoint: Position | None) -> Position:
        db = RelayPosition.objects.filter(shards=self.shard.shards,
                                          shard=self.shard.shard).first()
        if checkpoint is not None:
            return checkpoint
        if db is not None and (db.txid, db.last_id) > (0, 0):
            if self.trust_db_position:
                log.warning("relay %s: no Kafka checkpoint; resuming from the database copy "
                            "(%s, %s) as asked", self.shard.label, db.txid, db.last_id)
                return (db.txid, db.last_id)
            raise RelayError(
                f"relay {self.shard.label}: the Kafka checkpoint topic has no checkpoint for this "
                f"shard, but the database says it delivered up to ({db.txid}, {db.last_id}). "
                "The checkpoint topic was deleted or recreated. Starting from zero would "
                "deliver every remaining outbox row again. If that is wrong, restart with "
                "--trust-db-position to resume from the database copy (it may repeat the last "
                "batch at most)."
            )
        other = RelayPosition.objects.exclude(shards=self.shard.shards).first()
        if other is not None:
            raise RelayError(
                f"relay {self.shard.label}: the outbox was relayed with {other.shards} shard(s) "
                f"before, not {self.shard.shards}. Changing the shard count needs a drained "
                "outbox: stop the relays, run `run_relay --once` with the old layout, prune "
                "(`manage.py prune_outbox --older-than-hours 0`), delete the old relay positions "
                "in the admin, then start the new layout."
            )
        return (0, 0)

    def _check_topics(self) -> None:
        md = make_admin("relay").list_topics(timeout=30)
        wanted = [self._checkpoint_topic, *self._topic_names.values()]
        missing = [t for t in wanted if t not in md.topics or md.topics[t].error is not None]
        if missing:
            raise RelayError(
                f"topic(s) {', '.join(missing)} do not exist. Create them with "
                "`python manage.py kafka create-topics`."
            )
        partitions = len(md.topics[self._checkpoint_topic].partitions)
        # One checkpoint partition per shard where possible: then only this shard's producer
        # writes to it, and after init_transactions its end is stable.
        self._checkpoint_partition = self.shard.shard % partitions

    def read_checkpoint(self, timeout: float = 60) -> Position | None:
        tp = TopicPartition(self._checkpoint_topic, self._checkpoint_partition)
        probe = make_consumer("relay-checkpoint", "showoff-relay-checkpoint-probe",
                              **{"isolation.level": "read_uncommitted"})
        try:
            # The true end (high watermark), not the last stable offset.
            low, high = probe.get_watermark_offsets(tp, timeout=10, cached=False)
        finally:
            probe.close()
        if high <= low:
            return None
        reader = make_consumer(
            "relay-checkpoint", "showoff-relay-checkpoint-reader",
            **{"enable.partition.eof": True, "isolation.level": "read_committed"},
        )
        last: Position | None = None
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
                if msg.key() == self.shard.checkpoint_key and msg.value():
                    value = json.loads(msg.value())
                    last = (int(value["txid"]), int(value["id"]))
                if msg.offset() + 1 >= high:
                    break
        finally:
            reader.close()
        return last

    def reanchor(self) -> None:
        """Write a checkpoint at the start of the outbox (after a restore or a move)."""
        self.producer.begin_transaction()
        self._produce(self._checkpoint_topic, self.shard.checkpoint_key,
                      json.dumps({"txid": "0", "id": 0, "shards": self.shard.shards,
                                  "shard": self.shard.shard, "at": _now().isoformat(),
                                  "reanchored": True}).encode(),
                      None, partition=self._checkpoint_partition)
        self.producer.commit_transaction(30)
        self.position = (0, 0)
        RelayPosition.objects.filter(shards=self.shard.shards, shard=self.shard.shard).delete()
        log.warning("relay %s: re-anchored at (0, 0)", self.shard.label)

    def _fatal_message(self, err: KafkaError) -> str:
        if err.code() == KafkaError._FENCED or "fenced" in err.str().lower():
            return (
                f"relay {self.shard.label}: fenced by a newer relay with transactional.id "
                f"{self.shard.transactional_id} ({err.str()}). Another relay process owns this "
                "shard now; this one stops. Run one relay per shard (the advisory lock does "
                "that unless it was bypassed)."
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

    def step(self) -> int:
        """Deliver at most one batch; returns the number of events committed to Kafka."""
        self._check_lock()
        rows = self._take_prefetch() or self.fetch()
        if not rows:
            return 0
        last_txid, last_id = int(rows[-1][1]), rows[-1][0]
        started = time.monotonic()
        try:
            self.producer.begin_transaction()
            for _id, _txid, topic, key, headers, payload in rows:
                hdrs = json.loads(headers)  # a dict of str: librdkafka encodes the values
                self._produce(self._topic_names.get(topic) or topic_name(topic), key.encode(),
                              payload.encode(), hdrs)
            checkpoint = json.dumps({
                "txid": str(last_txid), "id": last_id, "shards": self.shard.shards,
                "shard": self.shard.shard, "at": _now().isoformat(),
            }).encode()
            self._produce(self._checkpoint_topic, self.shard.checkpoint_key, checkpoint, None,
                          partition=self._checkpoint_partition)
            if len(rows) == self.batch_size:
                self._start_prefetch((last_txid, last_id))  # overlaps the commit below
            self._commit()
        except KafkaException as exc:
            self._discard_prefetch()
            err = exc.args[0]
            if err.fatal():
                raise Fenced(self._fatal_message(err)) from None
            if err.txn_requires_abort():
                self.stats.aborts += 1
                metrics.relay_aborts.inc(shard=self.shard.label)
                log.warning("relay %s: abortable error (%s); aborting and retrying the batch",
                            self.shard.label, err.str())
                try:
                    self.producer.abort_transaction(30)
                except KafkaException:
                    self._rebuild("abort failed")
                time.sleep(0.2)
                return 0
            self._rebuild(err.str())
            return 0
        except IndefiniteOutcome as exc:
            self._discard_prefetch()
            self._rebuild(str(exc))
            return 0
        self.position = (last_txid, last_id)
        self.stats.events += len(rows)
        self.stats.batches += 1
        self.stats.last_commit_at = time.time()
        metrics.relay_committed(self.shard.label, rows, seconds=time.monotonic() - started,
                                position=self.position, at=self.stats.last_commit_at)
        self._summary_events += len(rows)
        log.debug("relay %s: committed %d events up to (%s, %s) in %.1f ms", self.shard.label,
                  len(rows), last_txid, last_id, (time.monotonic() - started) * 1000)
        self._record_position(last_txid, last_id, len(rows))
        return len(rows)

    def _commit(self) -> None:
        deadline = time.monotonic() + settings.RELAY_TRANSACTION_TIMEOUT_MS / 1000
        while True:
            try:
                self.producer.commit_transaction(30)
                return
            except KafkaException as exc:
                err = exc.args[0]
                if err.retriable() and time.monotonic() < deadline:
                    log.warning("relay %s: commit not confirmed yet (%s); retrying",
                                self.shard.label, err.str())
                    continue
                if err.fatal() or err.txn_requires_abort():
                    raise
                raise IndefiniteOutcome(f"commit outcome unknown: {err.str()}") from None

    def _rebuild(self, why: str) -> None:
        """After an indefinite outcome: new producer, init_transactions (the epoch bump fences
        delayed requests of the old one), and the checkpoint tells whether the batch landed."""
        self.stats.rebuilds += 1
        metrics.relay_rebuilds.inc(shard=self.shard.label)
        log.warning("relay %s: %s; rebuilding the producer and re-reading the checkpoint",
                    self.shard.label, why)
        old = self.producer
        self.producer = None
        if old is not None:
            try:
                old.purge()
            except Exception as exc:  # noqa: BLE001 - the old producer is discarded either way
                log.debug("purge of the old producer failed: %s", exc)
        self.start()

    # -- reporting ------------------------------------------------------------------------------

    def _maybe_summary(self) -> None:
        if time.monotonic() - self._last_summary >= settings.RELAY_SUMMARY_INTERVAL:
            self._log_summary()

    def _log_summary(self, final: bool = False) -> None:
        elapsed = max(time.monotonic() - self._last_summary, 1e-9)
        lag = self.lag_seconds()
        log.info(
            "relay %s: %s%d events in %d batches (%.0f/s over %.0fs), position (%s, %s), "
            "lag %s", self.shard.label, "final: " if final else "", self.stats.events,
            self.stats.batches, self._summary_events / elapsed, elapsed, *self.position,
            f"{lag:.1f}s" if lag is not None else "n/a",
        )
        self._last_summary = time.monotonic()
        self._summary_events = 0

    def lag_seconds(self) -> float:
        """Age of the oldest undelivered row of this shard (0 when none)."""
        try:
            with connection.cursor() as cur:
                cur.execute(
                    "SELECT EXTRACT(EPOCH FROM now() - min(created_at)) FROM outbox_event "
                    "WHERE (txid, id) > (%s::xid8, %s)" + self._shard_filter(),
                    [str(self.position[0]), self.position[1]],
                )
                value = cur.fetchone()[0]
            return float(value) if value is not None else 0.0
        except Exception:  # noqa: BLE001 - reporting must never stop the relay
            return float("nan")


