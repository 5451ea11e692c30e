"""Post writes. Each service is one transaction that also writes its `post.*` event.

Every event carries the actor, the post and the post's author, so consumers can notify the
author without a database lookup.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection, transaction
from django.db.models import F
from django.http import Http404
from django.utils import timezone

from outbox.services import Event, publish, publish_bulk
from social.selectors import blocked_between

from .models import Comment, Post, PostView

UNSET: Any = object()


def _now_iso(now) -> str:
    return now.isoformat().replace("+00:00", "Z")


def _event_data(post: Post, actor_id: int | None, **extra: Any) -> dict[str, Any]:
    return {"post_id": post.pk, "author_id": post.author_id, "actor_id": actor_id,
            "occurred_at": _now_iso(timezone.now()), **extra}


def _publish(event_type: str, post: Post, actor_id: int | None, **extra: Any) -> None:
    # Off only in bench/posts_create.py (a plain setting, never from the environment).
    if settings.POSTS_PUBLISH_EVENTS:
        publish(event_type, _event_data(post, actor_id, **extra))


def _lock_visible_post(post_id: int, actor_id: int | None = None) -> Post:
    """Lock the post row for this transaction; 404 when it is deleted or hidden, or when its
    author and `actor_id` are in a block (either way: the post is hidden from the actor).

    Likes, unlikes, comments and views of one post take this lock first, then touch their
    own rows: one lock order everywhere, so they cannot deadlock, and a post deleted
    concurrently cannot gain a like after its delete committed.
    """
    post = (Post.objects.select_for_update(of=("self",))
            .filter(pk=post_id, deleted_at__isnull=True, hidden_at__isnull=True,
                    author__is_active=True).first())
    if post is None or (actor_id is not None and blocked_between(actor_id, post.author_id)):
        raise Http404("No such post.")
    return post


def _check_video(video_id: int | None, owner) -> None:
    """A post may carry only its author's own video, once it is ready (media decides)."""
    if video_id is None:
        return
    if video_id < 1:
        raise ValidationError({"video_id": ["A video id is a positive integer."]})
    from media.selectors import video_attachable

    video_attachable(user=owner, video_id=video_id)


def post_create(*, author, text: str, video_id: int | None = None) -> Post:
    text = text.strip()
    _check_video(video_id, author)
    if not text and video_id is None:
        raise ValidationError({"text": ["A post needs text, a video, or both."]})
    with transaction.atomic():
        post = Post.objects.create(author=author, text=text, video_id=video_id)
        _publish("post.created", post, author.pk, text=post.text, video_id=post.video_id)
    return post


def _check_can_change(post: Post, actor) -> None:
    if post.author_id != actor.pk and not actor.is_staff:
        raise PermissionDenied("Only the author can change this post.")


def post_update(*, post: Post, actor, text: str = UNSET, video_id: int | None = UNSET) -> dict:
    """Edit the post; publishes `post.updated` with only the changed fields (none: no event)."""
    _check_can_change(post, actor)
    changed: dict[str, Any] = {}
    if text is not UNSET and text.strip() != post.text:
        changed["text"] = text.strip()
    if video_id is not UNSET and video_id != post.video_id:
        _check_video(video_id, post.author)
        changed["video_id"] = video_id
    if not changed:
        return {}
    if not changed.get("text", post.text) and changed.get("video_id", post.video_id) is None:
        raise ValidationError({"text": ["A post needs text, a video, or both."]})
    with transaction.atomic():
        locked = _lock_visible_post(post.pk)
        for field, value in changed.items():
            setattr(locked, field, value)
        locked.save(update_fields=[*changed, "updated_at"])
        _publish("post.updated", locked, actor.pk, changed=changed)
    for field, value in changed.items():
        setattr(post, field, value)
    post.updated_at = locked.updated_at
    return changed


def post_delete(*, post: Post, actor) -> None:
    """Soft delete: the row stays (for counts and audits) but is hidden everywhere."""
    _check_can_change(post, actor)
    with transaction.atomic():
        locked = _lock_visible_post(post.pk)
        locked.deleted_at = timezone.now()
        locked.save(update_fields=["deleted_at"])
        _publish("post.deleted", locked, actor.pk)
    post.deleted_at = locked.deleted_at


@dataclass(frozen=True)
class LikeResult:
    liked: bool
    like_count: int
    changed: bool


def post_like(*, post_id: int, user) -> LikeResult:
    """Like a post. Idempotent: a second like changes nothing and emits nothing.

    Safe under concurrency: the post row lock orders likes of one post, the unique
    (post, user) constraint makes a repeated like a no-op, and the count moves in the same
    transaction as the like row.
    """
    with transaction.atomic():
        post = _lock_visible_post(post_id, user.pk)
        with connection.cursor() as cur:
            cur.execute(
                "INSERT INTO posts_like (post_id, user_id, created_at) VALUES (%s, %s, now()) "
                "ON CONFLICT (post_id, user_id) DO NOTHING RETURNING id",
                [post.pk, user.pk],
            )
            inserted = cur.fetchone() is not None
        if not inserted:
            return LikeResult(liked=True, like_count=post.like_count, changed=False)
        Post.objects.filter(pk=post.pk).update(like_count=F("like_count") + 1)
        post.like_count += 1
        _publish("post.liked", post, user.pk, like_count=post.like_count)
    return LikeResult(liked=True, like_count=post.like_count, changed=True)


def post_unlike(*, post_id: int, user) -> LikeResult:
    """Withdraw a like. Idempotent: unliking a post not liked changes nothing."""
    with transaction.atomic():
        post = _lock_visible_post(post_id, user.pk)
        deleted, _ = post.likes.filter(user=user).delete()
        if not deleted:
            return LikeResult(liked=False, like_count=post.like_count, changed=False)
        Post.objects.filter(pk=post.pk).update(like_count=F("like_count") - 1)
        post.like_count -= 1
        _publish("post.unliked", post, user.pk, like_count=post.like_count)
    return LikeResult(liked=False, like_count=post.like_count, changed=True)


def comment_create(*, post_id: int, author, text: str) -> Comment:
    text = text.strip()
    if not text:
        raise ValidationError({"text": ["A comment cannot be empty."]})
    with transaction.atomic():
        post = _lock_visible_post(post_id, author.pk)
        comment = Comment.objects.create(post=post, author=author, text=text)
        Post.objects.filter(pk=post.pk).update(comment_count=F("comment_count") + 1)
        post.comment_count += 1
        _publish("post.commented", post, author.pk, comment_id=comment.pk, text=text,
                 comment_count=post.comment_count)
    return comment


def comment_delete(*, comment: Comment, actor) -> None:
    """The comment's author, or the post's author, may delete a comment."""
    if actor.pk not in (comment.author_id, comment.post.author_id) and not actor.is_staff:
        raise PermissionDenied("Only the comment's author or the post's author can delete it.")
    with transaction.atomic():
        post = _lock_visible_post(comment.post_id)
        deleted, _ = Comment.objects.filter(pk=comment.pk).delete()
        if deleted and comment.hidden_at is None:
            Post.objects.filter(pk=post.pk).update(comment_count=F("comment_count") - 1)


# --- moderation (social.services.report_resolve) --------------------------------------------


def post_hide(*, post_id: int, operator) -> bool:
    """Hide a post after a report: out of feeds, search and counts, like a deleted post, but
    kept (an operator can see it in the admin). Returns whether it changed."""
    with transaction.atomic():
        post = (Post.objects.select_for_update(of=("self",))
                .filter(pk=post_id, deleted_at__isnull=True, hidden_at__isnull=True).first())
        if post is None:
            return False
        post.hidden_at = timezone.now()
        post.save(update_fields=["hidden_at"])
        _publish("post.hidden", post, operator.pk if operator else post.author_id)
    return True


def comment_hide(*, comment_id: int, operator) -> bool:
    """Hide a comment after a report; the post's comment count drops by one."""
    with transaction.atomic():
        comment = Comment.objects.filter(pk=comment_id, hidden_at__isnull=True).first()
        if comment is None:
            return False
        post = Post.objects.select_for_update(of=("self",)).get(pk=comment.post_id)
        updated = Comment.objects.filter(pk=comment_id, hidden_at__isnull=True).update(
            hidden_at=timezone.now())
        if not updated:
            return False
        Post.objects.filter(pk=post.pk).update(comment_count=F("comment_count") - 1)
        post.comment_count -= 1
        _publish("comment.hidden", post, operator.pk if operator else comment.author_id,
                 comment_id=comment_id, comment_count=post.comment_count)
    return True


@dataclass(frozen=True)
class ViewResult:
    counted: bool
    view_count: int


def view_window(now=None) -> int:
    now = now or timezone.now()
    return int(now.timestamp()) // settings.POSTS_VIEW_WINDOW_SECONDS


def post_view_record(*, post_id: int, viewer, viewer_key: str) -> ViewResult:
    """Record a view. It counts (and emits `post.viewed`) at most once per viewer per post per
    window of POSTS_VIEW_WINDOW_SECONDS, and never for the post's own author."""
    viewer_id = viewer.pk if viewer is not None else None
    with transaction.atomic():
        post = _lock_visible_post(post_id, viewer_id)
        if viewer_id == post.author_id:
            return ViewResult(counted=False, view_count=post.view_count)
        _, created = PostView.objects.get_or_create(
            post=post, viewer_key=viewer_key, window=view_window(),
            defaults={"viewer_id": viewer_id},
        )
        if not created:
            return ViewResult(counted=False, view_count=post.view_count)
        Post.objects.filter(pk=post.pk).update(view_count=F("view_count") + 1)
        post.view_count += 1
        _publish("post.viewed", post, viewer_id, view_count=post.view_count)
    return ViewResult(counted=True, view_count=post.view_count)


def posts_erase_for_deleted_user(*, user) -> int:
    """For an account deletion (accounts.services.user_delete, inside its transaction): soft
    delete the user's posts with their text cleared (one `post.deleted` each) and delete the
    user's comments (counts corrected). Returns the number of posts deleted."""
    now = timezone.now()
    posts = list(Post.objects.select_for_update().filter(author=user, deleted_at__isnull=True)
                 .order_by("pk"))
    Post.objects.filter(pk__in=[p.pk for p in posts]).update(deleted_at=now, text="")
    if settings.POSTS_PUBLISH_EVENTS and posts:
        publish_bulk([Event("post.deleted", _event_data(p, user.pk)) for p in posts])
    per_post: dict[int, int] = {}
    for post_id in Comment.objects.filter(author=user).values_list("post_id", flat=True):
        per_post[post_id] = per_post.get(post_id, 0) + 1
    # Lock the posts in id order (as everywhere) before correcting their counts.
    list(Post.objects.select_for_update().filter(pk__in=per_post).order_by("pk")
         .values_list("pk", flat=True))
    for post_id, n in per_post.items():
        Post.objects.filter(pk=post_id).update(comment_count=F("comment_count") - n)
    Comment.objects.filter(author=user).delete()
    return len(posts)
