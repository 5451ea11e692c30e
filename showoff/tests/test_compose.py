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
