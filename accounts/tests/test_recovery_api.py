"""Account recovery through the API and the `accounts` handler, on the real PostgreSQL: password
reset and email verification links (single-use, expiring, stored as keyed hashes, superseded by
newer links and by password or email changes), answers that do not tell who has an account,
and revocation of every session on reset. The whole pipeline (relay, consumers, the delivered
email) is in test_recovery_pipeline.py."""

from __future__ import annotations

import re
import threading
import uuid
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts import handlers, services, tasks
from accounts.models import AccountToken, User
from accounts.tests.fixtures import PASSWORD, client_for, events, make_user
from outbox.sealing import unseal
from relay.registry import ConsumedEvent

pytestmark = pytest.mark.django_db
NEW_PASSWORD = "brand-New-secret-77"
RESET_BODY = {"detail": "If an account uses this email address, a link to reset its password "
              "is on its way. The link works once, within 60 minutes."}


def _link(template: str, to: str) -> str:
    """The link of the latest `email.requested` of this template to this address."""
    [*_, event] = [e for e in events("email.requested")
                   if e.payload["template"] == template and e.payload["to"] == to]
    return unseal(event.payload["secret"])


def _token(link: str) -> str:
    return parse_qs(urlsplit(link).query)["token"][0]


_handled: set[uuid.UUID] = set()  # the consumer's inbox, for these tests


def _consume_reset_requests() -> None:
    """Run the `accounts` handler on every reset request in the outbox (as its consumer
    would, inside a transaction: the test's)."""
    for event in events("email.password_reset_requested"):
        if event.event_id in _handled:
            continue
        _handled.add(event.event_id)
        with transaction.atomic():
            handlers.issue_password_reset(ConsumedEvent(
                id=event.event_id, type=event.type, data=event.payload, topic=event.topic))


def _reset_token(client, email: str) -> str:
    assert client.post("/api/auth/password/reset/", {"email": email}).status_code == 202
    _consume_reset_requests()
    return _token(_link("password_reset", email))


def _confirm(client, token: str, password: str = NEW_PASSWORD):
    return client.post("/api/auth/password/reset/confirm/",
                       {"token": token, "new_password": password})


# --- asking for a reset link -----------------------------------------------------------------


def test_a_reset_request_answers_the_same_for_an_account_a_stranger_and_a_deactivated_one(anon):
    # given
    make_user(username="ann", email="ann@example.com")
    make_user(username="old", email="old@example.com", is_active=False)
    # when
    answers = [anon.post("/api/auth/password/reset/", {"email": email})
               for email in ("ann@example.com", "nobody@example.com", "old@example.com")]
    # then: same status, same body, same one event (no account lookup in the request)
    assert [(r.status_code, r.json()) for r in answers] == [(202, RESET_BODY)] * 3
    assert [(e.topic, e.key, e.payload["email"]) for e in
            events("email.password_reset_requested")] == [
        ("email-events", "ann@example.com", "ann@example.com"),
        ("email-events", "nobody@example.com", "nobody@example.com"),
        ("email-events", "old@example.com", "old@example.com")]
    assert len(events()) == 3


def _statement_shapes(email: str, client) -> list[str]:
    with CaptureQueriesContext(connection) as ctx:
        assert client.post("/api/auth/password/reset/", {"email": email}).status_code == 202
    # Literals (the address, ids, times, the event id) differ; the statements must not.
    return [re.sub(r"'(?:[^']|'')*'|\b\d+\b|\"s\d+_x\d+\"", "?", q["sql"])
            for q in ctx.captured_queries]


def test_a_reset_request_runs_the_same_statements_whether_or_not_an_account_exists(anon):
    # given
    make_user(username="ann", email="ann@example.com")
    # when
    known = _statement_shapes("ann@example.com", anon)
    unknown = _statement_shapes("stranger@example.com", anon)
    # then: the same work (so the same time, bench/recovery_timing.py measures it)
    assert known == unknown
    assert len(known) >= 1 and any("outbox" in q for q in known)
    assert not any("accounts_user" in q for q in known)


def test_the_handler_issues_one_sealed_link_for_an_active_account_only(anon):
    # given
    ann = make_user(username="ann", email="Ann@example.com")
    make_user(username="old", email="old@example.com", is_active=False)
    for email in ("ann@example.com", "nobody@example.com", "old@example.com"):
        anon.post("/api/auth/password/reset/", {"email": email})
    # when
    _consume_reset_requests()
    # then: one token, for Ann, whose link is only inside the sealed secret
    [row] = AccountToken.objects.all()
    assert (row.user_id, row.purpose, row.email, row.requested_ip) == (
        ann.pk, "password_reset", "Ann@example.com", "203.0.113.7")
    [event] = [e for e in events("email.requested") if e.payload["template"] == "password_reset"]
    p = event.payload
    assert (event.key, p["to"], p["user_id"], p["context"]) == (
        "Ann@example.com", "Ann@example.com", ann.pk,
        {"email": "Ann@example.com", "expires_in_minutes": 60})
    link = unseal(p["secret"])
    token = _token(link)
    assert link == f"http://localhost:3000/reset-password?token={token}"
    assert len(token) == 43
    assert token not in str(p) and token not in str(event.headers)
    assert token not in row.token_hash and len(row.token_hash) == 64
    assert abs((row.expires_at - row.created_at) - timedelta(hours=1)) < timedelta(seconds=1)
    assert p["not_after"] == row.expires_at.isoformat().replace("+00:00", "Z")


def test_the_link_points_at_the_configured_frontend(anon, alice, settings):
    settings.ACCOUNTS_PASSWORD_RESET_URL = "https://app.example.org/#/reset/{token}?x=1"
    anon.post("/api/auth/password/reset/", {"email": "alice@example.com"})
    _consume_reset_requests()
    link = _link("password_reset", "alice@example.com")
    assert re.fullmatch(r"https://app\.example\.org/#/reset/[A-Za-z0-9_-]{43}\?x=1", link)


def test_a_request_older_than_a_links_lifetime_issues_nothing(alice):
    # given: a request that waited in the topic longer than a link lives
    handlers.issue_password_reset(ConsumedEvent(
        id=uuid.uuid4(), type="email.password_reset_requested", topic="email-events",
        data={"email": "alice@example.com", "ip": None,
              "requested_at": (timezone.now() - timedelta(minutes=61)).isoformat()}))
    # then
    assert not AccountToken.objects.exists()
    assert events("email.requested") == []


@pytest.mark.parametrize("body, field, message", [
    ({}, "email", "This field is required."),
    ({"email": "not-an-email"}, "email", "Enter a valid email address."),
    ({"email": 12}, "email", "Expected a string, got an integer."),  # strict JSON types
])
def test_a_bad_reset_request_is_400_with_the_field(anon, body, field, message):
    resp = anon.post("/api/auth/password/reset/", body)
    assert resp.status_code == 400
    assert resp.json()["errors"] == {field: [message]}
    assert events() == []


# --- using a reset link ----------------------------------------------------------------------


def test_a_reset_link_sets_the_password_and_signs_out_every_session(anon, alice):
    # given: two sessions, and a Django admin-style session
    sessions = [anon.post("/api/auth/login/", {"login": "alice", "password": PASSWORD}).json()
                for _ in range(2)]
    token = _reset_token(anon, "alice@example.com")
    # when
    resp = _confirm(anon, token)
    # then
    assert resp.status_code == 204
    alice.refresh_from_db()
    assert alice.check_password(NEW_PASSWORD) and not alice.check_password(PASSWORD)
    assert alice.email_verified_at is not None  # the link proved the address
    for s in sessions:
        c = client_for(None)
        c.credentials(HTTP_AUTHORIZATION=f"Bearer {s['access']}")
        assert c.get("/api/me/").status_code == 401
        assert anon.post("/api/auth/refresh/", {"refresh": s["refresh"]}).status_code == 401
    assert anon.post("/api/auth/login/", {"login": "alice", "password": PASSWORD}
                     ).status_code == 400
    assert anon.post("/api/auth/login/", {"login": "alice", "password": NEW_PASSWORD}
                     ).status_code == 200
    [event] = events("user.password_reset")
    assert {k: v for k, v in event.payload.items() if k != "reset_at"} == {
        "user_id": alice.pk, "ip": "203.0.113.7"}
    assert [e.payload["email"] for e in events("user.email_verified")] == ["alice@example.com"]
    assert NEW_PASSWORD not in str([e.payload for e in events()])


def test_a_reset_signs_out_an_admin_session_too(client, alice):
    # given: a browser session (the admin, the browsable docs)
    alice.is_staff = alice.is_superuser = True
    alice.save()
    client.force_login(alice)
    page = client.get(f"/admin/accounts/user/{alice.pk}/change/")
    assert page.status_code == 200 and b"Email verified at" in page.content
    token = _reset_token(client_for(None), "alice@example.com")
    # when
    assert _confirm(client_for(None), token).status_code == 204
    # then: the session's password hash no longer matches; Django signs it out
    assert client.get(f"/admin/accounts/user/{alice.pk}/change/").status_code == 302


def test_a_reset_link_works_once(anon, alice):
    token = _reset_token(anon, "alice@example.com")
    assert _confirm(anon, token).status_code == 204
    again = _confirm(anon, token, "yet-Another-pass-88")
    assert again.status_code == 400
    assert again.json() == {"type": "validation_error",
                            "detail": "Some fields are invalid; see errors.",
                            "errors": {"token": ["This link was already used. Request a new "
                                                 "one if you still need it."]}}
    alice.refresh_from_db()
    assert alice.check_password(NEW_PASSWORD)


def test_an_expired_reset_link_is_refused(anon, alice):
    token = _reset_token(anon, "alice@example.com")
    AccountToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    resp = _confirm(anon, token)
    assert resp.status_code == 400
    assert resp.json()["errors"] == {"token": ["This link has expired. Request a new one."]}
    alice.refresh_from_db()
    assert alice.check_password(PASSWORD)


def test_a_newer_link_supersedes_the_older_one(anon, alice):
    first = _reset_token(anon, "alice@example.com")
    AccountToken.objects.update(created_at=timezone.now() - timedelta(minutes=1))
    second = _reset_token(anon, "alice@example.com")
    assert first != second
    resp = _confirm(anon, first)
    assert resp.status_code == 400
    assert resp.json()["errors"] == {"token": [
        "A newer link was sent after this one; use the link in the most recent email."]}
    assert _confirm(anon, second).status_code == 204


def test_a_password_change_makes_an_earlier_reset_link_useless(anon, as_alice, alice):
    token = _reset_token(anon, "alice@example.com")
    assert as_alice.post("/api/me/password/", {"old_password": PASSWORD,
                                               "new_password": "changed-In-app-55"}
                         ).status_code == 200
    resp = _confirm(anon, token)
    assert resp.status_code == 400
    assert resp.json()["errors"] == {"token": [
        "The password was changed after this link was sent, so it no longer works. "
        "Request a new one."]}


def test_a_password_set_outside_the_api_makes_the_link_useless_too(anon, alice):
    token = _reset_token(anon, "alice@example.com")
    alice.set_password("set-By-an-operator-1")  # the admin, `manage.py changepassword`
    alice.save()
    assert _confirm(anon, token).status_code == 400


def test_an_email_change_makes_links_sent_to_the_old_address_useless(anon, as_alice, alice):
    token = _reset_token(anon, "alice@example.com")
    assert as_alice.post("/api/me/email/", {"new_email": "alice@new.example",
                                            "password": PASSWORD}).status_code == 200
    resp = _confirm(anon, token)
    assert resp.status_code == 400
    assert resp.json()["errors"] == {"token": [
        "This link was sent to an address the account no longer uses. Request a new one."]}


def test_a_deactivated_account_cannot_use_its_link(anon, alice):
    token = _reset_token(anon, "alice@example.com")
    User.objects.filter(pk=alice.pk).update(is_active=False)
    resp = _confirm(anon, token)
    assert resp.status_code == 400
    assert resp.json()["errors"] == {"token": ["This link is not valid. Request a new one."]}


def test_a_refused_new_password_leaves_the_link_usable(anon, alice):
    token = _reset_token(anon, "alice@example.com")
    weak = _confirm(anon, token, "alice")
    assert weak.status_code == 400
    assert set(weak.json()["errors"]) == {"new_password"}
    assert AccountToken.objects.get().used_at is None
    assert _confirm(anon, token).status_code == 204


@pytest.mark.parametrize("body, errors", [
    ({"token": "x" * 43, "new_password": NEW_PASSWORD},
     {"token": ["This link is not valid. Request a new one."]}),
    ({"new_password": NEW_PASSWORD}, {"token": ["This field is required."]}),
    ({"token": "x" * 201, "new_password": NEW_PASSWORD},
     {"token": ["Ensure this field has no more than 200 characters."]}),
    ({"token": "abc"}, {"new_password": ["This field is required."]}),
])
def test_a_bad_reset_confirmation_is_400_with_the_field(anon, body, errors):
    resp = anon.post("/api/auth/password/reset/confirm/", body)
    assert resp.status_code == 400
    assert resp.json()["errors"] == errors


def test_a_verification_token_is_not_a_reset_token(anon):
    # given
    resp = anon.post("/api/auth/register/", {"username": "eve", "email": "eve@example.com",
                                             "password": PASSWORD})
    assert resp.status_code == 201
    token = _token(_link("email_verification", "eve@example.com"))
    # then
    assert _confirm(anon, token).json()["errors"] == {
        "token": ["This link is not valid. Request a new one."]}


@pytest.mark.django_db(transaction=True)
def test_two_simultaneous_uses_of_one_link_change_the_password_once():
    # given
    make_user(username="ann", email="ann@example.com")
    token = _reset_token(client_for(None), "ann@example.com")
    start = threading.Barrier(2)
    results: list[int] = []

    def use(password: str) -> None:
        try:
            start.wait()
            results.append(_confirm(client_for(None), token, password).status_code)
        finally:
            connections.close_all()

    # when
    threads = [threading.Thread(target=use, args=(p,))
               for p in ("first-Racer-pass-1", "second-Racer-pass-2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    # then: one wins, the other is told the link was used; the winner's password holds
    assert sorted(results) == [204, 400]
    ann = User.objects.get(username="ann")
    assert sum(ann.check_password(p) for p in ("first-Racer-pass-1", "second-Racer-pass-2")) == 1
    assert len(events("user.password_reset")) == 1


# --- email verification ------------------------------------------------------------------------


def test_registration_with_an_email_sends_a_verification_link_that_verifies_it(anon):
    # given
    resp = anon.post("/api/auth/register/", {"username": "eve", "email": "eve@example.com",
                                             "password": PASSWORD})
    assert resp.json()["email_verified"] is False
    eve = User.objects.get(username="eve")
    [event] = [e for e in events("email.requested")
               if e.payload["template"] == "email_verification"]
    assert (event.payload["to"], event.payload["user_id"], event.payload["context"]) == (
        "eve@example.com", eve.pk, {"email": "eve@example.com", "expires_in_hours": 72})
    link = unseal(event.payload["secret"])
    assert link.startswith("http://localhost:3000/verify-email?token=")
    # when
    verify = anon.post("/api/auth/email/verify/", {"token": _token(link)})
    # then
    assert verify.status_code == 204
    me = client_for(eve).get("/api/me/").json()
    assert me["email_verified"] is True
    [verified] = events("user.email_verified")
    assert verified.payload["user_id"] == eve.pk
    again = anon.post("/api/auth/email/verify/", {"token": _token(link)})
    assert again.json()["errors"] == {"token": [
        "This link was already used. Request a new one if you still need it."]}


def test_registration_without_an_email_sends_no_link(anon):
    assert anon.post("/api/auth/register/", {"username": "dan", "password": PASSWORD}
                     ).status_code == 201
    assert events("email.requested") == []
    assert not AccountToken.objects.exists()


def test_an_email_change_unverifies_and_sends_a_link_to_the_new_address(as_alice, alice, anon):
    # given: a verified address and an unused link to it
    User.objects.filter(pk=alice.pk).update(email_verified_at=timezone.now())
    old = as_alice.post("/api/me/email/verification/")
    assert old.status_code == 400  # already verified
    # when
    resp = as_alice.post("/api/me/email/", {"new_email": "alice@new.example",
                                            "password": PASSWORD})
    # then
    assert resp.status_code == 200 and resp.json()["email_verified"] is False
    link = _link("email_verification", "alice@new.example")
    assert anon.post("/api/auth/email/verify/", {"token": _token(link)}).status_code == 204
    alice.refresh_from_db()
    assert alice.email_verified_at is not None


def test_asking_again_sends_a_new_link_and_the_old_one_stops_working(as_alice, anon):
    # given
    first = as_alice.post("/api/me/email/verification/")
    old_link = _link("email_verification", "alice@example.com")
    AccountToken.objects.update(created_at=timezone.now() - timedelta(minutes=1))
    # when
    second = as_alice.post("/api/me/email/verification/")
    new_link = _link("email_verification", "alice@example.com")
    # then
    assert first.status_code == second.status_code == 202
    row = AccountToken.objects.filter(superseded_at__isnull=True).get()
    assert second.json() == {"email": "alice@example.com",
                             "expires_at": row.expires_at.isoformat().replace("+00:00", "Z")}
    assert old_link != new_link
    assert anon.post("/api/auth/email/verify/", {"token": _token(old_link)}).json()["errors"] == {
        "token": ["A newer link was sent after this one; use the link in the most recent "
                  "email."]}
    assert anon.post("/api/auth/email/verify/", {"token": _token(new_link)}).status_code == 204


def test_asking_for_a_link_without_an_email_is_400(db):
    user = make_user(username="noemail", email=None)
    resp = client_for(user).post("/api/me/email/verification/")
    assert resp.status_code == 400
    assert resp.json()["errors"] == {"non_field_errors": [
        "Your account has no email address; add one with POST /api/me/email/."]}


def test_asking_for_a_link_needs_a_signed_in_user(anon):
    assert anon.post("/api/me/email/verification/").status_code == 401


def test_deleting_the_account_deletes_its_tokens(as_alice, alice):
    as_alice.post("/api/me/email/verification/")
    assert AccountToken.objects.filter(user=alice).count() == 1
    assert as_alice.post("/api/me/delete/", {"password": PASSWORD}).status_code == 204
    assert not AccountToken.objects.filter(user=alice).exists()


def test_prune_deletes_tokens_expired_beyond_the_retention(alice, settings):
    # given
    settings.ACCOUNTS_TOKEN_RETENTION_HOURS = 24
    now = timezone.now()
    for i, expired_hours_ago in enumerate((25, 23, -1)):
        AccountToken.objects.create(
            user=alice, purpose="password_reset", token_hash=f"{i:064d}", email=alice.email,
            created_at=now, expires_at=now - timedelta(hours=expired_hours_ago))
    # when
    deleted = services.account_tokens_prune(now=now)
    # then
    assert deleted == 1
    assert settings.CELERY_BEAT_SCHEDULE["accounts-prune-tokens"]["task"] == "accounts.prune_tokens"
    assert tasks.prune_tokens.name == "accounts.prune_tokens"
    assert tasks.prune_tokens() == 0  # the task runs the same service: nothing left to delete
    assert sorted(AccountToken.objects.values_list("token_hash", flat=True)) == [
        f"{1:064d}", f"{2:064d}"]


# --- throttling (on the real Redis cache) ----------------------------------------------------


def _rates(settings, **rates: str) -> None:
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {
        **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], **rates}}


def test_reset_requests_are_throttled_per_address_in_any_case(redis_cache, settings):
    # given: 2 per address, plenty per IP
    _rates(settings, recovery="100/hour", recovery_email="2/hour")
    clients = [client_for(None) for _ in range(3)]
    for i, c in enumerate(clients):
        c.defaults["REMOTE_ADDR"] = f"198.51.100.{i + 1}"
    # when: three clients on three addresses ask for the same mailbox
    codes = [c.post("/api/auth/password/reset/", {"email": email}).status_code
             for c, email in zip(clients, ("ann@example.com", "ANN@example.com ",
                                           "Ann@Example.com"), strict=True)]
    other = clients[0].post("/api/auth/password/reset/", {"email": "bob@example.com"})
    # then
    assert codes == [202, 202, 429]
    assert other.status_code == 202
    assert len(events("email.password_reset_requested")) == 3


def test_reset_requests_are_throttled_per_client_ip(redis_cache, settings, anon):
    _rates(settings, recovery="2/hour", recovery_email="100/hour")
    codes = [anon.post("/api/auth/password/reset/", {"email": f"u{i}@example.com"}).status_code
             for i in range(3)]
    assert codes == [202, 202, 429]
    resp = anon.post("/api/auth/password/reset/", {"email": "u9@example.com"})
    assert resp.json()["type"] == "throttled"
    assert 0 < resp.json()["retry_after"] <= 3600


def test_the_throttle_keeps_no_address_in_the_cache(redis_cache, anon):
    import redis as redis_client
    from django.conf import settings as django_settings

    anon.post("/api/auth/password/reset/", {"email": "private@example.com"})
    client = redis_client.Redis.from_url(django_settings.CACHES["default"]["LOCATION"])
    keys = [k.decode() for k in client.scan_iter(f"{redis_cache}:*")]
    # anon and user (both count anonymous clients by IP), recovery (IP), recovery_email
    assert len(keys) == 4
    assert not any("private" in k for k in keys)
    assert any(re.search(r"throttle_recovery_email_[0-9a-f]{64}$", k) for k in keys)


def test_link_checks_are_throttled_per_client_ip(redis_cache, settings, anon):
    _rates(settings, recovery_token="3/hour")
    codes = [anon.post("/api/auth/email/verify/", {"token": f"guess{i}"}).status_code
             for i in range(2)]
    codes += [anon.post("/api/auth/password/reset/confirm/",
                        {"token": "guess", "new_password": NEW_PASSWORD}).status_code
              for _ in range(2)]
    assert codes == [400, 400, 400, 429]


def test_asking_for_verification_links_is_throttled_per_address(redis_cache, settings,
                                                                 as_alice):
    _rates(settings, recovery_email="2/hour")
    codes = [as_alice.post("/api/me/email/verification/").status_code for _ in range(3)]
    assert codes == [202, 202, 429]
