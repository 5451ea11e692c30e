"""Fixtures of the media tests: real clips made by ffmpeg's test sources, a private storage
folder, tiny encodes."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest
from django.db import connection
from rest_framework.test import APIClient

from accounts.models import User
from media.ffmpeg import ffmpeg_binary
from outbox.models import OutboxEvent
from relay.registry import ConsumedEvent

_CLIPS: dict[tuple, Path] = {}


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("clips")


@pytest.fixture(scope="session")
def make_clip(clip_dir):
    """`make_clip(size="320x240", seconds=2, audio=True, rotation=None)`: an H.264 + AAC MP4
    of testsrc (and a 440 Hz sine), made once per session."""

    def make(size: str = "320x240", seconds: float = 2, *, audio: bool = True,
             rotation: int | None = None, rate: int = 25, faststart: bool = True,
             container: str = "mp4", sar: str | None = None) -> Path:
        key = (size, seconds, audio, rotation, rate, faststart, container, sar)
        if key in _CLIPS:
            return _CLIPS[key]
        name = f"clip-{len(_CLIPS)}.{container}"
        out = clip_dir / name
        cmd = [ffmpeg_binary(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
               "-f", "lavfi", "-i", f"testsrc=size={size}:rate={rate}:duration={seconds}"]
        if audio:
            cmd += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}"]
        if sar:
            cmd += ["-vf", f"setsar={sar}"]
        if container == "webm":
            cmd += ["-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "300k"]
        else:
            cmd += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
        if audio:
            cmd += ["-c:a", "aac" if container == "mp4" else "libopus", "-shortest"]
        if container == "mp4" and faststart:
            cmd += ["-movflags", "+faststart"]
        subprocess.run([*cmd, str(out)], check=True)
        if rotation is not None:
            rotated = clip_dir / f"rot{rotation}-{name}"
            subprocess.run([ffmpeg_binary(), "-nostdin", "-hide_banner", "-loglevel", "error",
                            "-y", "-display_rotation:v:0", str(rotation), "-i", str(out),
                            "-c", "copy", "-movflags", "+faststart", str(rotated)], check=True)
            out = rotated
        _CLIPS[key] = out
        return out

    return make


@pytest.fixture(autouse=True)
def media_settings(settings, tmp_path):
    """Each test stores into its own folder, encodes with the fastest preset on one thread and
    queues into a queue no worker of anyone else's consumes."""
    settings.MEDIA_STORAGE = "local"
    settings.MEDIA_STORAGE_LOCATION = str(tmp_path / "storage")
    settings.MEDIA_UPLOAD_CHUNK_DIR = str(tmp_path / "chunks")
    settings.MEDIA_X264_PRESET = "ultrafast"
    settings.MEDIA_FFMPEG_THREADS = 1
    settings.MEDIA_PREVIEW_FRAMES = 3
    settings.MEDIA_PREVIEW_SHORT_SIDE = 90
    settings.MEDIA_CELERY_QUEUE = f"media-test-{uuid.uuid4().hex[:12]}"
    return settings


@pytest.fixture
def storage_root(media_settings) -> Path:
    return Path(media_settings.MEDIA_STORAGE_LOCATION)


@pytest.fixture
def user(db):
    return User.objects.create_user(username="maker", email="maker@example.com",
                                    password="pw-maker-123")


@pytest.fixture
def other_user(db):
    return User.objects.create_user(username="viewer", email="viewer@example.com",
                                    password="pw-viewer-123")


@pytest.fixture
def api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def upload(client: APIClient, path: Path, *, name: str | None = None, title: str = ""):
    with open(path, "rb") as fh:
        return client.post("/api/media/videos/", {"file": fh, "title": title}
                           if name is None else {"file": _named(fh, name), "title": title},
                           format="multipart")


def _named(fh, name: str):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, fh.read(), content_type="video/mp4")


def errors_of(response) -> dict:
    """Field errors, whichever envelope the project's exception handler uses."""
    body = response.json()
    return body.get("errors", body)


def consumed(event: OutboxEvent) -> ConsumedEvent:
    """The ConsumedEvent the consumer runtime builds from this outbox row's record."""
    return ConsumedEvent(id=event.event_id, type=event.type, data=event.payload,
                         topic=event.topic, key=event.key,
                         subject=event.headers.get("ce_subject"), partition=0, offset=0,
                         headers=dict(event.headers))


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def tests_database_url() -> str:
    """The URL of the database this test runs on, for a worker subprocess."""
    s = connection.settings_dict
    auth = s["USER"] + (f":{s['PASSWORD']}" if s.get("PASSWORD") else "")
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def worker_env(media_settings, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "DJANGO_SETTINGS_MODULE": "showoff.settings.test",
        "DATABASE_URL": tests_database_url(),
        "MEDIA_STORAGE": "local",
        "MEDIA_STORAGE_LOCATION": media_settings.MEDIA_STORAGE_LOCATION,
        "MEDIA_X264_PRESET": media_settings.MEDIA_X264_PRESET,
        "MEDIA_FFMPEG_THREADS": str(media_settings.MEDIA_FFMPEG_THREADS),
        "MEDIA_PREVIEW_FRAMES": str(media_settings.MEDIA_PREVIEW_FRAMES),
        "MEDIA_PREVIEW_SHORT_SIDE": str(media_settings.MEDIA_PREVIEW_SHORT_SIDE),
        "MEDIA_CELERY_QUEUE": media_settings.MEDIA_CELERY_QUEUE,
    })
    env.update(extra)
    return env


def inspect_mp4(path: Path) -> dict:
    """What a player would find: codecs, display size, duration, every frame decodable, and
    whether the index (moov) comes before the media data (faststart)."""
    import av

    head = path.read_bytes()
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        a = c.streams.audio[0] if c.streams.audio else None
        decoded = 0
        rotation = 0
        for frame in c.decode(v):
            if decoded == 0:
                rotation = int(frame.rotation or 0)
            decoded += 1
        return {
            "format": c.format.name,
            "video_codec": v.codec_context.name,
            "audio_codec": a.codec_context.name if a else None,
            "width": v.codec_context.width,
            "height": v.codec_context.height,
            "rotation": rotation,
            "duration": c.duration / 1_000_000,
            "frames": decoded,
            "faststart": 0 <= head.find(b"moov") < head.find(b"mdat"),
        }


def inspect_jpeg(path: Path) -> dict:
    import av

    data = path.read_bytes()
    with av.open(str(path)) as c:
        frame = next(c.decode(video=0))
        return {"magic": data[:3] == b"\xff\xd8\xff",
                "codec": c.streams.video[0].codec_context.name,
                "width": frame.width, "height": frame.height}
