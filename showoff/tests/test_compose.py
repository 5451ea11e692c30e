"""docker-compose.yml cannot run here (no Docker engine); this keeps it honest."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _documented() -> set[str]:
    names = set()
    for line in (ROOT / ".env.example").read_text().splitlines():
        m = re.match(r"^([A-Z][A-Z0-9_]*)=", line)
        if m:
            names.add(m.group(1))
    return names


def test_compose_has_every_service():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = set(compose["services"])
    expected = {
        "postgres", "kafka", "kafka-ui", "redis", "migrate", "api", "relay", "worker", "beat",
        "fanout",
        *{f"consume-{t}" for t in ["notification-events", "email-events", "sms-events",
                                   "video-processing", "analytics-events", "user-events",
                                   "post-events", "transaction-events"]},
    }
    assert expected <= services, expected - services
    assert compose["services"]["kafka"]["image"].startswith("apache/kafka:")
    assert compose["services"]["kafka-ui"]["ports"] == ["8080:8080"]
    for name in ("postgres", "kafka", "redis", "api"):
        assert "healthcheck" in compose["services"][name], name
    assert compose["services"]["api"]["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_every_compose_variable_is_documented_in_env_example():
    text = (ROOT / "docker-compose.yml").read_text()
    used = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", text))
    missing = used - _documented()
    assert not missing, f"document these in .env.example: {sorted(missing)}"


def test_every_setting_read_from_env_is_documented():
    used = set()
    for path in (ROOT / "showoff" / "settings").glob("*.py"):
        used |= set(re.findall(r'env(?:\.\w+)?\(\s*"([A-Z][A-Z0-9_]*)"', path.read_text()))
        used |= set(re.findall(r'_required\(\s*"([A-Z][A-Z0-9_]*)"', path.read_text()))
    assert used, "the pattern found no settings: the test would pass vacuously"
    missing = used - _documented()
    assert not missing, f"document these in .env.example: {sorted(missing)}"


# --- docker-compose.prod.yml: three KRaft brokers, RF 3 / min ISR 2, scaled app services ------


def _prod() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.prod.yml").read_text())


def test_prod_compose_runs_three_kraft_brokers_replicating_everything_three_times():
    services = _prod()["services"]
    brokers = {n: s for n, s in services.items() if s.get("image", "").startswith("apache/kafka:")}
    assert sorted(brokers) == ["kafka-1", "kafka-2", "kafka-3"]
    envs = {n: s["environment"] for n, s in brokers.items()}
    assert sorted(int(e["KAFKA_NODE_ID"]) for e in envs.values()) == [1, 2, 3]
    assert len({e["CLUSTER_ID"] for e in envs.values()}) == 1
    assert len({tuple(s["volumes"]) for s in brokers.values()}) == 3  # a data volume each
    for name, env in envs.items():
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
        assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == \
            "1@kafka-1:9093,2@kafka-2:9093,3@kafka-3:9093"
        assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{name}:9092"
        # internal topics (offsets, transactions) too, not only the app's
        for key in ("KAFKA_DEFAULT_REPLICATION_FACTOR", "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
                    "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
                    "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR"):
            assert int(env[key]) == 3, (name, key)
        for key in ("KAFKA_MIN_INSYNC_REPLICAS", "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
                    "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR"):
            assert int(env[key]) == 2, (name, key)
        assert env["KAFKA_UNCLEAN_LEADER_ELECTION_ENABLE"] == "false"
        assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
        assert "healthcheck" in brokers[name]
        assert "ports" not in brokers[name]


def test_prod_compose_creates_every_topic_with_rf_3_and_min_isr_2(settings):
    from relay.topics import desired_topics

    services = _prod()["services"]
    migrate = services["migrate"]
    assert "python manage.py kafka create-topics" in migrate["command"]
    env = migrate["environment"]
    assert env["KAFKA_BROKERS"] == "kafka-1:9092,kafka-2:9092,kafka-3:9092"
    # what `manage.py kafka create-topics` creates with the migrate service's environment
    settings.KAFKA_REPLICATION_FACTOR = int(env["KAFKA_REPLICATION_FACTOR"])
    settings.KAFKA_MIN_INSYNC_REPLICAS = int(env["KAFKA_MIN_INSYNC_REPLICAS"])
    specs = desired_topics()
    assert len(specs) == 17  # eight topics, their dead-letter topics, the relay checkpoints
    assert {s.replication_factor for s in specs} == {3}
    assert {s.config["min.insync.replicas"] for s in specs} == {"2"}
    # every app process talks to the same three brokers with the same layout
    for name, svc in services.items():
        if svc.get("image") == "showoff-backend:local":
            assert svc["environment"] == env, name
            for broker in ("kafka-1", "kafka-2", "kafka-3"):
                if name != "migrate":
                    assert svc["depends_on"][broker]["condition"] == "service_healthy", name


def test_prod_compose_scales_relay_shards_with_standbys_and_consumers():
    services = _prod()["services"]
    relays = {n: s for n, s in services.items() if "run_relay" in str(s.get("command", ""))}
    assert {n: (s["command"], s["deploy"]["replicas"]) for n, s in relays.items()} == {
        "relay-shard-0": ("python manage.py run_relay --shards 2 --shard 0", 2),
        "relay-shard-1": ("python manage.py run_relay --shards 2 --shard 1", 2),
    }
    assert services["relay-shard-0"]["environment"]["RELAY_SHARDS"] == 2
    topics = ["notification-events", "email-events", "sms-events", "video-processing",
              "analytics-events", "user-events", "post-events", "transaction-events"]
    for topic in topics:
        consumer = services[f"consume-{topic}"]
        assert consumer["command"] == f"python manage.py consume {topic}"
        assert consumer["deploy"]["replicas"] >= 2
    assert services["beat"]["deploy"]["replicas"] == 1  # two schedulers run every task twice


def test_every_prod_compose_variable_is_documented_in_env_example():
    text = (ROOT / "docker-compose.prod.yml").read_text()
    used = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", text))
    assert {"KAFKA_CLUSTER_ID", "SECRET_KEY", "POSTGRES_PASSWORD"} <= used
    missing = used - _documented()
    assert not missing, f"document these in .env.example: {sorted(missing)}"
