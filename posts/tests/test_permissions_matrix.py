"""Every endpoint, tried as another user (bob) and as an anonymous client against alice's
account and content: the expected status, no private data in the answer, and alice's data
unchanged afterwards."""

from __future__ import annotations

import pytest
from rest_framework_simplejwt.tokens import RefreshToken

from accounts.tests.fixtures import PASSWORD, client_for
from posts import services
from posts.models import Comment, Like, Post

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(alice, bob):
    post = services.post_create(author=alice, text="alice's post")
    comment = services.comment_create(post_id=post.pk, author=alice, text="alice's comment")
    alice.phone = "+14155550100"
    alice.save()
    refresh = str(RefreshToken.for_user(alice))
    return {"alice": alice, "bob": bob, "post": post, "comment": comment,
            "refresh": refresh}


# (method, url template, body, status as anonymous, status as bob). The /api/me/ endpoints
# always act on the caller: bob (whose password is the same) changes only his own account.
CASES = [
    ("post", "/api/auth/register/", {"username": "alice", "password": PASSWORD}, 400, 400),
    ("post", "/api/auth/login/", {"login": "alice", "password": "guess"}, 400, 400),
    ("post", "/api/auth/refresh/", {"refresh": "{refresh}x"}, 401, 401),
    ("post", "/api/auth/logout/", {"refresh": "forged"}, 401, 401),
    ("get", "/api/me/", None, 401, 200),
    ("patch", "/api/me/", {"bio": "changed"}, 401, 200),
    ("put", "/api/me/avatar/", {}, 401, 400),
    ("delete", "/api/me/avatar/", None, 401, 200),
    ("post", "/api/me/email/", {"new_email": "x@example.com", "password": PASSWORD}, 401, 200),
    ("post", "/api/me/password/", {"old_password": PASSWORD, "new_password": "Zz-9" * 4},
     401, 200),
    ("post", "/api/me/deactivate/", {"password": PASSWORD}, 401, 204),
    ("post", "/api/me/delete/", {"password": PASSWORD}, 401, 204),
    ("post", "/api/me/phone/code/", {"phone": "+14155550100"}, 401, 400),
    ("post", "/api/me/phone/verify/", {"phone": "+14155550100", "code": "123456"}, 401, 400),
    ("get", "/api/users/{alice_id}/", None, 200, 200),
    ("get", "/api/users/{alice_id}/posts/", None, 200, 200),
    ("get", "/api/posts/", None, 200, 200),
    ("post", "/api/posts/", {"text": "new"}, 401, 201),
    ("get", "/api/posts/{post_id}/", None, 200, 200),
    ("patch", "/api/posts/{post_id}/", {"text": "hijacked"}, 401, 403),
    ("delete", "/api/posts/{post_id}/", None, 401, 403),
    ("post", "/api/posts/{post_id}/like/", None, 401, 200),
    ("delete", "/api/posts/{post_id}/like/", None, 401, 200),
    ("post", "/api/posts/{post_id}/views/", None, 200, 200),
    ("get", "/api/posts/{post_id}/comments/", None, 200, 200),
    ("post", "/api/posts/{post_id}/comments/", {"text": "hi"}, 401, 201),
    ("delete", "/api/posts/{post_id}/comments/{comment_id}/", None, 401, 403),
]


def _fill(template: str, world) -> str:
    return template.format(alice_id=world["alice"].pk, post_id=world["post"].pk,
                           comment_id=world["comment"].pk, refresh=world["refresh"])


@pytest.mark.parametrize("who", ["anonymous", "bob"])
@pytest.mark.parametrize(("method", "url", "body", "anon_status", "bob_status"), CASES,
                         ids=[f"{c[0].upper()} {c[1]}" for c in CASES])
def test_endpoint_as_another_user_and_as_anonymous(world, who, method, url, body,
                                                   anon_status, bob_status):
    # given
    client = client_for(world["bob"] if who == "bob" else None)
    expected = bob_status if who == "bob" else anon_status
    data = {k: _fill(v, world) if isinstance(v, str) else v for k, v in (body or {}).items()}
    fmt = "multipart" if method == "put" else "json"
    # when
    resp = getattr(client, method)(_fill(url, world), data, format=fmt)
    # then: the expected answer, JSON, with none of alice's private data
    assert resp.status_code == expected, resp.content
    text = resp.content.decode()
    assert "alice@example.com" not in text
    assert "+14155550100" not in text
    assert world["refresh"] not in text
    # and alice's account and content are as they were
    alice = world["alice"]
    alice.refresh_from_db()
    assert (alice.email, alice.bio, alice.is_active, alice.phone) == (
        "alice@example.com", "", True, "+14155550100")
    assert alice.check_password(PASSWORD)
    post = Post.objects.get(pk=world["post"].pk)
    assert (post.text, post.deleted_at) == ("alice's post", None)
    assert Comment.objects.filter(pk=world["comment"].pk).exists()
    assert not Like.objects.filter(user=alice).exists()
