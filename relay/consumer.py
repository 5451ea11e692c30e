"""The consumer runtime behind `manage.py consume <topic> [<topic> ...]` (DESIGN.md §4).

Each consumer name (the first argument of `@relay.registry.handler`) runs as its own
`ConsumerWorker`: its own Kafka consumer in group `{KAFKA_CONSUMER_GROUP}.<name>` (with
KAFKA_TOPIC_PREFIX before the name when one is set)
(`read_committed`, manual commits), its own inbox rows and its own dead letters. One process
runs the workers of every consumer name with handlers for the requested topics, one thread each,
so notifications backing off on a failing record never holds analytics back.

Per record, one database transaction: insert the inbox row `(consumer, event id)` (a conflict
means the event was applied before: skip it), run the handlers, which write their effects and
any follow-up events through `outbox.publish`; commit. Only then is the record's offset stored,
and the stored offsets are committed to Kafka synchronously once per polled batch, on a
rebalance (partitions revoked) and on shutdown. A crash anywhere repeats at most the records of
the batch whose offsets were not committed yet, and the inbox turns each repeat into a no-op.
Committing per batch rather than per record trades a slightly larger repeat after a crash (free,
thanks to the inbox) for one broker round trip per batch instead of per record.

Failures:
- a record that is not a CloudEvent, has an unknown type or fails its schema goes to
  `<topic>.dlq` at once (attempts 0); `PermanentError` from a handler too (attempts 1);
- any other exception is retried with capped exponential backoff. The partition is paused and
  rewound to the failing record meanwhile, so the consumer keeps polling (it stays in the group,
  well inside `max.poll.interval.ms`, and other partitions keep flowing) and order within the
  partition holds. After `CONSUMER_RETRY_MAX_ATTEMPTS` attempts the record is dead-lettered and
  its offset stored: a poison record never blocks its partition;
- when the database itself is unreachable the attempt is not counted (it is not the record's
  fault): the partition waits with backoff until the database answers, and nothing is
  dead-lettered because of an outage.

SIGTERM/SIGINT: the current record finishes, stored offsets are committed, the consumer leaves
its group (close) and the process exits 0.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from uuid import UUID

from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition
from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection, connections, transaction

from outbox import catalogue, tracing

from . import metrics
from .cloudevents import UndecodableRecord, decode
from .dlq import H_REPLAY_FOR, H_REPLAY_OF, DeadLetterError, DeadLetterWriter, dead_letter_headers
from .kafka import dlq_topic_name, ensure_enabled, make_admin, make_consumer, topic_name
from .registry import ConsumedEvent, PermanentError, consumers_for_topic, handlers_for

log = logging.getLogger("relay.consumer")

_INBOX_INSERT = """
    INSERT INTO relay_inbox (consumer, event_id, event_type, topic, partition, "offset",
                             processed_at)
    VALUES (%s, %s, %s, %s, %s, %s, now())
    ON CONFLICT (consumer, event_id) DO NOTHING
    RETURNING id
"""

# Errors whose code means the group moved on without us: our partitions belong to another
# member now, which re-reads from the last committed offset (the inbox makes that safe).
_LOST_GENERATION = {
    KafkaError.REBALANCE_IN_PROGRESS,
    KafkaError.ILLEGAL_GENERATION,
    KafkaError.UNKNOWN_MEMBER_ID,
    KafkaError.FENCED_INSTANCE_ID,
}


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


@dataclass
class Outcome:
    """What happened to one record (returned by `handle_message`, for tests and logs)."""

    result: str  # processed | duplicate | skipped | dead_lettered | retry | outage
    event_id: UUID | None = None
    detail: str = ""


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
        self.poll_timeout = settings.CONSUMER_POLL_TIMEOUT if poll_timeout is None \
            else poll_timeout
        self.instance_id = instance_id
        self.retry = retry or RetryPolicy.from_settings()
        self.shutdown = False
        self.handled = 0  # records finished (any outcome but retry/outage), for --max-records
        self.consumer = None
        self.dlq: DeadLetterWriter | None = None
        self._logical = {topic_name(t): t for t in self.topics}
        self._retries: dict[tuple[str, int], _Retry] = {}
        self._stored: dict[tuple[str, int], int] = {}
        self._assigned: set[tuple[str, int]] = set()
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
        self.consumer = make_consumer(f"consumer.{self.name}", self.group_id, **overrides)
        self.dlq = DeadLetterWriter(f"consumer.{self.name}.dlq")
        self.consumer.subscribe(list(self._logical), on_assign=self._on_assign,
                                on_revoke=self._on_revoke, on_lost=self._on_lost)
        log.info("consumer %s: group %s, topics %s", self.name, self.group_id,
                 ", ".join(self._logical))

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
        """Poll one batch and handle it; returns whether any record was handled."""
        _refresh_connection()
        now = time.monotonic()
        self._resume_due(now)
        timeout = self.poll_timeout
        waiting = [r.due for r in self._retries.values() if r.paused]
        if waiting:
            timeout = max(0.0, min(timeout, min(waiting) - now))
        # consume(n, timeout) waits for n records or the timeout, which would hold a lone
        # record back for the whole timeout: wait for one, then take what is already fetched.
        first = self.consumer.poll(timeout)
        msgs = [] if first is None else [first]
        if first is not None and self.batch_size > 1:
            msgs += self.consumer.consume(self.batch_size - 1, 0)
        did_work = False
        cut = False
        for msg in msgs:
            if self.shutdown:
                cut = True
                break
            err = msg.error()
            if err is not None:
                self._on_kafka_error(err)
                continue
            tp = (msg.topic(), msg.partition())
            pending = self._retries.get(tp)
            if pending is not None and msg.offset() != pending.offset:
                # Records fetched before the partition was rewound; they come again in order.
                if not pending.paused:
                    self._rewind(msg.topic(), msg.partition(), pending.offset)
                continue
            outcome = self.handle_message(msg)
            if outcome.result not in ("retry", "outage"):
                did_work = True
                self.handled += 1
                if self.max_records is not None and self.handled >= self.max_records:
                    self.shutdown = True
        if not cut:
            self._store_positions()
        self._commit("batch")
        self._update_lag()
        self._log_summary()
        return did_work

    def handle_message(self, msg: Message) -> Outcome:
        """Handle one record; stores its offset unless it is to be retried."""
        logical = self._logical.get(msg.topic(), msg.topic())
        try:
            event = decode(logical, msg.key(), msg.value(), msg.headers(), msg.partition(),
                           msg.offset())
        except UndecodableRecord as exc:
            return self._dead_letter(msg, logical, exc, attempts=0, reason="undecodable")
        except (catalogue.UnknownEventType, catalogue.EventValidationError) as exc:
            return self._dead_letter(msg, logical, exc, attempts=0, reason="invalid")
        # Every log line about this record (and its handlers' own) names the event and trace.
        with tracing.use_event(event.id, event.type, event.traceparent):
            outcome = self._handle_event(msg, logical, event)
            log.debug("consumer %s: %s %s[%d]@%d", self.name, outcome.result, logical,
                      msg.partition(), msg.offset())
            return outcome

    def _handle_event(self, msg: Message, logical: str, event: ConsumedEvent) -> Outcome:
        replay_for = event.headers.get(H_REPLAY_FOR)
        if replay_for is not None:
            if replay_for != self.name:
                return self._skip(msg, logical, event, "replay_for_other")
            try:
                # The inbox key of a replay is the original event's id (see relay/dlq.py).
                event = replace(event, id=UUID(event.headers[H_REPLAY_OF]))
            except (KeyError, ValueError):
                return self._dead_letter(
                    msg, logical, UndecodableRecord("replay without a valid replay-of header"),
                    attempts=0, reason="undecodable")

        registrations = handlers_for(self.name, event.type)
        if not registrations:
            return self._skip(msg, logical, event, "no_handler")

        state = self._retries.get((msg.topic(), msg.partition()))
        attempts = state.attempts if state is not None and state.offset == msg.offset() else 0
        started = time.perf_counter()
        try:
            with tracing.use_traceparent(tracing.child_of(event.traceparent)):
                with transaction.atomic():
                    with connection.cursor() as cur:
                        cur.execute(_INBOX_INSERT, [self.name, event.id, event.type, logical,
                                                    msg.partition(), msg.offset()])
                        fresh = cur.fetchone() is not None
                    if fresh:
                        for reg in registrations:
                            reg.fn(event)
        except PermanentError as exc:
            return self._dead_letter(msg, logical, exc, attempts=attempts + 1,
                                     reason="permanent", event_id=event.id)
        except Exception as exc:  # noqa: BLE001 - any handler error is a transient failure
            if not self._database_usable():
                return self._wait_for_database(msg, exc)
            attempts += 1
            if attempts >= self.retry.max_attempts:
                return self._dead_letter(msg, logical, exc, attempts=attempts,
                                         reason="retries_exhausted", event_id=event.id)
            return self._schedule_retry(msg, logical, exc, attempts)
        metrics.consumer_handler_seconds.observe(time.perf_counter() - started,
                                                 consumer=self.name, topic=logical)
        self._done(msg)
        if fresh:
            metrics.consumer_processed.inc(consumer=self.name, topic=logical)
            return Outcome("processed", event.id)
        metrics.consumer_duplicates.inc(consumer=self.name, topic=logical)
        log.debug("consumer %s: event %s already applied, skipped", self.name, event.id)
        return Outcome("duplicate", event.id)

    # --- outcomes -------------------------------------------------------------------------

    def _done(self, msg: Message) -> None:
        tp = (msg.topic(), msg.partition())
        self._retries.pop(tp, None)
        self._store(msg.topic(), msg.partition(), msg.offset() + 1)

    def _skip(self, msg: Message, logical: str, event: ConsumedEvent, reason: str) -> Outcome:
        metrics.consumer_skipped.inc(consumer=self.name, topic=logical, reason=reason)
        self._done(msg)
        return Outcome("skipped", event.id, reason)

    def _dead_letter(self, msg: Message, logical: str, error: BaseException, *, attempts: int,
                     reason: str, event_id: UUID | None = None) -> Outcome:
        headers = dead_letter_headers(msg, consumer=self.name, group=self.group_id, error=error,
                                      attempts=attempts, logical_topic=logical)
        try:
            self.dlq.write(logical, msg, headers)
        except DeadLetterError as exc:
            # Not written: do not move past the record; try it again later.
            log.error("consumer %s: %s; %s[%d]@%d will be retried", self.name, exc, logical,
                      msg.partition(), msg.offset())
            return self._schedule_retry(msg, logical, exc, max(0, attempts - 1), count=False)
        metrics.consumer_dead_lettered.inc(consumer=self.name, topic=logical, reason=reason)
        log.warning("consumer %s: dead-lettered %s[%d]@%d (event %s) after %d attempt(s): %s: %s",
                    self.name, logical, msg.partition(), msg.offset(), event_id or "-",
                    attempts, error.__class__.__name__, error)
        self._done(msg)
        return Outcome("dead_lettered", event_id, f"{reason}: {error}")

    def _schedule_retry(self, msg: Message, logical: str, error: BaseException, attempts: int,
                        *, count: bool = True) -> Outcome:
        tp = (msg.topic(), msg.partition())
        state = self._retries.get(tp)
        if state is None or state.offset != msg.offset():
            state = self._retries[tp] = _Retry(offset=msg.offset())
        state.attempts = attempts
        state.error = f"{error.__class__.__name__}: {error}"
        delay = self.retry.delay(max(1, attempts))
        state.due = time.monotonic() + delay
        self._pause(msg.topic(), msg.partition(), msg.offset(), state)
        if count:
            metrics.consumer_retries.inc(consumer=self.name, topic=logical)
        log.warning("consumer %s: %s[%d]@%d failed (attempt %d of %d), retrying in %.1fs: %s",
                    self.name, logical, msg.partition(), msg.offset(), attempts,
                    self.retry.max_attempts, delay, state.error)
        return Outcome("retry", None, state.error)

    def _wait_for_database(self, msg: Message, error: BaseException) -> Outcome:
        tp = (msg.topic(), msg.partition())
        state = self._retries.get(tp)
        if state is None or state.offset != msg.offset():
            state = self._retries[tp] = _Retry(offset=msg.offset())
        state.outages += 1
        state.error = f"{error.__class__.__name__}: {error}"
        delay = self.retry.delay(state.outages)
        state.due = time.monotonic() + delay
        self._pause(msg.topic(), msg.partition(), msg.offset(), state)
        log.error("consumer %s: the database is unreachable (%s); waiting %.1fs",
                  self.name, state.error, delay)
        return Outcome("outage", None, state.error)

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

    def _pause(self, topic: str, partition: int, offset: int, state: _Retry) -> None:
        tp = TopicPartition(topic, partition)
        self.consumer.pause([tp])
        state.paused = True
        self._rewind(topic, partition, offset)

    def _rewind(self, topic: str, partition: int, offset: int) -> None:
        # Seeking drops what librdkafka already fetched for the partition, so the record
        # comes again, followed by the rest of the partition in order.
        try:
            self.consumer.seek(TopicPartition(topic, partition, offset))
        except KafkaException as exc:
            log.warning("consumer %s: could not rewind %s[%d] to %d: %s", self.name, topic,
                        partition, offset, exc)

    def _resume_due(self, now: float) -> None:
        due = [tp for tp, r in self._retries.items() if r.paused and r.due <= now]
        if due:
            self.consumer.resume([TopicPartition(t, p) for t, p in due])
            for tp in due:
                self._retries[tp].paused = False

    def _store(self, topic: str, partition: int, offset: int) -> None:
        if offset <= self._stored.get((topic, partition), -1):
            return
        self.consumer.store_offsets(offsets=[TopicPartition(topic, partition, offset)])
        self._stored[(topic, partition)] = offset
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
        tps = [TopicPartition(t, p) for t, p in self._assigned if (t, p) not in self._retries]
        if not tps:
            return
        try:
            positions = self.consumer.position(tps)
        except KafkaException:
            return
        for tp in positions:
            if tp.offset >= 0 and (tp.topic, tp.partition) in self._stored:
                self._store(tp.topic, tp.partition, tp.offset)

    def _commit(self, why: str) -> None:
        if not self._dirty or self.consumer is None:
            return
        try:
            self.consumer.commit(asynchronous=False)
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
        # Everything returned by earlier polls is handled by now (callbacks run inside poll):
        # commit it before another member takes the partitions over.
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
