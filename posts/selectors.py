"""Post reads. Every query here hides deleted and moderator-hidden posts, posts of inactive or
deleted accounts, and, for a signed-in viewer, posts and comments of users in a block with them
(either way)."""

from __future__ import annotations

import hashlib
import hmac

from django.conf import settings
from django.db.models import BooleanField, Exists, OuterRef, QuerySet, Value

from social.selectors import exclude_blocked

from .models import Comment, Like, Post


def post_visible_queryset(*, viewer=None) -> QuerySet[Post]:
    qs = (Post.objects.filter(deleted_at__isnull=True, hidden_at__isnull=True,
                              author__is_active=True)
          .select_related("author"))
    if viewer is not None and viewer.is_authenticated:
        liked = Like.objects.filter(post=OuterRef("pk"), user=viewer)
        qs = exclude_blocked(qs, viewer, "author_id")
        return qs.annotate(liked_by_me=Exists(liked))
    return qs.annotate(liked_by_me=Value(False, output_field=BooleanField()))


def post_count_by_author(*, author_id: int) -> int:
    """The visible posts of one author (the profile's count; index-backed, post_author_feed)."""
    return Post.objects.filter(author_id=author_id, deleted_at__isnull=True,
                               hidden_at__isnull=True).count()


def post_feed(*, viewer=None) -> QuerySet[Post]:
    """Newest first (the API pages it with a cursor on created_at, then id)."""
    return post_visible_queryset(viewer=viewer).order_by("-created_at", "-id")


def post_list_by_author(*, author_id: int, viewer=None) -> QuerySet[Post]:
    return post_feed(viewer=viewer).filter(author_id=author_id)


def post_get(*, post_id: int, viewer=None) -> Post:
    """Raises Post.DoesNotExist for a missing, deleted or hidden post."""
    return post_visible_queryset(viewer=viewer).get(pk=post_id)


_VISIBLE_COMMENT = {"hidden_at__isnull": True, "post__deleted_at__isnull": True,
                    "post__hidden_at__isnull": True, "post__author__is_active": True}


def comment_list(*, post_id: int, viewer=None) -> QuerySet[Comment]:
    qs = (Comment.objects.filter(post_id=post_id, **_VISIBLE_COMMENT)
          .select_related("author").order_by("-created_at", "-id"))
    return exclude_blocked(qs, viewer, "author_id")


def comment_get(*, comment_id: int, post_id: int) -> Comment:
    return (Comment.objects.select_related("post")
            .get(pk=comment_id, post_id=post_id, **_VISIBLE_COMMENT))


def comment_visible_get(*, comment_id: int, viewer=None) -> Comment | None:
    """The comment if `viewer` may see it (its post too, neither author in a block with
    them); None otherwise."""
    qs = Comment.objects.select_related("post").filter(pk=comment_id, **_VISIBLE_COMMENT)
    qs = exclude_blocked(exclude_blocked(qs, viewer, "author_id"), viewer, "post__author_id")
    return qs.first()


def viewer_key(*, user, ip: str | None, user_agent: str) -> str:
    """Who is viewing, for the view-count rule: the user id, or for an anonymous client a keyed
    hash of its IP and user agent (the raw address is never stored)."""
    if user is not None and user.is_authenticated:
        return f"u:{user.pk}"
    key = hashlib.sha256(b"showoff.viewer:" + settings.SECRET_KEY.encode()).digest()
    digest = hmac.new(key, f"{ip or '-'}|{user_agent}".encode(), hashlib.sha256).hexdigest()
    return f"a:{digest[:40]}"
