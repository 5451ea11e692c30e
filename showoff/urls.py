from __future__ import annotations

from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import (
    SpectacularAPIView,
    SpectacularRedocView,
    SpectacularSwaggerView,
)

from media import apis as media_apis

from . import drf, health, metrics

api_patterns: list = [
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("redoc/", SpectacularRedocView.as_view(url_name="schema"), name="api-redoc"),
    path("", include("accounts.urls")),
    path("", include("posts.urls")),
    path("", include("social.urls")),
    path("search/", include("search.urls")),
    path("feed/", include("feeds.urls")),
    path("coins/", include("coins.urls")),
    path("media/", include("media.urls")),
    path("notifications/", include("notifications.urls")),
    path("analytics/", include("analytics.urls")),
    # Last: whatever no view matched is a JSON 404, with DEBUG on too (showoff/drf.py).
    re_path(r"^(?P<unmatched>.*)$", drf.api_not_found),
]

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics.metrics_view, name="metrics"),
    # The admin's event pipeline page (relay/admin_pipeline.py), before the admin's catch-all.
    path("admin/pipeline/", include("relay.admin_pipeline")),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/", include(api_patterns)),
    # Public images (avatars) at stable URLs, in every environment (media/storage.py).
    path("media/<path:name>", media_apis.serve_public, name="public-media"),
]

# JSON for /api/ paths that match no view (an id that is not a number, a typo).
handler404 = "showoff.drf.page_not_found"
handler500 = "showoff.drf.server_error"
