"""Every URL the API hands out resolves, fetched over real HTTP from the web process as
`make run` starts it (the Procfile's runserver, development settings, DEBUG on) and as the
production containers start it (gunicorn, production settings, DEBUG off): avatars, video
renditions, thumbnails and previews, resumable-upload URLs, and pagination links.

The URLs are not listed by hand: every string that is a URL in any JSON answer of the walk
below is fetched, so a new URL field is covered the day it appears."""

from __future__ import annotations

import io
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from django.db import transaction
from PIL import Image

from media import services as media_services
from media.models import Video

from .servers import web_server

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "a-long-Passphrase-1"


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (10, 120, 200)).save(buf, "PNG")
    return buf.getvalue()


def _urls(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value] if value.startswith(("http://", "https://")) else []
    if isinstance(value, dict):
        return [u for v in value.values() for u in _urls(v)]
    if isinstance(value, list):
        return [u for v in value for u in _urls(v)]
    return []


class Walk:
    """A client that remembers every URL found in the JSON it receives."""

    def __init__(self, base: str):
        self.base = base
        self.http = requests.Session()
        self.found: dict[str, str] = {}  # url -> where it was seen

    def call(self, method: str, path: str, expect: int = 200, **kwargs) -> Any:
        url = path if path.startswith("http") else f"{self.base}{path}"
        resp = self.http.request(method, url, timeout=30, **kwargs)
        assert resp.status_code == expect, (method, path, resp.status_code, resp.text[:500])
        assert resp.headers["Content-Type"] == "application/json", (path, resp.headers)
        body = resp.json() if resp.content else None
        for found in _urls(body):
            self.found.setdefault(found, f"{method} {path}")
        return body

    def login(self, username: str) -> None:
        tokens = self.call("POST", "/api/auth/login/",
                           json={"login": username, "password": PASSWORD})
        self.http.headers["Authorization"] = f"Bearer {tokens['access']}"


def _read_everything(walk: Walk, *, user_id: int, video_id: int, post_id: int,
                     upload_id: str) -> None:
    walk.call("GET", "/api/me/")
    walk.call("GET", f"/api/users/{user_id}/")
    walk.call("GET", f"/api/users/{user_id}/posts/", params={"page_size": 1})
    walk.call("GET", "/api/posts/", params={"page_size": 1})
    walk.call("GET", f"/api/posts/{post_id}/comments/", params={"page_size": 1})
    walk.call("GET", "/api/media/videos/")
    walk.call("GET", f"/api/media/videos/{video_id}/")
    walk.call("GET", f"/api/media/uploads/{upload_id}/")


def _fetch_all(walk: Walk, storage: Path, avatar: bytes) -> set[str]:
    """Fetch every URL found, as a client would; returns the kinds of URL met."""
    kinds = set()
    player = requests.Session()  # no credentials: a player or an <img> tag
    for url, seen_at in sorted(walk.found.items()):
        assert url.startswith(walk.base + "/"), f"{url} (from {seen_at}) is not on this site"
        path = url[len(walk.base):]
        if path.startswith("/media/avatars/"):
            resp = player.get(url, timeout=30)
            assert resp.status_code == 200, (url, seen_at, resp.status_code, resp.text[:300])
            assert (resp.headers["Content-Type"], resp.content) == ("image/png", avatar)
            kinds.add("avatar")
        elif path.startswith("/api/media/files/"):
            resp = player.get(url, timeout=30)
            assert resp.status_code == 200, (url, seen_at, resp.status_code, resp.text[:300])
            assert resp.headers["Content-Type"] in ("video/mp4", "image/jpeg"), url
            stored = [p for p in storage.rglob("*") if p.is_file()
                      and p.read_bytes() == resp.content]
            assert stored, f"{url} served bytes that are no stored file"
            kinds.add(resp.headers["Content-Type"])
            if resp.headers["Content-Type"] == "video/mp4":
                part = player.get(url, headers={"Range": "bytes=0-99"}, timeout=30)
                assert (part.status_code, part.content) == (206, resp.content[:100])
        elif path.startswith("/api/media/uploads/"):
            walk.call("GET", url)
            kinds.add("upload")
        else:  # a page of a list
            assert "cursor=" in path, url
            page = walk.call("GET", url)
            assert len(page["results"]) == 1
            kinds.add("page")
    return kinds


def test_every_url_the_api_hands_out_resolves_under_make_run_and_in_the_container(
        tmp_path, settings, make_clip):
    # given: the storage the web processes and this test share, fast encodes, and a Celery
    # queue nobody consumes (this test runs the transcode itself)
    storage = tmp_path / "media"
    storage.mkdir()
    settings.MEDIA_STORAGE = "local"
    settings.MEDIA_STORAGE_LOCATION = str(storage)
    settings.MEDIA_X264_PRESET = "ultrafast"
    settings.MEDIA_FFMPEG_THREADS = 1
    settings.MEDIA_PREVIEW_FRAMES = 2
    settings.MEDIA_CELERY_QUEUE = f"media-test-{uuid.uuid4().hex[:12]}"
    avatar = _png()
    clip = make_clip("320x240", 1)

    # when: a client uses the API under `make run`
    with web_server("make-run", media_dir=storage) as base:
        walk = Walk(base)
        me = walk.call("POST", "/api/auth/register/", expect=201,
                       json={"username": "urls", "email": "urls@example.com",
                             "password": PASSWORD})
        walk.login("urls")
        walk.call("PUT", "/api/me/avatar/", files={"avatar": ("me.png", avatar, "image/png")})
        with open(clip, "rb") as fh:
            video = walk.call("POST", "/api/media/videos/", expect=201,
                              files={"file": ("clip.mp4", fh, "video/mp4")})
        with transaction.atomic():
            job, _ = media_services.transcode_job_record(video_id=video["id"])
        assert media_services.transcode_job_run(job_id=job.pk) == "succeeded"
        posts = [walk.call("POST", "/api/posts/", expect=201,
                           json={"text": f"post {i}", "video_id": video["id"]})
                 for i in range(2)]
        for i in range(2):
            walk.call("POST", f"/api/posts/{posts[0]['id']}/comments/", expect=201,
                      json={"text": f"comment {i}"})
        data = clip.read_bytes()
        upload = walk.call("POST", "/api/media/uploads/", expect=201,
                           json={"size": len(data), "filename": "clip.mp4"})
        walk.call("PUT", upload["upload_url"], data=data[:1000],
                  headers={"Content-Range": f"bytes 0-999/{len(data)}",
                           "Content-Type": "application/octet-stream"})
        ids = {"user_id": me["id"], "video_id": video["id"], "post_id": posts[0]["id"],
               "upload_id": upload["id"]}
        _read_everything(walk, **ids)
        # then: each URL answers what it promises
        kinds = _fetch_all(walk, storage, avatar)

    # and: the production container serves the same URLs
    with web_server("container", media_dir=storage, workers=2) as base:
        prod = Walk(base)
        prod.login("urls")
        _read_everything(prod, **ids)
        prod_kinds = _fetch_all(prod, storage, avatar)

    # the walk met every kind of URL (a kind missing would mean the test proves less)
    ready = Video.objects.get(pk=video["id"])
    assert ready.status == "ready" and len(ready.previews) == 2
    expected = {"avatar", "video/mp4", "image/jpeg", "upload", "page"}
    assert kinds == expected
    assert prod_kinds == expected
    redis.Redis.from_url(settings.CELERY_BROKER_URL).delete(settings.MEDIA_CELERY_QUEUE)
