from __future__ import annotations

from django.urls import path

from . import apis

urlpatterns = [
    path("", apis.SearchApi.as_view(), name="search"),
    path("users/", apis.SearchUsersApi.as_view(), name="search-users"),
    path("posts/", apis.SearchPostsApi.as_view(), name="search-posts"),
]
