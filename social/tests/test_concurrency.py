"""Follows and blocks under real concurrency: threads with their own PostgreSQL connections,
through the API, committing for real (transaction=True)."""

from __future__ import annotations

import pytest

from accounts.tests.fixtures import client_for, events, make_user
from posts.tests.test_concurrency import _in_parallel
from social.models import Block, Follow, SocialCounts

pytestmark = pytest.mark.django_db(transaction=True)


def test_twenty_parallel_follows_of_one_user_count_exactly_twenty_with_ordered_events():
    # given
    star = make_user()
    clients = [client_for(make_user()) for _ in range(20)]
    # when: each follower follows twice at once with the others
    responses = _in_parallel([lambda c=c: c.post(f"/api/users/{star.pk}/follow/")
                              for c in clients + clients])
    # then
    assert [r.status_code for r in responses] == [200] * 40
    assert SocialCounts.objects.get(user=star).followers == 20
    assert Follow.objects.filter(followee=star).count() == 20
    followed = events("user.followed")
    assert len(followed) == 20
    # Taken under the count row's lock: the counts in commit order are 1..20.
    assert [e.payload["followers_count"] for e in followed] == list(range(1, 21))


def test_a_follow_racing_a_block_never_leaves_a_follow_behind():
    # given
    for _ in range(10):
        alice, bob = make_user(), make_user()
        # when: bob follows alice while alice blocks bob
        follow, block = _in_parallel([
            lambda a=alice, b=bob: client_for(b).post(f"/api/users/{a.pk}/follow/"),
            lambda a=alice, b=bob: client_for(a).post(f"/api/users/{b.pk}/block/"),
        ])
        # then: whichever committed first, no follow survives the block
        assert block.status_code == 200
        assert follow.status_code in (200, 404)
        assert Block.objects.filter(blocker=alice, blocked=bob).exists()
        assert not Follow.objects.filter(follower=bob, followee=alice).exists()
        assert SocialCounts.objects.get(user=alice).followers == 0
        assert SocialCounts.objects.get(user=bob).following == 0
