"""Analytics admin: the operator dashboard (charts and their CSV) and read-only tables.

The dashboard is the change list of the `Dashboard` proxy model, so it sits in the admin's
index and navigation and goes through `admin_site.admin_view` (signed-in, active staff only;
anyone else is sent to the admin login)."""

from __future__ import annotations

import csv

from django.contrib import admin
from django.http import Http404, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path
from django.utils import timezone

from showoff import charts

from . import selectors
from .models import Dashboard, PostStats, RollupRun
from .services import utc_day

DEFAULT_DAYS, MAX_DAYS = 30, 366


def _days(request) -> int:
    try:
        days = int(request.GET.get("days", DEFAULT_DAYS))
    except ValueError:
        days = DEFAULT_DAYS
    return min(max(days, 2), MAX_DAYS)


def _charts(request) -> tuple[int, list[charts.Chart]]:
    days = _days(request)
    end = utc_day(timezone.now())
    return days, selectors.dashboard_charts(start=selectors.dashboard_start(end, days), end=end)


class StaffOnly:
    def has_module_permission(self, request) -> bool:
        return request.user.is_active and request.user.is_staff

    def has_view_permission(self, request, obj=None) -> bool:
        return request.user.is_active and request.user.is_staff

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Dashboard)
class DashboardAdmin(StaffOnly, admin.ModelAdmin):
    def get_urls(self):
        return [
            path("csv/<slug:chart>/", self.admin_site.admin_view(self.csv_view),
                 name="analytics_dashboard_csv"),
            *super().get_urls(),
        ]

    def changelist_view(self, request, extra_context=None):
        days, chart_list = _charts(request)
        end = utc_day(timezone.now())
        return TemplateResponse(request, "admin/analytics/dashboard.html", {
            **self.admin_site.each_context(request),
            "title": "Analytics dashboard",
            "opts": self.model._meta,
            "days": days,
            "day_choices": (7, 30, 90, 365),
            "charts": [{"chart": c, "svg": charts.render(c)} for c in chart_list],
            "chart_css": charts.CSS,
            "last_rollup": selectors.last_rollup(),
            "perf_tables": [
                (title, selectors.perf_breakdown(metric=metric, day=end))
                for metric, title in (("app_start", "App start"), ("api_latency", "API latency"))
            ],
            "today": end,
        })

    def csv_view(self, request, chart: str):
        if not self.has_view_permission(request):
            raise Http404
        days, chart_list = _charts(request)
        found = next((c for c in chart_list if c.slug == chart), None)
        if found is None:
            raise Http404(f"No chart {chart!r}.")
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = (
            f'attachment; filename="analytics-{chart}-{days}d.csv"')
        writer = csv.writer(response)
        for row in found.rows():
            writer.writerow(["" if v is None else v for v in row])
        return response


@admin.register(PostStats)
class PostStatsAdmin(StaffOnly, admin.ModelAdmin):
    list_display = ["post_id", "views", "unique_viewers", "impressions", "likes", "unlikes",
                    "comments", "tips", "watch_time_ms", "updated_at"]
    search_fields = ["=post_id"]
    ordering = ["-views"]


@admin.register(RollupRun)
class RollupRunAdmin(StaffOnly, admin.ModelAdmin):
    list_display = ["started_at", "finished_at", "days"]
    ordering = ["-started_at"]
