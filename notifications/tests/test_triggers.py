"""Triggers: domain events become `notification.requested`, one line per trigger."""

from __future__ import annotations

import uuid

import pytest
from django.db import transaction

from notifications import triggers
from relay import registry
from relay.registry import PermanentError

from .helpers import consumed, events, handle, make_user, outbox_rows

pytestmark = pytest.mark.django_db

NOW = "2026-01-01T12:00:00Z"


def _post_event(type_: str, author, actor, **extra):
    return consumed(type_, {"post_id": 7, "author_id": author.pk, "actor_id": actor.pk,
                            "occurred_at": NOW, **extra})


def test_a_like_by_someone_else_requests_one_post_liked_notification_for_the_author():
    # given
    author, fan = make_user(), make_user()
    event = _post_event("post.liked", author, fan, like_count=3)
    # when
    handle("notifications", event)
    # then
    [row] = outbox_rows("notification.requested")
    assert row.key == str(author.pk)
    assert row.payload == {
        "recipient_id": author.pk, "kind": "post_liked", "actor_id": fan.pk,
        "context": {"post_id": 7, "like_count": 3}, "title": None, "body": None,
        "channels": None, "source_event_id": str(event.id), "bulk_id": None,
        "requested_at": row.payload["requested_at"],
    }


def test_liking_or_commenting_on_your_own_post_notifies_nobody():
    # given
    author = make_user()
    # when
    handle("notifications", _post_event("post.liked", author, author, like_count=1))
    handle("notifications", _post_event("post.commented", author, author, comment_id=3,
                                        text="me", comment_count=1))
    # then
    assert events("notification.requested") == []


@pytest.mark.parametrize(("event_type", "data", "kind", "recipient", "actor", "context"), [
    ("post.commented",
     {"post_id": 7, "author_id": "A", "actor_id": "B", "occurred_at": NOW, "comment_id": 5,
      "text": "nice!", "comment_count": 1},
     "post_commented", "A", "B", {"post_id": 7, "comment_id": 5, "text": "nice!"}),
    ("coins.transferred",
     {"transfer_id": 4, "sender_id": "B", "recipient_id": "A", "amount": 50, "post_id": None,
      "kind": "transfer", "note": "thanks", "transaction_id": 9},
     "coins_received", "A", "B", {"transfer_id": 4, "amount": 50, "note": "thanks"}),
    ("coins.transferred",
     {"transfer_id": 4, "sender_id": "B", "recipient_id": "A", "amount": 5, "post_id": 7,
      "kind": "tip", "note": "", "transaction_id": 9},
     "tip_received", "A", "B", {"transfer_id": 4, "amount": 5, "note": "", "post_id": 7}),
    ("video.transcoded",
     {"video_id": 3, "owner_id": "A", "attempt": 1, "duration_seconds": 2.0,
      "renditions": [{"name": "240p", "width": 320, "height": 240, "bitrate": 1,
                      "size_bytes": 1, "storage_name": "x.mp4"}]},
     "video_ready", "A", None, {"video_id": 3}),
    ("video.failed",
     {"video_id": 3, "owner_id": "A", "reason": "not a video", "attempts": 3},
     "video_failed", "A", None, {"video_id": 3, "reason": "not a video"}),
    ("coins.withdrawal_completed",
     {"withdrawal_id": 2, "user_id": "A", "amount": 1000, "fee": 10,
      "payout_reference": "PO-1", "reviewed_by": "B", "transaction_id": 9},
     "withdrawal_completed", "A", None,
     {"withdrawal_id": 2, "amount": 1000, "fee": 10, "payout_reference": "PO-1"}),
    ("coins.withdrawal_rejected",
     {"withdrawal_id": 2, "user_id": "A", "amount": 1000, "reason": "KYC", "reviewed_by": "B",
      "transaction_id": 9},
     "withdrawal_rejected", "A", None, {"withdrawal_id": 2, "amount": 1000, "reason": "KYC"}),
    ("user.registered",
     {"user_id": "A", "username": "ann", "email": "ann@example.com", "display_name": "Ann",
      "registered_at": NOW},
     "welcome", "A", None, {}),
    ("user.followed",
     {"follower_id": "B", "followee_id": "A", "followers_count": 3, "following_count": 1,
      "occurred_at": NOW},
     "new_follower", "A", "B", {"followers_count": 3}),
])
def test_each_trigger_maps_its_event_to_its_kind(event_type, data, kind, recipient, actor,
                                                 context):
    # given
    users = {"A": make_user(), "B": make_user()}
    data = {k: users[v].pk if isinstance(v, str) and v in users else v for k, v in data.items()}
    # when
    handle("notifications", consumed(event_type, data))
    # then
    [payload] = events("notification.requested")
    assert (payload["kind"], payload["recipient_id"], payload["actor_id"],
            payload["context"]) == (kind, users[recipient].pk,
                                    users[actor].pk if actor else None, context)


def test_every_trigger_event_type_is_read_by_the_notifications_consumer():
    # then: the consumer's topics follow from the registrations
    assert registry.topics_for_consumer("notifications") == [
        "post-events", "transaction-events", "user-events", "video-processing"]
    assert sorted(triggers.TRIGGERS) == sorted([
        "user.registered", "post.liked", "post.commented", "coins.transferred",
        "user.followed", "video.transcoded", "video.failed", "coins.withdrawal_completed",
        "coins.withdrawal_rejected"])


def test_adding_a_trigger_is_one_line():
    # given: a new trigger, registered with one call
    author, viewer = make_user(), make_user()
    added = triggers.trigger("post.viewed", kind="post_liked", recipient="author_id",
                             actor="actor_id", copy=("view_count",))
    try:
        # when
        handle("notifications", consumed("post.viewed", {
            "post_id": 7, "author_id": author.pk, "actor_id": viewer.pk, "occurred_at": NOW,
            "view_count": 12}))
        # then
        [payload] = events("notification.requested")
        assert (payload["recipient_id"], payload["context"]) == (author.pk, {"view_count": 12})
    finally:
        triggers.TRIGGERS["post.viewed"].remove(added)
        del triggers.TRIGGERS["post.viewed"]
        registry.unregister("notifications", "post.viewed", triggers.on_domain_events)


def test_a_trigger_for_an_unknown_kind_is_refused_at_registration():
    with pytest.raises(ValueError, match="unknown notification kind 'nope'"):
        triggers.trigger("post.viewed", kind="nope", recipient="author_id")


def test_a_replayed_event_requests_the_same_notification_not_a_second_one():
    # given: the same source event handled twice (a replay that got past the inbox)
    author, fan = make_user(), make_user()
    event = _post_event("post.liked", author, fan, like_count=1)
    handle("notifications", event)
    # when
    handle("notifications", event)
    # then
    assert len(events("notification.requested")) == 1


def test_liking_unliking_and_liking_again_requests_one_notification():
    # given: Bob likes Ann's post, unlikes it (no trigger), likes it again: two post.liked
    ann, bob = make_user(), make_user()
    first = _post_event("post.liked", ann, bob, like_count=1)
    again = _post_event("post.liked", ann, bob, like_count=1)
    # when
    handle("notifications", first)
    handle("notifications", again)
    # then: one request, for the first like
    [row] = outbox_rows("notification.requested")
    assert row.payload["source_event_id"] == str(first.id)
    # and someone else's like of the same post, or Bob's like of another post, is news
    carl = make_user()
    handle("notifications", _post_event("post.liked", ann, carl, like_count=2))
    other_post = consumed("post.liked", {"post_id": 8, "author_id": ann.pk, "actor_id": bob.pk,
                                         "occurred_at": NOW, "like_count": 1})
    handle("notifications", other_post)
    assert len(events("notification.requested")) == 3


def test_likes_in_one_batch_request_one_notification_per_liker_and_post():
    # given: one batch holding a like, the same person's like again, and another's like
    ann, bob, carl = make_user(), make_user(), make_user()
    batch = [_post_event("post.liked", ann, bob, like_count=1),
             _post_event("post.liked", ann, bob, like_count=1),
             _post_event("post.liked", ann, carl, like_count=2)]
    # when
    with transaction.atomic():
        triggers.on_domain_events(batch)
    # then
    assert sorted(p["actor_id"] for p in events("notification.requested")) == sorted(
        [bob.pk, carl.pk])


def test_an_event_without_its_recipient_is_dead_lettered():
    # given: a hand-made record the schema would refuse, reaching the handler
    event = consumed("video.failed", {"video_id": 3, "owner_id": 1, "reason": "x",
                                      "attempts": 1})
    broken = type(event)(**{**event.__dict__, "data": {**event.data, "owner_id": None},
                            "id": uuid.uuid4()})
    # when / then
    with pytest.raises(PermanentError, match="no owner_id to notify"):
        handle("notifications", broken)


def test_no_notification_between_users_in_a_block():
    # given: B liked A's post, then A blocked B before the notification was made
    from social.models import Block

    a, b = make_user(), make_user()
    Block.objects.create(blocker=a, blocked=b)
    # when
    handle("notifications", consumed("post.liked", {
        "post_id": 7, "author_id": a.pk, "actor_id": b.pk, "occurred_at": NOW,
        "like_count": 1}))
    handle("notifications", consumed("user.followed", {
        "follower_id": b.pk, "followee_id": a.pk, "followers_count": 1, "following_count": 1,
        "occurred_at": NOW}))
    # then
    assert events("notification.requested") == []
