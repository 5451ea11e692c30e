"""The OpenAPI schema: valid with no warnings, and docs served without a CDN. (The
property-based run over every operation is showoff/tests/test_property_based.py.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.staticfiles import finders

ROOT = Path(__file__).resolve().parents[2]

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
