"""Storage configuration: local by default, any S3-compatible endpoint by environment.

No S3 server is reachable here, so the S3 case checks what can be checked offline: the backend
built from the settings and the presigned URLs it signs (signing is local to boto3).
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.files.storage import FileSystemStorage

from media.storage import file_url, video_storage


def test_local_storage_is_the_default(settings, tmp_path):
    settings.MEDIA_STORAGE_LOCATION = str(tmp_path)
    storage = video_storage()
    assert isinstance(storage, FileSystemStorage)
    assert storage.location == str(tmp_path)
    assert file_url("videos/k/poster.jpg").startswith("/api/media/files/")


def test_s3_compatible_storage_from_settings_signs_urls(settings):
    from storages.backends.s3 import S3Storage

    settings.MEDIA_STORAGE = "s3"
    settings.MEDIA_S3_BUCKET = "showoff-videos"
    settings.MEDIA_S3_ENDPOINT_URL = "http://minio.internal:9000"
    settings.MEDIA_S3_REGION = "us-east-1"
    settings.MEDIA_S3_ACCESS_KEY_ID = "AKIAEXAMPLE"
    settings.MEDIA_S3_SECRET_ACCESS_KEY = "not-a-real-secret"
    settings.MEDIA_S3_PREFIX = "media"
    settings.MEDIA_URL_EXPIRE_SECONDS = 600

    storage = video_storage()
    url = urlparse(file_url("videos/k/720p.mp4"))

    assert isinstance(storage, S3Storage)
    assert (storage.bucket_name, storage.location, storage.file_overwrite) == (
        "showoff-videos", "media", False)
    assert (url.scheme, url.netloc, url.path) == (
        "http", "minio.internal:9000", "/showoff-videos/media/videos/k/720p.mp4")
    query = parse_qs(url.query)
    assert query["X-Amz-Expires"] == ["600"]
    assert query["X-Amz-Credential"][0].startswith("AKIAEXAMPLE/")
    assert len(query["X-Amz-Signature"][0]) == 64


def test_s3_behind_a_cdn_gives_plain_urls(settings):
    settings.MEDIA_STORAGE = "s3"
    settings.MEDIA_S3_BUCKET = "showoff-videos"
    settings.MEDIA_S3_CUSTOM_DOMAIN = "cdn.showoff.life"
    assert file_url("videos/k/720p.mp4") == "https://cdn.showoff.life/videos/k/720p.mp4"


def test_misconfigured_storage_names_the_fix(settings):
    settings.MEDIA_STORAGE = "s3"
    settings.MEDIA_S3_BUCKET = ""
    with pytest.raises(ImproperlyConfigured, match="MEDIA_S3_BUCKET"):
        video_storage()
    settings.MEDIA_STORAGE = "ftp"
    with pytest.raises(ImproperlyConfigured, match="use 'local' or 's3'"):
        video_storage()


def test_a_public_avatar_on_s3_is_a_redirect_to_a_fresh_presigned_url(settings, monkeypatch):
    # given: S3 storage (no S3 server here: the object is said to exist)
    from rest_framework.test import APIClient
    from storages.backends.s3 import S3Storage

    settings.MEDIA_STORAGE = "s3"
    settings.MEDIA_S3_BUCKET = "showoff-videos"
    settings.MEDIA_S3_ENDPOINT_URL = "http://minio.internal:9000"
    settings.MEDIA_S3_REGION = "us-east-1"
    settings.MEDIA_S3_ACCESS_KEY_ID = "AKIAEXAMPLE"
    settings.MEDIA_S3_SECRET_ACCESS_KEY = "not-a-real-secret"
    settings.MEDIA_URL_EXPIRE_SECONDS = 600
    monkeypatch.setattr(S3Storage, "exists", lambda self, name: name == "avatars/7/2.png")
    # when: the stable URL the API hands out is fetched
    resp = APIClient().get("/media/avatars/7/2.png")
    # then: a redirect to a signed URL, cached for less than its life
    assert resp.status_code == 302
    target = urlparse(resp["Location"])
    assert (target.netloc, target.path) == ("minio.internal:9000",
                                            "/showoff-videos/avatars/7/2.png")
    assert parse_qs(target.query)["X-Amz-Expires"] == ["600"]
    assert resp["Cache-Control"] == "public, max-age=300"
    # and a file outside the public folder is not served, signed or not
    assert APIClient().get("/media/videos/k/source.mp4").status_code == 404
