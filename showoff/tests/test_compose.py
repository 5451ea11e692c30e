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
            # (some add their own: the API's and Celery's metrics folder and port, and the
            # API's compose name as a served host for Prometheus)
            own = svc["environment"]
            assert {k: own[k] for k in env if k != "ALLOWED_HOSTS"} == {
                k: v for k, v in env.items() if k != "ALLOWED_HOSTS"}, name
            assert own["ALLOWED_HOSTS"].startswith(env["ALLOWED_HOSTS"]), name
            for broker in ("kafka-1", "kafka-2", "kafka-3"):
                if name != "migrate":
                    assert svc["depends_on"][broker]["condition"] == "service_healthy", name


def test_prod_compose_scales_relay_shards_with_standbys_and_consumers():
    services = _prod()["services"]
    relays = {n: s for n, s in services.items() if "run_relay" in str(s.get("command", ""))}
    metrics = "--metrics-port 9100 --metrics-addr 0.0.0.0"
    assert {n: (s["command"], s["deploy"]["replicas"]) for n, s in relays.items()} == {
        "relay-shard-0": (f"python manage.py run_relay --shards 2 --shard 0 {metrics}", 2),
        "relay-shard-1": (f"python manage.py run_relay --shards 2 --shard 1 {metrics}", 2),
    }
    assert services["relay-shard-0"]["environment"]["RELAY_SHARDS"] == 2
    topics = ["notification-events", "email-events", "sms-events", "video-processing",
              "analytics-events", "user-events", "post-events", "transaction-events"]
    # bigger batches, more events/s, where a batch's wait is affordable (docs/consumers.md)
    batch = {"analytics-events": "--batch-size 1000 ", "notification-events": "--batch-size 500 "}
    for topic in topics:
        consumer = services[f"consume-{topic}"]
        assert consumer["command"] == (
            f"python manage.py consume {topic} {batch.get(topic, '')}{metrics}")
        assert consumer["deploy"]["replicas"] >= 2
    assert services["beat"]["deploy"]["replicas"] == 1  # two schedulers run every task twice


def test_every_prod_compose_variable_is_documented_in_env_example():
    text = (ROOT / "docker-compose.prod.yml").read_text()
    used = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", text))
    assert {"KAFKA_CLUSTER_ID", "SECRET_KEY", "POSTGRES_PASSWORD"} <= used
    missing = used - _documented()
    assert not missing, f"document these in .env.example: {sorted(missing)}"


def test_prod_compose_runs_prometheus_alertmanager_and_grafana_on_the_repos_configuration():
    services = _prod()["services"]
    # every mounted configuration folder exists in the repository
    mounts = {name: [v.split(":")[:2] for v in services[name]["volumes"] if v.startswith("./")]
              for name in ("prometheus", "alertmanager", "grafana")}
    assert mounts == {
        "prometheus": [["./monitoring/prometheus", "/etc/prometheus"]],
        "alertmanager": [["./monitoring/alertmanager", "/etc/alertmanager"]],
        "grafana": [["./monitoring/grafana/provisioning", "/etc/grafana/provisioning"],
                    ["./monitoring/grafana/dashboards", "/etc/grafana/dashboards"]],
    }
    for pairs in mounts.values():
        for source, _ in pairs:
            assert (ROOT / source).is_dir(), source
    prometheus = " ".join(services["prometheus"]["command"])
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus
    assert "--enable-feature=expand-external-labels" in prometheus  # the runbook_url label
    config = yaml.safe_load((ROOT / "monitoring/prometheus/prometheus.yml").read_text())
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == [
        "alertmanager:9093"]
    # the scrape jobs find every service that serves metrics, by its compose name
    names = {n for job in config["scrape_configs"] for sd in job.get("dns_sd_configs", [])
             for n in sd["names"]}
    serving = {n for n, svc in services.items() if "--metrics-port 9100" in
               str(svc.get("command", "")) or svc.get("environment", {}).get(
                   "CELERY_METRICS_PORT") == 9100}
    assert serving == names and len(names) == 13
    # the UIs listen on the host's loopback only, Grafana needs its password from .env
    for name, port in (("prometheus", 9090), ("alertmanager", 9093), ("grafana", 3000)):
        assert services[name]["ports"] == [f"127.0.0.1:{port}:{port}"]
    assert "GRAFANA_ADMIN_PASSWORD:?" in services["grafana"]["environment"][
        "GF_SECURITY_ADMIN_PASSWORD"]
    # the API answers Prometheus' Host header and adds up its gunicorn workers
    api = services["api"]["environment"]
    assert api["ALLOWED_HOSTS"].endswith(",api") and api["PROMETHEUS_MULTIPROC_DIR"]
    assert services["api"]["environment"]["PROMETHEUS_URL"] == "http://prometheus:9090"
