"""Social services publish after locking the count row of the user their events are keyed by
(DESIGN.md §3; see outbox/tests/lock_order.py for why and how it is checked)."""

from __future__ import annotations

import pytest

from accounts.tests.fixtures import make_user
from outbox.tests.lock_order import assert_publishes_after_lock
from social import services
from social.models import SocialCounts

pytestmark = pytest.mark.django_db(transaction=True)

LOCK_COUNTS = "SELECT 1 FROM social_socialcounts WHERE user_id = %s FOR NO KEY UPDATE"


def _following(me, other):
    services.follow_create(follower=me, followee_id=other.pk)
    return lambda: services.follow_delete(follower=me, followee_id=other.pk)


def _blocking(me, other):
    services.block_create(blocker=me, blocked_id=other.pk)
    return lambda: services.block_delete(blocker=me, blocked_id=other.pk)


CASES = {
    "user.followed": lambda me, other: lambda: services.follow_create(follower=me,
                                                                      followee_id=other.pk),
    "user.unfollowed": _following,
    "user.blocked": lambda me, other: lambda: services.block_create(blocker=me,
                                                                    blocked_id=other.pk),
    "user.unblocked": _blocking,
}


@pytest.mark.parametrize("event_type", sorted(CASES))
def test_social_services_publish_after_locking_the_keys_counts(monkeypatch, event_type):
    # given: two users with count rows, and the service about to run
    me, other = make_user(), make_user()
    SocialCounts.objects.get_or_create(user_id=me.pk)
    call = CASES[event_type](me, other)
    # when / then: it waits for the acting user's count row before it publishes
    assert_publishes_after_lock(monkeypatch, module=services, event_type=event_type,
                                lock_sql=LOCK_COUNTS, lock_params=[me.pk], call=call)
