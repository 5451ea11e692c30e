"""CORS (django-cors-headers) for web apps on other origins: the preflight a browser sends
before a signed-in JSON request, what a page may read of the answer, refused origins, and the
defaults of development and production."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from accounts.tests.fixtures import PASSWORD, client_for, make_user

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]
APP = "https://app.example.com"


@pytest.fixture
def web_app(settings):
    settings.CORS_ALLOWED_ORIGINS = [APP]


def _preflight(client, path: str, method: str, headers: str, origin: str = APP):
    return client.options(path, HTTP_ORIGIN=origin, HTTP_ACCESS_CONTROL_REQUEST_METHOD=method,
                          HTTP_ACCESS_CONTROL_REQUEST_HEADERS=headers)


def _split(value: str) -> set[str]:
    return {v.strip().lower() for v in value.split(",")}


def test_a_preflight_from_an_allowed_origin_allows_a_signed_in_json_request(web_app):
    # when: what a browser asks before POST with a bearer token, a JSON body and a coins key
    resp = _preflight(client_for(None), "/api/coins/transfers/", "POST",
                      "authorization, content-type, idempotency-key, traceparent")
    # then
    assert resp.status_code == 200
    assert resp["Access-Control-Allow-Origin"] == APP
    assert {"authorization", "content-type", "idempotency-key", "traceparent"} <= _split(
        resp["Access-Control-Allow-Headers"])
    assert {"get", "post", "put", "patch", "delete", "options"} == _split(
        resp["Access-Control-Allow-Methods"])
    assert resp["Access-Control-Max-Age"] == "7200"
    assert "Access-Control-Allow-Credentials" not in resp  # bearer tokens need no cookies
    assert "origin" in _split(resp["Vary"])


def test_an_allowed_origin_can_sign_in_and_read_the_rate_limit_headers(web_app, settings,
                                                                        redis_cache):
    # given
    make_user(username="alice", password=PASSWORD)
    client = client_for(None)
    # when: the request the preflight allowed, then a signed-in one
    login = client.post("/api/auth/login/", {"login": "alice", "password": PASSWORD},
                        HTTP_ORIGIN=APP)
    me = client.get("/api/me/", HTTP_ORIGIN=APP,
                    HTTP_AUTHORIZATION=f"Bearer {login.json()['access']}")
    # then: the page may read the answer and the headers it needs
    for resp in (login, me):
        assert resp.status_code == 200
        assert resp["Access-Control-Allow-Origin"] == APP
        exposed = _split(resp["Access-Control-Expose-Headers"])
        assert {"ratelimit", "ratelimit-policy", "x-ratelimit-limit", "x-ratelimit-remaining",
                "x-ratelimit-reset", "retry-after"} <= exposed
        assert {"ratelimit", "x-ratelimit-remaining"} <= {h.lower() for h in resp.headers}
    assert me.json()["username"] == "alice"


def test_another_origin_gets_no_cors_headers(web_app):
    preflight = _preflight(client_for(None), "/api/auth/login/", "POST", "content-type",
                           origin="https://evil.example.net")
    get = client_for(None).get("/api/users/1/", HTTP_ORIGIN="https://evil.example.net")
    for resp in (preflight, get):
        assert "Access-Control-Allow-Origin" not in resp


def test_the_admin_is_not_open_to_other_origins(web_app, client):
    resp = client.get("/admin/login/", HTTP_ORIGIN=APP)
    assert "Access-Control-Allow-Origin" not in resp


def _settings_of(module: str, **env: str) -> dict:
    code = ("import django, json; django.setup(); from django.conf import settings as s; "
            "print(json.dumps({'origins': s.CORS_ALLOWED_ORIGINS, "
            "'credentials': s.CORS_ALLOW_CREDENTIALS}))")
    base = {k: v for k, v in os.environ.items() if not k.startswith("CORS_")}
    base.update(DJANGO_SETTINGS_MODULE=module, SECRET_KEY="k" * 60, ALLOWED_HOSTS="x.test",
                ACCOUNTS_PASSWORD_RESET_URL="https://x.test/r?t={token}",
                ACCOUNTS_EMAIL_VERIFICATION_URL="https://x.test/v?t={token}", **env)
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=base,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_production_allows_no_origin_unless_configured_and_development_its_dev_servers():
    assert _settings_of("showoff.settings.production") == {"origins": [],
                                                           "credentials": False}
    assert _settings_of("showoff.settings.production",
                        CORS_ALLOWED_ORIGINS="https://a.example,https://b.example") == {
        "origins": ["https://a.example", "https://b.example"], "credentials": False}
    assert _settings_of("showoff.settings.base")["origins"] == [
        "http://localhost:3000", "http://127.0.0.1:3000",
        "http://localhost:5173", "http://127.0.0.1:5173"]


def test_a_malformed_origin_is_refused_by_the_checks():
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORS_")}
    env.update(DJANGO_SETTINGS_MODULE="showoff.settings.base",
               CORS_ALLOWED_ORIGINS="app.example.com")
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "corsheaders.E013" in result.stderr
