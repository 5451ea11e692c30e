"""Admin: the moderation queue (reports: hide the content or dismiss) and read-only views of
follows and blocks. Every decision goes through social.services, so it writes its events."""

from __future__ import annotations

from django.contrib import admin, messages
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html

from posts.admin import ReadOnlyAdmin as _ReadOnly

from . import services
from .models import Block, Follow, Report


@admin.register(Report)
class ReportAdmin(_ReadOnly):
    list_display = ("id", "status", "target_type", "target_link", "target_user", "reason",
                    "reporter", "created_at", "resolved_at", "resolved_by")
    list_filter = ("status", "target_type", "reason", "created_at")
    search_fields = ("=target_id", "reporter__username", "target_user__username", "details")
    list_select_related = ("reporter", "target_user", "resolved_by")
    readonly_fields = ("reporter", "target_type", "target_id", "target_link", "target_user",
                       "reason", "details", "status", "created_at", "resolved_at",
                       "resolved_by")
    ordering = ("status", "created_at")
    actions = ["hide_content", "dismiss"]

    def has_change_permission(self, request, obj=None) -> bool:
        # The change page is a read-only detail; decisions are the two actions.
        return request.user.has_perm("social.change_report")

    @admin.display(description="reported content")
    def target_link(self, report: Report):
        names = {"post": "admin:posts_post_change", "comment": "admin:posts_comment_change",
                 "user": "admin:accounts_user_change"}
        try:
            url = reverse(names[report.target_type], args=[report.target_id])
        except NoReverseMatch:
            return f"{report.target_type} {report.target_id}"
        return format_html('<a href="{}">{} {}</a>', url, report.target_type, report.target_id)

    def _decide(self, request, queryset, hide: bool) -> None:
        resolved = 0
        for report in queryset.filter(status=Report.Status.OPEN).order_by("pk"):
            resolved += services.report_resolve(report=report, operator=request.user, hide=hide)
        what = "Hid the reported content" if hide else "Dismissed"
        self.message_user(request, f"{what}: {resolved} report(s) resolved (every open report "
                          "of the same content is resolved with it).", messages.SUCCESS)

    @admin.action(description="Hide the reported content (posts and comments hidden from "
                  "everyone; a reported user deactivated)", permissions=["change"])
    def hide_content(self, request, queryset):
        self._decide(request, queryset, hide=True)

    @admin.action(description="Dismiss the selected reports (nothing hidden)",
                  permissions=["change"])
    def dismiss(self, request, queryset):
        self._decide(request, queryset, hide=False)


@admin.register(Follow)
class FollowAdmin(_ReadOnly):
    list_display = ("id", "follower", "followee", "created_at")
    search_fields = ("follower__username", "followee__username")
    list_select_related = ("follower", "followee")
    raw_id_fields = ("follower", "followee")


@admin.register(Block)
class BlockAdmin(_ReadOnly):
    list_display = ("id", "blocker", "blocked", "created_at")
    search_fields = ("blocker__username", "blocked__username")
    list_select_related = ("blocker", "blocked")
