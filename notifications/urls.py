from __future__ import annotations

from django.urls import path

from . import apis

app_name = "notifications"

urlpatterns = [
    path("", apis.NotificationListApi.as_view(), name="list"),
    path("unread-count/", apis.UnreadCountApi.as_view(), name="unread-count"),
    path("read-all/", apis.MarkAllReadApi.as_view(), name="read-all"),
    path("<int:notification_id>/read/", apis.MarkReadApi.as_view(), name="read"),
    path("preferences/", apis.PreferencesApi.as_view(), name="preferences"),
    path("devices/", apis.DeviceListApi.as_view(), name="devices"),
    path("devices/<int:device_id>/", apis.DeviceDetailApi.as_view(), name="device-detail"),
    path("unsubscribe/<str:token>/", apis.UnsubscribeApi.as_view(), name="unsubscribe"),
    path("bulk/", apis.BulkListApi.as_view(), name="bulk"),
    path("bulk/<int:bulk_id>/", apis.BulkDetailApi.as_view(), name="bulk-detail"),
]
