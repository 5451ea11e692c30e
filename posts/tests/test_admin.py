"""Django admin for users, posts, comments and likes: lists with search and filters, read-only
event fields, and writes only through the services (so they emit their events)."""

from __future__ import annotations

import pytest
from django.test import Client

from accounts.models import User
from accounts.tests.fixtures import events, make_user
from posts import services
from posts.models import Comment, Post

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client():
    admin = make_user(username="root", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(admin)
    client.admin = admin
    return client


@pytest.fixture
def content(alice, bob):
    post = services.post_create(author=alice, text="needle in a post")
    services.post_like(post_id=post.pk, user=bob)
    services.comment_create(post_id=post.pk, author=bob, text="needle comment")
    services.post_view_record(post_id=post.pk, viewer=bob, viewer_key=f"u:{bob.pk}")
    return post


@pytest.mark.parametrize("url", [
    "/admin/accounts/user/?q=alice&is_active__exact=1",
    "/admin/accounts/user/?deleted_at__isempty=1",
    "/admin/accounts/phoneverification/?q=%2B1",
    "/admin/posts/post/?q=needle&deleted_at__isempty=1",
    "/admin/posts/comment/?q=needle",
    "/admin/posts/like/?q=bob",
    "/admin/posts/postview/",
])
def test_admin_lists_search_and_filter(admin_client, content, url):
    resp = admin_client.get(url)
    assert resp.status_code == 200


def test_admin_search_finds_the_post(admin_client, content):
    resp = admin_client.get("/admin/posts/post/?q=needle")
    assert b"needle in a post" in resp.content
    resp = admin_client.get("/admin/posts/post/?q=nothing-matches")
    assert b"needle in a post" not in resp.content


def test_admin_shows_posts_read_only_and_cannot_delete_users(admin_client, content, alice):
    page = admin_client.get(f"/admin/posts/post/{content.pk}/change/")
    assert page.status_code == 200
    assert b'name="like_count"' not in page.content  # a read-only field, no input
    resp = admin_client.post(f"/admin/posts/post/{content.pk}/change/", {"like_count": 999})
    assert resp.status_code == 403
    assert admin_client.get(f"/admin/accounts/user/{alice.pk}/delete/").status_code == 403
    content.refresh_from_db()
    assert content.like_count == 1


def test_admin_soft_delete_action_goes_through_the_service(admin_client, content):
    # when
    resp = admin_client.post("/admin/posts/post/", {
        "action": "soft_delete_selected", "_selected_action": [content.pk]})
    # then
    assert resp.status_code == 302
    content.refresh_from_db()
    assert content.deleted_at is not None
    [event] = events("post.deleted")
    assert event.payload["actor_id"] == admin_client.admin.pk
    assert event.payload["author_id"] == content.author_id


def test_admin_comment_delete_action_corrects_the_count(admin_client, content):
    comment = Comment.objects.get()
    admin_client.post("/admin/posts/comment/", {
        "action": "delete_selected_comments", "_selected_action": [comment.pk]})
    assert Comment.objects.count() == 0
    assert Post.objects.get(pk=content.pk).comment_count == 0


def test_admin_deactivate_action_emits_the_event(admin_client, alice):
    admin_client.post("/admin/accounts/user/", {
        "action": "deactivate_selected", "_selected_action": [alice.pk]})
    assert User.objects.get(pk=alice.pk).is_active is False
    [event] = events("user.account_changed")
    assert event.payload["change"] == "deactivated"


def test_admin_is_closed_to_non_staff(alice):
    client = Client()
    client.force_login(alice)
    assert client.get("/admin/posts/post/").status_code == 302


def test_admin_reactivate_action_restores_a_deactivated_account_only(admin_client, alice, bob):
    User.objects.filter(pk__in=[alice.pk, bob.pk]).update(is_active=False)
    User.objects.filter(pk=bob.pk).update(deleted_at="2026-01-01T00:00:00Z")
    admin_client.post("/admin/accounts/user/", {
        "action": "reactivate_selected", "_selected_action": [alice.pk, bob.pk]})
    assert User.objects.get(pk=alice.pk).is_active is True
    assert User.objects.get(pk=bob.pk).is_active is False
    [event] = events("user.account_changed")
    assert (event.payload["user_id"], event.payload["change"]) == (alice.pk, "reactivated")


def test_admin_created_account_emits_user_registered(admin_client):
    resp = admin_client.post("/admin/accounts/user/add/", {
        "username": "opsmade", "password1": "Str0ng-pass-phrase", "password2":
        "Str0ng-pass-phrase", "usable_password": "true"})
    assert resp.status_code == 302, resp.content[:2000]
    user = User.objects.get(username="opsmade")
    [event] = events("user.registered")
    assert (event.payload["user_id"], event.payload["username"]) == (user.pk, "opsmade")
