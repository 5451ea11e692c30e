"""The OpenAPI schema: valid with no warnings, docs served without a CDN, and a property-based
run of every operation (schemathesis) that finds no 5xx and no response outside the schema."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.staticfiles import finders

from accounts.tests.fixtures import client_for, make_user
from posts import services as post_services
from showoff.tests.fuzz import fuzz_api

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
    for path in ("/api/auth/login/", "/api/posts/{post_id}/like/", "/api/me/phone/verify/",
                 "/api/auth/password/reset/", "/api/auth/password/reset/confirm/",
                 "/api/auth/email/verify/", "/api/me/email/verification/"):
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
    # when
    operations, failures = fuzz_api(OUR_PATHS, token, EXAMPLES)
    # then
    assert operations >= 20
    assert failures == [], "\n\n".join(failures)
