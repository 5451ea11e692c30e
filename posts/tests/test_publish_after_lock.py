"""Post services publish after locking the post row their events are keyed by (DESIGN.md §3;
see outbox/tests/lock_order.py for why and how it is checked)."""

from __future__ import annotations

import pytest

from accounts import services as accounts_services
from accounts.tests.fixtures import PASSWORD, make_user
from outbox.tests.lock_order import assert_publishes_after_lock
from posts import services
from posts.models import Post

pytestmark = pytest.mark.django_db(transaction=True)

LOCK_POST = "SELECT 1 FROM posts_post WHERE id = %s FOR NO KEY UPDATE"


def _liked(post, fan):
    services.post_like(post_id=post.pk, user=fan)
    return lambda: services.post_unlike(post_id=post.pk, user=fan)


def _commented(post, fan):
    comment = services.comment_create(post_id=post.pk, author=fan, text="rude")
    return lambda: services.comment_hide(comment_id=comment.pk, operator=None)


CASES = {
    "post.liked": lambda post, fan: lambda: services.post_like(post_id=post.pk, user=fan),
    "post.unliked": _liked,
    "post.commented": lambda post, fan: lambda: services.comment_create(
        post_id=post.pk, author=fan, text="nice"),
    "post.viewed": lambda post, fan: lambda: services.post_view_record(
        post_id=post.pk, viewer=fan, viewer_key=f"u{fan.pk}"),
    "post.updated": lambda post, fan: lambda: services.post_update(
        post=post, actor=post.author, text="edited"),
    "post.deleted": lambda post, fan: lambda: services.post_delete(post=post,
                                                                   actor=post.author),
    "post.hidden": lambda post, fan: lambda: services.post_hide(post_id=post.pk, operator=None),
    "comment.hidden": _commented,
}


@pytest.mark.parametrize("event_type", sorted(CASES))
def test_post_services_publish_after_locking_the_post(monkeypatch, event_type):
    # given: a post, a fan, and the service about to run
    post = Post.objects.create(author=make_user(), text="hello")
    call = CASES[event_type](post, make_user())
    # when / then: it waits for the post's row before it publishes
    assert_publishes_after_lock(monkeypatch, module=services, event_type=event_type,
                                lock_sql=LOCK_POST, lock_params=[post.pk], call=call)


def test_an_account_deletion_publishes_its_posts_deletions_after_locking_them(monkeypatch):
    author = make_user()
    post = Post.objects.create(author=author, text="bye")
    assert_publishes_after_lock(
        monkeypatch, module=services, event_type="post.deleted", lock_sql=LOCK_POST,
        lock_params=[post.pk],
        call=lambda: accounts_services.user_delete(user=author, password=PASSWORD))
