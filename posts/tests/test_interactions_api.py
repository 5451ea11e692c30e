"""Likes, comments and views through the API, with permissions and idempotence."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.tests.fixtures import client_for, events, make_user
from posts import services
from posts.models import Comment, Like, PostView

pytestmark = pytest.mark.django_db


@pytest.fixture
def post(alice):
    return services.post_create(author=alice, text="hello")


# --- likes ----------------------------------------------------------------------------------


def test_like_is_idempotent(as_bob, bob, alice, post):
    # when
    first = as_bob.post(f"/api/posts/{post.pk}/like/")
    second = as_bob.post(f"/api/posts/{post.pk}/like/")
    # then
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json() == {"liked": True, "like_count": 1}
    assert Like.objects.filter(post=post).count() == 1
    [event] = events("post.liked")
    assert {k: v for k, v in event.payload.items() if k != "occurred_at"} == {
        "post_id": post.pk, "author_id": alice.pk, "actor_id": bob.pk, "like_count": 1}


def test_unlike_is_idempotent(as_bob, bob, alice, post):
    as_bob.post(f"/api/posts/{post.pk}/like/")
    first = as_bob.delete(f"/api/posts/{post.pk}/like/")
    second = as_bob.delete(f"/api/posts/{post.pk}/like/")
    assert first.json() == second.json() == {"liked": False, "like_count": 0}
    [event] = events("post.unliked")
    assert (event.payload["actor_id"], event.payload["author_id"],
            event.payload["like_count"]) == (bob.pk, alice.pk, 0)


def test_likes_need_a_signed_in_user(anon, post):
    assert anon.post(f"/api/posts/{post.pk}/like/").status_code == 401
    assert anon.delete(f"/api/posts/{post.pk}/like/").status_code == 401
    assert Like.objects.count() == 0


def test_like_of_a_missing_post_is_404(as_bob):
    resp = as_bob.post("/api/posts/424242/like/")
    assert resp.status_code == 404
    assert resp.json() == {"type": "not_found", "detail": "No such post."}


# --- comments -------------------------------------------------------------------------------


def test_comment_is_added_listed_and_announced(as_bob, anon, bob, alice, post):
    # when
    resp = as_bob.post(f"/api/posts/{post.pk}/comments/", {"text": " great "})
    # then
    assert resp.status_code == 201
    comment = Comment.objects.get()
    assert resp.json()["text"] == "great" and resp.json()["author"]["id"] == bob.pk
    listed = anon.get(f"/api/posts/{post.pk}/comments/").json()
    assert [c["id"] for c in listed["results"]] == [comment.pk]
    [event] = events("post.commented")
    assert {k: v for k, v in event.payload.items() if k != "occurred_at"} == {
        "post_id": post.pk, "author_id": alice.pk, "actor_id": bob.pk,
        "comment_id": comment.pk, "text": "great", "comment_count": 1}


@pytest.mark.parametrize("payload", [{}, {"text": ""}, {"text": "   "}, {"text": "x" * 2001},
                                     {"text": None}])
def test_comment_rejects_bad_input(as_bob, post, payload):
    resp = as_bob.post(f"/api/posts/{post.pk}/comments/", payload, format="json")
    assert resp.status_code == 400
    assert "text" in resp.json()["errors"]
    assert Comment.objects.count() == 0


def test_comment_needs_a_signed_in_user(anon, post):
    assert anon.post(f"/api/posts/{post.pk}/comments/", {"text": "x"}).status_code == 401


def test_comments_are_paged(anon, bob, post):
    for i in range(3):
        services.comment_create(post_id=post.pk, author=bob, text=f"c{i}")
    page = anon.get(f"/api/posts/{post.pk}/comments/?page_size=2").json()
    assert [c["text"] for c in page["results"]] == ["c2", "c1"]
    assert [c["text"] for c in anon.get(page["next"]).json()["results"]] == ["c0"]


def test_comment_delete_by_its_author_or_the_posts_author_only(as_alice, as_bob, anon, bob,
                                                              post):
    c1 = services.comment_create(post_id=post.pk, author=bob, text="one")
    c2 = services.comment_create(post_id=post.pk, author=bob, text="two")
    carol = client_for(make_user())
    url = f"/api/posts/{post.pk}/comments/"
    # a third user and an anonymous client cannot
    assert carol.delete(f"{url}{c1.pk}/").status_code == 403
    assert anon.delete(f"{url}{c1.pk}/").status_code == 401
    # the comment's author can; the post's author can
    assert as_bob.delete(f"{url}{c1.pk}/").status_code == 204
    assert as_alice.delete(f"{url}{c2.pk}/").status_code == 204
    post.refresh_from_db()
    assert Comment.objects.count() == 0 and post.comment_count == 0
    assert as_bob.delete(f"{url}{c1.pk}/").status_code == 404


def test_comment_of_another_post_is_404(as_bob, alice, bob, post):
    other = services.post_create(author=alice, text="other")
    c = services.comment_create(post_id=other.pk, author=bob, text="x")
    assert as_bob.delete(f"/api/posts/{post.pk}/comments/{c.pk}/").status_code == 404


# --- views ----------------------------------------------------------------------------------


def test_a_viewer_counts_once_per_window(as_bob, bob, alice, post, settings):
    # when
    first = as_bob.post(f"/api/posts/{post.pk}/views/")
    refresh = as_bob.post(f"/api/posts/{post.pk}/views/")
    # then
    assert first.json() == {"counted": True, "view_count": 1}
    assert refresh.json() == {"counted": False, "view_count": 1}
    [event] = events("post.viewed")
    assert (event.payload["actor_id"], event.payload["author_id"],
            event.payload["view_count"]) == (bob.pk, alice.pk, 1)
    # a new window counts again
    PostView.objects.update(window=services.view_window(
        timezone.now() - timedelta(seconds=settings.POSTS_VIEW_WINDOW_SECONDS)))
    assert as_bob.post(f"/api/posts/{post.pk}/views/").json() == {"counted": True,
                                                                   "view_count": 2}


def test_the_authors_own_views_do_not_count(as_alice, post):
    assert as_alice.post(f"/api/posts/{post.pk}/views/").json() == {"counted": False,
                                                                     "view_count": 0}
    assert events("post.viewed") == []


def test_anonymous_views_count_once_per_address_and_agent(post):
    a = client_for(None)
    b = client_for(None)
    b.defaults["REMOTE_ADDR"] = "198.51.100.20"
    assert a.post(f"/api/posts/{post.pk}/views/").json()["counted"] is True
    assert a.post(f"/api/posts/{post.pk}/views/").json()["counted"] is False
    assert b.post(f"/api/posts/{post.pk}/views/").json() == {"counted": True, "view_count": 2}
    assert [e.payload["actor_id"] for e in events("post.viewed")] == [None, None]
    assert all("198.51.100.20" not in v.viewer_key for v in PostView.objects.all())
