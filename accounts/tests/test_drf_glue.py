"""showoff/drf.py: client IP behind proxies, JSON errors for unknown /api/ paths."""

from __future__ import annotations

import pytest
from django.test import RequestFactory

from showoff.drf import client_ip


@pytest.mark.parametrize(("proxies", "remote", "forwarded", "expected"), [
    (0, "203.0.113.5", "198.51.100.1", "203.0.113.5"),      # no proxy: XFF is ignored
    (1, "10.0.0.2", "1.2.3.4, 198.51.100.1", "198.51.100.1"),  # our proxy appended the client
    (2, "10.0.0.2", "1.2.3.4, 198.51.100.1, 10.0.0.9", "198.51.100.1"),
    (1, "10.0.0.2", "", "10.0.0.2"),                          # header missing: the peer
    (1, "10.0.0.2", "not-an-ip", None),
])
def test_client_ip_trusts_only_our_own_proxies(settings, proxies, remote, forwarded, expected):
    settings.ACCOUNTS_TRUSTED_PROXY_COUNT = proxies
    request = RequestFactory().get("/", REMOTE_ADDR=remote, HTTP_X_FORWARDED_FOR=forwarded)
    assert client_ip(request) == expected


@pytest.mark.django_db
def test_unknown_api_paths_get_a_json_404(anon):
    resp = anon.get("/api/posts/not-a-number/")
    assert resp.status_code == 404
    assert resp.json() == {"type": "not_found", "detail": "No such endpoint or object."}


@pytest.mark.django_db
def test_a_form_body_with_too_many_fields_is_a_400_not_a_500(as_alice):
    from urllib.parse import urlencode

    body = urlencode({f"f{i}": "x" for i in range(1500)})
    resp = as_alice.generic("PUT", "/api/me/avatar/", body,  # a form endpoint
                            content_type="application/x-www-form-urlencoded")
    assert resp.status_code == 400
    assert resp.json()["type"] == "parse_error"
    assert "DATA_UPLOAD_MAX_NUMBER_FIELDS" in resp.json()["detail"]
