"""The operator side of `relay/`: what `manage.py kafka ...` and `manage.py dlq ...` do.

Each operation returns rows or raises `CliError` with a sentence naming the problem and the fix;
the management commands only parse arguments and print (`format_table`), so a bad argument or an
unknown topic is one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import json
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    ConsumerGroupState,
    ConsumerGroupTopicPartitions,
    IsolationLevel,
    KafkaError,
    KafkaException,
    TopicCollection,
    TopicPartition,
)
from confluent_kafka.admin import (
    ConfigResource,
    ConfigSource,
    NewPartitions,
    OffsetSpec,
    ResourceType,
)
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from .cloudevents import UndecodableRecord, decode
from .kafka import KafkaDisabled, committed_offsets, make_admin, make_consumer, topic_name

TIMEOUT = 15.0


class CliError(RuntimeError):
    """An operator mistake or an unreachable broker, said in one sentence."""


# --- command plumbing -----------------------------------------------------------------------


class OneLineParser(CommandParser):
    """Argument errors as one line (`kafka: error: ...`), not the usage block."""

    def error(self, message):
        if self.called_from_command_line:
            self.exit(2, f"{self.prog}: error: {message} (see --help)\n")
        raise CommandError(f"Error: {message}")


def number_argument(kind: type = int, *, minimum: float = 1, above: bool = False
                    ) -> Callable[[str], Any]:
    """An argparse `type` for a number: `kind(value)` at least `minimum` (strictly above it
    with `above`), else a one-line error naming the value."""
    import argparse

    def parse(value: str):
        try:
            n = kind(value)
        except ValueError:
            what = "a whole number" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"{value!r} is not {what}") from None
        if n < minimum or (above and n == minimum):
            raise argparse.ArgumentTypeError(
                f"{value} is not {'above' if above else 'at least'} {minimum:g}")
        return n

    return parse


class OperatorCommand(BaseCommand):
    """Base of `kafka` and `dlq`: one-line argument errors; Kafka failures as CommandError."""

    def create_parser(self, prog_name, subcommand, **kwargs):
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.__class__ = OneLineParser  # subparsers inherit it (CommandParser.add_subparsers)
        return parser

    def execute(self, *args, **options):
        try:
            return super().execute(*args, **options)
        except (CliError, KafkaDisabled) as exc:
            raise CommandError(str(exc)) from None
        except KafkaException as exc:
            raise CommandError(f"Kafka error: {_kafka_message(exc)}") from None


def _kafka_message(exc: KafkaException) -> str:
    err = exc.args[0] if exc.args else None
    return err.str() if isinstance(err, KafkaError) else str(exc)


def _result(future, what: str) -> Any:
    try:
        return future.result(TIMEOUT + 5)
    except KafkaException as exc:
        raise CliError(f"{what}: {_kafka_message(exc)}") from None
    except TimeoutError:
        raise CliError(f"{what}: no answer from Kafka at {settings.KAFKA_BROKERS} within "
                       f"{TIMEOUT:.0f}s; is the broker up?") from None


def format_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Columns padded to their widest cell, like Kafka's own tools."""
    cells = [[str(h) for h in headers]] + [["-" if c is None else str(c) for c in r]
                                           for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
                     for row in cells)


def _admin():
    return make_admin("cli", **{"socket.timeout.ms": int(TIMEOUT * 1000)})


def _metadata(admin):
    try:
        return admin.list_topics(timeout=TIMEOUT)
    except KafkaException as exc:
        raise CliError(f"cannot reach Kafka at {settings.KAFKA_BROKERS}: "
                       f"{_kafka_message(exc)}") from None


def resolve_topic(name: str, admin=None) -> tuple[str, Any]:
    """The physical topic for `name` (logical, `post-events`, or physical) and its metadata."""
    admin = admin or _admin()
    topics = _metadata(admin).topics
    for candidate in dict.fromkeys([topic_name(name), name]):
        meta = topics.get(candidate)
        if meta is not None and meta.error is None:
            return candidate, meta
    looked = " or ".join(repr(c) for c in dict.fromkeys([topic_name(name), name]))
    raise CliError(f"unknown topic {name!r} (looked for {looked}); list topics with "
                   "`manage.py kafka topics --list`.")


def _visible(name: str, show_all: bool) -> bool:
    if show_all:
        return True
    prefix = settings.KAFKA_TOPIC_PREFIX
    return name.startswith(prefix) if prefix else not name.startswith("__")


# --- topics ---------------------------------------------------------------------------------


def topics_list(*, show_all: bool = False) -> list[str]:
    """Topic names (under KAFKA_TOPIC_PREFIX when set; `show_all` adds every other one)."""
    return sorted(n for n in _metadata(_admin()).topics if _visible(n, show_all))


@dataclass
class TopicDescription:
    name: str
    partitions: list[tuple[int, int, list[int], list[int]]]  # id, leader, replicas, isr
    configs: dict[str, str]

    @property
    def replication_factor(self) -> int:
        return len(self.partitions[0][2]) if self.partitions else 0


def topics_describe(topic: str | None = None, *, show_all: bool = False
                    ) -> list[TopicDescription]:
    admin = _admin()
    if topic is not None:
        names = [resolve_topic(topic, admin)[0]]
    else:
        names = topics_list(show_all=show_all)
    if not names:
        return []
    described = admin.describe_topics(TopicCollection(names), request_timeout=TIMEOUT)
    resources = [ConfigResource(ResourceType.TOPIC, n) for n in names]
    configs = admin.describe_configs(resources, request_timeout=TIMEOUT)
    out = []
    for name, res in zip(names, resources, strict=True):
        desc = _result(described[name], f"describing {name}")
        entries = _result(configs[res], f"reading the configuration of {name}")
        set_here = {k: e.value for k, e in entries.items()
                    if e.source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
                    or e.source == ConfigSource.DYNAMIC_TOPIC_CONFIG}
        out.append(TopicDescription(
            name=name,
            partitions=sorted((p.id, p.leader.id if p.leader else -1,
                               [r.id for r in p.replicas], [r.id for r in p.isr])
                              for p in desc.partitions),
            configs=dict(sorted(set_here.items())),
        ))
    return out


def topics_alter(topic: str, partitions: int) -> tuple[str, int, int]:
    """Grow `topic` to `partitions`; returns (physical name, before, after)."""
    if partitions < 1:
        raise CliError("--partitions must be a positive number.")
    admin = _admin()
    name, meta = resolve_topic(topic, admin)
    before = len(meta.partitions)
    if partitions <= before:
        raise CliError(f"topic {name} has {before} partitions; Kafka can only add partitions, "
                       f"so --partitions must be more than {before}.")
    fut = admin.create_partitions([NewPartitions(name, partitions)], request_timeout=TIMEOUT)
    _result(fut[name], f"adding partitions to {name}")
    return name, before, partitions


# --- tail -----------------------------------------------------------------------------------


def format_record(msg) -> str:
    """One record as a CloudEvent, readably: position, time, type, id, key, then data."""
    where = f"{msg.topic()}[{msg.partition()}]@{msg.offset()}"
    try:
        ev = decode(msg.topic(), msg.key(), msg.value(), msg.headers(), msg.partition(),
                    msg.offset(), validate=False)
    except UndecodableRecord as exc:
        key = msg.key().decode(errors="replace") if msg.key() is not None else "-"
        value = (msg.value() or b"")[:500].decode(errors="replace")
        return f"{where}  (not a CloudEvent: {exc})  key={key}\n  value: {value}"
    time_s = ev.headers.get("ce_time", "-")
    lines = [f"{where}  {time_s}  {ev.type}  id={ev.id}  key={ev.key or '-'}"]
    shown = {"ce_specversion", "ce_id", "ce_type", "ce_time", "content-type"}
    extra = {k: v for k, v in ev.headers.items() if k not in shown}
    if extra:
        lines.append("  " + "  ".join(f"{k.removeprefix('ce_')}={v}" for k, v in extra.items()))
    lines.append("  data: " + json.dumps(ev.data, ensure_ascii=False, sort_keys=True))
    return "\n".join(lines)


def tail(topic: str, out: TextIO, *, from_beginning: bool = False, max_records: int | None = None,
         timeout_ms: int | None = None, should_stop: Callable[[], bool] = lambda: False) -> int:
    """Print records of `topic` as they come (`read_committed`, no group, no commits).

    Stops after `max_records`, after `timeout_ms` without a record, or when `should_stop()`.
    Returns the number of records printed.
    """
    name, meta = resolve_topic(topic)
    consumer = make_consumer("tail", f"{settings.KAFKA_CONSUMER_GROUP}.tail.{uuid.uuid4().hex[:8]}")
    start = OFFSET_BEGINNING if from_beginning else OFFSET_END
    try:
        consumer.assign([TopicPartition(name, p, start) for p in meta.partitions])
        printed = 0
        last = time.monotonic()
        while not should_stop() and (max_records is None or printed < max_records):
            msg = consumer.poll(0.2)
            if msg is None:
                if timeout_ms is not None and (time.monotonic() - last) * 1000 >= timeout_ms:
                    break
                continue
            if msg.error():
                if msg.error().code() != KafkaError._PARTITION_EOF:
                    raise CliError(f"reading {name}: {msg.error().str()}")
                continue
            out.write(format_record(msg) + "\n")
            out.flush()
            printed += 1
            last = time.monotonic()
        return printed
    finally:
        consumer.close()


class StopFlag:
    """SIGINT/SIGTERM set it while `installed`, so `tail` ends cleanly (no KeyboardInterrupt
    traceback); the previous handlers are put back afterwards."""

    def __init__(self):
        self.stopped = False

    def __call__(self) -> bool:
        return self.stopped

    @contextmanager
    def installed(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def stop(*_):
            self.stopped = True

        previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


# --- consumer groups ------------------------------------------------------------------------


def groups_list() -> list[tuple[str, str]]:
    """(group id, state) of every consumer group, sorted."""
    admin = _admin()  # held until the answer: a collected client fails its pending requests
    res = _result(admin.list_consumer_groups(request_timeout=TIMEOUT), "listing consumer groups")
    if res.errors and not res.valid:
        raise CliError("listing consumer groups: "
                       + "; ".join(_kafka_message(KafkaException(e)) for e in res.errors))
    return sorted((g.group_id, _state(g.state)) for g in res.valid)


def _state(state: ConsumerGroupState | None) -> str:
    if state is None:
        return "Unknown"
    return {
        ConsumerGroupState.STABLE: "Stable",
        ConsumerGroupState.EMPTY: "Empty",
        ConsumerGroupState.DEAD: "Dead",
        ConsumerGroupState.PREPARING_REBALANCING: "PreparingRebalance",
        ConsumerGroupState.COMPLETING_REBALANCING: "CompletingRebalance",
    }.get(state, "Unknown")


@dataclass
class GroupPartition:
    topic: str
    partition: int
    committed: int | None
    end: int | None
    member: str | None = None
    host: str | None = None
    client_id: str | None = None

    @property
    def lag(self) -> int | None:
        if self.end is None:
            return None
        if self.committed is None:
            return None
        return max(0, self.end - self.committed)


@dataclass
class GroupDescription:
    group: str
    state: str
    members: int
    partitions: list[GroupPartition]


def _describe_group(admin, group: str):
    return _result(admin.describe_consumer_groups([group], request_timeout=TIMEOUT)[group],
                   f"describing group {group!r}")


def _committed(group: str, tps: list[TopicPartition]) -> dict[tuple[str, int], int]:
    """The group's committed offsets on `tps`; partitions it never committed on are left out.
    Read through a consumer, never the admin client's list_consumer_group_offsets, which
    crashes the process on a coordinator error (`relay.kafka.committed_offsets`)."""
    answer = committed_offsets({group: tps}, timeout=TIMEOUT, role="cli")[group]
    if isinstance(answer, Exception):
        raise CliError(f"reading the committed offsets of {group!r}: "
                       f"{_kafka_message(answer)}")
    return answer


def _offsets(admin, tps: list[TopicPartition], spec: Callable[[], OffsetSpec]
             ) -> dict[tuple[str, int], int]:
    if not tps:
        return {}
    futures = admin.list_offsets({TopicPartition(tp.topic, tp.partition): spec() for tp in tps},
                                 isolation_level=IsolationLevel.READ_COMMITTED,
                                 request_timeout=TIMEOUT)
    return {(tp.topic, tp.partition): _result(f, f"listing offsets of {tp.topic}").offset
            for tp, f in futures.items()}


def groups_describe(group: str) -> GroupDescription:
    """Per partition: the group's committed offset, the end offset (last stable offset, what a
    `read_committed` consumer can reach) and the lag, plus the member that owns it."""
    admin = _admin()
    desc = _describe_group(admin, group)
    metadata = _metadata(admin).topics
    # What the group committed on any topic but Kafka's internal ones.
    committed = _committed(group, [TopicPartition(name, p) for name, meta in metadata.items()
                                   if meta.error is None and not name.startswith("__")
                                   for p in meta.partitions])
    owners: dict[tuple[str, int], Any] = {}
    for m in desc.members or []:
        for tp in (m.assignment.topic_partitions if m.assignment else []) or []:
            owners[(tp.topic, tp.partition)] = m
    if not committed and not owners and not desc.members:
        raise CliError(f"consumer group {group!r} does not exist (no members, no committed "
                       "offsets); list groups with `manage.py kafka groups --list`.")
    # Every partition of the topics the group reads, including ones it has not committed on
    # yet (shown with "-": where it starts depends on its auto.offset.reset).
    keys = set(committed) | set(owners)
    for t in {t for t, _ in keys}:
        if t in metadata and metadata[t].error is None:
            keys |= {(t, p) for p in metadata[t].partitions}
    keys = sorted(keys)
    ends = _offsets(admin, [TopicPartition(t, p) for t, p in keys], OffsetSpec.latest)
    rows = []
    for t, p in keys:
        m = owners.get((t, p))
        rows.append(GroupPartition(
            topic=t, partition=p, committed=committed.get((t, p)), end=ends.get((t, p)),
            member=m.member_id if m else None, host=m.host if m else None,
            client_id=m.client_id if m else None,
        ))
    return GroupDescription(group, _state(desc.state), len(desc.members or []), rows)


@dataclass
class ResetPlan:
    group: str
    topic: str
    rows: list[tuple[int, int | None, int]]  # partition, current, new
    executed: bool = False


def parse_datetime(value: str) -> datetime:
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise CliError(f"--to-datetime {value!r} is not an ISO 8601 date-time "
                       "(for example 2026-11-27T09:30:00Z).") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def groups_reset_offsets(group: str, topic: str, *, to: str, when: datetime | None = None,
                         execute: bool = False) -> ResetPlan:
    """Move `group`'s committed offsets on `topic` to its earliest, latest or first offset at
    `when`; a dry run unless `execute`. Refused while the group has members: a running
    consumer would overwrite the new offsets with its own on its next commit."""
    if to not in ("earliest", "latest", "datetime"):
        raise CliError("choose one of --to-earliest, --to-latest, --to-datetime.")
    admin = _admin()
    name, meta = resolve_topic(topic, admin)
    desc = _describe_group(admin, group)
    if desc.members:
        raise CliError(f"consumer group {group!r} has {len(desc.members)} active member(s) "
                       f"(state {_state(desc.state)}); stop its consumers, then reset.")
    tps = [TopicPartition(name, p) for p in sorted(meta.partitions)]
    current = _committed(group, tps)
    if to == "earliest":
        target = _offsets(admin, tps, OffsetSpec.earliest)
    elif to == "latest":
        target = _offsets(admin, tps, OffsetSpec.latest)
    else:
        assert when is not None
        ms = int(when.timestamp() * 1000)
        target = _offsets(admin, tps, lambda: OffsetSpec.for_timestamp(ms))
        latest = _offsets(admin, tps, OffsetSpec.latest)
        # No record at or after `when` in a partition: its end.
        target = {k: (v if v >= 0 else latest[k]) for k, v in target.items()}
    plan = ResetPlan(group, name, [(tp.partition, current.get((tp.topic, tp.partition)),
                                    target[(tp.topic, tp.partition)]) for tp in tps])
    if execute:
        req = ConsumerGroupTopicPartitions(
            group, [TopicPartition(name, p, new) for p, _cur, new in plan.rows])
        res = _result(admin.alter_consumer_group_offsets([req], request_timeout=TIMEOUT)[group],
                      f"resetting the offsets of {group!r}")
        failed = [f"{tp.topic}[{tp.partition}]: {tp.error.str()}"
                  for tp in res.topic_partitions or [] if tp.error]
        if failed:
            raise CliError(f"Kafka refused some offsets of {group!r}: {'; '.join(failed)}")
        plan.executed = True
    return plan
