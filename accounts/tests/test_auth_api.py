"""Registration, login, token refresh and logout through the API."""

from __future__ import annotations

import pytest

from accounts.models import User
from accounts.tests.fixtures import PASSWORD, client_for, events

pytestmark = pytest.mark.django_db


def test_register_creates_the_account_and_its_event(anon):
    # when
    resp = anon.post("/api/auth/register/", {"username": "carol", "email": "Carol@Example.COM",
                                             "password": PASSWORD, "display_name": "Carol"})
    # then
    assert resp.status_code == 201, resp.json()
    body = resp.json()
    user = User.objects.get(username="carol")
    assert body == {"id": user.pk, "username": "carol", "display_name": "Carol", "bio": "",
                    "avatar_url": None, "date_joined": body["date_joined"],
                    "email": "Carol@example.com", "email_verified": False, "phone": None,
                    "phone_verified": False}
    assert user.check_password(PASSWORD)
    [event] = events("user.registered")
    assert event.key == str(user.pk)
    assert event.topic == "user-events"
    assert {k: v for k, v in event.payload.items() if k != "registered_at"} == {
        "user_id": user.pk, "username": "carol", "email": "Carol@example.com",
        "display_name": "Carol"}
    assert PASSWORD not in str(event.payload) and PASSWORD not in str(event.headers)


def test_register_with_only_an_email_derives_a_free_username(anon, alice):
    resp = anon.post("/api/auth/register/", {"email": "alice@elsewhere.org",
                                             "password": PASSWORD})
    assert resp.status_code == 201
    assert resp.json()["username"] == "alice2"
    login = anon.post("/api/auth/login/", {"login": "alice@elsewhere.org", "password": PASSWORD})
    assert login.status_code == 200
    assert login.json()["user"]["username"] == "alice2"


def test_register_without_email_is_allowed(anon):
    resp = anon.post("/api/auth/register/", {"username": "dave", "password": PASSWORD})
    assert resp.status_code == 201
    assert resp.json()["email"] is None


@pytest.mark.parametrize(
    ("payload", "field", "message_part"),
    [
        ({"password": PASSWORD}, "username", "give a username, an email address, or both"),
        ({"username": "erin"}, "password", "required"),
        ({"username": "erin", "password": "123"}, "password", "too short"),
        ({"username": "erin", "password": "password"}, "password", "too common"),
        ({"username": "bad name!", "password": PASSWORD}, "username", "valid username"),
        ({"username": "erin", "password": PASSWORD, "email": "nope"}, "email", "valid email"),
        ({"username": ["erin"], "password": PASSWORD}, "username", "expected a string"),
    ],
)
def test_register_rejects_bad_input_with_field_errors(anon, payload, field, message_part):
    # when
    resp = anon.post("/api/auth/register/", payload, format="json")
    # then
    assert resp.status_code == 400
    body = resp.json()
    assert body["type"] == "validation_error"
    assert message_part in " ".join(body["errors"][field]).lower()
    assert User.objects.count() == 0
    assert events() == []


def test_register_rejects_a_taken_username_or_email_in_any_case(anon, alice):
    resp = anon.post("/api/auth/register/", {"username": "ALICE", "password": PASSWORD,
                                             "email": "ALICE@example.com"})
    assert resp.status_code == 400
    errors = resp.json()["errors"]
    assert errors["username"] == ["This username is taken; choose another."]
    assert errors["email"] == ["An account with this email already exists; sign in instead."]


def test_register_rejects_a_body_that_is_not_an_object(anon):
    resp = anon.post("/api/auth/register/", [1, 2], format="json")
    assert resp.status_code == 400
    assert "non_field_errors" in resp.json()["errors"]


def test_malformed_json_is_a_400_json_error(anon):
    resp = anon.post("/api/auth/register/", "{nope", content_type="application/json")
    assert resp.status_code == 400
    assert resp.json()["type"] == "parse_error"


@pytest.mark.parametrize("login", ["alice", "ALICE@example.com"])
def test_login_by_username_or_email_returns_tokens_and_records_ip_and_agent(anon, alice, login):
    # when
    resp = anon.post("/api/auth/login/", {"login": login, "password": PASSWORD},
                     HTTP_USER_AGENT="ShowOff-iOS/3.2")
    # then
    assert resp.status_code == 200
    body = resp.json()
    assert body["user"]["id"] == alice.pk
    assert body["user"]["email"] == "alice@example.com"
    me = client_for(None)
    me.credentials(HTTP_AUTHORIZATION=f"Bearer {body['access']}")
    assert me.get("/api/me/").json()["username"] == "alice"
    [event] = events("user.logged_in")
    assert event.payload["user_id"] == alice.pk
    assert event.payload["ip"] == "203.0.113.7"
    assert event.payload["user_agent"] == "ShowOff-iOS/3.2"
    assert body["access"] not in str(event.payload)
    alice.refresh_from_db()
    assert alice.last_login is not None


@pytest.mark.parametrize("password", ["wrong-password", ""])
def test_login_with_wrong_credentials_is_400_and_emits_nothing(anon, alice, password):
    resp = anon.post("/api/auth/login/", {"login": "alice", "password": password})
    assert resp.status_code == 400
    assert events("user.logged_in") == []


def test_login_of_unknown_user_gets_the_same_answer_as_a_wrong_password(anon, alice):
    unknown = anon.post("/api/auth/login/", {"login": "nobody", "password": PASSWORD})
    wrong = anon.post("/api/auth/login/", {"login": "alice", "password": "x" + PASSWORD})
    assert unknown.status_code == wrong.status_code == 400
    assert unknown.json() == wrong.json()


def test_login_is_throttled_per_client_ip(anon, alice, settings):
    # given
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {
        **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "login": "3/min"}}
    for _ in range(3):
        assert anon.post("/api/auth/login/", {"login": "alice", "password": "no"}
                         ).status_code == 400
    # when
    resp = anon.post("/api/auth/login/", {"login": "alice", "password": PASSWORD})
    # then
    assert resp.status_code == 429
    assert resp.json()["type"] == "throttled"
    assert resp.json()["retry_after"] > 0
    other_ip = client_for(None)
    other_ip.defaults["REMOTE_ADDR"] = "198.51.100.9"
    assert other_ip.post("/api/auth/login/", {"login": "alice", "password": PASSWORD}
                         ).status_code == 200


def test_registration_is_throttled(anon, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {
        **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "register": "1/hour"}}
    assert anon.post("/api/auth/register/", {"username": "u1", "password": PASSWORD}
                     ).status_code == 201
    resp = anon.post("/api/auth/register/", {"username": "u2", "password": PASSWORD})
    assert resp.status_code == 429
    assert not User.objects.filter(username="u2").exists()


def _login(client, login="alice"):
    resp = client.post("/api/auth/login/", {"login": login, "password": PASSWORD})
    assert resp.status_code == 200
    return resp.json()


def test_refresh_rotates_and_the_old_refresh_token_is_revoked(anon, alice):
    # given
    tokens = _login(anon)
    # when
    first = anon.post("/api/auth/refresh/", {"refresh": tokens["refresh"]})
    again = anon.post("/api/auth/refresh/", {"refresh": tokens["refresh"]})
    # then
    assert first.status_code == 200
    assert set(first.json()) == {"access", "refresh"}
    assert first.json()["refresh"] != tokens["refresh"]
    assert again.status_code == 401
    assert again.json()["type"] == "authentication_failed"
    assert anon.post("/api/auth/refresh/", {"refresh": first.json()["refresh"]}
                     ).status_code == 200


def test_refresh_with_garbage_is_401_and_missing_field_is_400(anon):
    assert anon.post("/api/auth/refresh/", {"refresh": "garbage"}).status_code == 401
    resp = anon.post("/api/auth/refresh/", {})
    assert resp.status_code == 400
    assert resp.json()["errors"]["refresh"] == ["This field is required."]


def test_logout_revokes_the_refresh_and_the_access_token_at_once(anon, alice):
    # given
    tokens = _login(anon)
    client = client_for(None)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['access']}")
    assert client.get("/api/me/").status_code == 200
    # when
    resp = client.post("/api/auth/logout/", {"refresh": tokens["refresh"]})
    # then
    assert resp.status_code == 204
    assert client.get("/api/me/").status_code == 401
    assert anon.post("/api/auth/refresh/", {"refresh": tokens["refresh"]}).status_code == 401


def test_logout_with_an_invalid_refresh_token_is_401(anon):
    resp = anon.post("/api/auth/logout/", {"refresh": "not-a-token"})
    assert resp.status_code == 401
    assert resp.json()["type"] == "authentication_failed"


def test_an_invalid_bearer_token_is_401_json(anon):
    anon.credentials(HTTP_AUTHORIZATION="Bearer abc.def.ghi")
    resp = anon.get("/api/me/")
    assert resp.status_code == 401
    assert resp.json()["type"] == "authentication_failed"
