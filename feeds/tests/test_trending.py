"""The trending feed: ranked from the analytics aggregates by the documented formula."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.tests.fixtures import make_user
from analytics.models import PostStats
from feeds.tasks import refresh_trending
from posts import services as posts
from posts.models import Post
from social import services as social

pytestmark = pytest.mark.django_db


def _post(author, *, hours_old: float, likes=0, unlikes=0, comments=0, views=0, watch_ms=0):
    post = posts.post_create(author=author, text="p")
    Post.objects.filter(pk=post.pk).update(
        created_at=timezone.now() - timedelta(hours=hours_old))
    PostStats.objects.create(post_id=post.pk, likes=likes, unlikes=unlikes, comments=comments,
                             views=views, watch_time_ms=watch_ms)
    return post


def _score(points: float, hours_old: float) -> float:
    return points / (hours_old + 2) ** 1.5


def test_posts_are_ranked_by_points_for_their_age(anon, alice):
    # given: points = 2 x net likes + 3 x comments + views + 2 x minutes watched
    liked = _post(alice, hours_old=1, likes=12, unlikes=2, views=10)        # 30 points
    talked = _post(alice, hours_old=1, comments=5, views=5, watch_ms=60000)  # 22 points
    fresh = _post(alice, hours_old=0, likes=5, views=2)                      # 12 points
    old_hit = _post(alice, hours_old=20, likes=100, views=100)               # 300 points
    _post(alice, hours_old=25, likes=1000)                                   # too old
    expected = sorted([(liked, _score(30, 1)), (talked, _score(22, 1)), (fresh, _score(12, 0)),
                       (old_hit, _score(300, 20))], key=lambda x: -x[1])
    # when
    assert refresh_trending() == 4
    # then
    body = anon.get("/api/feed/trending/").json()
    assert [p["id"] for p in body["results"]] == [p.pk for p, _ in expected]
    assert body["next"] is None


def test_trending_hides_what_the_viewer_may_not_see_and_pages_by_next(anon, alice, bob, as_bob,
                                                                      admin_user):
    carol = make_user(username="carol")
    made = [_post(alice, hours_old=1, likes=10 - i) for i in range(5)]
    hidden = _post(carol, hours_old=1, likes=50)
    blocked = _post(carol, hours_old=1, likes=40)
    refresh_trending()
    posts.post_hide(post_id=hidden.pk, operator=admin_user)
    social.block_create(blocker=carol, blocked_id=bob.pk)
    # when
    seen, url = [], "/api/feed/trending/?page_size=2"
    while url:
        body = as_bob.get(url).json()
        seen += [p["id"] for p in body["results"]]
        url = body["next"]
    # then
    assert seen == [p.pk for p in made]
    assert [p["id"] for p in anon.get("/api/feed/trending/").json()["results"]][:1] == [
        blocked.pk]
