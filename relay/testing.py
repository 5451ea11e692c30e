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


def wait_for(predicate, *, timeout: float, what: str, every: float = 0.05):
    """Poll `predicate()` until it is truthy (returned) or `timeout` seconds pass (fails,
    naming `what`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


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


# --- producing test records, consumer subprocesses (consumer runtime tests and benchmarks) ---


def produce_events(events, *, per_transaction: int = 100, transactional: bool = True) -> list:
    """Produce `outbox.services.Event`s as the relay would (CloudEvents headers from the
    catalogue, `relay.cloudevents.encode`), in Kafka transactions of `per_transaction` records.
    Returns the event ids in order. The topic comes from the catalogue, under the current
    KAFKA_TOPIC_PREFIX."""
    from datetime import UTC, datetime

    from outbox import catalogue

    from .cloudevents import encode
    from .kafka import make_producer

    conf = {"transactional.id": f"test-producer-{uuid.uuid4()}"} if transactional else {}
    producer = make_producer("test-producer", **conf)
    if transactional:
        producer.init_transactions(30)
    ids = []
    events = list(events)
    for start in range(0, len(events), per_transaction):
        if transactional:
            producer.begin_transaction()
        for ev in events[start:start + per_transaction]:
            et = catalogue.get(ev.type)
            event_id = ev.event_id or uuid.uuid4()
            key = ev.key if ev.key is not None else et.key_of(ev.data)
            headers = catalogue.cloudevent_headers(
                et, event_id=event_id, time=datetime.now(UTC), subject=key, traceparent=None)
            headers.update(ev.extra_headers)
            topic, k, v, h = encode(et.topic, key, headers, dict(ev.data))
            while True:
                try:
                    producer.produce(topic, key=k, value=v, headers=h)
                    break
                except BufferError:
                    producer.poll(0.1)
            ids.append(event_id)
        if transactional:
            producer.commit_transaction(30)
    if producer.flush(30):
        raise TimeoutError("test records not acknowledged within 30s")
    return ids


def produce_raw(topic: str, records: list[tuple[bytes | None, bytes | None, list | None]]
                ) -> None:
    """Produce raw (key, value, headers) records to a physical topic, non-transactionally
    (poison records: not CloudEvents, bad JSON, ...)."""
    from .kafka import make_producer

    producer = make_producer("test-raw-producer")
    for key, value, headers in records:
        producer.produce(topic, key=key, value=value, headers=headers or [])
    if producer.flush(30):
        raise TimeoutError("raw test records not acknowledged within 30s")


def deliver_outbox(event_ids=None) -> int:
    """Stand-in for one relay pass in consumer tests: produce the given outbox rows (all when
    None) in one Kafka transaction, exactly as the relay encodes them. Returns the count."""
    from outbox.models import OutboxEvent

    from .cloudevents import encode
    from .kafka import make_producer

    rows = OutboxEvent.objects.order_by("id")
    if event_ids is not None:
        rows = rows.filter(event_id__in=list(event_ids))
    rows = list(rows)
    producer = make_producer("test-outbox-producer",
                             **{"transactional.id": f"test-outbox-{uuid.uuid4()}"})
    producer.init_transactions(30)
    producer.begin_transaction()
    for row in rows:
        topic, k, v, h = encode(row.topic, row.key, row.headers, row.payload)
        producer.produce(topic, key=k, value=v, headers=h)
    producer.commit_transaction(30)
    return len(rows)


def database_url() -> str:
    """A DATABASE_URL for the database this process uses (the test database in pytest)."""
    from urllib.parse import quote

    from django.db import connection

    db = connection.settings_dict
    auth = quote(db["USER"] or "", safe="")
    if db.get("PASSWORD"):
        auth += ":" + quote(db["PASSWORD"], safe="")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def subprocess_environment(**extra: str) -> dict[str, str]:
    """Environment for a `manage.py` subprocess sharing this test's database and topics."""
    import os

    from django.conf import settings

    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "showoff.settings.test",
        "DATABASE_URL": database_url(),
        "KAFKA_TOPIC_PREFIX": settings.KAFKA_TOPIC_PREFIX,
        "KAFKA_BROKERS": settings.KAFKA_BROKERS,
        "KAFKA_ENABLED": "true" if settings.KAFKA_ENABLED else "false",
        "KAFKA_CONSUMER_GROUP": settings.KAFKA_CONSUMER_GROUP,
        "LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
    }
    env.update(extra)
    return env


class ManageProcess:
    """`manage.py <args>` in a subprocess (output in a log file), after importing `imports`
    (modules that register test-only handlers, so nothing test-only sits in an app's
    `handlers.py`). Runs `python -m relay.testing`, which sets Django up, imports them and
    hands over to Django's command line."""

    def __init__(self, args: list[str], *, imports: list[str] = (), log_dir=None, **env: str):
        import subprocess
        import sys
        import tempfile
        from pathlib import Path

        root = Path(__file__).resolve().parents[1]
        log_dir = Path(log_dir or tempfile.gettempdir())
        self.log_path = log_dir / f"manage-{args[0]}-{uuid.uuid4().hex[:8]}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed when the process ends
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "relay.testing", *args], cwd=root,
            env=subprocess_environment(RELAY_TEST_IMPORTS=",".join(imports), **env),
            stdout=self._log, stderr=subprocess.STDOUT,
        )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output():
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"process exited ({self.proc.returncode}) before "
                                     f"{text!r}:\n{self.output()}")
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not seen within {timeout}s:\n{self.output()}")

    def kill9(self) -> None:
        import signal

        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        self._log.close()

    def terminate(self, timeout: float = 60) -> int:
        import signal

        self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def wait(self, timeout: float = 120) -> int:
        rc = self.proc.wait(timeout)
        self._log.close()
        return rc


def _manage_main() -> None:
    import importlib
    import os
    import sys

    import django
    from django.core.management import execute_from_command_line

    django.setup()
    for module in filter(None, os.environ.get("RELAY_TEST_IMPORTS", "").split(",")):
        importlib.import_module(module)
    execute_from_command_line(["manage.py", *sys.argv[1:]])


if __name__ == "__main__":
    _manage_main()
