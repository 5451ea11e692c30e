"""Blocking: each side stops seeing the other, follows go both ways, interactions refused."""

from __future__ import annotations

import pytest

from accounts.tests.fixtures import client_for, events, make_user
from coins.models import Transfer
from coins.tests.helpers import fund
from posts import services as post_services
from posts.models import Comment, Like
from social.models import Block, Follow, SocialCounts

pytestmark = pytest.mark.django_db


@pytest.fixture
def blocked_pair(alice, bob, as_alice, as_bob):
    """alice and bob followed each other, then alice blocked bob."""
    as_alice.post(f"/api/users/{bob.pk}/follow/")
    as_bob.post(f"/api/users/{alice.pk}/follow/")
    resp = as_alice.post(f"/api/users/{bob.pk}/block/")
    assert resp.json() == {"blocked": True}
    return alice, bob


def test_block_removes_follows_both_ways_with_events(blocked_pair):
    alice, bob = blocked_pair
    assert not Follow.objects.exists()
    assert [(c.user_id, c.followers, c.following)
            for c in SocialCounts.objects.order_by("user_id")] == [
        (alice.pk, 0, 0), (bob.pk, 0, 0)]
    unfollowed = events("user.unfollowed")
    assert sorted((e.payload["follower_id"], e.payload["followee_id"], e.payload["reason"])
                  for e in unfollowed) == sorted([(alice.pk, bob.pk, "block"),
                                                  (bob.pk, alice.pk, "block")])
    [blocked] = events("user.blocked")
    assert (blocked.payload["blocker_id"], blocked.payload["blocked_id"]) == (alice.pk, bob.pk)
    # the block's event comes after the unfollows it caused
    assert blocked.id > max(e.id for e in unfollowed)


def test_block_is_idempotent_and_listed(blocked_pair, as_alice):
    alice, bob = blocked_pair
    assert as_alice.post(f"/api/users/{bob.pk}/block/").json() == {"blocked": True}
    assert Block.objects.count() == 1 and len(events("user.blocked")) == 1
    listed = as_alice.get("/api/me/blocks/").json()["results"]
    assert [item["user"]["id"] for item in listed] == [bob.pk]


def test_each_side_sees_neither_profile_nor_lists_of_the_other(blocked_pair, as_alice,
                                                               as_bob, anon):
    alice, bob = blocked_pair
    for client, other in ((as_alice, bob), (as_bob, alice)):
        for path in ("", "followers/", "following/"):
            resp = client.get(f"/api/users/{other.pk}/{path}")
            assert resp.status_code == 404, path
            assert resp.json()["detail"] == "No such user."
    # others still see both
    assert anon.get(f"/api/users/{alice.pk}/").status_code == 200


def test_blocked_users_are_left_out_of_follow_lists(blocked_pair, as_bob):
    alice, bob = blocked_pair
    carol = make_user(username="carol")
    client_for(carol).post(f"/api/users/{alice.pk}/follow/").status_code
    client_for(carol).post(f"/api/users/{bob.pk}/follow/")
    client_for(alice).post(f"/api/users/{make_user().pk}/follow/")
    # bob reads carol's following: alice (who blocked him) is not in it
    following = as_bob.get(f"/api/users/{carol.pk}/following/").json()["results"]
    assert [item["user"]["id"] for item in following] == [bob.pk]


def test_each_side_sees_none_of_the_others_posts_and_comments(blocked_pair, as_alice, as_bob):
    alice, bob = blocked_pair
    carol = make_user(username="carol")
    by_alice = post_services.post_create(author=alice, text="alice's")
    by_bob = post_services.post_create(author=bob, text="bob's")
    by_carol = post_services.post_create(author=carol, text="carol's")
    post_services.comment_create(post_id=by_carol.pk, author=alice, text="from alice")
    post_services.comment_create(post_id=by_carol.pk, author=bob, text="from bob")
    # when / then
    assert [p["id"] for p in as_bob.get("/api/posts/").json()["results"]] == [
        by_carol.pk, by_bob.pk]
    assert [p["id"] for p in as_alice.get("/api/posts/").json()["results"]] == [
        by_carol.pk, by_alice.pk]
    assert as_bob.get(f"/api/posts/{by_alice.pk}/").status_code == 404
    assert as_alice.get(f"/api/posts/{by_bob.pk}/").status_code == 404
    assert as_bob.get(f"/api/users/{alice.pk}/posts/").json()["results"] == []
    comments = as_bob.get(f"/api/posts/{by_carol.pk}/comments/").json()["results"]
    assert [c["text"] for c in comments] == ["from bob"]


def test_likes_comments_views_and_follows_between_them_are_refused(blocked_pair, as_alice,
                                                                     as_bob):
    alice, bob = blocked_pair
    by_alice = post_services.post_create(author=alice, text="alice's")
    by_bob = post_services.post_create(author=bob, text="bob's")
    for client, post in ((as_bob, by_alice), (as_alice, by_bob)):
        assert client.post(f"/api/posts/{post.pk}/like/").status_code == 404
        assert client.post(f"/api/posts/{post.pk}/comments/",
                           {"text": "hi"}, format="json").status_code == 404
        assert client.post(f"/api/posts/{post.pk}/views/").status_code == 404
    assert Like.objects.count() == 0 and Comment.objects.count() == 0
    # bob was blocked: to him alice does not exist; alice is told to unblock first
    assert as_bob.post(f"/api/users/{alice.pk}/follow/").status_code == 404
    resp = as_alice.post(f"/api/users/{bob.pk}/follow/")
    assert resp.status_code == 403
    assert resp.json()["detail"] == "You blocked this user; unblock them to follow them."
    assert not Follow.objects.exists()


def test_tips_and_transfers_between_them_are_refused(blocked_pair, as_bob):
    alice, bob = blocked_pair
    fund(bob, 100)
    by_alice = post_services.post_create(author=alice, text="alice's")
    tip = as_bob.post("/api/coins/transfers/", {"post_id": by_alice.pk, "amount": 5},
                      format="json")
    send = as_bob.post("/api/coins/transfers/", {"recipient_id": alice.pk, "amount": 5},
                       format="json")
    assert tip.status_code == 400 and tip.json()["detail"] == f"Post {by_alice.pk} does not exist."
    assert send.status_code == 400
    assert send.json()["detail"] == "This user cannot receive coins."
    assert Transfer.objects.count() == 0


def test_unblock_restores_visibility_but_not_follows(blocked_pair, as_alice, as_bob):
    alice, bob = blocked_pair
    assert as_alice.delete(f"/api/users/{bob.pk}/block/").json() == {"blocked": False}
    assert as_alice.delete(f"/api/users/{bob.pk}/block/").json() == {"blocked": False}
    assert len(events("user.unblocked")) == 1
    assert as_bob.get(f"/api/users/{alice.pk}/").status_code == 200
    assert not Follow.objects.exists()
    assert as_bob.post(f"/api/users/{alice.pk}/follow/").json()["following"] is True


def test_blocking_yourself_is_a_400(as_alice, alice):
    resp = as_alice.post(f"/api/users/{alice.pk}/block/")
    assert resp.status_code == 400
    assert resp.json()["errors"] == {"user_id": ["You cannot block yourself."]}
