"""Concurrent likes of one post reach Kafka with their like counts in commit order (issue 13):
the real `post_like`, the relay running meanwhile, the real broker."""

from __future__ import annotations

import json
import random
import time

import pytest
from django.db import transaction

from accounts.tests.fixtures import make_user
from outbox.tests.lock_order import (
    older_commits_last,
    relay_running,
    run_threads,
    take_transaction_id,
    txid_id_order,
)
from posts import services
from posts.models import Post
from relay.kafka import topic_name
from relay.testing import delete_topics, read_all
from relay.tests.relay_helpers import create_relay_topics

pytestmark = pytest.mark.django_db(transaction=True)

FANS = 36
WRITERS = 6


@pytest.fixture
def relay_topics(kafka_prefix):
    names = create_relay_topics()
    yield names
    delete_topics(names)


def like_after_an_earlier_write(post: Post, fan, *, delay: float) -> None:
    """A like whose request transaction took its id before locking the post (it wrote something
    else first); the like count is taken under the post's row lock (post_like)."""
    with transaction.atomic():
        take_transaction_id()
        time.sleep(delay)
        services.post_like(post_id=post.pk, user=fan)


def test_concurrent_likes_of_one_post_reach_kafka_with_counts_in_commit_order(relay_topics):
    # given: a post and its fans
    post = Post.objects.create(author=make_user(), text="a hot take")
    fans = [make_user() for _ in range(FANS)]
    rng = random.Random(13)

    def writer(group):
        for fan in group:
            like_after_an_earlier_write(post, fan, delay=rng.uniform(0, 0.02))

    rest = fans[2:]
    # when: the likes run concurrently while the relay delivers
    with relay_running():
        older_commits_last(lambda: services.post_like(post_id=post.pk, user=fans[0]),
                           lambda: services.post_like(post_id=post.pk, user=fans[1]))
        run_threads([lambda g=rest[i::WRITERS]: writer(g) for i in range(WRITERS)])
    # then: Kafka holds each like once, with the counts 1..N in order (taken under the lock)
    records = sorted((r for r in read_all([topic_name("post-events")])
                      if r.key == str(post.pk).encode() and r.header("ce_type") == "post.liked"),
                     key=lambda r: r.offset)
    counts = [json.loads(r.value)["like_count"] for r in records]
    assert counts == list(range(1, FANS + 1))
    assert len({r.header("ce_id") for r in records}) == FANS
    # and the (txid, id) order the relay used before ticks would have shown them out of order
    old = [p["like_count"] for p in txid_id_order("post.liked", str(post.pk))]
    assert sorted(old) == counts and old != counts
