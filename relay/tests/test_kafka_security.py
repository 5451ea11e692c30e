"""Kafka security: SASL (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512), TLS and SASL over TLS, proven on a
real broker. The broker is a private one started by `scripts/services up kafka --sasl --ssl`
with its own folder and free ports (the shared broker of the test run is never touched); its
SASL user is generated here at run time and handed over through the environment."""

from __future__ import annotations

import os
import secrets
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from confluent_kafka import KafkaError
from django.core.exceptions import ImproperlyConfigured

from relay import testing as kt
from relay.kafka import (
    KafkaUnavailable,
    check_connection,
    make_producer,
    producer_config,
    security_config,
    topic_name,
)

from .consumer_support import probes

# Every test may touch the database (the readiness check asks it too): one kind of test, so
# pytest-django keeps them together and the module's broker starts once.
pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
MECHANISMS = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SecureBroker:
    """A private single-node broker; `up(*flags)` runs `scripts/services up kafka <flags>`."""

    def __init__(self, base: Path):
        local = os.environ.get("SHOWOFF_LOCAL_DIR", str(ROOT / ".local"))
        self.base = base
        self.user = f"relay-{secrets.token_hex(3)}"
        self.password = secrets.token_urlsafe(24)
        self.port, self.sasl_port = _free_port(), _free_port()
        self.ssl_port, self.sasl_ssl_port = _free_port(), _free_port()
        self.env = {
            **os.environ,
            "SHOWOFF_LOCAL_DIR": str(base),
            "SHOWOFF_KAFKA_PORT": str(self.port),
            "SHOWOFF_KAFKA_CONTROLLER_PORT": str(_free_port()),
            "SHOWOFF_KAFKA_SASL_PORT": str(self.sasl_port),
            "SHOWOFF_KAFKA_SSL_PORT": str(self.ssl_port),
            "SHOWOFF_KAFKA_SASL_SSL_PORT": str(self.sasl_ssl_port),
            "SHOWOFF_KAFKA_SASL_USERNAME": self.user,
            "SHOWOFF_KAFKA_SASL_PASSWORD": self.password,
            "SHOWOFF_KAFKA_LIBS": os.path.join(local, "kafka", "libs"),
            "SHOWOFF_KAFKA_HEAP": "-Xms128m -Xmx384m",
        }
        self.ca = base / "kafka" / "tls" / "ca.pem"

    def services(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "scripts/services", *args], cwd=ROOT,
                              env=self.env, capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    broker = SecureBroker(tmp_path_factory.mktemp("secure-broker"))
    # A plain broker first (what `up` starts for everyone), then the listeners added to it:
    # its storage was formatted without SCRAM users, so `up --sasl` has to add them itself.
    plain = broker.services("up", "kafka")
    assert plain.returncode == 0, plain.stdout + plain.stderr
    broker.plain_output = plain.stdout
    broker.refused = broker.services("up", "kafka", "--sasl", "--ssl")
    started = broker.services("restart", "kafka", "--sasl", "--ssl")
    assert started.returncode == 0, started.stdout + started.stderr
    broker.started_output = started.stdout
    yield broker
    broker.services("down", "kafka")


@pytest.fixture
def secure(broker, settings, kafka_prefix):
    """Point the settings at one of the broker's listeners: `secure("SASL_PLAINTEXT",
    mechanism="PLAIN")`, `secure("SSL")`, ..."""

    def configure(protocol: str, *, mechanism: str = "", password: str | None = None,
                  ca: str | None = None) -> None:
        port = {"PLAINTEXT": broker.port, "SASL_PLAINTEXT": broker.sasl_port,
                "SSL": broker.ssl_port, "SASL_SSL": broker.sasl_ssl_port}[protocol]
        settings.KAFKA_BROKERS = f"127.0.0.1:{port}"
        settings.KAFKA_SECURITY_PROTOCOL = protocol
        settings.KAFKA_SASL_MECHANISM = mechanism
        settings.KAFKA_SASL_USERNAME = broker.user if mechanism else ""
        settings.KAFKA_SASL_PASSWORD = (broker.password if password is None else password
                                        ) if mechanism else ""
        settings.KAFKA_SSL_CA_LOCATION = str(broker.ca) if ca is None else ca

    return configure


def _round_trip(n: int = 25) -> list[str]:
    """Transactional produce (as the relay does) then a read_committed read, both through
    clients built by relay.kafka from the settings; returns the event ids read back."""
    topic = kt.create_topic(topic_name("analytics-events"), partitions=2)
    sent = [str(i) for i in kt.produce_events(probes(n), per_transaction=10)]
    got = [r.header("ce_id") for r in kt.read_all([topic], timeout=30)]
    assert sorted(got) == sorted(sent)
    return got


# --- the services script --------------------------------------------------------------------


def test_services_adds_listeners_only_on_request_and_keeps_the_user_private(broker):
    # given/when: `up kafka` (no option), then `up kafka --sasl --ssl` while it runs
    assert "SASL" not in broker.plain_output
    # then: the running plain broker is not silently changed; the message says how
    assert broker.refused.returncode == 1
    assert "already running" in broker.refused.stderr
    assert "restart kafka --sasl --ssl" in broker.refused.stderr
    # and the restarted broker announces each listener; the password itself is never printed
    out = broker.started_output
    assert f"SASL_PLAINTEXT on 127.0.0.1:{broker.sasl_port}" in out
    assert f"SSL on 127.0.0.1:{broker.ssl_port}" in out
    assert f"SASL_SSL on 127.0.0.1:{broker.sasl_ssl_port}" in out
    assert broker.password not in out
    # the client environment file holds the user from the environment, readable by its owner
    env_file = broker.base / "kafka" / "sasl.env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((broker.base / "kafka" / "config" / "server.properties").stat()
                        .st_mode) == 0o600
    values = dict(line.split("=", 1) for line in env_file.read_text().splitlines()
                  if line and not line.startswith("#"))
    assert values == {
        "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "KAFKA_BROKERS": f"127.0.0.1:{broker.sasl_port}",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_SASL_USERNAME": broker.user,
        "KAFKA_SASL_PASSWORD": broker.password,
    }
    status = broker.services("status", "kafka")
    assert f"SASL_PLAINTEXT://127.0.0.1:{broker.sasl_port}" in status.stdout


# --- SASL -----------------------------------------------------------------------------------


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_sasl_with_the_right_password_produces_and_consumes(secure, mechanism):
    # given
    secure("SASL_PLAINTEXT", mechanism=mechanism)
    # when / then: 25 events through a transactional producer and a read_committed reader
    assert check_connection(10) == 1
    assert len(_round_trip()) == 25


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_sasl_with_a_wrong_password_fails_with_a_clear_error(secure, settings, mechanism):
    # given: the right user, a wrong password
    secure("SASL_PLAINTEXT", mechanism=mechanism, password="not-" + secrets.token_hex(8))
    # when
    with pytest.raises(KafkaUnavailable) as caught:
        check_connection(10)
    # then: a sentence naming the user, the mechanism and the two settings to fix
    message = str(caught.value)
    assert message.startswith(
        f"Kafka at {settings.KAFKA_BROKERS} rejected the SASL credentials of user "
        f"'{settings.KAFKA_SASL_USERNAME}' (KAFKA_SASL_MECHANISM={mechanism}): check "
        "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"), message
    assert "Authentication failed" in message


def test_a_producer_with_a_wrong_password_delivers_nothing(secure):
    # given: a topic created with the right credentials
    secure("SASL_PLAINTEXT", mechanism="SCRAM-SHA-256")
    topic = kt.create_topic(topic_name("analytics-events"), partitions=1)
    # when: a producer with the wrong password sends one record
    secure("SASL_PLAINTEXT", mechanism="SCRAM-SHA-256", password="wrong-password")
    reports = []
    producer = make_producer("test", **{"message.timeout.ms": 3000})
    producer.produce(topic, value=b"never", on_delivery=lambda err, msg: reports.append(err))
    producer.flush(10)
    # then: the delivery fails, and the topic stays empty
    assert [e.code() for e in reports] == [KafkaError._MSG_TIMED_OUT]
    secure("SASL_PLAINTEXT", mechanism="SCRAM-SHA-256")
    assert kt.read_all([topic], timeout=30) == []


def test_readiness_reports_the_rejected_password(secure, client, settings):
    # given
    secure("SASL_PLAINTEXT", mechanism="SCRAM-SHA-512", password="wrong-password")
    settings.HEALTH_CHECK_TIMEOUT = 5
    # when
    response = client.get("/readyz")
    # then
    body = response.json()
    assert response.status_code == 503
    assert body["checks"]["kafka"]["status"] == "down"
    assert "check KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD" in body["checks"]["kafka"][
        "detail"]
    assert body["checks"]["database"]["status"] == "up"


def test_a_plaintext_client_on_the_sasl_listener_is_told_to_check_the_protocol(secure,
                                                                               settings):
    # given: SASL listener, PLAINTEXT client
    secure("SASL_PLAINTEXT", mechanism="PLAIN")
    settings.KAFKA_SECURITY_PROTOCOL = "PLAINTEXT"
    # when
    with pytest.raises(KafkaUnavailable) as caught:
        check_connection(3)
    # then
    assert (f"No Kafka broker answered at KAFKA_BROKERS={settings.KAFKA_BROKERS} with "
            "KAFKA_SECURITY_PROTOCOL=PLAINTEXT") in str(caught.value)


# --- TLS ------------------------------------------------------------------------------------


def test_tls_with_the_brokers_ca_produces_and_consumes(secure):
    secure("SSL")
    assert check_connection(10) == 1
    assert len(_round_trip()) == 25


def test_tls_without_the_brokers_ca_fails_naming_the_ca_setting(secure, tmp_path):
    # given: a CA file that did not sign the broker's certificate (the system's trust store)
    secure("SSL", ca="/etc/ssl/certs/ca-certificates.crt")
    # when
    with pytest.raises(KafkaUnavailable) as caught:
        check_connection(10)
    # then
    assert "TLS handshake" in str(caught.value)
    assert "check KAFKA_SSL_CA_LOCATION" in str(caught.value)
    assert "certificate verify failed" in str(caught.value)


def test_sasl_over_tls_produces_and_consumes(secure):
    secure("SASL_SSL", mechanism="SCRAM-SHA-512")
    assert check_connection(10) == 1
    assert len(_round_trip()) == 25


# --- settings mapping (no broker needed) ----------------------------------------------------


def test_ssl_settings_map_to_librdkafka_with_client_certificates(settings):
    settings.KAFKA_SECURITY_PROTOCOL = "ssl"
    settings.KAFKA_SSL_CA_LOCATION = "/etc/kafka/ca.pem"
    settings.KAFKA_SSL_CERTIFICATE_LOCATION = "/etc/kafka/client.pem"
    settings.KAFKA_SSL_KEY_LOCATION = "/etc/kafka/client.key"
    settings.KAFKA_SASL_MECHANISM = "PLAIN"  # ignored without a SASL protocol
    settings.KAFKA_SASL_USERNAME = "ignored"
    settings.KAFKA_SASL_PASSWORD = "ignored"
    assert security_config() == {
        "security.protocol": "SSL",
        "ssl.ca.location": "/etc/kafka/ca.pem",
        "ssl.certificate.location": "/etc/kafka/client.pem",
        "ssl.key.location": "/etc/kafka/client.key",
    }


def test_plaintext_maps_to_no_credentials_and_every_client_gets_the_security(settings):
    settings.KAFKA_SECURITY_PROTOCOL = "PLAINTEXT"
    settings.KAFKA_SASL_USERNAME = "unused"
    settings.KAFKA_SSL_CA_LOCATION = "/unused.pem"
    assert security_config() == {"security.protocol": "PLAINTEXT"}
    settings.KAFKA_SECURITY_PROTOCOL = "SASL_PLAINTEXT"
    settings.KAFKA_SASL_MECHANISM = "scram-sha-256"
    settings.KAFKA_SASL_PASSWORD = "pw"
    conf = producer_config("relay", **{"transactional.id": "x"})
    assert {k: conf[k] for k in ("security.protocol", "sasl.mechanism", "sasl.username",
                                 "sasl.password")} == {
        "security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "SCRAM-SHA-256",
        "sasl.username": "unused", "sasl.password": "pw"}
    assert "ssl.ca.location" not in conf


@pytest.mark.parametrize(("protocol", "mechanism", "message"), [
    ("TLS", "", "KAFKA_SECURITY_PROTOCOL='TLS' is not one of PLAINTEXT, SASL_PLAINTEXT, "
                "SASL_SSL, SSL"),
    ("SASL_SSL", "GSSAPI", "KAFKA_SECURITY_PROTOCOL=SASL_SSL needs KAFKA_SASL_MECHANISM set to "
                           "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (got GSSAPI)"),
    ("SASL_PLAINTEXT", "", "(got nothing)"),
])
def test_bad_security_settings_are_named(settings, protocol, mechanism, message):
    settings.KAFKA_SECURITY_PROTOCOL = protocol
    settings.KAFKA_SASL_MECHANISM = mechanism
    with pytest.raises(ImproperlyConfigured) as caught:
        security_config()
    assert message in str(caught.value)


def test_check_connection_names_an_address_where_nothing_listens(settings):
    settings.KAFKA_BROKERS = f"127.0.0.1:{_free_port()}"
    with pytest.raises(KafkaUnavailable) as caught:
        check_connection(1)
    assert str(caught.value).startswith(
        f"No Kafka broker answered at KAFKA_BROKERS={settings.KAFKA_BROKERS} with "
        "KAFKA_SECURITY_PROTOCOL=PLAINTEXT")
