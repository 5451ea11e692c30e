"""Dead letters: `<topic>.dlq`, and replaying them exactly once.

A dead letter is the original record (same key, value and CloudEvents headers) plus `dlq-*`
headers naming where it came from and why it failed: original topic, partition and offset, the
consumer (and group) that gave up on it, the error class and message, the number of handler
attempts (0: it never reached a handler: undecodable or schema-invalid) and the time.

One `<topic>.dlq` is shared by every consumer of `<topic>`; the `dlq-consumer` header says whose
dead letter it is, and `dlq list` / `dlq replay` filter on it.

Replay (`manage.py dlq replay`) re-publishes the event through `outbox.publish`, so the replay
is written exactly once like any other event and the relay delivers it in commit order. Three
rules make the handler apply the event exactly once, however often an operator replays:

1. The replay gets a new event id, because the outbox's `event_id` is unique and the original
   row may still be there. The id is derived from the dead letter's own position
   (uuid5 of `dlq topic/partition/offset`), so replaying the same dead letter twice writes one
   outbox row; the second attempt reports "already replayed".
2. The replay carries `replay-of: <original event id>` and `replay-for: <consumer name>`.
   Every other consumer of the topic skips it (it already handled the original; otherwise it
   has its own dead letter), so a replay for notifications is never applied again by analytics.
3. The addressed consumer uses the *original* event id as its inbox key and as
   `ConsumedEvent.id`. If the original was applied after all (it was dead-lettered, then a
   restart re-delivered it and it succeeded), or the dead letter was written twice (a crash
   between the DLQ write and the offset commit), the replay is a duplicate and is skipped.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition
from django.conf import settings
from django.db import IntegrityError, transaction

from outbox import catalogue, tracing
from outbox.models import OutboxEvent
from outbox.services import publish

from .kafka import dlq_topic_name, make_consumer, make_producer
from .models import InboxEntry

H_TOPIC = "dlq-original-topic"
H_PARTITION = "dlq-original-partition"
H_OFFSET = "dlq-original-offset"
H_CONSUMER = "dlq-consumer"
H_GROUP = "dlq-group"
H_ERROR_CLASS = "dlq-error-class"
H_ERROR_MESSAGE = "dlq-error-message"
H_ATTEMPTS = "dlq-attempts"
H_TIME = "dlq-time"
H_REPLAY_OF = "replay-of"
H_REPLAY_FOR = "replay-for"
H_REPLAY_SOURCE = "replay-source"

_MAX_MESSAGE = 2000
# Namespace of replay event ids (uuid5 of the dead letter's position).
_REPLAY_NAMESPACE = uuid.UUID("5d2c1f0e-6f6b-4b8e-9a53-0b7f3e1c9d21")


class DeadLetterError(RuntimeError):
    """The dead letter could not be written (broker unreachable, DLQ topic missing)."""


def dead_letter_headers(msg: Message, *, consumer: str, group: str, error: BaseException,
                        attempts: int, logical_topic: str) -> list[tuple[str, bytes]]:
    kept = [(k, v) for k, v in (msg.headers() or []) if not k.startswith("dlq-")]
    message = str(error) or error.__class__.__name__
    extra = {
        H_TOPIC: logical_topic,
        H_PARTITION: str(msg.partition()),
        H_OFFSET: str(msg.offset()),
        H_CONSUMER: consumer,
        H_GROUP: group,
        H_ERROR_CLASS: f"{error.__class__.__module__}.{error.__class__.__qualname__}",
        H_ERROR_MESSAGE: message[:_MAX_MESSAGE],
        H_ATTEMPTS: str(attempts),
        H_TIME: datetime.now(UTC).isoformat().replace("+00:00", "Z"),
    }
    return kept + [(k, v.encode()) for k, v in extra.items()]


class DeadLetterWriter:
    """Writes dead letters synchronously: the record is in the DLQ before its offset is stored.

    Idempotent producer, acks=all. A crash between this write and the offset commit writes the
    dead letter again on the next delivery; replay handles that (rule 3 above).
    """

    def __init__(self, role: str):
        self.producer = make_producer(role, **{"linger.ms": 0})

    def write(self, logical_topic: str, msg: Message, headers: list[tuple[str, bytes]],
              timeout: float = 30) -> None:
        errors: list[KafkaError] = []

        def delivered(err, _msg):
            if err is not None:
                errors.append(err)

        topic = dlq_topic_name(logical_topic)
        try:
            self.producer.produce(topic, key=msg.key(), value=msg.value(), headers=headers,
                                  on_delivery=delivered)
        except (KafkaException, BufferError) as exc:
            raise DeadLetterError(f"could not write to {topic}: {exc}") from None
        remaining = self.producer.flush(timeout)
        if remaining or errors:
            reason = errors[0].str() if errors else f"not acknowledged within {timeout}s"
            raise DeadLetterError(f"could not write to {topic}: {reason}")

    def close(self) -> None:
        self.producer.flush(10)


# --- reading --------------------------------------------------------------------------------


@dataclass
class DeadLetter:
    """One record of `<topic>.dlq`, parsed for `dlq list` and `dlq replay`."""

    dlq_topic: str
    dlq_partition: int
    dlq_offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, str] = field(default_factory=dict)

    def h(self, name: str, default: str = "") -> str:
        return self.headers.get(name, default)

    @property
    def consumer(self) -> str:
        return self.h(H_CONSUMER)

    @property
    def event_id(self) -> str:
        """The id this record carried (`ce_id`); for a failed replay, the replay's id."""
        return self.h("ce_id")

    @property
    def original_event_id(self) -> str:
        """The event the consumer failed to apply: its inbox key (see rule 3)."""
        return self.h(H_REPLAY_OF) or self.h("ce_id")

    @property
    def event_type(self) -> str:
        return self.h("ce_type")

    @property
    def attempts(self) -> int:
        try:
            return int(self.h(H_ATTEMPTS, "0"))
        except ValueError:
            return 0

    @property
    def origin(self) -> str:
        return f"{self.h(H_TOPIC)}[{self.h(H_PARTITION)}]@{self.h(H_OFFSET)}"

    @property
    def reason(self) -> str:
        cls = self.h(H_ERROR_CLASS).rsplit(".", 1)[-1]
        return f"{cls}: {self.h(H_ERROR_MESSAGE)}" if cls else self.h(H_ERROR_MESSAGE)

    def age_hours(self) -> float | None:
        try:
            when = datetime.fromisoformat(self.h(H_TIME).replace("Z", "+00:00"))
        except ValueError:
            return None
        return (datetime.now(UTC) - when).total_seconds() / 3600

    @property
    def replay_id(self) -> uuid.UUID:
        return uuid.uuid5(_REPLAY_NAMESPACE,
                          f"{self.dlq_topic}/{self.dlq_partition}/{self.dlq_offset}")


def read_dead_letters(logical_topic: str, *, timeout: float = 60) -> list[DeadLetter]:
    """Every committed record of `<topic>.dlq`, from the beginning to the current end."""
    topic = dlq_topic_name(logical_topic)
    consumer = make_consumer("dlq-reader", f"{settings.KAFKA_CONSUMER_GROUP}.dlq-reader."
                             f"{uuid.uuid4().hex[:8]}", **{"enable.partition.eof": True})
    try:
        meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            raise DeadLetterError(
                f"dead-letter topic {topic} does not exist; create the topics with "
                "`manage.py kafka create-topics`."
            )
        consumer.assign([TopicPartition(topic, p, -2) for p in meta.partitions])  # beginning
        pending = set(meta.partitions)
        letters: list[DeadLetter] = []
        deadline = time.monotonic() + timeout
        while pending:
            if time.monotonic() > deadline:
                raise DeadLetterError(f"{topic}: partitions {sorted(pending)} never reached "
                                      f"their end within {timeout}s")
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    pending.discard(msg.partition())
                    continue
                raise DeadLetterError(f"{topic}: {msg.error().str()}")
            letters.append(DeadLetter(
                dlq_topic=topic, dlq_partition=msg.partition(), dlq_offset=msg.offset(),
                key=msg.key(), value=msg.value(),
                headers={k: (v or b"").decode(errors="replace") for k, v in (msg.headers() or [])},
            ))
        letters.sort(key=lambda d: (d.h(H_TIME), d.dlq_partition, d.dlq_offset))
        return letters
    finally:
        consumer.close()


def status_of(letters: Iterable[DeadLetter]) -> dict[tuple[int, int], str]:
    """`applied` (the consumer's inbox has the event), `replayed` (a replay waits in the
    outbox or on its way) or `pending`, per (dlq partition, dlq offset)."""
    letters = list(letters)
    applied = set()
    wanted = [(d.consumer, d.original_event_id) for d in letters if _is_uuid(d.original_event_id)]
    by_consumer: dict[str, list[str]] = {}
    for name, event_id in wanted:
        by_consumer.setdefault(name, []).append(event_id)
    for name, ids in by_consumer.items():
        applied |= {(name, str(e)) for e in InboxEntry.objects.filter(
            consumer=name, event_id__in=ids).values_list("event_id", flat=True)}
    replayed = set(OutboxEvent.objects.filter(
        event_id__in=[d.replay_id for d in letters]).values_list("event_id", flat=True))
    out = {}
    for d in letters:
        if (d.consumer, d.original_event_id) in applied:
            out[(d.dlq_partition, d.dlq_offset)] = "applied"
        elif d.replay_id in replayed:
            out[(d.dlq_partition, d.dlq_offset)] = "replayed"
        else:
            out[(d.dlq_partition, d.dlq_offset)] = "pending"
    return out


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


# --- replay ---------------------------------------------------------------------------------


@dataclass
class ReplayResult:
    letter: DeadLetter
    outcome: str  # replayed | already applied | already replayed | cannot replay
    detail: str = ""

    @property
    def failed(self) -> bool:
        return self.outcome == "cannot replay"


def select_for_replay(letters: list[DeadLetter], *, consumer: str | None = None,
                      event_ids: Iterable[str] = ()) -> list[DeadLetter]:
    """The dead letters to replay: filtered by consumer and by event id (the original id or
    the record's own `ce_id`); one per (consumer, original event), the newest."""
    ids = {str(e).lower() for e in event_ids}
    chosen: dict[tuple[str, str], DeadLetter] = {}
    for d in letters:  # sorted oldest first: the newest dead letter of an event wins
        if consumer and d.consumer != consumer:
            continue
        if ids and d.original_event_id.lower() not in ids and d.event_id.lower() not in ids:
            continue
        chosen[(d.consumer, d.original_event_id)] = d
    return list(chosen.values())


def replay(letter: DeadLetter) -> ReplayResult:
    """Re-publish one dead letter through the outbox (see the module docstring)."""
    if not letter.consumer:
        return ReplayResult(letter, "cannot replay", "no dlq-consumer header: not a dead letter")
    if not _is_uuid(letter.original_event_id) or not letter.event_type:
        return ReplayResult(letter, "cannot replay",
                            f"not a CloudEvent (it was dead-lettered as {letter.reason})")
    if InboxEntry.objects.filter(consumer=letter.consumer,
                                 event_id=letter.original_event_id).exists():
        return ReplayResult(letter, "already applied",
                            f"{letter.consumer} has applied event {letter.original_event_id}")
    age = letter.age_hours()
    if age is not None and age > settings.INBOX_RETENTION_HOURS:
        # Inbox rows older than the retention are pruned: had the event been applied after
        # all, nothing would show it any more, and a replay could apply it twice.
        return ReplayResult(letter, "cannot replay",
                            f"dead-lettered {age:.0f} h ago, beyond INBOX_RETENTION_HOURS="
                            f"{settings.INBOX_RETENTION_HOURS}: the inbox can no longer tell "
                            "whether it was applied; apply it by hand or raise the retention")
    try:
        data: Any = json.loads(letter.value) if letter.value is not None else None
    except (ValueError, UnicodeDecodeError) as exc:
        return ReplayResult(letter, "cannot replay", f"value is not JSON: {exc}")
    if not isinstance(data, dict):
        return ReplayResult(letter, "cannot replay", "value is not a JSON object")
    replay_id = letter.replay_id
    headers = {
        H_REPLAY_OF: letter.original_event_id,
        H_REPLAY_FOR: letter.consumer,
        H_REPLAY_SOURCE: f"{letter.dlq_topic}/{letter.dlq_partition}/{letter.dlq_offset}",
    }
    try:
        with tracing.use_traceparent(tracing.child_of(letter.h("traceparent") or None)):
            with transaction.atomic():
                publish(letter.event_type, data,
                        key=letter.key.decode(errors="replace") if letter.key else None,
                        event_id=replay_id, subject=letter.h("ce_subject") or None,
                        headers=headers)
    except IntegrityError:
        return ReplayResult(letter, "already replayed", f"as event {replay_id}")
    except (catalogue.UnknownEventType, catalogue.EventValidationError) as exc:
        return ReplayResult(letter, "cannot replay", str(exc))
    return ReplayResult(letter, "replayed", f"as event {replay_id}")
