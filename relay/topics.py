"""The topic layout and `manage.py kafka create-topics`."""

from __future__ import annotations

from dataclasses import dataclass, field

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ResourceType,
)
from django.conf import settings

from outbox.catalogue import CHECKPOINT_TOPIC, TOPICS

from .kafka import make_admin, topic_name


class TopicLayoutError(RuntimeError):
    pass


@dataclass(frozen=True)
class TopicSpec:
    logical: str
    partitions: int
    replication_factor: int
    config: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return topic_name(self.logical)


# A dead letter is the original record plus headers saying where it came from and why it
# failed: room for those above the largest event.
DLQ_HEADROOM_BYTES = 64 * 1024


def desired_topics() -> list[TopicSpec]:
    rf = settings.KAFKA_REPLICATION_FACTOR
    limit = settings.KAFKA_MESSAGE_MAX_BYTES
    # max.message.bytes: what publish() accepts and the relay's producer sends
    # (KAFKA_MESSAGE_MAX_BYTES), so an accepted event is always deliverable.
    common = {"min.insync.replicas": str(settings.KAFKA_MIN_INSYNC_REPLICAS),
              "max.message.bytes": str(limit)}
    specs = []
    for logical in TOPICS:
        specs.append(TopicSpec(logical, settings.KAFKA_TOPIC_PARTITIONS, rf, dict(common)))
        specs.append(TopicSpec(f"{logical}.dlq", settings.KAFKA_TOPIC_PARTITIONS, rf,
                               {**common, "max.message.bytes": str(limit + DLQ_HEADROOM_BYTES),
                                "retention.ms": str(30 * 24 * 3600 * 1000)}))
    # The relay's checkpoints: compacted, so the last value per shard is kept forever.
    specs.append(
        TopicSpec(CHECKPOINT_TOPIC, settings.RELAY_CHECKPOINT_PARTITIONS, rf,
                  {**common, "cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.1",
                   "segment.ms": str(3600 * 1000)})
    )
    return specs


def create_topics(specs: list[TopicSpec] | None = None, timeout: float = 30
                  ) -> list[tuple[str, str]]:
    """Create missing topics; returns (name, what happened) per topic.

    Raises `TopicLayoutError` when an existing topic has fewer partitions than configured
    (keys would map to other partitions than the configuration promises).
    """
    specs = specs if specs is not None else desired_topics()
    admin = make_admin("topics")
    existing = admin.list_topics(timeout=timeout).topics
    report: list[tuple[str, str]] = []
    too_small = []
    to_create = []
    existing_specs: list[TopicSpec] = []
    for spec in specs:
        meta = existing.get(spec.name)
        if meta is None or meta.error is not None:
            to_create.append(spec)
            continue
        have = len(meta.partitions)
        if have < spec.partitions:
            too_small.append(f"{spec.name} has {have} partition(s), {spec.partitions} configured")
        report.append((spec.name, f"exists ({have} partitions)"))
        existing_specs.append(spec)
    if too_small:
        raise TopicLayoutError(
            "existing topics are smaller than configured: " + "; ".join(too_small)
            + ". Grow them with `manage.py kafka topics --alter --topic T --partitions N` "
            "(note: keys then move to other partitions), or lower KAFKA_TOPIC_PARTITIONS."
        )
    report = _align_limits(admin, existing_specs, report, timeout)
    if to_create:
        futures = admin.create_topics(
            [NewTopic(s.name, num_partitions=s.partitions, replication_factor=s.replication_factor,
                      config=s.config) for s in to_create],
            operation_timeout=timeout,
        )
        for spec in to_create:
            try:
                futures[spec.name].result(timeout + 5)
                report.append((spec.name, f"created ({spec.partitions} partitions, "
                                          f"RF {spec.replication_factor})"))
            except KafkaException as exc:
                err = exc.args[0]
                if err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                    report.append((spec.name, "exists (created concurrently)"))
                else:
                    raise TopicLayoutError(f"could not create {spec.name}: {err.str()}") from None
    return report


def _align_limits(admin, specs: list[TopicSpec], report: list[tuple[str, str]], timeout: float
                  ) -> list[tuple[str, str]]:
    """Existing topics get the configured `max.message.bytes` (KAFKA_MESSAGE_MAX_BYTES changed,
    or the topic was made before the setting): otherwise the broker would refuse records that
    publish() accepted."""
    wanted = {s.name: s.config["max.message.bytes"] for s in specs
              if "max.message.bytes" in s.config}
    if not wanted:
        return report
    described = admin.describe_configs(
        [ConfigResource(ResourceType.TOPIC, name) for name in wanted])
    changes = []
    for resource, future in described.items():
        entry = future.result(timeout).get("max.message.bytes")
        if entry is None or entry.value != wanted[resource.name]:
            changes.append((resource.name, entry.value if entry else "?"))
    if not changes:
        return report
    futures = admin.incremental_alter_configs([
        ConfigResource(ResourceType.TOPIC, name, incremental_configs=[
            ConfigEntry("max.message.bytes", wanted[name],
                        incremental_operation=AlterConfigOpType.SET)])
        for name, _ in changes])
    for future in futures.values():
        future.result(timeout)
    notes = dict(changes)
    return [(name, f"{what}; max.message.bytes {notes[name]} -> {wanted[name]}"
             if name in notes else what) for name, what in report]
