"""Posts through the API: create, read, feeds, edit and soft delete, with permissions."""

from __future__ import annotations

import pytest

from accounts.tests.fixtures import events, make_user
from posts import services
from posts.models import Post

pytestmark = pytest.mark.django_db


def ready_video(owner, status="ready"):
    from media.models import Video

    return Video.objects.create(
        owner=owner, status=status, source_name="sources/x.mp4", size_bytes=1000,
        container="mov,mp4", duration_seconds=2.0, width=320, height=240, video_codec="h264",
        failure_reason="bad file" if status == "failed" else "")


def test_create_post_returns_it_and_emits_post_created(as_alice, alice):
    video = ready_video(alice)
    # when
    resp = as_alice.post("/api/posts/", {"text": "  first!  ", "video_id": video.pk})
    # then
    assert resp.status_code == 201, resp.json()
    body = resp.json()
    post = Post.objects.get()
    assert body["id"] == post.pk
    assert (body["text"], body["video_id"], body["like_count"], body["liked_by_me"]) == (
        "first!", video.pk, 0, False)
    assert body["author"]["username"] == "alice" and "email" not in body["author"]
    [event] = events("post.created")
    assert (event.topic, event.key) == ("post-events", str(post.pk))
    assert {k: v for k, v in event.payload.items() if k != "occurred_at"} == {
        "post_id": post.pk, "author_id": alice.pk, "actor_id": alice.pk, "text": "first!",
        "video_id": video.pk}


@pytest.mark.parametrize(("owner", "status", "message"), [
    ("alice", "processing", "still being processed"),
    ("alice", "failed", "could not be processed"),
    ("bob", "ready", "only attach your own videos"),
])
def test_only_the_authors_ready_video_can_be_attached(as_alice, alice, bob, owner, status,
                                                      message):
    video = ready_video({"alice": alice, "bob": bob}[owner], status)
    resp = as_alice.post("/api/posts/", {"text": "x", "video_id": video.pk})
    assert resp.status_code == 400
    assert message in str(resp.json())
    assert Post.objects.count() == 0
    assert as_alice.post("/api/posts/", {"text": "x", "video_id": 99999}).status_code == 400


@pytest.mark.parametrize(("payload", "field"), [
    ({}, "text"),
    ({"text": "   "}, "text"),
    ({"text": "x" * 2001}, "text"),
    ({"text": "ok", "video_id": "abc"}, "video_id"),
    ({"text": "ok", "video_id": 0}, "video_id"),
    ({"text": "ok", "video_id": 2**63}, "video_id"),
    ({"text": 5.5, "video_id": []}, "video_id"),
])
def test_create_post_rejects_bad_input(as_alice, payload, field):
    resp = as_alice.post("/api/posts/", payload, format="json")
    assert resp.status_code == 400
    assert field in resp.json()["errors"]
    assert Post.objects.count() == 0 and events() == []


def test_create_post_needs_a_signed_in_user(anon):
    resp = anon.post("/api/posts/", {"text": "hi"})
    assert resp.status_code == 401
    assert Post.objects.count() == 0


def test_feed_is_newest_first_with_a_cursor(anon, alice, bob):
    # given
    ids = [services.post_create(author=alice if i % 2 else bob, text=f"p{i}").pk
           for i in range(5)]
    # when
    page1 = anon.get("/api/posts/?page_size=2").json()
    page2 = anon.get(page1["next"]).json()
    page3 = anon.get(page2["next"]).json()
    # then
    assert [p["id"] for p in page1["results"]] == ids[::-1][:2]
    assert [p["id"] for p in page2["results"]] == ids[::-1][2:4]
    assert [p["id"] for p in page3["results"]] == ids[::-1][4:]
    assert page3["next"] is None
    assert anon.get("/api/posts/?cursor=bogus").json()["type"] == "invalid_cursor"


def test_users_posts_lists_only_theirs(anon, alice, bob):
    mine = services.post_create(author=alice, text="a")
    services.post_create(author=bob, text="b")
    body = anon.get(f"/api/users/{alice.pk}/posts/").json()
    assert [p["id"] for p in body["results"]] == [mine.pk]
    assert anon.get(f"/api/users/{2**64}/posts/").status_code == 404


def test_single_post_shows_counts_and_whether_i_liked_it(as_bob, anon, alice, bob):
    post = services.post_create(author=alice, text="a")
    services.post_like(post_id=post.pk, user=bob)
    services.comment_create(post_id=post.pk, author=bob, text="c")
    body = as_bob.get(f"/api/posts/{post.pk}/").json()
    assert (body["like_count"], body["comment_count"], body["view_count"],
            body["liked_by_me"]) == (1, 1, 0, True)
    assert anon.get(f"/api/posts/{post.pk}/").json()["liked_by_me"] is False
    assert anon.get("/api/posts/987654/").status_code == 404


def test_author_edits_own_post_and_the_event_has_only_the_changes(as_alice, alice):
    video = ready_video(alice)
    post = services.post_create(author=alice, text="old", video_id=video.pk)
    # when
    resp = as_alice.patch(f"/api/posts/{post.pk}/", {"text": "new", "video_id": video.pk})
    # then
    assert resp.status_code == 200
    assert resp.json()["text"] == "new"
    [event] = events("post.updated")
    assert event.payload["changed"] == {"text": "new"}
    assert (event.payload["actor_id"], event.payload["author_id"]) == (alice.pk, alice.pk)


def test_others_cannot_edit_or_delete_a_post(as_bob, anon, alice):
    post = services.post_create(author=alice, text="mine")
    for client, status in ((as_bob, 403), (anon, 401)):
        assert client.patch(f"/api/posts/{post.pk}/", {"text": "hacked"}).status_code == status
        assert client.delete(f"/api/posts/{post.pk}/").status_code == status
    post.refresh_from_db()
    assert (post.text, post.deleted_at) == ("mine", None)
    assert events("post.updated") == [] and events("post.deleted") == []
    resp = as_bob.patch(f"/api/posts/{post.pk}/", {"text": "x"})
    assert resp.json() == {"type": "permission_denied",
                           "detail": "Only the author can change this post."}


def test_edit_rejects_bad_input(as_alice, alice):
    post = services.post_create(author=alice, text="t")
    assert as_alice.patch(f"/api/posts/{post.pk}/", {"text": "x" * 2001}).status_code == 400
    assert as_alice.patch(f"/api/posts/{post.pk}/", {"text": ""}).status_code == 400
    assert as_alice.patch(f"/api/posts/{post.pk}/", {"video_id": -1}).status_code == 400


def test_soft_deleted_post_is_hidden_everywhere(as_alice, as_bob, anon, alice):
    # given
    post = services.post_create(author=alice, text="bye")
    comment = services.comment_create(post_id=post.pk, author=alice, text="c")
    # when
    assert as_alice.delete(f"/api/posts/{post.pk}/").status_code == 204
    # then
    assert Post.objects.filter(pk=post.pk).exists()
    for client in (as_alice, as_bob, anon):
        assert client.get("/api/posts/").json()["results"] == []
        assert client.get(f"/api/users/{alice.pk}/posts/").json()["results"] == []
        assert client.get(f"/api/posts/{post.pk}/").status_code == 404
        assert client.get(f"/api/posts/{post.pk}/comments/").status_code == 404
    assert as_bob.post(f"/api/posts/{post.pk}/like/").status_code == 404
    assert as_bob.post(f"/api/posts/{post.pk}/comments/", {"text": "x"}).status_code == 404
    assert as_bob.post(f"/api/posts/{post.pk}/views/").status_code == 404
    assert as_alice.delete(f"/api/posts/{post.pk}/comments/{comment.pk}/").status_code == 404
    assert as_alice.patch(f"/api/posts/{post.pk}/", {"text": "back"}).status_code == 404
    assert as_alice.delete(f"/api/posts/{post.pk}/").status_code == 404
    [event] = events("post.deleted")
    assert (event.payload["post_id"], event.payload["actor_id"]) == (post.pk, alice.pk)


def test_posts_of_a_deactivated_author_are_hidden(anon, alice):
    post = services.post_create(author=alice, text="t")
    alice.is_active = False
    alice.save()
    assert anon.get("/api/posts/").json()["results"] == []
    assert anon.get(f"/api/posts/{post.pk}/").status_code == 404


def test_huge_ids_are_404_not_a_database_error(anon, as_alice):
    big = 2**70
    assert anon.get(f"/api/posts/{big}/").status_code == 404
    assert as_alice.post(f"/api/posts/{big}/like/").status_code == 404
    assert anon.post(f"/api/posts/{big}/views/").status_code == 404
    assert anon.get(f"/api/posts/{big}/comments/").status_code == 404
    assert as_alice.delete(f"/api/posts/1/comments/{big}/").status_code == 404


def test_feed_query_count_does_not_grow_with_posts(anon, django_assert_max_num_queries):
    for _ in range(3):
        services.post_create(author=make_user(), text="t")
    with django_assert_max_num_queries(3):
        assert len(anon.get("/api/posts/").json()["results"]) == 3
