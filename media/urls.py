from __future__ import annotations

from django.urls import path

from . import apis

app_name = "media"

urlpatterns = [
    path("videos/", apis.VideoListCreateApi.as_view(), name="videos"),
    path("videos/<int:video_id>/", apis.VideoDetailApi.as_view(), name="video"),
    path("uploads/", apis.UploadSessionCreateApi.as_view(), name="uploads"),
    path("uploads/<uuid:session_id>/", apis.UploadSessionApi.as_view(), name="upload"),
    path("uploads/<uuid:session_id>/complete/", apis.UploadSessionCompleteApi.as_view(),
         name="upload-complete"),
    path("files/<str:token>", apis.FileApi.as_view(), name="file"),
]
