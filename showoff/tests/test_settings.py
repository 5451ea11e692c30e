"""Production settings: refuse to start without secrets, and pass `check --deploy`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from relay.kafka import security_config

ROOT = Path(__file__).resolve().parents[2]
STRONG_KEY = "pRod-7c1e3f0a9b8d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f"


LINKS = {"ACCOUNTS_PASSWORD_RESET_URL": "https://showoff.life/reset-password?token={token}",
         "ACCOUNTS_EMAIL_VERIFICATION_URL": "https://showoff.life/verify-email?token={token}"}


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items()
            if k not in {"SECRET_KEY", "ALLOWED_HOSTS", "DEBUG", *LINKS}}
    base.update(DJANGO_SETTINGS_MODULE="showoff.settings.production", **env)
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=base,
                          capture_output=True, text=True, timeout=120)


def test_production_refuses_to_start_without_secret_key():
    result = _manage("check", ALLOWED_HOSTS="api.showoff.life")
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr


def test_production_refuses_to_start_without_allowed_hosts():
    result = _manage("check", SECRET_KEY=STRONG_KEY)
    assert result.returncode != 0
    assert "ALLOWED_HOSTS is not set" in result.stderr


def test_production_refuses_to_start_without_the_recovery_link_pages():
    result = _manage("check", SECRET_KEY=STRONG_KEY, ALLOWED_HOSTS="api.showoff.life")
    assert result.returncode != 0
    assert "ACCOUNTS_PASSWORD_RESET_URL is not set" in result.stderr
    result = _manage("check", SECRET_KEY=STRONG_KEY, ALLOWED_HOSTS="api.showoff.life",
                     **{**LINKS, "ACCOUNTS_EMAIL_VERIFICATION_URL": "https://showoff.life/v"})
    assert result.returncode != 0
    assert ("ACCOUNTS_EMAIL_VERIFICATION_URL='https://showoff.life/v' has no {token}"
            in result.stderr)


def test_check_deploy_is_clean_with_production_settings():
    result = _manage("check", "--deploy", "--fail-level", "WARNING",
                     SECRET_KEY=STRONG_KEY, ALLOWED_HOSTS="api.showoff.life", **LINKS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_kafka_sasl_settings_map_to_librdkafka(settings):
    settings.KAFKA_SECURITY_PROTOCOL = "sasl_ssl"
    settings.KAFKA_SASL_MECHANISM = "scram-sha-512"
    settings.KAFKA_SASL_USERNAME = "relay"
    settings.KAFKA_SASL_PASSWORD = "from-env"
    settings.KAFKA_SSL_CA_LOCATION = "/etc/ssl/ca.pem"
    assert security_config() == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "relay",
        "sasl.password": "from-env",
        "ssl.ca.location": "/etc/ssl/ca.pem",
    }


def test_kafka_sasl_without_credentials_is_a_clear_error(settings):
    from django.core.exceptions import ImproperlyConfigured

    settings.KAFKA_SECURITY_PROTOCOL = "SASL_PLAINTEXT"
    settings.KAFKA_SASL_MECHANISM = "PLAIN"
    settings.KAFKA_SASL_USERNAME = ""
    with pytest.raises(ImproperlyConfigured, match="KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"):
        security_config()
