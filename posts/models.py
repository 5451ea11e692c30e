from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


class PostQuerySet(models.QuerySet):
    def visible(self) -> PostQuerySet:
        """Not deleted and not hidden by a moderator."""
        return self.filter(deleted_at__isnull=True, hidden_at__isnull=True)


class Post(models.Model):
    """A post. Counts are kept on the row (updated in the same transaction as the like, comment
    or view that changes them), so feeds never count rows.

    A deleted post keeps its row (`deleted_at`), hidden from every feed and API. A post a
    moderator hid after a report (`hidden_at`, social.services.report_resolve) is hidden the
    same way: from feeds, search, counts and every API.
    """

    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                               related_name="posts")
    text = models.TextField(max_length=2000, blank=True)
    # The media app's video, once it exists: a plain nullable id for now, not a ForeignKey,
    # because media.Video is being built concurrently. Turn it into a FK in a later migration.
    video_id = models.BigIntegerField(null=True, blank=True)
    like_count = models.PositiveIntegerField(default=0)
    comment_count = models.PositiveIntegerField(default=0)
    view_count = models.PositiveBigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    deleted_at = models.DateTimeField(null=True, blank=True)
    hidden_at = models.DateTimeField(null=True, blank=True)

    objects = PostQuerySet.as_manager()

    class Meta:
        indexes = [
            models.Index(fields=["-created_at", "-id"], name="post_feed",
                         condition=Q(deleted_at__isnull=True)),
            models.Index(fields=["author", "-created_at", "-id"], name="post_author_feed",
                         condition=Q(deleted_at__isnull=True)),
            # The home feed merges a followed celebrity's posts at read time, newest (highest
            # id) first: one short backward range per celebrity (feeds.selectors).
            models.Index(fields=["author", "-id"], name="post_author_id",
                         condition=Q(deleted_at__isnull=True)),
        ]

    def __str__(self) -> str:
        return f"post {self.pk} by {self.author_id}"


class Like(models.Model):
    post = models.ForeignKey(Post, on_delete=models.CASCADE, related_name="likes")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="likes")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["post", "user"], name="like_once_per_user"),
        ]

    def __str__(self) -> str:
        return f"like of post {self.post_id} by {self.user_id}"


class Comment(models.Model):
    post = models.ForeignKey(Post, on_delete=models.CASCADE, related_name="comments")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                               related_name="comments")
    text = models.TextField(max_length=2000)
    created_at = models.DateTimeField(auto_now_add=True)
    # Hidden by a moderator after a report: out of every list and of the post's comment count.
    hidden_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["post", "-created_at", "-id"], name="comment_by_post")]

    def __str__(self) -> str:
        return f"comment {self.pk} on post {self.post_id}"


class PostView(models.Model):
    """One counted view: at most one per (post, viewer, window), enforced by the database.

    `viewer_key` is `u:<user id>` for a signed-in viewer, or `a:<keyed hash of IP and user
    agent>` for an anonymous one (the raw IP is not stored). `window` is the view time divided
    by POSTS_VIEW_WINDOW_SECONDS.
    """

    post = models.ForeignKey(Post, on_delete=models.CASCADE, related_name="views")
    viewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True,
                               blank=True, related_name="+")
    viewer_key = models.CharField(max_length=80)
    window = models.BigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["post", "viewer_key", "window"],
                                    name="view_once_per_window"),
        ]

    def __str__(self) -> str:
        return f"view of post {self.post_id} by {self.viewer_key}"
