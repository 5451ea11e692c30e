"""Likes under real concurrency: threads, each with its own PostgreSQL connection, through the
API, committing for real (transaction=True)."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from accounts.tests.fixtures import client_for, events, make_user
from posts import services
from posts.models import Like, Post

pytestmark = pytest.mark.django_db(transaction=True)


def _in_parallel(calls) -> list:
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)
    errors: list = []

    def run(i, call):
        try:
            barrier.wait(timeout=30)
            results[i] = call()
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
        finally:
            connection.close()  # this thread's own connection

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    return results


def test_twenty_parallel_likes_by_different_users_count_exactly_twenty():
    # given
    author = make_user()
    post = services.post_create(author=author, text="hot")
    clients = [client_for(make_user()) for _ in range(20)]
    # when
    responses = _in_parallel([lambda c=c: c.post(f"/api/posts/{post.pk}/like/")
                              for c in clients])
    # then
    assert [r.status_code for r in responses] == [200] * 20
    post.refresh_from_db()
    assert post.like_count == 20
    assert Like.objects.filter(post=post).count() == 20
    liked = events("post.liked")
    assert len(liked) == 20
    assert sorted(e.payload["like_count"] for e in liked) == list(range(1, 21))
    assert sorted(r.json()["like_count"] for r in responses) == list(range(1, 21))


def test_twenty_parallel_likes_by_one_user_count_once():
    author = make_user()
    post = services.post_create(author=author, text="hot")
    client = client_for(make_user())
    responses = _in_parallel([lambda: client.post(f"/api/posts/{post.pk}/like/")] * 20)
    assert {r.status_code for r in responses} == {200}
    assert Post.objects.get(pk=post.pk).like_count == 1
    assert len(events("post.liked")) == 1


def test_parallel_likes_and_unlikes_leave_the_count_equal_to_the_rows():
    # given: ten users already like the post
    author = make_user()
    post = services.post_create(author=author, text="hot")
    users = [make_user() for _ in range(20)]
    for u in users[:10]:
        services.post_like(post_id=post.pk, user=u)
    # when: those ten unlike while ten others like
    calls = [lambda u=u: services.post_unlike(post_id=post.pk, user=u) for u in users[:10]]
    calls += [lambda u=u: services.post_like(post_id=post.pk, user=u) for u in users[10:]]
    _in_parallel(calls)
    # then
    post.refresh_from_db()
    assert post.like_count == Like.objects.filter(post=post).count() == 10
    assert set(Like.objects.filter(post=post).values_list("user_id", flat=True)) == {
        u.pk for u in users[10:]}
