"""Admin: fan-out jobs (what the workers are doing, what waits) and celebrities; read-only,
since both are derived from posts and follows by the feeds consumer and `run_fanout`."""

from __future__ import annotations

from django.contrib import admin

from posts.admin import ReadOnlyAdmin

from .models import Celebrity, FanoutJob


@admin.register(FanoutJob)
class FanoutJobAdmin(ReadOnlyAdmin):
    list_display = ("id", "post_id", "author_id", "rows_written", "chunks",
                    "next_follower_id", "created_at", "updated_at", "done_at")
    list_filter = (("done_at", admin.EmptyFieldListFilter), "created_at")
    search_fields = ("=post_id", "=author_id")
    ordering = ("-id",)


@admin.register(Celebrity)
class CelebrityAdmin(ReadOnlyAdmin):
    list_display = ("author_id", "since")
    search_fields = ("=author_id",)
