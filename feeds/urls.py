from __future__ import annotations

from django.urls import path

from . import apis

urlpatterns = [
    path("", apis.HomeFeedApi.as_view(), name="feed-home"),
    path("trending/", apis.TrendingFeedApi.as_view(), name="feed-trending"),
]
