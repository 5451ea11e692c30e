"""Kafka's side of the pipeline as Prometheus metrics, read from the brokers at scrape time.

The brokers of this project export no metrics of their own (no JMX exporter runs beside them),
and the consumers' own `showoff_consumer_lag` disappears with the consumer: a group whose
processes are all down would look fine. So the API's `/metrics` (showoff/metrics.py) asks the
brokers through the admin client, the way `manage.py kafka topics --describe` and
`kafka groups --describe` do, and exports what an operator alerts on:

- `showoff_kafka_up`: 1 when the brokers answered this scrape (0: the rest is missing);
- `showoff_kafka_brokers`: brokers in the cluster metadata;
- `showoff_kafka_partitions`, `showoff_kafka_under_replicated_partitions` (fewer in-sync
  replicas than replicas) and `showoff_kafka_offline_partitions` (no leader), per topic of this
  environment (under KAFKA_TOPIC_PREFIX): the cluster-health signals a broker's JMX would give;
- `showoff_kafka_consumergroup_lag{consumer,topic}`: end offset (last stable offset) minus the
  group's committed offset, summed over the topic's partitions, for every consumer registered in
  the code, running or not (a partition without a committed offset counts from its earliest
  offset: that is where the group starts, CONSUMER_AUTO_OFFSET_RESET=earliest);
- `showoff_kafka_consumergroup_members{consumer}`: members of the group (0: nobody consumes);
- `showoff_kafka_dead_letters{topic}`: records kept in `<topic>.dlq` (end minus earliest
  offset; dead letters are written without transactions, so each offset is one record).

Offsets count transaction markers: a partition written by the relay shows a lag of a few more
than its unread records until the consumer reads past them (runbook, section 4).

All requests go out at once (the offsets and groups on one admin client, the committed offsets
on one short-lived consumer per group, in parallel: see `relay.kafka.committed_offsets` for why
not the admin client) and are awaited together, bounded by `timeout`, so a scrape costs a few
broker round trips whatever the number of groups. A group whose coordinator does not answer
has no lag sample in that scrape rather than a made-up one.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field

from confluent_kafka import (
    IsolationLevel,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import OffsetSpec
from django.conf import settings
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from outbox.catalogue import TOPICS

from .consumer import group_for
from .kafka import committed_offsets, dlq_topic_name, make_admin, topic_name
from .registry import all_registrations

log = logging.getLogger("relay.monitoring")


@dataclass
class KafkaState:
    brokers: int = 0
    partitions: dict[str, int] = field(default_factory=dict)  # physical topic -> count
    under_replicated: dict[str, int] = field(default_factory=dict)
    offline: dict[str, int] = field(default_factory=dict)
    group_lag: dict[tuple[str, str], int] = field(default_factory=dict)  # (consumer, topic)
    group_members: dict[str, int] = field(default_factory=dict)  # consumer -> members
    dead_letters: dict[str, int] = field(default_factory=dict)  # logical topic -> records


def _environment_topic(name: str) -> bool:
    prefix = settings.KAFKA_TOPIC_PREFIX
    return name.startswith(prefix) if prefix else not name.startswith("__")


def kafka_state(timeout: float = 5.0) -> KafkaState:
    """One read of the cluster, the consumer groups and the dead-letter topics.

    Raises KafkaException (or the admin client's errors) when the brokers do not answer."""
    admin = make_admin("metrics", **{"socket.timeout.ms": int(timeout * 1000)})
    metadata = admin.list_topics(timeout=timeout)
    state = KafkaState(brokers=len(metadata.brokers))
    for name, topic in metadata.topics.items():
        if topic.error is not None or not _environment_topic(name):
            continue
        parts = topic.partitions.values()
        state.partitions[name] = len(parts)
        state.under_replicated[name] = sum(1 for p in parts if len(p.isrs) < len(p.replicas))
        state.offline[name] = sum(1 for p in parts if p.leader < 0)

    def partitions_of(physical: str) -> list[TopicPartition]:
        topic = metadata.topics.get(physical)
        if topic is None or topic.error is not None:
            return []
        return [TopicPartition(physical, p) for p in sorted(topic.partitions)]

    consumers: dict[str, set[str]] = defaultdict(set)  # consumer -> logical topics
    for reg in all_registrations():
        consumers[reg.consumer].add(reg.topic)
    read = {tp for topics in consumers.values() for t in topics
            for tp in partitions_of(topic_name(t))}
    dead = {tp for t in TOPICS for tp in partitions_of(dlq_topic_name(t))}
    groups = {consumer: group_for(consumer) for consumer in consumers}

    # Every request first, then every answer: the round trips overlap.
    def offsets(spec, tps) -> dict:
        if not tps:
            return {}
        return admin.list_offsets({TopicPartition(tp.topic, tp.partition): spec() for tp in tps},
                                  isolation_level=IsolationLevel.READ_COMMITTED,
                                  request_timeout=timeout)

    latest = offsets(OffsetSpec.latest, read | dead)
    earliest = offsets(OffsetSpec.earliest, read | dead)
    described = (admin.describe_consumer_groups(list(groups.values()), request_timeout=timeout)
                 if groups else {})

    committed = committed_offsets(
        {group: [tp for t in consumers[consumer] for tp in partitions_of(topic_name(t))]
         for consumer, group in groups.items()}, timeout=timeout, role="metrics")

    end = {(tp.topic, tp.partition): f.result().offset for tp, f in latest.items()}
    start = {(tp.topic, tp.partition): f.result().offset for tp, f in earliest.items()}
    for consumer, topics in sorted(consumers.items()):
        done = committed[groups[consumer]]
        if isinstance(done, Exception):
            # The group's coordinator did not answer (a new cluster loading __consumer_offsets,
            # a broker failing over): its lag is unknown this scrape, not zero.
            log.warning("metrics: no committed offsets for consumer %s: %s", consumer, done)
            done = None
        for logical in sorted(topics):
            tps = partitions_of(topic_name(logical))
            if tps and done is not None:  # a missing topic has no lag (create-topics makes it)
                state.group_lag[(consumer, logical)] = sum(
                    max(0, end[key] - done.get(key, start[key]))
                    for key in ((tp.topic, tp.partition) for tp in tps))
        try:
            state.group_members[consumer] = len(described[groups[consumer]].result().members
                                                or [])
        except KafkaException:
            state.group_members[consumer] = 0  # a group Kafka does not know: nobody in it
    for logical in TOPICS:
        tps = partitions_of(dlq_topic_name(logical))
        if tps:
            state.dead_letters[logical] = sum(
                end[(tp.topic, tp.partition)] - start[(tp.topic, tp.partition)] for tp in tps)
    return state


class KafkaCollector(Collector):
    """`kafka_state()` as metric families (registered by showoff/metrics.py for /metrics)."""

    def __init__(self, timeout: float = 5.0):
        self.timeout = timeout

    def collect(self) -> Iterator[Metric]:
        if not settings.KAFKA_ENABLED:
            return  # nothing to watch: "down" would page someone for a deliberate setting
        up = GaugeMetricFamily("showoff_kafka_up",
                               "1 when the Kafka brokers answered this scrape's admin requests.")
        try:
            state = kafka_state(self.timeout)
        except Exception as exc:  # noqa: BLE001 - any failure is "down"; the reason is logged
            log.warning("metrics: Kafka did not answer the admin requests: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        brokers = GaugeMetricFamily("showoff_kafka_brokers",
                                    "Brokers in the Kafka cluster's metadata.")
        brokers.add_metric([], state.brokers)
        yield brokers
        for name, values, help_text in (
            ("showoff_kafka_partitions", state.partitions, "Partitions of the topic."),
            ("showoff_kafka_under_replicated_partitions", state.under_replicated,
             "Partitions with fewer in-sync replicas than replicas."),
            ("showoff_kafka_offline_partitions", state.offline,
             "Partitions without a leader (unreadable and unwritable)."),
        ):
            family = GaugeMetricFamily(name, help_text, labels=["topic"])
            for topic, value in sorted(values.items()):
                family.add_metric([topic], value)
            yield family
        lag = GaugeMetricFamily(
            "showoff_kafka_consumergroup_lag",
            "End offset minus the consumer group's committed offset, summed over the topic's "
            "partitions (read from the brokers).", labels=["consumer", "topic"])
        for (consumer, topic), value in sorted(state.group_lag.items()):
            lag.add_metric([consumer, topic], value)
        yield lag
        members = GaugeMetricFamily("showoff_kafka_consumergroup_members",
                                    "Members of the consumer group (0: nobody consumes).",
                                    labels=["consumer"])
        for consumer, value in sorted(state.group_members.items()):
            members.add_metric([consumer], value)
        yield members
        dead = GaugeMetricFamily("showoff_kafka_dead_letters",
                                 "Records kept in the topic's dead-letter topic.",
                                 labels=["topic"])
        for topic, value in sorted(state.dead_letters.items()):
            dead.add_metric([topic], value)
        yield dead
