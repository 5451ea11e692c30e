"""The one place Kafka clients are configured.

Every producer, consumer and admin client in the project is built here, from settings, so
bootstrap servers, security (SSL, SASL PLAIN/SCRAM) and client ids are set in exactly one way.
Domain apps never import confluent_kafka; `relay/` does.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

from confluent_kafka import Consumer, Producer
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
