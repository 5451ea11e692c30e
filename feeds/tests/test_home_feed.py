"""The home feed built by the feeds consumer's handler: fan-out on write, removal, backfill,
celebrities merged at read time, the fan-out worker's chunks."""

from __future__ import annotations

import pytest

from accounts.tests.fixtures import client_for, make_user
from feeds.models import Celebrity, FanoutJob, TimelineEntry
from posts import services as posts
from social import services as social

from .helpers import apply_outbox, feed_ids, run_fanout

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def small_limits(settings):
    settings.FEEDS_FANOUT_INLINE = 3
    settings.FEEDS_FANOUT_CHUNK = 2
    settings.FEEDS_CELEBRITY_FOLLOWERS = 1000
    settings.FEEDS_BACKFILL_POSTS = 2


def test_posts_of_people_i_follow_and_mine_newest_first_and_nobody_elses(alice, bob, as_bob):
    # given
    carol = make_user(username="carol")
    social.follow_create(follower=bob, followee_id=alice.pk)
    a1 = posts.post_create(author=alice, text="a1")
    mine = posts.post_create(author=bob, text="mine")
    posts.post_create(author=carol, text="not followed")
    a2 = posts.post_create(author=alice, text="a2")
    # when
    apply_outbox()
    # then
    assert feed_ids(as_bob) == [a2.pk, mine.pk, a1.pk]
    assert TimelineEntry.objects.filter(owner_id=bob.pk).count() == 3


def test_feed_pages_follow_the_next_links_and_every_post_comes_once(alice, bob, as_bob):
    social.follow_create(follower=bob, followee_id=alice.pk)
    made = [posts.post_create(author=alice, text=f"p{i}").pk for i in range(7)]
    apply_outbox()
    seen, url, pages = [], "/api/feed/?page_size=3", 0
    while url:
        body = as_bob.get(url).json()
        seen += [p["id"] for p in body["results"]]
        url = body["next"]
        pages += 1
    assert seen == made[::-1] and pages == 3


def test_deleted_and_hidden_posts_leave_feeds(alice, bob, as_bob, admin_user):
    social.follow_create(follower=bob, followee_id=alice.pk)
    keep, gone, hidden = (posts.post_create(author=alice, text=t) for t in ("k", "g", "h"))
    last = apply_outbox()
    posts.post_delete(post=gone, actor=alice)
    posts.post_hide(post_id=hidden.pk, operator=admin_user)
    # then: out of the API at once (the read path checks), and out of the table once handled
    assert feed_ids(as_bob) == [keep.pk]
    apply_outbox(since_id=last)
    assert sorted(TimelineEntry.objects.values_list("post_id", flat=True)) == [keep.pk, keep.pk]


def test_unfollow_and_block_take_the_posts_out_and_follow_brings_recent_ones_back(
        alice, bob, as_bob):
    social.follow_create(follower=bob, followee_id=alice.pk)
    old, p1, p2 = (posts.post_create(author=alice, text=t) for t in ("old", "p1", "p2"))
    last = apply_outbox()
    # when: unfollow
    social.follow_delete(follower=bob, followee_id=alice.pk)
    assert feed_ids(as_bob) == []
    last = apply_outbox(since_id=last)
    assert not TimelineEntry.objects.filter(owner_id=bob.pk, author_id=alice.pk).exists()
    # when: follow again: the 2 latest posts (FEEDS_BACKFILL_POSTS) are backfilled
    social.follow_create(follower=bob, followee_id=alice.pk)
    last = apply_outbox(since_id=last)
    assert feed_ids(as_bob) == [p2.pk, p1.pk]
    # when: alice blocks bob
    social.block_create(blocker=alice, blocked_id=bob.pk)
    apply_outbox(since_id=last)
    assert feed_ids(as_bob) == []
    assert not TimelineEntry.objects.filter(owner_id=bob.pk, author_id=alice.pk).exists()
    assert old.pk


def test_a_post_to_many_followers_is_written_in_chunks_by_the_worker(alice):
    # given: 7 followers, more than FEEDS_FANOUT_INLINE (3): the worker does it, 2 per chunk
    fans = [make_user() for _ in range(7)]
    for fan in fans:
        social.follow_create(follower=fan, followee_id=alice.pk)
    last = apply_outbox()
    post = posts.post_create(author=alice, text="to all")
    apply_outbox(since_id=last)
    job = FanoutJob.objects.get(post_id=post.pk)
    assert job.done_at is None and job.rows_written == 0
    # when
    chunks = run_fanout()
    # then
    job.refresh_from_db()
    assert (chunks, job.chunks, job.rows_written) == (4, 4, 7)
    assert job.done_at is not None
    for fan in fans:
        assert feed_ids(client_for(fan)) == [post.pk]


def test_the_worker_takes_turns_between_jobs(alice, bob):
    # given: two posts with 6 and 4 followers (chunk 2)
    for i in range(6):
        social.follow_create(follower=make_user(), followee_id=alice.pk)
    for i in range(4):
        social.follow_create(follower=make_user(), followee_id=bob.pk)
    last = apply_outbox()
    big = posts.post_create(author=alice, text="big")
    small = posts.post_create(author=bob, text="small")
    apply_outbox(since_id=last)
    from feeds.fanout import FanoutWorker

    worker = FanoutWorker(max_idle=0)
    order = []
    while worker.step():
        order.append({j.post_id: j.chunks for j in FanoutJob.objects.all()})
    # then: the small post finished after 2 turns of each, not after all of the big one's
    assert order[3] == {big.pk: 2, small.pk: 2}
    assert FanoutJob.objects.get(post_id=small.pk).done_at is not None
    assert FanoutJob.objects.get(post_id=big.pk).chunks == 4  # 3 with rows, 1 finding none


def test_a_celebritys_posts_are_merged_at_read_time_and_look_the_same(settings, alice, bob,
                                                                      as_bob):
    # given: alice has more followers than the threshold (2)
    settings.FEEDS_CELEBRITY_FOLLOWERS = 2
    social.follow_create(follower=bob, followee_id=alice.pk)
    for _ in range(2):
        social.follow_create(follower=make_user(), followee_id=alice.pk)
    carol = make_user(username="carol")
    social.follow_create(follower=bob, followee_id=carol.pk)
    last = apply_outbox()
    assert Celebrity.objects.filter(author_id=alice.pk).exists()
    # when
    c1 = posts.post_create(author=carol, text="c1")
    a1 = posts.post_create(author=alice, text="a1")
    c2 = posts.post_create(author=carol, text="c2")
    apply_outbox(since_id=last)
    # then: no fan-out rows and no job for alice's post, yet it is in bob's feed in its place
    assert not TimelineEntry.objects.filter(post_id=a1.pk).exists()
    assert not FanoutJob.objects.filter(post_id=a1.pk).exists()
    body = as_bob.get("/api/feed/").json()
    assert [p["id"] for p in body["results"]] == [c2.pk, a1.pk, c1.pk]
    merged, fanned = body["results"][1], body["results"][0]
    assert set(merged) == set(fanned)
    # and on her own feed
    assert feed_ids(client_for(alice)) == [a1.pk]


def test_a_celebrity_who_falls_below_the_threshold_is_fanned_out_again(settings, alice, bob,
                                                                        as_bob):
    # given: 5 followers, more than the threshold (4)
    settings.FEEDS_CELEBRITY_FOLLOWERS = 4
    fans = [make_user() for _ in range(4)]
    social.follow_create(follower=bob, followee_id=alice.pk)
    for fan in fans:
        social.follow_create(follower=fan, followee_id=alice.pk)
    last = apply_outbox()
    post = posts.post_create(author=alice, text="while famous")
    last = apply_outbox(since_id=last)
    assert not TimelineEntry.objects.filter(post_id=post.pk).exists()
    assert Celebrity.objects.filter(author_id=alice.pk).exists()
    # when: three followers leave (5 -> 2, below 90% of 4)
    for fan in fans[:3]:
        social.follow_delete(follower=fan, followee_id=alice.pk)
    apply_outbox(since_id=last)
    run_fanout()
    # then
    assert not Celebrity.objects.exists()
    assert sorted(TimelineEntry.objects.filter(post_id=post.pk)
                  .values_list("owner_id", flat=True)) == sorted([alice.pk, bob.pk, fans[3].pk])
    assert feed_ids(as_bob) == [post.pk]
    assert feed_ids(client_for(alice)) == [post.pk]


def test_handling_the_same_events_twice_changes_nothing(alice, bob):
    social.follow_create(follower=bob, followee_id=alice.pk)
    posts.post_create(author=alice, text="once")
    apply_outbox()
    before = sorted(TimelineEntry.objects.values_list("owner_id", "post_id"))
    jobs = FanoutJob.objects.count()
    apply_outbox()
    assert sorted(TimelineEntry.objects.values_list("owner_id", "post_id")) == before
    assert FanoutJob.objects.count() == jobs


def test_the_feed_needs_a_signed_in_user_and_refuses_bad_cursors(anon, as_bob):
    assert anon.get("/api/feed/").status_code == 401
    for cursor in ("junk", "WzBd", "WyJ4Il0", "WzEuNV0", "WzFd!"):
        resp = as_bob.get("/api/feed/", {"cursor": cursor})
        assert resp.status_code == 400, cursor
        assert resp.json()["type"] == "invalid_cursor"


def test_operators_see_fan_out_jobs_and_celebrities_in_the_admin(admin_client, alice):
    post = posts.post_create(author=alice, text="x")
    apply_outbox()
    Celebrity.objects.create(author_id=alice.pk)
    page = admin_client.get("/admin/feeds/fanoutjob/").content.decode()
    assert f">{post.pk}<" in page
    assert admin_client.get("/admin/feeds/celebrity/").status_code == 200
