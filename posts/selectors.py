"""Post reads. Every query here hides deleted posts and posts of inactive or deleted accounts."""

from __future__ import annotations

import hashlib
import hmac

from django.conf import settings
from django.db.models import BooleanField, Exists, OuterRef, QuerySet, Value

from .models import Comment, Like, Post


def post_visible_queryset(*, viewer=None) -> QuerySet[Post]:
    qs = (Post.objects.filter(deleted_at__isnull=True, author__is_active=True)
          .select_related("author"))
    if viewer is not None and viewer.is_authenticated:
        liked = Like.objects.filter(post=OuterRef("pk"), user=viewer)
        return qs.annotate(liked_by_me=Exists(liked))
    return qs.annotate(liked_by_me=Value(False, output_field=BooleanField()))


def post_feed(*, viewer=None) -> QuerySet[Post]:
    """Newest first (the API pages it with a cursor on created_at, then id)."""
    return post_visible_queryset(viewer=viewer).order_by("-created_at", "-id")


def post_list_by_author(*, author_id: int, viewer=None) -> QuerySet[Post]:
    return post_feed(viewer=viewer).filter(author_id=author_id)


def post_get(*, post_id: int, viewer=None) -> Post:
    """Raises Post.DoesNotExist for a missing, deleted or hidden post."""
    return post_visible_queryset(viewer=viewer).get(pk=post_id)


def comment_list(*, post_id: int) -> QuerySet[Comment]:
    return (Comment.objects.filter(post_id=post_id, post__deleted_at__isnull=True,
                                   post__author__is_active=True)
            .select_related("author").order_by("-created_at", "-id"))


def comment_get(*, comment_id: int, post_id: int) -> Comment:
    return (Comment.objects.select_related("post")
            .get(pk=comment_id, post_id=post_id, post__deleted_at__isnull=True,
                 post__author__is_active=True))


def viewer_key(*, user, ip: str | None, user_agent: str) -> str:
    """Who is viewing, for the view-count rule: the user id, or for an anonymous client a keyed
    hash of its IP and user agent (the raw address is never stored)."""
    if user is not None and user.is_authenticated:
        return f"u:{user.pk}"
    key = hashlib.sha256(b"showoff.viewer:" + settings.SECRET_KEY.encode()).digest()
    digest = hmac.new(key, f"{ip or '-'}|{user_agent}".encode(), hashlib.sha256).hexdigest()
    return f"a:{digest[:40]}"
