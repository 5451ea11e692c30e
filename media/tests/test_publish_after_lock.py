"""Media services publish after locking the video row their events are keyed by
(DESIGN.md §3; see outbox/tests/lock_order.py for why and how it is checked)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from media import services
from media.models import TranscodeJob, Video
from outbox.tests.lock_order import assert_publishes_after_lock

pytestmark = pytest.mark.django_db(transaction=True)

LOCK_VIDEO = "SELECT 1 FROM media_video WHERE id = %s FOR NO KEY UPDATE"


def _video(owner) -> Video:
    return Video.objects.create(owner=owner, key=uuid.uuid4(), source_name="videos/x/source.mp4",
                                size_bytes=1000, container="mp4", duration_seconds=2.0,
                                width=320, height=240, video_codec="h264")


def _complete(claim):
    out = services.TranscodeOutput(
        renditions=[services.RenditionOutput(
            name="240p", storage_name=f"{claim.prefix}/240p.mp4", width=320, height=240,
            crf=28, video_codec="h264", audio_codec="aac", duration=2.0, bitrate=300_000,
            size_bytes=75_000, encode_seconds=0.5)],
        poster_name=f"{claim.prefix}/poster.jpg", poster_width=320, poster_height=240,
        previews=[])
    return lambda: services._job_complete(claim, out)


def _failed(claim):
    return lambda: services._job_attempt_failed(claim, reason="broken", permanent=True)


def _stale(job, settings):
    TranscodeJob.objects.filter(pk=job.pk).update(
        status=TranscodeJob.Status.RUNNING, attempts=settings.MEDIA_JOB_MAX_ATTEMPTS,
        lease=uuid.uuid4(), heartbeat_at=timezone.now() - timedelta(hours=1))
    return lambda: services.transcode_jobs_sweep()


CASES = {
    "video.transcoded": lambda job, settings: _complete(
        services._job_claim(job_id=job.pk, worker="w")),
    "video.thumbnail_generated": lambda job, settings: _complete(
        services._job_claim(job_id=job.pk, worker="w")),
    "video.failed:attempt": lambda job, settings: _failed(
        services._job_claim(job_id=job.pk, worker="w")),
    "video.failed:sweep": _stale,
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_media_services_publish_after_locking_the_video(monkeypatch, settings, user, case):
    # given: an uploaded video with its job, and the step about to run
    video = _video(user)
    job = TranscodeJob.objects.create(video=video)
    call = CASES[case](job, settings)
    # when / then: it waits for the video's row before it publishes
    assert_publishes_after_lock(monkeypatch, module=services, event_type=case.split(":")[0],
                                lock_sql=LOCK_VIDEO, lock_params=[video.pk], call=call)
