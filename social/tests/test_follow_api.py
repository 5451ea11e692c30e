"""Follow and unfollow through the API: idempotence, counts, events, lists, permissions."""

from __future__ import annotations

import pytest

from accounts.tests.fixtures import client_for, events, make_user
from posts import services as post_services
from social.models import Follow, SocialCounts

pytestmark = pytest.mark.django_db


def _payload(event) -> dict:
    return {k: v for k, v in event.payload.items() if k != "occurred_at"}


def test_follow_is_idempotent_and_counts_once(as_bob, alice, bob):
    # when
    first = as_bob.post(f"/api/users/{alice.pk}/follow/")
    second = as_bob.post(f"/api/users/{alice.pk}/follow/")
    # then
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json() == {"following": True, "followers_count": 1}
    assert Follow.objects.filter(follower=bob, followee=alice).count() == 1
    assert SocialCounts.objects.get(user=alice).followers == 1
    assert SocialCounts.objects.get(user=bob).following == 1
    [event] = events("user.followed")
    assert event.key == str(bob.pk)
    assert _payload(event) == {"follower_id": bob.pk, "followee_id": alice.pk,
                               "followers_count": 1, "following_count": 1}


def test_unfollow_is_idempotent(as_bob, alice, bob):
    as_bob.post(f"/api/users/{alice.pk}/follow/")
    # when
    first = as_bob.delete(f"/api/users/{alice.pk}/follow/")
    second = as_bob.delete(f"/api/users/{alice.pk}/follow/")
    # then
    assert first.json() == second.json() == {"following": False, "followers_count": 0}
    assert not Follow.objects.exists()
    assert (SocialCounts.objects.get(user=alice).followers,
            SocialCounts.objects.get(user=bob).following) == (0, 0)
    [event] = events("user.unfollowed")
    assert _payload(event) == {"follower_id": bob.pk, "followee_id": alice.pk,
                               "followers_count": 0, "following_count": 0,
                               "reason": "unfollow"}


def test_following_yourself_is_a_400(as_alice, alice):
    resp = as_alice.post(f"/api/users/{alice.pk}/follow/")
    assert resp.status_code == 400
    assert resp.json()["errors"] == {"user_id": ["You cannot follow yourself."]}
    assert not Follow.objects.exists()


def test_following_needs_a_signed_in_user(anon, alice):
    assert anon.post(f"/api/users/{alice.pk}/follow/").status_code == 401
    assert anon.delete(f"/api/users/{alice.pk}/follow/").status_code == 401


def test_a_deactivated_or_missing_account_cannot_be_followed(as_bob, alice):
    alice.is_active = False
    alice.save()
    assert as_bob.post(f"/api/users/{alice.pk}/follow/").json() == {
        "type": "not_found", "detail": "No such user."}
    assert as_bob.post("/api/users/999999/follow/").status_code == 404
    assert as_bob.post(f"/api/users/{2**63}/follow/").status_code == 404
    assert not Follow.objects.exists()


def test_an_account_deactivated_after_the_follow_can_still_be_unfollowed(as_bob, alice, bob):
    as_bob.post(f"/api/users/{alice.pk}/follow/")
    alice.is_active = False
    alice.save()
    resp = as_bob.delete(f"/api/users/{alice.pk}/follow/")
    assert resp.json() == {"following": False, "followers_count": 0}
    assert SocialCounts.objects.get(user=bob).following == 0


def test_profile_shows_counts_and_whether_i_follow(as_bob, anon, alice, bob):
    # given
    carol = make_user(username="carol")
    as_bob.post(f"/api/users/{alice.pk}/follow/")
    client_for(carol).post(f"/api/users/{alice.pk}/follow/")
    client_for(alice).post(f"/api/users/{carol.pk}/follow/")
    post_services.post_create(author=alice, text="one")
    gone = post_services.post_create(author=alice, text="two")
    post_services.post_delete(post=gone, actor=alice)
    # when
    mine = as_bob.get(f"/api/users/{alice.pk}/").json()
    public = anon.get(f"/api/users/{alice.pk}/").json()
    # then
    assert {k: mine[k] for k in ("followers_count", "following_count", "posts_count",
                                 "followed_by_me")} == {
        "followers_count": 2, "following_count": 1, "posts_count": 1, "followed_by_me": True}
    assert public["followed_by_me"] is False and public["followers_count"] == 2


def test_followers_and_following_lists_are_newest_first_and_cursor_paged(as_bob, alice):
    # given: five followers of alice, one of them deactivated since
    fans = [make_user(username=f"fan{i}") for i in range(5)]
    for fan in fans:
        client_for(fan).post(f"/api/users/{alice.pk}/follow/")
    fans[2].is_active = False
    fans[2].save()
    # when: walking the pages by the `next` links the API hands out
    seen, url = [], f"/api/users/{alice.pk}/followers/?page_size=2"
    while url:
        page = as_bob.get(url).json()
        seen += [item["user"]["username"] for item in page["results"]]
        url = page["next"]
    # then
    assert seen == ["fan4", "fan3", "fan1", "fan0"]
    following = as_bob.get(f"/api/users/{fans[0].pk}/following/").json()
    assert [item["user"]["id"] for item in following["results"]] == [alice.pk]
    assert set(following["results"][0]) == {"user", "followed_at"}


def test_lists_of_a_deactivated_account_are_404(anon, alice):
    alice.is_active = False
    alice.save()
    assert anon.get(f"/api/users/{alice.pk}/followers/").status_code == 404
    assert anon.get(f"/api/users/{alice.pk}/following/").status_code == 404
