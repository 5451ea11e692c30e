"""The `curl` examples of docs/api-auth.md work as written: each ```bash block runs in bash
against a live server (its `http://127.0.0.1:8000` pointed at the test server), and its answer
contains every `# ->` line of the block. Tokens come from the emails the real pipeline
delivers (relay, `accounts` and `notifications-email` consumers, Celery)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from django.core import mail
from rest_framework_simplejwt.tokens import RefreshToken

from accounts.models import User
from accounts.tests.fixtures import client_for, make_user

pytestmark = pytest.mark.django_db(transaction=True)
PAGE = Path(__file__).resolve().parents[2] / "docs" / "api-auth.md"
LINK = re.compile(r"\?token=([A-Za-z0-9_-]+)")


def _blocks() -> list[tuple[str, list[str]]]:
    """(script, expected fragments) of each bash block, in page order."""
    out = []
    for block in re.findall(r"```bash\n(.*?)```", PAGE.read_text(), flags=re.S):
        lines = [line.strip() for line in block.splitlines()]
        expected = [line[len("# -> "):] for line in lines if line.startswith("# -> ")]
        script = "\n".join(line for line in lines if not line.startswith("#"))
        out.append((script, expected))
    return out


def _run(script: str, base_url: str, **env: str) -> str:
    result = subprocess.run(["bash", "-e", "-c", script.replace("http://127.0.0.1:8000",
                                                                 base_url)],
                            capture_output=True, text=True, timeout=60,
                            env={"PATH": "/usr/bin:/bin", **env})
    assert result.returncode == 0, result.stderr
    return result.stdout


def _check(output: str, expected: list[str]) -> None:
    # Header names are case-insensitive (curl shows them as the server wrote them).
    missing = [e for e in expected if e.lower() not in output.lower()]
    assert missing == [], f"not in the answer: {missing}\n--- answer ---\n{output}"


def _token(to: str) -> str:
    [message] = [m for m in mail.outbox if m.to == [to]][-1:]
    return LINK.search(message.body).group(1)


def test_every_curl_example_of_the_auth_page_works(live_server, recovery_pipeline, settings,
                                                   redis_cache):
    # given: the rates of a default deployment (the test settings raise the global ones)
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {
        **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "anon": "600/min",
        "user": "1200/min"}}
    make_user(username="alice", email="alice@example.com")
    for name in ("dave", "bob"):  # registered through the API: each gets a verification link
        assert client_for(None).post("/api/auth/register/", {
            "username": name, "email": f"{name}@example.com",
            "password": "correct-Horse-battery-9"}).status_code == 201
    carol = make_user(username="carol")
    blocks = _blocks()
    assert len(blocks) == 7 and all(expected for _, expected in blocks)
    url = live_server.url
    request_reset, confirm, confirm_again, verify, resend, preflight, rate_limits = blocks

    # when / then: a forgotten password, the token read from the delivered email
    _check(_run(request_reset[0], url), request_reset[1])
    recovery_pipeline.run_until(lambda: any(m.to == ["alice@example.com"] for m in mail.outbox))
    reset_token = _token("alice@example.com")
    _check(_run(confirm[0], url, TOKEN=reset_token), confirm[1])
    assert User.objects.get(username="alice").check_password("a-new-Passphrase-2")
    _check(_run(confirm_again[0], url, TOKEN=reset_token), confirm_again[1])

    # email verification (dave opens his link; bob asks for a new one)
    recovery_pipeline.run_until(lambda: any(m.to == ["dave@example.com"] for m in mail.outbox))
    _check(_run(verify[0], url, TOKEN=_token("dave@example.com")), verify[1])
    assert User.objects.get(username="dave").email_verified_at is not None
    bob_access = str(RefreshToken.for_user(User.objects.get(username="bob")).access_token)
    _check(_run(resend[0], url, ACCESS=bob_access), resend[1])

    # a web app's preflight, and the rate-limit headers of a fresh user's first request
    _check(_run(preflight[0], url), preflight[1])
    carol_access = str(RefreshToken.for_user(carol).access_token)
    _check(_run(rate_limits[0], url, ACCESS=carol_access), rate_limits[1])
