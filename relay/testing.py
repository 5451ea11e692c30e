"""Helpers for tests and benchmarks that talk to the real broker.

Not used by production code paths. Kept in `relay/` because it builds Kafka clients, and only
`relay/` knows Kafka.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import NewTopic

from .kafka import make_admin, make_consumer


@dataclass
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes] = field(default_factory=dict)

    def header(self, name: str) -> str | None:
        raw = self.headers.get(name)
        return raw.decode() if raw is not None else None


def create_topic(name: str, partitions: int = 1, config: dict | None = None,
                 timeout: float = 30) -> str:
    admin = make_admin("test-admin")
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})],
        operation_timeout=timeout,
    )
    for fut in futures.values():
        try:
            fut.result(timeout)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    wait_for_topic(name, partitions, timeout)
    return name


def wait_for_topic(name: str, partitions: int, timeout: float = 30) -> None:
    admin = make_admin("test-admin")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        md = admin.list_topics(topic=name, timeout=5)
        t = md.topics.get(name)
        if t is not None and t.error is None and len(t.partitions) == partitions and all(
            p.leader >= 0 for p in t.partitions.values()
        ):
            return
        time.sleep(0.1)
    raise TimeoutError(f"topic {name} has no leaders after {timeout}s")


def delete_topics(names: list[str]) -> None:
    if not names:
        return
    admin = make_admin("test-admin")
    for fut in admin.delete_topics(names, operation_timeout=10).values():
        try:
            fut.result(15)
        except KafkaException:
            pass


def read_all(topics: list[str], *, isolation: str = "read_committed",
             timeout: float = 60) -> list[Record]:
    """Read every record of `topics` from the beginning to the current end.

    With `read_committed` the end is the last stable offset: records of open transactions are
    not reached and aborted ones are never returned.
    """
    consumer = make_consumer(
        "test-reader",
        f"test-reader-{uuid.uuid4()}",
        **{"isolation.level": isolation, "enable.partition.eof": True},
    )
    try:
        admin_md = consumer.list_topics(timeout=10)
        assignment = []
        for name in topics:
            meta = admin_md.topics.get(name)
            if meta is None or meta.error is not None:
                raise KafkaException(f"topic {name} does not exist")
            assignment += [TopicPartition(name, p, -2) for p in meta.partitions]  # -2: beginning
        consumer.assign(assignment)
        pending = {(tp.topic, tp.partition) for tp in assignment}
        records: list[Record] = []
        deadline = time.monotonic() + timeout
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"partitions never reached their end: {sorted(pending)}")
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    pending.discard((msg.topic(), msg.partition()))
                    continue
                raise KafkaException(msg.error())
            records.append(
                Record(
                    topic=msg.topic(),
                    partition=msg.partition(),
                    offset=msg.offset(),
                    key=msg.key(),
                    value=msg.value(),
                    headers={k: v for k, v in (msg.headers() or [])},
                )
            )
        return records
    finally:
        consumer.close()
