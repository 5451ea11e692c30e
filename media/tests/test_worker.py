"""Real Celery workers (subprocesses on the Redis broker, a queue of this test's own): the
whole pipeline through the relay and the consumer runtime, and a worker killed mid-encode."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from io import StringIO
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.core.management import call_command
from django.db import transaction

from media.handlers import record_transcode_job
from media.models import Rendition, TranscodeJob, Video
from media.tasks import sweep_transcode_jobs
from outbox.models import OutboxEvent
from relay.kafka import make_admin, topic_name
from relay.testing import delete_topics

from .conftest import consumed, files_under, inspect_jpeg, inspect_mp4, upload, worker_env

pytestmark = pytest.mark.django_db(transaction=True)

BASE_DIR = Path(settings.BASE_DIR)


def wait_for(predicate: Callable[[], object], *, timeout: float, what: str,
             every: float = 0.1) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Worker:
    def __init__(self, env: dict[str, str], log: Path):
        self.log = log
        queue = env["MEDIA_CELERY_QUEUE"]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "showoff", "worker", "-Q", queue,
             "--concurrency", "1", "--pool", "prefork", "--without-gossip", "--without-mingle",
             "--without-heartbeat", "-n", f"{queue}-{uuid.uuid4().hex[:6]}@%h",
             "--loglevel", "INFO"],
            cwd=BASE_DIR, env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT,  # noqa: SIM115
            start_new_session=True,  # its own process group: kill -9 takes ffmpeg with it
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self) -> None:
        wait_for(lambda: " ready." in self.output() or self.proc.poll() is not None,
                 timeout=60, what="the Celery worker to start")
        assert self.proc.poll() is None, self.output()

    def ffmpeg_pids(self) -> list[int]:
        pids = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                if os.getpgid(int(entry)) != self.proc.pid:
                    continue
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except (ProcessLookupError, FileNotFoundError, PermissionError):
                continue
            if b"ffmpeg" in cmdline.split(b"\0")[0]:
                pids.append(int(entry))
        return pids

    def kill9(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(15)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                self.kill9()


@pytest.fixture
def workers(media_settings, tmp_path):
    started: list[Worker] = []

    def start(**extra: str) -> Worker:
        worker = Worker(worker_env(media_settings, **extra),
                        tmp_path / f"worker-{len(started)}.log")
        started.append(worker)
        worker.wait_ready()
        return worker

    yield start
    for worker in started:
        worker.stop()
    # Leave nothing of this test's queue in the shared Redis (a killed worker's unacked
    # message included).
    queue = media_settings.MEDIA_CELERY_QUEUE
    r = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    r.delete(queue, f"_kombu.binding.{queue}")
    for tag, raw in r.hgetall("unacked").items():
        try:
            routing_key = json.loads(raw)[2]
        except (ValueError, IndexError):
            continue
        if routing_key == queue:
            r.hdel("unacked", tag)
            r.zrem("unacked_index", tag)


def _check_outputs(video: Video, storage_root: Path, *, duration: float) -> None:
    for r in video.renditions.all():
        probed = inspect_mp4(storage_root / r.storage_name)
        assert (probed["video_codec"], probed["audio_codec"]) == ("h264", "aac")
        assert (probed["width"], probed["height"]) == (r.width, r.height)
        assert abs(probed["duration"] - duration) < 0.15
        assert probed["frames"] == round(duration * 25)
        assert probed["faststart"] is True
    poster = inspect_jpeg(storage_root / video.poster_name)
    assert (poster["magic"], poster["width"], poster["height"]) == (
        True, video.poster_width, video.poster_height)


@pytest.fixture
def pipeline_topics(kafka_prefix, settings):
    """Every topic the relay and consumers need, under this test's prefix; deleted after."""
    settings.KAFKA_TOPIC_PARTITIONS = 1
    call_command("kafka", "create-topics", stdout=StringIO())
    yield
    admin = make_admin("media-test-admin")
    delete_topics([t for t in admin.list_topics(timeout=10).topics if t.startswith(kafka_prefix)])


def test_upload_to_ready_through_relay_consumer_and_a_celery_worker(
        api, user, make_clip, storage_root, workers, pipeline_topics, read_committed):
    # given: the topics of this test, and a worker on this test's queue
    workers()

    # when: a clip is uploaded, the relay delivers video.uploaded, the media consumer handles it
    video_id = upload(api, make_clip("640x360", 2)).json()["id"]
    call_command("run_relay", "--once")
    call_command("consume", "video-processing", "--consumer", "media", "--max-records", "1",
                 "--poll-timeout", "0.2", "--from-beginning")

    # then: the worker makes it ready
    wait_for(lambda: Video.objects.get(pk=video_id).status in ("ready", "failed"),
             timeout=90, what="the video to be transcoded")
    video = Video.objects.get(pk=video_id)
    assert video.status == "ready", (video.failure_reason, video.job.errors)
    assert [(r.name, r.width, r.height) for r in video.renditions.all()] == [
        ("240p", 426, 240), ("360p", 640, 360)]
    _check_outputs(video, storage_root, duration=2.0)
    assert (video.job.status, video.job.attempts) == ("succeeded", 1)
    assert video.job.worker.startswith(f"{settings.MEDIA_CELERY_QUEUE}-")

    # and: the relay carries the outcome to Kafka, in order, keyed by the video
    call_command("run_relay", "--once")
    records = [r for r in read_committed([topic_name("video-processing")])]
    assert [(r.header("ce_type"), r.key) for r in records] == [
        ("video.uploaded", str(video_id).encode()),
        ("video.transcoded", str(video_id).encode()),
        ("video.thumbnail_generated", str(video_id).encode()),
    ]
    transcoded = json.loads(records[1].value)
    assert (transcoded["owner_id"], transcoded["attempt"]) == (user.pk, 1)

    # and: the owner's API shows it with working links
    body = api.get(f"/api/media/videos/{video_id}/").json()
    assert body["status"] == "ready"
    assert [r["name"] for r in body["renditions"]] == ["240p", "360p"]


def test_a_worker_killed_mid_encode_is_swept_and_the_job_completes_once(
        api, make_clip, storage_root, workers, media_settings, tmp_path):
    # given: a slow encoder so the kill lands inside ffmpeg; heartbeats every half second
    victim = workers(MEDIA_X264_PRESET="veryslow", MEDIA_JOB_HEARTBEAT_SECONDS="0.5")
    video_id = upload(api, make_clip("640x360", 3)).json()["id"]
    event = OutboxEvent.objects.get(type="video.uploaded")
    with transaction.atomic():
        record_transcode_job(consumed(event))  # queued to the worker when this commits

    # when: the worker and its ffmpeg are killed -9 while encoding
    wait_for(lambda: TranscodeJob.objects.get(video_id=video_id).step.startswith("encoding")
             and victim.ffmpeg_pids(), timeout=60, what="ffmpeg to be encoding", every=0.05)
    victim.kill9()
    job = TranscodeJob.objects.get(video_id=video_id)
    assert (job.status, job.attempts) == ("running", 1)
    assert job.step.startswith("encoding")
    assert Video.objects.get(pk=video_id).status == "processing"

    # and: a new worker comes up and beat's sweep runs once the heartbeat is stale
    workers(MEDIA_JOB_STALE_SECONDS="2")
    time.sleep(2.5)
    media_settings.MEDIA_JOB_STALE_SECONDS = 2
    sweep_transcode_jobs.apply_async(queue=media_settings.MEDIA_CELERY_QUEUE)

    # then: the second attempt completes, once
    wait_for(lambda: Video.objects.get(pk=video_id).status in ("ready", "failed"),
             timeout=90, what="the retried job to finish")
    video = Video.objects.get(pk=video_id)
    job = TranscodeJob.objects.get(video_id=video_id)
    assert video.status == "ready", (video.failure_reason, job.errors)
    assert (job.status, job.attempts) == ("succeeded", 2)
    assert [e["attempt"] for e in job.errors] == [1]
    assert "stopped reporting progress" in job.errors[0]["error"]
    assert Rendition.objects.filter(video_id=video_id).count() == 2
    _check_outputs(video, storage_root, duration=3.0)
    assert [e.payload["attempt"] for e in OutboxEvent.objects.filter(type="video.transcoded")
            ] == [2]
    assert OutboxEvent.objects.filter(type="video.thumbnail_generated").count() == 1
    # only the winning run's files (and the source) remain
    run_dirs = {Path(name).parts[2] for name in files_under(storage_root)
                if Path(name).parts[2].startswith("run-")}
    assert run_dirs == {Path(video.poster_name).parts[2]}
