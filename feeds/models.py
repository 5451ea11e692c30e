"""Home feeds, fanned out on write (docs/feeds.md).

Written only by the `feeds` consumer (feeds/handlers.py) and the fan-out worker
(`manage.py run_fanout`, feeds/fanout.py); read by feeds.selectors.

Post, author and owner ids are plain integers, not foreign keys: the rows are a derived cache
of posts and follows, rebuilt from events, and a foreign key would make every post deletion
and account deletion scan ten million timeline rows for the cascade.
"""

from __future__ import annotations

from django.db import models


class TimelineEntry(models.Model):
    """Post `post_id` (by `author_id`) is in `owner_id`'s home feed.

    The primary key (owner, post) is both the dedupe key (fan-out, backfill and retries insert
    with ON CONFLICT DO NOTHING) and the feed's read order: post ids grow with publication, so
    a page is one backward range scan of the owner's part of the index.
    """

    pk = models.CompositePrimaryKey("owner_id", "post_id")
    owner_id = models.BigIntegerField()
    post_id = models.BigIntegerField()
    author_id = models.BigIntegerField()

    class Meta:
        indexes = [models.Index(fields=["post_id"], name="timeline_by_post")]
        verbose_name_plural = "timeline entries"

    def __str__(self) -> str:
        return f"post {self.post_id} in {self.owner_id}'s feed"


class Celebrity(models.Model):
    """An author with more than FEEDS_CELEBRITY_FOLLOWERS followers: their posts are not fanned
    out but merged into each follower's feed at read time. Leaves this table (and their recent
    posts are fanned out after all) when the followers drop below 90% of the threshold."""

    author_id = models.BigIntegerField(primary_key=True)
    since = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "celebrities"

    def __str__(self) -> str:
        return f"celebrity {self.author_id}"


class FanoutJob(models.Model):
    """Writing one post into its author's followers' feeds, a chunk at a time.

    Each chunk is its own transaction that inserts the timeline rows of the next
    FEEDS_FANOUT_CHUNK followers (by follower id, after `next_follower_id`) and moves the
    cursor: a crash repeats at most one chunk, and the repeat inserts nothing new. The worker
    always takes the job it touched longest ago, so a post with 100,000 followers takes turns
    with every other post instead of holding them back.
    """

    post_id = models.BigIntegerField()
    author_id = models.BigIntegerField()
    next_follower_id = models.BigIntegerField(default=0)
    rows_written = models.BigIntegerField(default=0)
    chunks = models.IntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now_add=True)
    done_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["updated_at"], name="fanout_pending",
                         condition=models.Q(done_at__isnull=True)),
            models.Index(fields=["post_id"], name="fanout_by_post"),
        ]

    def __str__(self) -> str:
        state = "done" if self.done_at else f"at follower {self.next_follower_id}"
        return f"fan-out of post {self.post_id} ({state})"


class TrendingPost(models.Model):
    """The trending feed: the top FEEDS_TRENDING_SIZE posts of the last 24 hours by engagement
    (formula in feeds.services.trending_refresh and docs/feeds.md), replaced as a whole every
    FEEDS_TRENDING_REFRESH_SECONDS by the `feeds.refresh_trending` Celery beat task."""

    post_id = models.BigIntegerField(primary_key=True)
    score = models.FloatField()
    refreshed_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["-score", "-post_id"], name="trending_order")]

    def __str__(self) -> str:
        return f"post {self.post_id}: {self.score:.3f}"
