"""Every accounts and posts event type: written with its change when the transaction commits,
absent when it rolls back. Real commits (transaction=True); the check after commit reads from a
second connection, so it sees only what was committed."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from django.db import connection, transaction

from accounts import services as accounts
from accounts.tests.fixtures import PASSWORD, events, make_user
from outbox.events.sms_events import unseal
from outbox.models import OutboxEvent
from posts import services as posts
from posts.models import Post

pytestmark = pytest.mark.django_db(transaction=True)

PHONE = "+14155550199"
SECRETS = (PASSWORD, "n3w-Password-value-77")


def _committed(event_type: str) -> list[dict]:
    """Payloads of `event_type` as another connection sees them (committed rows only)."""
    out: list[dict] = []

    def read():
        try:
            out.extend(OutboxEvent.objects.filter(type=event_type).order_by("id")
                       .values_list("payload", flat=True))
        finally:
            connection.close()

    t = threading.Thread(target=read)
    t.start()
    t.join()
    return out


def _setup_post(ctx):
    ctx["post"] = posts.post_create(author=ctx["alice"], text="hello")


def _setup_liked(ctx):
    _setup_post(ctx)
    posts.post_like(post_id=ctx["post"].pk, user=ctx["bob"])


def _setup_code(ctx):
    accounts.phone_code_request(user=ctx["alice"], phone=PHONE, ip="192.0.2.1")
    ctx["code"] = unseal(events("sms.requested")[-1].payload["secret"])


# event type -> (setup, the change that emits it, fields the payload must have)
CASES: dict[str, tuple[Callable | None, Callable, dict]] = {
    "user.registered": (None, lambda c: accounts.user_register(
        username="carol", password=PASSWORD, email="carol@example.com"),
        {"username": "carol"}),
    "user.logged_in": (None, lambda c: accounts.user_login(
        login="alice", password=PASSWORD, ip="192.0.2.1", user_agent="UA/1"),
        {"ip": "192.0.2.1", "user_agent": "UA/1"}),
    "user.profile_updated": (None, lambda c: accounts.user_profile_update(
        user=c["alice"], bio="new bio"), {"changed": {"bio": "new bio"}}),
    "user.account_changed[email]": (None, lambda c: accounts.user_email_change(
        user=c["alice"], password=PASSWORD, new_email="new@example.com"),
        {"change": "email", "new_email": "new@example.com"}),
    "user.account_changed[password]": (None, lambda c: accounts.user_password_change(
        user=c["alice"], old_password=PASSWORD, new_password=SECRETS[1]),
        {"change": "password"}),
    "user.account_changed[deactivated]": (None, lambda c: accounts.user_deactivate(
        user=c["alice"], password=PASSWORD), {"change": "deactivated"}),
    "user.account_changed[deleted]": (None, lambda c: accounts.user_delete(
        user=c["alice"], password=PASSWORD), {"change": "deleted"}),
    "sms.requested": (None, lambda c: accounts.phone_code_request(
        user=c["alice"], phone=PHONE, ip="192.0.2.1"), {"phone": PHONE, "kind": "otp"}),
    "user.phone_verified": (_setup_code, lambda c: accounts.phone_code_verify(
        user=c["alice"], phone=PHONE, code=c["code"]), {"phone": PHONE}),
    "post.created": (None, lambda c: posts.post_create(author=c["alice"], text="hi"),
                     {"text": "hi", "actor_id": "alice", "author_id": "alice"}),
    "post.updated": (_setup_post, lambda c: posts.post_update(
        post=c["post"], actor=c["alice"], text="edited"),
        {"changed": {"text": "edited"}, "actor_id": "alice", "author_id": "alice"}),
    "post.deleted": (_setup_post, lambda c: posts.post_delete(post=c["post"], actor=c["alice"]),
                     {"actor_id": "alice", "author_id": "alice"}),
    "post.liked": (_setup_post, lambda c: posts.post_like(post_id=c["post"].pk, user=c["bob"]),
                   {"actor_id": "bob", "author_id": "alice", "like_count": 1}),
    "post.unliked": (_setup_liked, lambda c: posts.post_unlike(post_id=c["post"].pk,
                                                                user=c["bob"]),
                     {"actor_id": "bob", "author_id": "alice", "like_count": 0}),
    "post.commented": (_setup_post, lambda c: posts.comment_create(
        post_id=c["post"].pk, author=c["bob"], text="yo"),
        {"actor_id": "bob", "author_id": "alice", "text": "yo", "comment_count": 1}),
    "post.viewed": (_setup_post, lambda c: posts.post_view_record(
        post_id=c["post"].pk, viewer=c["bob"], viewer_key=f"u:{c['bob'].pk}"),
        {"actor_id": "bob", "author_id": "alice", "view_count": 1}),
}


class Boom(Exception):
    pass


def _given():
    ctx = {"alice": make_user(username="alice", email="alice@example.com"),
           "bob": make_user(username="bob", email="bob@example.com")}
    return ctx


def _expected(ctx, fields: dict) -> dict:
    return {k: ctx[v].pk if k.endswith("_id") and isinstance(v, str) else v
            for k, v in fields.items()}


@pytest.mark.parametrize("case", list(CASES))
def test_event_is_in_the_outbox_after_commit(case):
    # given
    event_type = case.split("[")[0]
    setup, change, fields = CASES[case]
    ctx = _given()
    if setup:
        setup(ctx)
    before = len(_committed(event_type))
    # when
    change(ctx)
    # then
    payloads = _committed(event_type)
    assert len(payloads) == before + 1
    payload = payloads[-1]
    for key, value in _expected(ctx, fields).items():
        assert payload[key] == value, key
    if event_type.startswith("post."):
        assert payload["post_id"] == Post.objects.latest("id").pk
    text = str(payload)
    assert not any(secret in text for secret in SECRETS)
    assert "pbkdf2" not in text and "md5$" not in text  # no password hash either


@pytest.mark.parametrize("case", list(CASES))
def test_event_is_absent_after_rollback(case):
    # given
    event_type = case.split("[")[0]
    setup, change, _ = CASES[case]
    ctx = _given()
    if setup:
        setup(ctx)
    before = len(_committed(event_type))
    # when
    with pytest.raises(Boom):
        with transaction.atomic():
            change(ctx)
            raise Boom
    # then
    assert len(_committed(event_type)) == before
    assert len(events(event_type)) == before
