from __future__ import annotations

from django.urls import path

from . import apis

urlpatterns = [
    path("events/", apis.ClientEventsApi.as_view(), name="analytics-events"),
    path("posts/<int:post_id>/stats/", apis.PostStatsApi.as_view(), name="analytics-post-stats"),
    path("metrics/", apis.MetricListApi.as_view(), name="analytics-metrics"),
    path("metrics/<str:metric>/", apis.MetricSeriesApi.as_view(), name="analytics-metric"),
    path("performance/<str:metric>/", apis.PerformanceApi.as_view(),
         name="analytics-performance"),
]
