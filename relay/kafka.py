"""The one place Kafka clients are configured.

Every producer, consumer and admin client in the project is built here, from settings, so
bootstrap servers, security (SSL, SASL PLAIN/SCRAM) and client ids are set in exactly one way.
Domain apps never import confluent_kafka; `relay/` does.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class KafkaDisabled(RuntimeError):
    """Raised when a Kafka client is requested while KAFKA_ENABLED is false."""


def ensure_enabled(what: str) -> None:
    if not settings.KAFKA_ENABLED:
        raise KafkaDisabled(
            f"{what} needs Kafka, but KAFKA_ENABLED is false. Set KAFKA_ENABLED=true (and "
            "KAFKA_BROKERS) to start it; outbox rows written meanwhile are kept and delivered "
            "once it runs."
        )


def topic_name(logical: str) -> str:
    """Physical topic name for a logical one (`post-events` → `<prefix>post-events`)."""
    return f"{settings.KAFKA_TOPIC_PREFIX}{logical}"


def dlq_topic_name(logical: str) -> str:
    return topic_name(f"{logical}.dlq")


def client_id(role: str) -> str:
    return f"{settings.KAFKA_CLIENT_ID}.{role}.{socket.gethostname()}.{os.getpid()}"


def security_config() -> dict[str, Any]:
    protocol = (settings.KAFKA_SECURITY_PROTOCOL or "PLAINTEXT").upper()
    allowed = {"PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"}
    if protocol not in allowed:
        raise ImproperlyConfigured(
            f"KAFKA_SECURITY_PROTOCOL={protocol!r} is not one of {', '.join(sorted(allowed))}."
        )
    conf: dict[str, Any] = {"security.protocol": protocol}
    if protocol.startswith("SASL"):
        mechanism = (settings.KAFKA_SASL_MECHANISM or "").upper()
        if mechanism not in {"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"}:
            raise ImproperlyConfigured(
                f"KAFKA_SECURITY_PROTOCOL={protocol} needs KAFKA_SASL_MECHANISM set to PLAIN, "
                f"SCRAM-SHA-256 or SCRAM-SHA-512 (got {mechanism or 'nothing'})."
            )
        if not settings.KAFKA_SASL_USERNAME or not settings.KAFKA_SASL_PASSWORD:
            raise ImproperlyConfigured(
                f"KAFKA_SECURITY_PROTOCOL={protocol} needs KAFKA_SASL_USERNAME and "
                "KAFKA_SASL_PASSWORD."
            )
        conf.update(
            {
                "sasl.mechanism": mechanism,
                "sasl.username": settings.KAFKA_SASL_USERNAME,
                "sasl.password": settings.KAFKA_SASL_PASSWORD,
            }
        )
    if protocol.endswith("SSL"):
        if settings.KAFKA_SSL_CA_LOCATION:
            conf["ssl.ca.location"] = settings.KAFKA_SSL_CA_LOCATION
        if settings.KAFKA_SSL_CERTIFICATE_LOCATION:
            conf["ssl.certificate.location"] = settings.KAFKA_SSL_CERTIFICATE_LOCATION
        if settings.KAFKA_SSL_KEY_LOCATION:
            conf["ssl.key.location"] = settings.KAFKA_SSL_KEY_LOCATION
    return conf


# librdkafka's own log lines go through Python logging (served on poll()), not raw stderr.
LIBRDKAFKA_LOGGER = logging.getLogger("librdkafka")


def base_config(role: str, brokers: str | None = None) -> dict[str, Any]:
    return {
        "bootstrap.servers": brokers or settings.KAFKA_BROKERS,
        "client.id": client_id(role),
        "logger": LIBRDKAFKA_LOGGER,
        **security_config(),
    }


def producer_config(role: str, **overrides: Any) -> dict[str, Any]:
    conf = {
        **base_config(role),
        "enable.idempotence": True,
        "acks": "all",
        "compression.type": "lz4",
        "linger.ms": 5,
    }
    conf.update(overrides)
    return conf


def consumer_config(role: str, group_id: str, **overrides: Any) -> dict[str, Any]:
    conf = {
        **base_config(role),
        "group.id": group_id,
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
    }
    conf.update(overrides)
    return conf


def make_producer(role: str, **overrides: Any) -> Producer:
    return Producer(producer_config(role, **overrides))


def make_consumer(role: str, group_id: str, **overrides: Any) -> Consumer:
    return Consumer(consumer_config(role, group_id, **overrides))


def make_admin(role: str = "admin", brokers: str | None = None, **overrides: Any) -> AdminClient:
    conf = base_config(role, brokers)
    conf.update(overrides)
    return AdminClient(conf)


def committed_offsets(groups: dict[str, list[TopicPartition]], *, timeout: float = 5.0,
                      role: str = "offsets") -> dict[str, dict[tuple[str, int], int] | Exception]:
    """Per consumer group, its committed offset on each of the given partitions (partitions it
    never committed on are left out); a group whose coordinator did not answer maps to the
    exception instead.

    Read with a consumer of that group that never subscribes (so it joins nothing), not with
    AdminClient.list_consumer_group_offsets: librdkafka 2.16's admin path frees its request on
    a coordinator error and then uses it (confluentinc/librdkafka#5397), which kills the process
    with SIGSEGV whenever the coordinator is not ready, as on every new cluster before
    `__consumer_offsets` is loaded. The consumer's path retries and answers an error. The groups
    are read in parallel, so a call costs about one round trip however many groups there are."""

    def read(group: str) -> dict[tuple[str, int], int] | Exception:
        tps = groups[group]
        if not tps:
            return {}
        ms = max(int(timeout * 1000), 10)
        consumer = make_consumer(role, group, **{"socket.timeout.ms": ms})
        try:
            answer = consumer.committed([TopicPartition(tp.topic, tp.partition) for tp in tps],
                                        timeout=timeout)
        except KafkaException as exc:
            return exc
        finally:
            consumer.close()
        return {(tp.topic, tp.partition): tp.offset for tp in answer
                if tp.error is None and tp.offset >= 0}

    if not groups:
        return {}
    with ThreadPoolExecutor(max_workers=min(len(groups), 8),
                            thread_name_prefix="committed-offsets") as pool:
        return dict(zip(groups, pool.map(read, groups), strict=True))


# --- connection check: librdkafka's failures as sentences naming the setting to fix ----------


class KafkaUnavailable(RuntimeError):
    """The brokers did not answer, or refused this client; the message names what to fix.
    `retriable` is False when waiting cannot help (credentials, certificates)."""

    def __init__(self, message: str, *, retriable: bool = True):
        super().__init__(message)
        self.retriable = retriable


# Errors that retrying cannot fix: wrong credentials or an untrusted certificate.
_CONFIG_ERRORS = {KafkaError._AUTHENTICATION, KafkaError._SSL}


def describe_failure(err: KafkaError) -> str:
    """One sentence for a connection-level librdkafka error, naming the settings involved."""
    brokers = settings.KAFKA_BROKERS
    protocol = (settings.KAFKA_SECURITY_PROTOCOL or "PLAINTEXT").upper()
    detail = err.str()
    if err.code() == KafkaError._AUTHENTICATION:
        return (
            f"Kafka at {brokers} rejected the SASL credentials of user "
            f"{settings.KAFKA_SASL_USERNAME!r} (KAFKA_SASL_MECHANISM="
            f"{(settings.KAFKA_SASL_MECHANISM or '').upper()}): check KAFKA_SASL_USERNAME and "
            "KAFKA_SASL_PASSWORD, and that the user exists for that mechanism (SCRAM users are "
            f"added with kafka-configs --add-config). Broker said: {detail}"
        )
    if err.code() == KafkaError._SSL:
        return (
            f"The TLS handshake with Kafka at {brokers} failed: check KAFKA_SSL_CA_LOCATION "
            "(the CA that signed the brokers' certificates), that KAFKA_BROKERS names the hosts "
            "the certificates were issued for, and KAFKA_SSL_CERTIFICATE_LOCATION / "
            f"KAFKA_SSL_KEY_LOCATION when the brokers require client certificates. {detail}"
        )
    return (
        f"No Kafka broker answered at KAFKA_BROKERS={brokers} with "
        f"KAFKA_SECURITY_PROTOCOL={protocol}: check that the brokers run and that the "
        "protocol matches their listener (a SASL or TLS listener drops a PLAINTEXT client). "
        f"Client said: {detail}"
    )


def check_connection(timeout: float = 5.0, role: str = "check") -> int:
    """Ask the brokers for metadata with the configured settings and security; return how many
    brokers the cluster has. Raises `KafkaUnavailable` with a sentence naming the setting to fix
    (wrong SASL password, untrusted certificate, nothing listening); a credentials or certificate
    error fails at once rather than after the whole timeout."""
    ensure_enabled("Checking the Kafka connection")
    errors: list[KafkaError] = []
    ms = max(int(timeout * 1000), 1)
    admin = make_admin(role, **{"error_cb": errors.append, "socket.timeout.ms": ms,
                                "socket.connection.setup.timeout.ms": ms})
    deadline = time.monotonic() + timeout
    last: KafkaError | None = None
    while True:
        step = min(0.5, max(deadline - time.monotonic(), 0.05))
        try:
            metadata = admin.list_topics(timeout=step)
            if metadata.brokers:
                return len(metadata.brokers)
        except KafkaException as exc:
            last = exc.args[0]
        admin.poll(0)  # serves error_cb
        fatal = [e for e in errors if e.code() in _CONFIG_ERRORS]
        if fatal:
            raise KafkaUnavailable(describe_failure(fatal[-1]), retriable=False)
        if time.monotonic() >= deadline:
            seen = errors[-1] if errors else last
            if seen is None:
                seen = KafkaError(KafkaError._TIMED_OUT, f"no answer within {timeout:g}s")
            raise KafkaUnavailable(describe_failure(seen))
