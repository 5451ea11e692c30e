"""The monitoring that ships with the project (monitoring/): Prometheus alert rules checked and
unit-tested by promtool (Debian's `prometheus` package), every alert firing and not firing on
synthetic series, every runbook link landing on a section that exists, the Alertmanager and
Prometheus configurations valid, the Grafana dashboard's queries valid PromQL with a unit on
every axis, and every metric name used anywhere actually exported by the code."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from relay import history, pipeline_status
from relay.runbook import RUNBOOK, anchors

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "monitoring"
RULES = MONITORING / "prometheus" / "alerts.yml"
RULE_TESTS = MONITORING / "prometheus" / "alerts_test.yml"
DASHBOARD = MONITORING / "grafana" / "dashboards" / "showoff-pipeline.json"
RUNBOOK_LINK = re.compile(r"^\{\{ \$externalLabels\.runbook_url \}\}#([a-z0-9-]+)$")


def _tool(name: str) -> str:
    path = shutil.which(name)
    if not path:
        pytest.fail(f"{name} is not installed: run `scripts/install-test-deps` (apt-get install "
                    "-y prometheus prometheus-alertmanager, as root) first.")
    return path


def _run(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=120,
                          cwd=ROOT)


def _alerts() -> list[dict]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def _dashboard_exprs() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [t["expr"] for p in panels for t in p.get("targets", [])]


# --- alert rules ------------------------------------------------------------------------------


def test_the_alert_rules_pass_promtool_check():
    result = _run(_tool("promtool"), "check", "rules", RULES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_alerts())} rules found" in result.stdout


def test_promtool_unit_tests_pass_with_every_alert_firing_and_not_firing():
    # given: the synthetic cases of alerts_test.yml
    cases: dict[str, dict[str, int]] = {}
    for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for case in test.get("alert_rule_test", []):
            kind = "firing" if case.get("exp_alerts") else "quiet"
            counts = cases.setdefault(case["alertname"], {"firing": 0, "quiet": 0})
            counts[kind] += 1
    # then: no alert lacks either case ...
    names = [rule["alert"] for rule in _alerts()]
    assert sorted(cases) == sorted(names)
    assert [n for n in names if not (cases[n]["firing"] and cases[n]["quiet"])] == []
    # ... and promtool agrees with every expectation (labels, rendered annotations, timing)
    result = _run(_tool("promtool"), "test", "rules", RULE_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_links_to_a_runbook_section_that_exists():
    sections = set(anchors(RUNBOOK.read_text()))
    for rule in _alerts():
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], rule["alert"]
        link = RUNBOOK_LINK.match(annotations["runbook_url"])
        assert link, f"{rule['alert']}: {annotations['runbook_url']!r}"
        assert link.group(1) in sections, f"{rule['alert']}: no section #{link.group(1)}"
        assert rule["labels"]["severity"] in {"warning", "critical"}


def test_every_runbook_link_of_the_pipeline_lights_exists():
    sections = set(anchors(RUNBOOK.read_text()))
    source = (ROOT / "relay" / "pipeline_status.py").read_text()
    used = set(re.findall(r'"((?:\d+-|first-look)[a-z0-9-]+)"', source))
    assert len(used) >= 7
    assert used - sections == set()


def test_the_lights_turn_red_where_the_alerts_fire():
    exprs = {rule["alert"]: rule["expr"] for rule in _alerts()}
    assert f"> {pipeline_status.BACKLOG_WARN_SECONDS}" in exprs["ShowoffOutboxBacklogOld"]
    assert f"> {pipeline_status.BACKLOG_BAD_SECONDS}" in exprs["ShowoffOutboxBacklogCritical"]
    assert f">= {pipeline_status.LAG_RECORDS}" in exprs["ShowoffConsumerLagGrowing"]
    assert f"[{pipeline_status.LAG_GROWING_SECONDS // 60}m:1m]" in \
        exprs["ShowoffConsumerLagGrowing"]
    assert f"> {pipeline_status.TRANSACTION_WARN_SECONDS}" in exprs["ShowoffLongOpenTransaction"]


# --- Prometheus, Alertmanager and Grafana configuration ---------------------------------------


def test_the_production_prometheus_configuration_is_valid():
    result = _run(_tool("promtool"), "check", "config", "--syntax-only",
                  MONITORING / "prometheus" / "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load((MONITORING / "prometheus" / "prometheus.yml").read_text())
    assert config["rule_files"] == ["alerts.yml"]
    assert {job["job_name"] for job in config["scrape_configs"]} == {
        "showoff-api", "showoff-relay", "showoff-consumers", "showoff-workers",
        "showoff-celery"}


def test_the_alertmanager_configuration_is_valid():
    amtool = shutil.which("amtool") or _tool("amtool")
    result = _run(amtool, "check-config", MONITORING / "alertmanager" / "alertmanager.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_grafana_panel_query_is_valid_promql_with_a_unit_on_its_axis(tmp_path):
    # given: the dashboard, and Grafana's data source of the same uid
    dashboard = json.loads(DASHBOARD.read_text())
    provisioned = yaml.safe_load(
        (MONITORING / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    (source,) = provisioned["datasources"]
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len(panels) >= 15
    for panel in panels:
        assert panel["datasource"]["uid"] == source["uid"], panel["title"]
        assert panel["targets"], panel["title"]
        defaults = panel["fieldConfig"]["defaults"]
        assert defaults["unit"], panel["title"]
        if panel["type"] == "timeseries":
            assert defaults["custom"]["axisLabel"], panel["title"]
    # when: every query, with Grafana's $__rate_interval filled in, goes through promtool
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{i}", "expr": expr.replace("$__rate_interval", "1m")}
        for i, expr in enumerate(_dashboard_exprs())]}]}
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump(rules))
    result = _run(_tool("promtool"), "check", "rules", path)
    # then
    assert result.returncode == 0, result.stdout + result.stderr


# --- metric names -------------------------------------------------------------------------------


def _exported(text: str) -> set[str]:
    names = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE):
        names.add(name)
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    return names


@pytest.mark.django_db
def test_every_metric_named_in_rules_dashboard_and_charts_is_exported(client):
    # given: what a real scrape of the API's /metrics declares (the web's own, the relay's and
    # consumers' families, and those read from PostgreSQL and Kafka at scrape time)
    text = client.get("/metrics").content.decode()
    exported = _exported(text) | {"up"}  # `up`: Prometheus' own, per target
    # when: every name the project queries
    queries = [rule["expr"] for rule in _alerts()] + _dashboard_exprs() + [
        spec.query for spec in history.CHARTS] + [history.RELAY_ACTIVE]
    used = set()
    for query in queries:
        without_labels = re.sub(r"\{[^}]*\}", "", query)
        used |= set(re.findall(r"\b(showoff_[a-z0-9_]+|process_[a-z_]+|up)\b", without_labels))
    # then
    assert len(used) >= 25
    assert used - exported == set(), f"queried but never exported: {sorted(used - exported)}"


@pytest.mark.django_db
def test_promtool_finds_nothing_to_lint_in_the_metrics_endpoint(client):
    text = client.get("/metrics").content.decode()
    assert "showoff_kafka_up 1.0" in text
    result = subprocess.run([_tool("promtool"), "check", "metrics"], input=text,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_kafka_metrics_say_down_when_the_brokers_do_not_answer_and_nothing_when_disabled(
        settings):
    from prometheus_client import CollectorRegistry, generate_latest

    from relay.monitoring import KafkaCollector

    registry = CollectorRegistry()
    registry.register(KafkaCollector(timeout=1.0))
    # given: nothing listens at the brokers' address
    settings.KAFKA_BROKERS = "127.0.0.1:1"
    text = generate_latest(registry).decode()
    assert "showoff_kafka_up 0.0" in text
    assert "showoff_kafka_brokers" not in text and "showoff_kafka_consumergroup_lag" not in text
    # and Kafka switched off on purpose: no "down" to alert on
    settings.KAFKA_ENABLED = False
    assert "showoff_kafka" not in generate_latest(registry).decode()
