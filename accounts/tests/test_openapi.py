"""The OpenAPI schema: valid with no warnings, docs served without a CDN, and a property-based
run of every operation (schemathesis) that finds no 5xx and no response outside the schema."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import schemathesis
from django.contrib.staticfiles import finders
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from accounts.tests.fixtures import client_for, make_user
from posts import services as post_services
from showoff.wsgi import application

ROOT = Path(__file__).resolve().parents[2]
# Bounded: examples per operation and mode; the whole run stays well under a minute.
EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "12"))


def test_schema_validates_with_no_warnings(tmp_path):
    # when
    result = subprocess.run(
        [sys.executable, "manage.py", "spectacular", "--validate", "--fail-on-warn",
         "--file", str(tmp_path / "schema.yaml")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "showoff.settings.test"},
    )
    # then
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr and "Error" not in result.stderr
    schema = (tmp_path / "schema.yaml").read_text()
    for path in ("/api/auth/login/", "/api/posts/{post_id}/like/", "/api/me/phone/verify/"):
        assert f"{path}:" in schema


@pytest.mark.django_db
def test_interactive_docs_are_served_from_our_own_static_files(anon):
    # when
    resp = anon.get("/api/docs/")
    # then
    assert resp.status_code == 200
    html = resp.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html
    assert "cdn" not in html.lower() and "https://" not in html
    assert finders.find("drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js")
    assert anon.get("/api/redoc/").status_code == 200
    assert anon.get("/api/schema/").status_code == 200


# The operations this run covers (other apps' endpoints are theirs to fuzz).
OUR_PATHS = ("/api/auth/", "/api/me/", "/api/users/", "/api/posts/")


@pytest.fixture
def wsgi_keeps_connection():
    """The WSGI handler closes the DB connection after each request (as in production); the
    test's transaction lives on that connection, so do what Django's test client does."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.mark.django_db
def test_property_based_run_finds_no_server_error_and_no_schema_violation(
        wsgi_keeps_connection):
    # given: a signed-in user and some data, so operations get past authentication
    user = make_user(username="fuzzer")
    other = make_user(username="other")
    for author in (user, other):
        post = post_services.post_create(author=author, text="seed")
        post_services.comment_create(post_id=post.pk, author=other, text="seed")
    token = client_for(user)._credentials["HTTP_AUTHORIZATION"]
    schema = schemathesis.openapi.from_wsgi("/api/schema/", application)
    checks = [not_a_server_error, response_schema_conformance, status_code_conformance,
              content_type_conformance]
    failures: list[str] = []

    _fuzz(schema, checks, token, failures)
    assert failures == [], "\n\n".join(failures)


def _fuzz(schema, checks, token: str, failures: list[str]) -> None:
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if not operation.path.startswith(OUR_PATHS):
            continue
        operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=EXAMPLES, deadline=None, database=None,
                      phases=[Phase.explicit, Phase.generate],
                      suppress_health_check=list(HealthCheck))
            def run(case):
                case.headers = {**(case.headers or {}), "Authorization": token}
                case.call_and_validate(checks=checks)

            try:
                run()
            except Exception as exc:  # noqa: BLE001 - every failure is collected and shown
                failures.append(f"{operation.method.upper()} {operation.path} [{mode.value}]: "
                                f"{str(exc)[:1500]}")

    assert operations >= 20
