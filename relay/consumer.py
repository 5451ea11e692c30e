"""The consumer runtime behind `manage.py consume <topic> [<topic> ...]` (DESIGN.md §4).

Each consumer name (the first argument of `@relay.registry.handler`) runs as its own
`ConsumerWorker`: its own Kafka consumer in group `{KAFKA_CONSUMER_GROUP}.<name>` (with
KAFKA_TOPIC_PREFIX before the name when one is set)
(`read_committed`, manual commits), its own inbox rows and its own dead letters. One process
runs the workers of every consumer name with handlers for the requested topics, one thread each,
so notifications backing off on a failing record never holds analytics back.

Per polled batch (up to CONSUMER_BATCH_SIZE records, waiting at most CONSUMER_BATCH_MS for more
after the first), one database transaction: insert the inbox rows `(consumer, event id)` of
the whole batch in one statement (`ON CONFLICT DO NOTHING RETURNING`: an id not returned was
applied before, so its record is a duplicate and is skipped), run the record handlers in
partition order and each batch handler once with its events, which write their effects and any
follow-up events through `outbox.publish`; commit. Only then are the offsets of the records
finished stored, and the stored offsets are committed to Kafka once per batch (asynchronously:
the next batch does not wait for the broker), and synchronously on a rebalance (partitions
revoked) and on shutdown. A crash anywhere repeats at most the
records whose offsets were not committed yet, and the inbox turns each repeat into a no-op.

Why batches: a statement round trip costs about 0.4 ms here and a commit more, so one
transaction per record caps a process at a few hundred records/s; one transaction and one inbox
statement per batch leave the handlers' own statements as the cost, and batch handlers (which
aggregate in memory and write each row once per batch) remove most of those too. The price is
latency: a record waits for its batch (CONSUMER_BATCH_MS at most, when records trickle in) and
for the batch's other records to be applied.

No savepoint per record on this fast path. When a handler raises, the transaction is rolled
back and the batch re-run in halves (each its own transaction), down to single records: the
records before the failing one commit, the failing record takes the path below, and the records
after it on its partition wait (order); other partitions' records go on. A record that failed
before is re-run alone first, so a retry costs one small transaction, not another bisection.

Failures of a single record:
- a record that is not a CloudEvent, has an unknown type or fails its schema goes to
  `<topic>.dlq` at once (attempts 0); `PermanentError` from a handler too (attempts 1);
- any other exception is retried with capped exponential backoff. The partition is paused and
  rewound to the failing record meanwhile, so the consumer keeps polling (it stays in the group,
  well inside `max.poll.interval.ms`, and other partitions keep flowing) and order within the
  partition holds. After `CONSUMER_RETRY_MAX_ATTEMPTS` attempts the record is dead-lettered and
  its offset stored: a poison record never blocks its partition;
- when the database itself is unreachable the attempt is not counted (it is not the record's
  fault): the batch's partitions wait with backoff until the database answers, and nothing is
  dead-lettered because of an outage.

Rebalances: a record handed out by one poll call whose partition a rebalance revoked during a
later call of the same batch is dropped, not applied (its new owner reads it from the committed
offset), and storing an offset for a partition no longer assigned is skipped with a warning,
never raised out of the loop.

SIGTERM/SIGINT: the current batch finishes and commits, stored offsets are committed, the
consumer leaves its group (close) and the process exits 0.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from uuid import UUID

from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition
from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection, connections, transaction

from outbox import catalogue, tracing
from showoff.sqlrows import rows_param, rows_table

from . import metrics
from .cloudevents import UndecodableRecord, decode
from .dlq import H_REPLAY_FOR, H_REPLAY_OF, DeadLetterError, DeadLetterWriter, dead_letter_headers
from .kafka import dlq_topic_name, ensure_enabled, make_admin, make_consumer, topic_name
from .registry import ConsumedEvent, PermanentError, Registration, consumers_for_topic, handlers_for

log = logging.getLogger("relay.consumer")

# One statement for the whole batch (its rows as one JSON parameter, see showoff/sqlrows.py).
# Sorted by event id so that two members of a group overlapping during a rebalance take the
# inbox rows' locks in the same order (no deadlock).
_INBOX_INSERT = f"""
    INSERT INTO relay_inbox (consumer, event_id, event_type, topic, partition, "offset",
                             processed_at)
    SELECT %s, c0, c1, c2, c3, c4, now()
      FROM {rows_table(["uuid", "text", "text", "integer", "bigint"])}
     ORDER BY c0
    ON CONFLICT (consumer, event_id) DO NOTHING
    RETURNING event_id
"""  # noqa: S608 - fixed names

# Errors whose code means the group moved on without us: our partitions belong to another
# member now, which re-reads from the last committed offset (the inbox makes that safe).
_LOST_GENERATION = {
    KafkaError.REBALANCE_IN_PROGRESS,
    KafkaError.ILLEGAL_GENERATION,
    KafkaError.UNKNOWN_MEMBER_ID,
    KafkaError.FENCED_INSTANCE_ID,
}

TP = tuple[str, int]


def group_for(name: str) -> str:
    """`{KAFKA_CONSUMER_GROUP}.<name>`, with KAFKA_TOPIC_PREFIX before the name when set."""
    return f"{settings.KAFKA_CONSUMER_GROUP}.{settings.KAFKA_TOPIC_PREFIX}{name}"


class ConsumerSetupError(RuntimeError):
    """The consumer cannot start as asked (unknown topic, no handlers, missing Kafka topic)."""


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    backoff: float = 0.5
    backoff_max: float = 30.0

    @classmethod
    def from_settings(cls) -> RetryPolicy:
        return cls(
            max_attempts=max(1, settings.CONSUMER_RETRY_MAX_ATTEMPTS),
            backoff=settings.CONSUMER_RETRY_BACKOFF,
            backoff_max=settings.CONSUMER_RETRY_BACKOFF_MAX,
        )

    def delay(self, attempt: int) -> float:
        """Seconds to wait after the `attempt`-th failure (1-based): capped exponential."""
        return min(self.backoff_max, self.backoff * (2 ** max(0, attempt - 1)))


@dataclass
class _Retry:
    offset: int
    attempts: int = 0  # failed handler attempts of the record at `offset`
    outages: int = 0  # database-unreachable waits (not counted as attempts)
    due: float = 0.0
    paused: bool = False
    error: str = ""


# What happened to a record in this step. Finished: the record's offset may be stored.
APPLY, PROCESSED, DUPLICATE, SKIPPED, DEAD, DEAD_LETTERED, RETRY, OUTAGE, WAITING = (
    "apply", "processed", "duplicate", "skipped", "dead", "dead_lettered", "retry", "outage",
    "waiting")
FINISHED = frozenset({PROCESSED, DUPLICATE, SKIPPED, DEAD_LETTERED})


class _Record:
    """One polled record on its way through a step."""

    __slots__ = ("attempts", "error", "event", "logical", "msg", "offset", "outcome", "reason",
                 "regs", "tp")

    def __init__(self, msg: Message, tp: TP, logical: str):
        self.msg = msg
        self.tp = tp
        self.offset: int = msg.offset()
        self.logical = logical
        self.event: ConsumedEvent | None = None
        self.regs: list[Registration] = []
        self.outcome = APPLY
        self.reason = ""  # skip or dead-letter reason
        self.error: BaseException | None = None
        self.attempts = 0


class ConsumerWorker:
    """One consumer name's Kafka consumer, inbox and dead letters.

    `run()` loops `step()` until `shutdown` is set (a signal, `--max-records`); tests call
    `start()`, then `step()` until they see what they wait for, then `close()`.
    """

    def __init__(
        self,
        name: str,
        topics: Iterable[str],
        *,
        group_id: str | None = None,
        from_beginning: bool = False,
        max_records: int | None = None,
        batch_size: int | None = None,
        batch_ms: float | None = None,
        poll_timeout: float | None = None,
        instance_id: str | None = None,
        retry: RetryPolicy | None = None,
    ):
        self.name = name
        self.topics = sorted(set(topics))
        # The topic prefix keeps environments (and test runs) sharing a cluster apart.
        self.group_id = group_id or group_for(name)
        self.from_beginning = from_beginning
        self.max_records = max_records
        self.batch_size = batch_size or settings.CONSUMER_BATCH_SIZE
        self.batch_wait = (settings.CONSUMER_BATCH_MS if batch_ms is None else batch_ms) / 1000
        self.poll_timeout = settings.CONSUMER_POLL_TIMEOUT if poll_timeout is None \
            else poll_timeout
        self.instance_id = instance_id
        self.retry = retry or RetryPolicy.from_settings()
        self.shutdown = False
        self.handled = 0  # records finished (any outcome but retry/outage), for --max-records
        self.consumer = None
        self.dlq: DeadLetterWriter | None = None
        self._logical = {topic_name(t): t for t in self.topics}
        self._retries: dict[TP, _Retry] = {}
        self._stored: dict[TP, int] = {}
        self._assigned: set[TP] = set()
        self._blocked: dict[TP, int] = {}  # this step: partition -> offset its records wait at
        self._dirty = False
        self._last_lag = 0.0
        self._last_summary = time.monotonic()

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        ensure_enabled(f"consume ({self.name})")
        overrides = {
            "session.timeout.ms": settings.CONSUMER_SESSION_TIMEOUT_MS,
            "max.poll.interval.ms": settings.CONSUMER_MAX_POLL_INTERVAL_MS,
            "auto.offset.reset": "earliest" if self.from_beginning
            else settings.CONSUMER_AUTO_OFFSET_RESET,
        }
        if self.instance_id:
            overrides["group.instance.id"] = self.instance_id
        overrides["on_commit"] = self._on_commit
        self.consumer = make_consumer(f"consumer.{self.name}", self.group_id, **overrides)
        self.dlq = DeadLetterWriter(f"consumer.{self.name}.dlq")
        self.consumer.subscribe(list(self._logical), on_assign=self._on_assign,
                                on_revoke=self._on_revoke, on_lost=self._on_lost)
        log.info("consumer %s: group %s, topics %s, batches of up to %d records / %g ms",
                 self.name, self.group_id, ", ".join(self._logical), self.batch_size,
                 self.batch_wait * 1000)

    def run(self) -> None:
        if self.consumer is None:
            self.start()
        try:
            while not self.shutdown:
                self.step()
        finally:
            self.close()

    def close(self) -> None:
        """Commit what is done, leave the group, release the database connection."""
        if self.consumer is not None:
            self._commit("shutdown")
            self.consumer.close()
            self.consumer = None
        if self.dlq is not None:
            self.dlq.close()
            self.dlq = None
        self._log_summary(force=True)
        if not connection.in_atomic_block:
            connection.close()

    # --- the loop -------------------------------------------------------------------------

    def step(self) -> bool:
        """Poll one batch and handle it; returns whether any record was finished."""
        _refresh_connection()
        now = time.monotonic()
        self._resume_due(now)
        timeout = self.poll_timeout
        waiting = [r.due for r in self._retries.values() if r.paused]
        if waiting:
            timeout = max(0.0, min(timeout, min(waiting) - now))
        msgs = self._poll(timeout)
        cut = False
        if self.max_records is not None and len(msgs) > self.max_records - self.handled:
            msgs = msgs[:max(0, self.max_records - self.handled)]
            cut = True
        self._blocked = {}
        records = self._prepare(msgs)
        applying = [r for r in records if r.outcome == APPLY]
        # Records that failed before run alone first: a retry is one small transaction.
        suspects = [r for r in applying if self._failed_before(r)]
        for r in suspects:
            self._apply([r])
        self._apply([r for r in applying
                     if r.outcome == APPLY and r.tp not in self._blocked])
        finished = self._finish(records)
        self.handled += finished
        if self.max_records is not None and self.handled >= self.max_records:
            self.shutdown = True
        if not cut:
            self._store_positions()
        self._commit("batch")
        self._update_lag()
        self._log_summary()
        return finished > 0

    def _poll(self, timeout: float) -> list[Message]:
        # consume(n, timeout) waits for n records or the timeout, which would hold a lone
        # record back for the whole timeout: wait for one, then up to CONSUMER_BATCH_MS for
        # the rest of the batch (what is already fetched comes at once).
        first = self.consumer.poll(timeout)
        if first is None:
            return []
        if self.batch_size <= 1:
            return [first]
        return [first, *self.consumer.consume(self.batch_size - 1, self.batch_wait)]

    def _prepare(self, msgs: list[Message]) -> list[_Record]:
        """Drop what must not be handled now, decode the rest, decide what each one needs."""
        records: list[_Record] = []
        seen: dict[TP, int] = {}
        handlers: dict[str, list[Registration]] = {}
        for msg in msgs:
            err = msg.error()
            if err is not None:
                self._on_kafka_error(err)
                continue
            tp = (msg.topic(), msg.partition())
            offset = msg.offset()
            if tp not in self._assigned:
                # Handed out before a rebalance (served by a later call of this poll) took
                # the partition away: its new owner reads it from the committed offset.
                continue
            if offset <= seen.get(tp, -1):
                continue  # the partition was reset by a rebalance within this poll
            pending = self._retries.get(tp)
            if pending is not None and tp not in seen and offset != pending.offset:
                # Fetched before the partition was rewound; they come again in order.
                if not pending.paused:
                    self._rewind(tp, pending.offset)
                continue
            seen[tp] = offset
            rec = _Record(msg, tp, self._logical.get(tp[0], tp[0]))
            records.append(rec)
            self._decode(rec, handlers)
        return records

    def _decode(self, rec: _Record, handlers: dict[str, list[Registration]]) -> None:
        msg = rec.msg
        try:
            event = decode(rec.logical, msg.key(), msg.value(), msg.headers(), rec.tp[1],
                           rec.offset)
        except UndecodableRecord as exc:
            rec.outcome, rec.reason, rec.error = DEAD, "undecodable", exc
            return
        except (catalogue.UnknownEventType, catalogue.EventValidationError) as exc:
            rec.outcome, rec.reason, rec.error = DEAD, "invalid", exc
            return
        replay_for = event.headers.get(H_REPLAY_FOR)
        if replay_for is not None:
            if replay_for != self.name:
                rec.event, rec.outcome, rec.reason = event, SKIPPED, "replay_for_other"
                return
            try:
                # The inbox key of a replay is the original event's id (see relay/dlq.py).
                event = replace(event, id=UUID(event.headers[H_REPLAY_OF]))
            except (KeyError, ValueError):
                rec.outcome, rec.reason = DEAD, "undecodable"
                rec.error = UndecodableRecord("replay without a valid replay-of header")
                return
        rec.event = event
        regs = handlers.get(event.type)
        if regs is None:
            regs = handlers[event.type] = handlers_for(self.name, event.type)
        if not regs:
            rec.outcome, rec.reason = SKIPPED, "no_handler"
            return
        rec.regs = regs

    def _failed_before(self, rec: _Record) -> bool:
        state = self._retries.get(rec.tp)
        return state is not None and state.offset == rec.offset and state.attempts > 0

    # --- applying: one transaction per batch, halves on a failure -------------------------

    def _apply(self, records: list[_Record]) -> None:
        if not records:
            return
        started = time.perf_counter()
        try:
            self._transaction(records)
        except Exception as exc:  # noqa: BLE001 - any handler error is handled below
            self._failed(records, exc)
            return
        metrics.consumer_batch_seconds.observe(time.perf_counter() - started,
                                               consumer=self.name)
        metrics.consumer_batch_records.observe(len(records), consumer=self.name)

    def _transaction(self, records: list[_Record]) -> None:
        first: dict[UUID, _Record] = {}
        for r in records:
            first.setdefault(r.event.id, r)
        batch_calls: dict = {}
        with transaction.atomic():
            with connection.cursor() as cur:
                cur.execute(_INBOX_INSERT, [self.name, rows_param(
                    (event_id, r.event.type, r.logical, r.tp[1], r.offset)
                    for event_id, r in first.items())])
                fresh = {row[0] for row in cur.fetchall()}
            applied = [r for r in records if r.event.id in fresh and first[r.event.id] is r]
            for r in applied:
                event = r.event
                for reg in r.regs:
                    if reg.batch:
                        batch_calls.setdefault(reg.fn, []).append(event)
                        continue
                    with tracing.use_event(event.id, event.type, event.traceparent), \
                            tracing.use_traceparent(tracing.child_of(event.traceparent)):
                        reg.fn(event)
            for fn, events in batch_calls.items():
                fn(events)
        applied_ids = {id(r) for r in applied}
        for r in records:
            r.outcome = PROCESSED if id(r) in applied_ids else DUPLICATE

    def _failed(self, records: list[_Record], exc: BaseException) -> None:
        """The transaction of `records` rolled back: wait for the database, isolate the
        failing record by halves, or give the single failing record its retry/DLQ path."""
        if not self._database_usable():
            self._wait_for_database(records, exc)
            return
        if len(records) > 1:
            metrics.consumer_batch_splits.inc(consumer=self.name)
            log.info("consumer %s: a batch of %d records failed (%s: %s); re-running it in "
                     "halves", self.name, len(records), exc.__class__.__name__, exc)
            mid = len(records) // 2
            self._apply(records[:mid])
            self._apply([r for r in records[mid:] if r.tp not in self._blocked])
            return
        [rec] = records
        state = self._retries.get(rec.tp)
        attempts = (state.attempts if state is not None and state.offset == rec.offset
                    else 0) + 1
        rec.error, rec.attempts = exc, attempts
        # Dead letters are written in polled order by `_finish`, after the records before.
        if isinstance(exc, PermanentError):
            rec.outcome, rec.reason = DEAD, "permanent"
        elif attempts >= self.retry.max_attempts:
            rec.outcome, rec.reason = DEAD, "retries_exhausted"
        else:
            self._schedule_retry(rec, exc, attempts)

    # --- outcomes -------------------------------------------------------------------------

    def _finish(self, records: list[_Record]) -> int:
        """In polled order: dead-letter what must be, count, store the offsets of every
        record finished up to the first one that waits on its partition."""
        done = 0
        store: dict[TP, int] = {}
        counts: Counter = Counter()
        for rec in records:
            wait_at = self._blocked.get(rec.tp)
            if wait_at is not None and rec.offset >= wait_at:
                continue
            if rec.outcome == DEAD:
                self._dead_letter(rec, rec.reason)
                if rec.outcome != DEAD_LETTERED:
                    continue
            elif rec.outcome == SKIPPED:
                counts[("skipped", rec.logical, rec.reason)] += 1
            elif rec.outcome in (PROCESSED, DUPLICATE):
                counts[(rec.outcome, rec.logical, "")] += 1
            if rec.outcome not in FINISHED:
                if rec.tp not in self._blocked:
                    # Cannot happen by construction; if it did, storing a later offset of
                    # the partition would skip this record: make the partition wait here.
                    log.error("consumer %s: %s[%d]@%d left %s; re-reading it", self.name,
                              rec.logical, rec.tp[1], rec.offset, rec.outcome)
                    self._blocked[rec.tp] = rec.offset
                    self._rewind(rec.tp, rec.offset)
                continue
            state = self._retries.get(rec.tp)
            if state is not None and state.offset <= rec.offset:
                del self._retries[rec.tp]
            store[rec.tp] = rec.offset + 1
            done += 1
            if log.isEnabledFor(logging.DEBUG):
                event = rec.event
                with tracing.use_event(event.id if event else "-",
                                       event.type if event else "-",
                                       event.traceparent if event else None):
                    log.debug("consumer %s: %s %s[%d]@%d", self.name, rec.outcome, rec.logical,
                              rec.tp[1], rec.offset)
        for (what, topic, reason), n in counts.items():
            if what == "skipped":
                metrics.consumer_skipped.inc(n, consumer=self.name, topic=topic, reason=reason)
            elif what == PROCESSED:
                metrics.consumer_processed.inc(n, consumer=self.name, topic=topic)
            else:
                metrics.consumer_duplicates.inc(n, consumer=self.name, topic=topic)
        self._store(store)
        return done

    def _dead_letter(self, rec: _Record, reason: str) -> None:
        msg, error = rec.msg, rec.error
        headers = dead_letter_headers(msg, consumer=self.name, group=self.group_id, error=error,
                                      attempts=rec.attempts, logical_topic=rec.logical)
        try:
            self.dlq.write(rec.logical, msg, headers)
        except DeadLetterError as exc:
            # Not written: do not move past the record; try it again later.
            log.error("consumer %s: %s; %s[%d]@%d will be retried", self.name, exc, rec.logical,
                      rec.tp[1], rec.offset)
            self._schedule_retry(rec, exc, max(0, rec.attempts - 1), count=False)
            return
        rec.outcome = DEAD_LETTERED
        metrics.consumer_dead_lettered.inc(consumer=self.name, topic=rec.logical, reason=reason)
        log.warning("consumer %s: dead-lettered %s[%d]@%d (event %s) after %d attempt(s): %s: %s",
                    self.name, rec.logical, rec.tp[1], rec.offset,
                    rec.event.id if rec.event else "-", rec.attempts,
                    error.__class__.__name__, error)

    def _schedule_retry(self, rec: _Record, error: BaseException, attempts: int, *,
                        count: bool = True) -> None:
        state = self._retries.get(rec.tp)
        if state is None or state.offset != rec.offset:
            state = self._retries[rec.tp] = _Retry(offset=rec.offset)
        state.attempts = attempts
        state.error = f"{error.__class__.__name__}: {error}"
        delay = self.retry.delay(max(1, attempts))
        state.due = time.monotonic() + delay
        self._pause(rec.tp, rec.offset, state)
        rec.outcome = RETRY
        if count:
            metrics.consumer_retries.inc(consumer=self.name, topic=rec.logical)
        log.warning("consumer %s: %s[%d]@%d failed (attempt %d of %d), retrying in %.1fs: %s",
                    self.name, rec.logical, rec.tp[1], rec.offset, attempts,
                    self.retry.max_attempts, delay, state.error)

    def _wait_for_database(self, records: list[_Record], error: BaseException) -> None:
        """Every partition of `records` waits at its first record of them (not counted as
        an attempt: an outage is not the record's fault)."""
        firsts: dict[TP, _Record] = {}
        for r in records:
            firsts.setdefault(r.tp, r)
            r.outcome = OUTAGE
        delay = 0.0
        for tp, rec in firsts.items():
            state = self._retries.get(tp)
            if state is None or state.offset != rec.offset:
                state = self._retries[tp] = _Retry(offset=rec.offset)
            state.outages += 1
            state.error = f"{error.__class__.__name__}: {error}"
            delay = self.retry.delay(state.outages)
            state.due = time.monotonic() + delay
            self._pause(tp, rec.offset, state)
        log.error("consumer %s: the database is unreachable (%s: %s); waiting %.1fs",
                  self.name, error.__class__.__name__, error, delay)

    def _database_usable(self) -> bool:
        try:
            _refresh_connection()
            with connection.cursor() as cur:
                cur.execute("SELECT 1")
            return True
        except DatabaseError:
            connection.close()
            return False

    # --- partitions, offsets, commits -----------------------------------------------------

    def _pause(self, tp: TP, offset: int, state: _Retry) -> None:
        self._blocked[tp] = min(offset, self._blocked.get(tp, offset))
        try:
            self.consumer.pause([TopicPartition(*tp)])
        except KafkaException as exc:
            log.warning("consumer %s: could not pause %s[%d]: %s", self.name, *tp, exc)
        state.paused = True
        self._rewind(tp, offset)

    def _rewind(self, tp: TP, offset: int) -> None:
        # Seeking drops what librdkafka already fetched for the partition, so the record
        # comes again, followed by the rest of the partition in order.
        try:
            self.consumer.seek(TopicPartition(tp[0], tp[1], offset))
        except KafkaException as exc:
            log.warning("consumer %s: could not rewind %s[%d] to %d: %s", self.name, tp[0],
                        tp[1], offset, exc)

    def _resume_due(self, now: float) -> None:
        due = [tp for tp, r in self._retries.items() if r.paused and r.due <= now]
        if due:
            self.consumer.resume([TopicPartition(t, p) for t, p in due])
            for tp in due:
                self._retries[tp].paused = False

    def _store(self, offsets: dict[TP, int]) -> None:
        wanted = [TopicPartition(t, p, o) for (t, p), o in offsets.items()
                  if o > self._stored.get((t, p), -1) and (t, p) in self._assigned]
        if not wanted:
            return
        try:
            self.consumer.store_offsets(offsets=wanted)
        except KafkaException as exc:
            # A partition revoked since its records were handed out: storing fails for it
            # (never raise out of the loop for that). Store the others one by one.
            log.warning("consumer %s: could not store offsets (%s); storing them one by one",
                        self.name, exc.args[0].str() if exc.args else exc)
            kept = []
            for tp in wanted:
                try:
                    self.consumer.store_offsets(offsets=[tp])
                    kept.append(tp)
                except KafkaException:
                    log.warning("consumer %s: %s[%d] is no longer assigned; its new owner "
                                "re-reads from offset %s", self.name, tp.topic, tp.partition,
                                self._stored.get((tp.topic, tp.partition), "committed"))
            wanted = kept
        for tp in wanted:
            self._stored[(tp.topic, tp.partition)] = tp.offset
        if wanted:
            self._dirty = True

    def _store_positions(self) -> None:
        """Move stored offsets past transaction markers.

        With `read_committed`, the offset after a transaction's last record is its commit
        marker, which is never delivered; committing `last + 1` would leave a lag of one per
        partition forever. Once every delivered record of a partition is handled, the
        consumer's position (past the markers it has read) is safe to commit.
        """
        if not self._assigned:
            return
        tps = [TopicPartition(t, p) for t, p in self._assigned
               if (t, p) not in self._retries and (t, p) not in self._blocked]
        if not tps:
            return
        try:
            positions = self.consumer.position(tps)
        except KafkaException:
            return
        self._store({(tp.topic, tp.partition): tp.offset for tp in positions
                     if tp.offset >= 0 and (tp.topic, tp.partition) in self._stored})

    def _commit(self, why: str) -> None:
        """Commit the stored offsets: asynchronously after a batch (a broker round trip per
        batch would cost as much as a small batch's work; a failure is reported to
        `_on_commit` and the offsets go with the next commit), synchronously when partitions
        are revoked and on shutdown (the next owner, or the next start, reads from there)."""
        if not self._dirty or self.consumer is None:
            return
        try:
            self.consumer.commit(asynchronous=why == "batch")
            self._dirty = False
        except KafkaException as exc:
            err = exc.args[0]
            if err.code() == KafkaError._NO_OFFSET:
                self._dirty = False
            elif err.code() in _LOST_GENERATION:
                # Another member owns these partitions now and repeats the uncommitted
                # records; the inbox turns them into no-ops.
                log.warning("consumer %s: commit (%s) lost to a rebalance: %s", self.name, why,
                            err.str())
                self._dirty = False
            else:
                log.warning("consumer %s: commit (%s) failed, retried next batch: %s",
                            self.name, why, err.str())

    def _on_commit(self, err: KafkaError | None, partitions: list[TopicPartition]) -> None:
        # Served inside poll(): the outcome of an asynchronous commit.
        if err is None or err.code() == KafkaError._NO_OFFSET:
            return
        if err.code() in _LOST_GENERATION:
            log.warning("consumer %s: commit lost to a rebalance: %s", self.name, err.str())
            return
        log.warning("consumer %s: commit failed, retried with the next batch: %s", self.name,
                    err.str())
        self._dirty = True

    def _on_assign(self, consumer, partitions: list[TopicPartition]) -> None:
        # librdkafka keeps a partition's pause flag across revoke and re-assign: one paused
        # for a retry when it was revoked would come back paused, with no retry left to
        # resume it, and never deliver again. Assign (eager protocol, the default assignors)
        # and resume explicitly.
        consumer.assign(partitions)
        consumer.resume(partitions)
        for tp in partitions:
            key = (tp.topic, tp.partition)
            self._assigned.add(key)
            self._retries.pop(key, None)
            self._stored.pop(key, None)
        try:
            # Where the group stands, so `_store_positions` commits only real progress.
            for tp in consumer.committed(partitions, timeout=10):
                if tp.offset >= 0:
                    self._stored[(tp.topic, tp.partition)] = tp.offset
        except KafkaException as exc:
            log.warning("consumer %s: could not read committed offsets: %s", self.name, exc)
        log.info("consumer %s: assigned %s", self.name, _describe(partitions))

    def _on_revoke(self, consumer, partitions: list[TopicPartition]) -> None:
        # Every record of earlier steps is finished and stored by now (callbacks run inside
        # poll): commit it before another member takes the partitions over.
        self._commit("revoke")
        self._forget(partitions)
        log.info("consumer %s: revoked %s", self.name, _describe(partitions))

    def _on_lost(self, consumer, partitions: list[TopicPartition]) -> None:
        # The group already gave them away: committing would fail, and the new owner repeats
        # our uncommitted records as inbox no-ops.
        self._dirty = False
        self._forget(partitions)
        log.warning("consumer %s: lost %s", self.name, _describe(partitions))

    def _forget(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            key = (tp.topic, tp.partition)
            self._assigned.discard(key)
            self._retries.pop(key, None)
            self._stored.pop(key, None)
            metrics.consumer_lag.remove(consumer=self.name,
                                        topic=self._logical.get(tp.topic, tp.topic),
                                        partition=tp.partition)

    def _on_kafka_error(self, err: KafkaError) -> None:
        if err.code() == KafkaError._PARTITION_EOF:
            return
        if err.fatal():
            raise KafkaException(err)
        log.warning("consumer %s: %s", self.name, err.str())

    # --- observability --------------------------------------------------------------------

    def _update_lag(self) -> None:
        now = time.monotonic()
        if now - self._last_lag < 1.0 or not self._assigned:
            return
        self._last_lag = now
        tps = [TopicPartition(t, p) for t, p in self._assigned]
        try:
            positions = {(tp.topic, tp.partition): tp.offset for tp in self.consumer.position(tps)}
        except KafkaException:
            return
        for tp in tps:
            try:
                _low, high = self.consumer.get_watermark_offsets(tp, cached=True)
            except KafkaException:
                continue
            pos = positions.get((tp.topic, tp.partition), -1)
            if high >= 0 and pos >= 0:
                metrics.consumer_lag.set(max(0, high - pos), consumer=self.name,
                                         topic=self._logical.get(tp.topic, tp.topic),
                                         partition=tp.partition)

    def _log_summary(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_summary < settings.CONSUMER_SUMMARY_INTERVAL:
            return
        self._last_summary = now
        s = metrics.consumer_summary(self.name)
        log.info("consumer %s: processed %d, duplicates %d, skipped %d, retries %d, "
                 "dead-lettered %d, lag %d", self.name, s["processed"], s["duplicates"],
                 s["skipped"], s["retries"], s["dead_lettered"], s["lag"])


def _refresh_connection() -> None:
    """Drop a broken or CONN_MAX_AGE-expired connection, as Django does around a request.
    Not inside an outer atomic block (a test's): closing there would poison it."""
    if not connection.in_atomic_block:
        close_old_connections()


def _describe(partitions: list[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions) or "nothing"


# --- planning and running -------------------------------------------------------------------


def plan(topics: Iterable[str], *, consumer: str | None = None) -> dict[str, list[str]]:
    """Consumer name -> the requested topics it has handlers for. Raises `ConsumerSetupError`
    for an unknown topic, a topic nobody handles, or a `consumer` with no handler for them."""
    topics = list(dict.fromkeys(topics))
    unknown = [t for t in topics if t not in catalogue.TOPICS]
    if unknown:
        raise ConsumerSetupError(
            f"unknown topic {', '.join(unknown)}; topics are: {', '.join(catalogue.TOPICS)}."
        )
    names: dict[str, list[str]] = {}
    for topic in topics:
        for name in consumers_for_topic(topic):
            names.setdefault(name, []).append(topic)
    if consumer is not None:
        if consumer not in names:
            raise ConsumerSetupError(
                f"consumer {consumer!r} has no handlers for {', '.join(topics)}; consumers "
                f"with handlers there: {', '.join(sorted(names)) or 'none'}."
            )
        names = {consumer: names[consumer]}
    if not names:
        raise ConsumerSetupError(
            f"no handlers are registered for {', '.join(topics)}: register them with "
            "@relay.registry.handler in an app's handlers.py."
        )
    return names


def check_topics_exist(topics: Iterable[str], timeout: float = 15) -> None:
    """Each topic and its `.dlq` twin must exist (auto-creation is off in every environment)."""
    wanted = []
    for t in topics:
        wanted += [topic_name(t), dlq_topic_name(t)]
    try:
        existing = make_admin("consumer-check").list_topics(timeout=timeout).topics
    except KafkaException as exc:
        raise ConsumerSetupError(f"cannot reach Kafka at {settings.KAFKA_BROKERS}: "
                                 f"{exc.args[0].str()}") from None
    missing = [t for t in wanted if t not in existing or existing[t].error is not None]
    if missing:
        raise ConsumerSetupError(
            f"Kafka topic(s) {', '.join(missing)} do not exist; create them with "
            "`manage.py kafka create-topics`."
        )


class ConsumerRunner:
    """Runs workers until a signal: the caller's thread for one, a thread each for several."""

    def __init__(self, workers: list[ConsumerWorker]):
        self.workers = workers
        self.errors: list[tuple[str, BaseException]] = []

    def stop(self, *_args) -> None:
        for w in self.workers:
            w.shutdown = True

    @contextmanager
    def signals_stop(self) -> Iterator[None]:
        """SIGTERM/SIGINT stop every worker after its current record (main thread only);
        the previous handlers come back afterwards."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def run(self) -> None:
        if len(self.workers) == 1:
            self._run_one(self.workers[0])
            return
        threads = [threading.Thread(target=self._run_one, args=(w,), name=f"consume-{w.name}")
                   for w in self.workers]
        for t in threads:
            t.start()
        # Wake regularly so the main thread receives signals while the workers run.
        while any(t.is_alive() for t in threads):
            for t in threads:
                t.join(0.2)

    def _run_one(self, worker: ConsumerWorker) -> None:
        try:
            worker.run()
        except BaseException as exc:
            log.exception("consumer %s stopped on an error", worker.name)
            self.errors.append((worker.name, exc))
            self.stop()  # one worker failing stops the process, so the supervisor restarts it
        finally:
            connections.close_all()
