"""Two web worker processes sharing the one Redis, as in production: a logout on one revokes
the access token on the other at once, and a throttle counts requests across both."""

from __future__ import annotations

import pytest
import requests

from accounts.tests.fixtures import PASSWORD

from .servers import web_server

pytestmark = pytest.mark.django_db(transaction=True)


def test_logout_on_one_worker_revokes_the_token_on_the_other_and_throttles_count_across_both(
        tmp_path):
    # given: two gunicorn processes (as the containers run them), one worker each so that
    # each request goes to a known process, with a budget of 4 logins and refreshes a minute
    budget = {"API_THROTTLE_LOGIN": "4/min"}
    with web_server("container", media_dir=tmp_path, workers=1, env=budget) as a, \
            web_server("container", media_dir=tmp_path, workers=1, env=budget) as b:
        assert a != b
        # (registered through the API: the test settings' fast password hasher is not one the
        # production settings accept)
        assert requests.post(f"{b}/api/auth/register/", timeout=10, json={
            "username": "twice", "password": PASSWORD}).status_code == 201
        tokens = requests.post(f"{a}/api/auth/login/", timeout=10,
                               json={"login": "twice", "password": PASSWORD}).json()
        bearer = {"Authorization": f"Bearer {tokens['access']}"}
        assert requests.get(f"{b}/api/me/", headers=bearer, timeout=10).status_code == 200

        # when: the user logs out through A
        out = requests.post(f"{a}/api/auth/logout/", headers=bearer, timeout=10,
                            json={"refresh": tokens["refresh"]})
        assert out.status_code == 204

        # then: B refuses the access token at once (not when it expires)
        refused = requests.get(f"{b}/api/me/", headers=bearer, timeout=10)
        assert refused.status_code == 401
        assert (refused.json()["type"], refused.json()["detail"]) == (
            "authentication_failed", "This token was revoked by a logout; sign in again.")
        # and the refresh token is refused by both
        for base in (a, b):
            again = requests.post(f"{base}/api/auth/refresh/", timeout=10,
                                  json={"refresh": tokens["refresh"]})
            assert again.status_code == 401, again.text

        # when: wrong passwords go to A, B, A (A has seen 2 of the budget, B 1)
        codes = [requests.post(f"{base}/api/auth/login/", timeout=10,
                               json={"login": "twice", "password": "wrong"}).status_code
                 for base in (a, b, a)]
    # then: the 4th request of the budget is the last allowed, wherever it lands; counted per
    # process, B would still be at 2 and A at 3, and all three would be plain 400s
    assert codes == [400, 429, 429]
