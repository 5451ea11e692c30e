"""The home feed on the real services: the API writes, the relay delivers to Kafka, the feeds
consumer (the real runtime, in-process) and the fan-out worker (`manage.py run_fanout`
subprocesses, one killed with SIGKILL mid-job) write the feeds."""

from __future__ import annotations

import time

import pytest
from django.db import connection

from accounts.tests.fixtures import client_for, make_user
from feeds.models import FanoutJob, TimelineEntry
from notifications.tests.conftest import pipeline_on_topics
from relay.testing import ManageProcess
from social.models import Follow

pytestmark = pytest.mark.django_db(transaction=True)

FEEDS = {"feeds": ["post-events", "user-events"]}


@pytest.fixture
def feeds_pipeline(kafka_prefix):
    yield from pipeline_on_topics(kafka_prefix, FEEDS)


def test_a_new_user_follows_and_sees_the_next_post_in_the_home_feed(feeds_pipeline):
    # given: two users signed up through the API
    alice, bob = make_user(username="alice"), make_user(username="bob")
    as_alice, as_bob = client_for(alice), client_for(bob)
    old = as_bob.post("/api/posts/", {"text": "before the follow"}, format="json").json()
    # when: alice follows bob; bob posts
    assert as_alice.post(f"/api/users/{bob.pk}/follow/").json()["following"] is True
    new = as_bob.post("/api/posts/", {"text": "hello followers"}, format="json").json()

    def feed() -> list[int]:
        return [p["id"] for p in as_alice.get("/api/feed/").json()["results"]]

    # then: the relay and the feeds consumer put both (backfill and fan-out) in her feed
    feeds_pipeline.run_until(lambda: feed() == [new["id"], old["id"]], timeout=60)
    assert TimelineEntry.objects.filter(owner_id=alice.pk).count() == 2
    # and an unfollow takes them out of the table too (the API hides them at once)
    as_alice.delete(f"/api/users/{bob.pk}/follow/")
    assert feed() == []
    feeds_pipeline.run_until(
        lambda: not TimelineEntry.objects.filter(owner_id=alice.pk).exists(), timeout=60)


def test_fan_out_survives_a_killed_worker_and_writes_each_follower_once(feeds_pipeline,
                                                                         tmp_path):
    # given: an author with 3,000 followers (created directly: the follow API is tested
    # elsewhere), and the worker's chunks small enough to kill it mid-job
    author = make_user(username="author")
    with connection.cursor() as cur:
        cur.execute("""
            INSERT INTO accounts_user (password, is_superuser, username, first_name, last_name,
                                       is_staff, is_active, date_joined, display_name, bio,
                                       avatar, avatar_version)
            SELECT '', false, 'fan' || i, '', '', false, true, now(), '', '', '', 0
            FROM generate_series(1, 3000) AS i""")
        cur.execute("""
            INSERT INTO social_follow (follower_id, followee_id, created_at)
            SELECT id, %s, now() FROM accounts_user WHERE username LIKE 'fan%%'""", [author.pk])
        cur.execute("INSERT INTO social_socialcounts (user_id, followers, following) "
                    "VALUES (%s, 3000, 0)", [author.pk])
    post = client_for(author).post("/api/posts/", {"text": "to everyone"}, format="json").json()
    feeds_pipeline.run_until(lambda: FanoutJob.objects.filter(post_id=post["id"]).exists())
    env = {"FEEDS_FANOUT_CHUNK": "100", "FEEDS_FANOUT_POLL_SECONDS": "0.2"}
    # when: a worker is killed -9 once it has written some chunks, and another finishes
    first = ManageProcess(["run_fanout"], log_dir=tmp_path, **env)
    try:
        deadline = time.monotonic() + 60
        while FanoutJob.objects.get(post_id=post["id"]).chunks < 5:
            assert time.monotonic() < deadline, first.output()
            time.sleep(0.01)
        first.kill9()
        job = FanoutJob.objects.get(post_id=post["id"])
        assert job.done_at is None  # the kill landed mid-job
        progress_at_kill = job.rows_written
        second = ManageProcess(["run_fanout"], log_dir=tmp_path, **env)
        try:
            deadline = time.monotonic() + 120
            while FanoutJob.objects.get(post_id=post["id"]).done_at is None:
                assert time.monotonic() < deadline, second.output()
                time.sleep(0.05)
        finally:
            assert second.terminate() == 0
    finally:
        if first.proc.poll() is None:
            first.kill9()
    # then: every follower has the post once, and the job counted each row once
    job = FanoutJob.objects.get(post_id=post["id"])
    owners = list(TimelineEntry.objects.filter(post_id=post["id"])
                  .values_list("owner_id", flat=True))
    followers = set(Follow.objects.filter(followee=author).values_list("follower_id", flat=True))
    assert len(owners) == len(set(owners)) == 3001
    assert set(owners) == followers | {author.pk}
    assert 0 < progress_at_kill < 3000
    assert job.rows_written == 3000
