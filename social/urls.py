from __future__ import annotations

from django.urls import path

from . import apis

urlpatterns = [
    path("users/<int:user_id>/follow/", apis.FollowApi.as_view(), name="user-follow"),
    path("users/<int:user_id>/followers/", apis.FollowersApi.as_view(), name="user-followers"),
    path("users/<int:user_id>/following/", apis.FollowingApi.as_view(), name="user-following"),
    path("users/<int:user_id>/block/", apis.BlockApi.as_view(), name="user-block"),
    path("me/blocks/", apis.BlocksApi.as_view(), name="me-blocks"),
    path("reports/", apis.ReportApi.as_view(), name="reports"),
]
