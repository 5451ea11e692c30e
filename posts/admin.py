"""Admin for posts, likes and comments. Counts and event-relevant fields are read-only: the
only writes offered go through posts.services, so each one also writes its event."""

from __future__ import annotations

from django.contrib import admin, messages
from django.http import Http404

from . import services
from .models import Comment, Like, Post, PostView


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Post)
class PostAdmin(ReadOnlyAdmin):
    list_display = ("id", "author", "short_text", "video_id", "like_count", "comment_count",
                    "view_count", "created_at", "deleted_at")
    list_filter = (("deleted_at", admin.EmptyFieldListFilter), "created_at")
    search_fields = ("text", "author__username", "=id")
    list_select_related = ("author",)
    readonly_fields = ("author", "text", "video_id", "like_count", "comment_count",
                       "view_count", "created_at", "updated_at", "deleted_at")
    date_hierarchy = "created_at"
    actions = ["soft_delete_selected"]

    @admin.display(description="text")
    def short_text(self, post: Post) -> str:
        return post.text[:80]

    @admin.action(description="Soft-delete selected posts (hides them, emits post.deleted)")
    def soft_delete_selected(self, request, queryset):
        done = 0
        for post in queryset.filter(deleted_at__isnull=True):
            try:
                services.post_delete(post=post, actor=request.user)
                done += 1
            except Http404:
                pass  # deleted meanwhile, or its author is inactive
        self.message_user(request, f"Soft-deleted {done} post(s).", messages.SUCCESS)


@admin.register(Comment)
class CommentAdmin(ReadOnlyAdmin):
    list_display = ("id", "post", "author", "short_text", "created_at")
    list_filter = ("created_at",)
    search_fields = ("text", "author__username", "=post__id")
    list_select_related = ("author", "post")
    readonly_fields = ("post", "author", "text", "created_at")
    actions = ["delete_selected_comments"]

    @admin.display(description="text")
    def short_text(self, comment: Comment) -> str:
        return comment.text[:80]

    @admin.action(description="Delete selected comments (counts corrected)")
    def delete_selected_comments(self, request, queryset):
        done = 0
        for comment in queryset.select_related("post"):
            try:
                services.comment_delete(comment=comment, actor=request.user)
                done += 1
            except Http404:
                pass
        self.message_user(request, f"Deleted {done} comment(s).", messages.SUCCESS)


@admin.register(Like)
class LikeAdmin(ReadOnlyAdmin):
    list_display = ("id", "post", "user", "created_at")
    list_filter = ("created_at",)
    search_fields = ("user__username", "=post__id")
    list_select_related = ("user", "post")
    readonly_fields = ("post", "user", "created_at")


@admin.register(PostView)
class PostViewAdmin(ReadOnlyAdmin):
    list_display = ("id", "post", "viewer", "viewer_key", "window", "created_at")
    list_filter = ("created_at",)
    search_fields = ("=post__id", "viewer__username")
    readonly_fields = ("post", "viewer", "viewer_key", "window", "created_at")
