"""The transcoding task body on real clips: ladder, probing of the outputs, idempotency,
failures, retries and the stuck-job sweep."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from media import services
from media.handlers import record_transcode_job
from media.models import Rendition, TranscodeJob, Video
from outbox.models import OutboxEvent

from .conftest import consumed, files_under, inspect_jpeg, inspect_mp4, upload

pytestmark = pytest.mark.django_db


def _uploaded_job(api, clip: Path, django_capture_on_commit_callbacks) -> TranscodeJob:
    response = upload(api, clip)
    assert response.status_code == 201, response.content
    event = OutboxEvent.objects.get(type="video.uploaded", key=str(response.json()["id"]))
    with django_capture_on_commit_callbacks(execute=False):
        record_transcode_job(consumed(event))
    return TranscodeJob.objects.get(video_id=response.json()["id"])


def _events(type_: str) -> list[dict]:
    return [e.payload for e in OutboxEvent.objects.filter(type=type_).order_by("id")]


def test_landscape_clip_becomes_a_ladder_with_poster_and_previews(
        api, user, make_clip, storage_root, django_capture_on_commit_callbacks):
    # given: a 2 s 640x360 upload with audio and its recorded job
    job = _uploaded_job(api, make_clip("640x360", 2), django_capture_on_commit_callbacks)

    # when: the task body runs
    outcome = services.transcode_job_run(job_id=job.pk, worker="test")

    # then: ready, with the 240p and 360p rungs (never above the source's 360)
    assert outcome == "succeeded"
    video = Video.objects.get(pk=job.video_id)
    job.refresh_from_db()
    assert (video.status, video.failure_reason) == ("ready", "")
    assert (job.status, job.attempts, job.step, job.lease, job.errors) == (
        "succeeded", 1, "done", None, [])
    renditions = list(video.renditions.order_by("height"))
    assert [(r.name, r.width, r.height, r.crf) for r in renditions] == [
        ("240p", 426, 240, 28), ("360p", 640, 360, 26)]
    for r in renditions:
        path = storage_root / r.storage_name
        probed = inspect_mp4(path)
        assert probed["video_codec"] == "h264"
        assert probed["audio_codec"] == "aac"
        assert (probed["width"], probed["height"], probed["rotation"]) == (r.width, r.height, 0)
        assert abs(probed["duration"] - 2.0) < 0.15
        assert probed["frames"] == 50  # 2 s at 25 fps, every one decodable
        assert probed["faststart"] is True
        assert r.size_bytes == path.stat().st_size
        assert r.bitrate == round(r.size_bytes * 8 / r.duration_seconds)
        assert (r.video_codec, r.audio_codec) == ("h264", "aac")

    poster = inspect_jpeg(storage_root / video.poster_name)
    assert poster == {"magic": True, "codec": "mjpeg", "width": 640, "height": 360}
    assert (video.poster_width, video.poster_height) == (640, 360)
    assert [p["at"] for p in video.previews] == [0.333, 1.0, 1.667]
    for p in video.previews:
        assert inspect_jpeg(storage_root / p["name"]) == {
            "magic": True, "codec": "mjpeg", "width": 160, "height": 90}

    # and the events, with owner_id for consumers
    assert _events("video.transcoded") == [{
        "video_id": video.pk, "owner_id": user.pk, "attempt": 1, "duration_seconds": 2.0,
        "renditions": [
            {"name": r.name, "width": r.width, "height": r.height, "bitrate": r.bitrate,
             "size_bytes": r.size_bytes, "storage_name": r.storage_name}
            for r in renditions
        ],
    }]
    assert _events("video.thumbnail_generated") == [{
        "video_id": video.pk, "owner_id": user.pk, "poster_storage_name": video.poster_name,
        "width": 640, "height": 360, "preview_count": 3,
    }]
    assert _events("video.failed") == []


def test_rotated_phone_clip_is_transcoded_upright(api, make_clip, storage_root,
                                                  django_capture_on_commit_callbacks):
    # given: 320x240 coded pixels with a 90° display rotation (a phone held upright)
    job = _uploaded_job(api, make_clip("320x240", 2, rotation=90),
                        django_capture_on_commit_callbacks)
    video = Video.objects.get(pk=job.video_id)
    assert (video.width, video.height, video.rotation) == (240, 320, 90)

    # when
    assert services.transcode_job_run(job_id=job.pk) == "succeeded"

    # then: one 240p rung in portrait, the rotation applied to the pixels
    (r,) = Video.objects.get(pk=job.video_id).renditions.all()
    probed = inspect_mp4(storage_root / r.storage_name)
    assert (r.name, probed["width"], probed["height"], probed["rotation"]) == (
        "240p", 240, 320, 0)
    video.refresh_from_db()
    poster = inspect_jpeg(storage_root / video.poster_name)
    assert (poster["width"], poster["height"]) == (240, 320)


def test_portrait_source_gets_portrait_rungs_and_tiny_source_one_rung(
        api, make_clip, storage_root, django_capture_on_commit_callbacks):
    # given: a native portrait 360x640 clip without audio, and a 160x120 one
    portrait = _uploaded_job(api, make_clip("360x640", 2, audio=False),
                             django_capture_on_commit_callbacks)
    tiny = _uploaded_job(api, make_clip("160x120", 1), django_capture_on_commit_callbacks)

    # when
    assert services.transcode_job_run(job_id=portrait.pk) == "succeeded"
    assert services.transcode_job_run(job_id=tiny.pk) == "succeeded"

    # then
    p = Video.objects.get(pk=portrait.video_id)
    assert [(r.name, r.width, r.height, r.audio_codec) for r in p.renditions.all()] == [
        ("240p", 240, 426, ""), ("360p", 360, 640, "")]
    assert inspect_mp4(storage_root / p.renditions.last().storage_name)["audio_codec"] is None
    t = Video.objects.get(pk=tiny.video_id)
    assert [(r.name, r.width, r.height) for r in t.renditions.all()] == [("120p", 160, 120)]


def test_anamorphic_source_is_shown_with_square_pixels(api, make_clip, storage_root,
                                                      django_capture_on_commit_callbacks):
    # given: 320x240 coded with 4:3 pixels, i.e. a 16:9 picture
    job = _uploaded_job(api, make_clip("320x240", 1, sar="4/3"),
                        django_capture_on_commit_callbacks)
    video = Video.objects.get(pk=job.video_id)
    assert (video.width, video.height) == (427, 240)

    # when
    assert services.transcode_job_run(job_id=job.pk) == "succeeded"

    # then: the rendition is 16:9 in square pixels
    (r,) = Video.objects.get(pk=job.video_id).renditions.all()
    probed = inspect_mp4(storage_root / r.storage_name)
    assert (r.name, probed["width"], probed["height"]) == ("240p", 426, 240)


def test_running_the_task_twice_leaves_one_set_of_renditions(
        api, make_clip, storage_root, django_capture_on_commit_callbacks):
    # given: a job that already succeeded
    job = _uploaded_job(api, make_clip("320x240", 2), django_capture_on_commit_callbacks)
    assert services.transcode_job_run(job_id=job.pk) == "succeeded"
    files = files_under(storage_root)

    # when: the same message is delivered again
    outcome = services.transcode_job_run(job_id=job.pk)

    # then: nothing happens
    assert outcome == "skipped"
    assert Rendition.objects.filter(video_id=job.video_id).count() == 1
    assert files_under(storage_root) == files
    assert len(_events("video.transcoded")) == 1
    job.refresh_from_db()
    assert job.attempts == 1


def test_a_run_presumed_dead_cannot_overwrite_the_run_that_replaced_it(
        api, make_clip, storage_root, settings, django_capture_on_commit_callbacks):
    # given: run A claims the job, then stops heartbeating (paused, partitioned)
    settings.MEDIA_JOB_STALE_SECONDS = 60
    job = _uploaded_job(api, make_clip("320x240", 2), django_capture_on_commit_callbacks)
    claim_a = services._job_claim(job_id=job.pk, worker="A")
    out_a = services._transcode(claim_a)
    TranscodeJob.objects.filter(pk=job.pk).update(
        heartbeat_at=timezone.now() - timedelta(seconds=61))

    # when: a redelivery (run B) takes over and finishes, then A tries to finish too
    with django_capture_on_commit_callbacks(execute=True):
        assert services.transcode_job_run(job_id=job.pk, worker="B") == "succeeded"
    outcome_a = services._job_complete(claim_a, out_a)

    # then: B's renditions stand, A's files are gone, one transcoded event
    assert outcome_a == "superseded"
    job.refresh_from_db()
    assert job.attempts == 2
    assert [e["attempt"] for e in job.errors] == [1]
    assert "stopped reporting progress" in job.errors[0]["error"]
    (r,) = Rendition.objects.filter(video_id=job.video_id)
    assert r.storage_name.startswith(f"videos/{job.video.key}/run-")
    assert not (storage_root / claim_a.prefix).exists()
    runs = [p.name for p in (storage_root / f"videos/{job.video.key}").iterdir() if p.is_dir()]
    assert runs == [r.storage_name.split("/")[2]]
    assert [e["attempt"] for e in _events("video.transcoded")] == [2]


def test_ffmpeg_failures_are_retried_then_the_video_fails_with_the_reason(
        api, user, make_clip, storage_root, settings, django_capture_on_commit_callbacks):
    # given: an encoder setting ffmpeg refuses, two attempts allowed
    settings.MEDIA_X264_PRESET = "no-such-preset"
    settings.MEDIA_JOB_MAX_ATTEMPTS = 2
    settings.MEDIA_JOB_RETRY_BACKOFF_SECONDS = 5
    job = _uploaded_job(api, make_clip("320x240", 2), django_capture_on_commit_callbacks)

    # when: the first attempt fails
    with django_capture_on_commit_callbacks(execute=False) as queued:
        first = services.transcode_job_run(job_id=job.pk)

    # then: a retry is queued after the backoff; the video is still processing
    assert first == "retrying"
    assert len(queued) == 1
    job.refresh_from_db()
    assert (job.status, job.attempts) == ("pending", 1)
    assert "ffmpeg exited with" in job.last_error
    assert 4 < (job.next_attempt_at - timezone.now()).total_seconds() <= 5
    assert Video.objects.get(pk=job.video_id).status == "processing"

    # when: the second attempt fails too
    second = services.transcode_job_run(job_id=job.pk)

    # then: the video fails with a reason; no files of either attempt remain
    assert second == "failed"
    job.refresh_from_db()
    video = Video.objects.get(pk=job.video_id)
    assert (job.status, job.attempts, len(job.errors)) == ("failed", 2, 2)
    assert video.status == "failed"
    assert video.failure_reason.startswith(
        "Transcoding failed 2 times; the last error was: FFmpegError: ffmpeg exited with")
    assert _events("video.failed") == [{
        "video_id": video.pk, "owner_id": user.pk, "reason": video.failure_reason,
        "attempts": 2}]
    assert files_under(storage_root) == [video.source_name]
    assert Rendition.objects.count() == 0


def test_a_missing_source_fails_at_once(api, make_clip, storage_root,
                                        django_capture_on_commit_callbacks):
    # given: the stored upload vanished
    job = _uploaded_job(api, make_clip("320x240", 2), django_capture_on_commit_callbacks)
    (storage_root / job.video.source_name).unlink()

    # when
    outcome = services.transcode_job_run(job_id=job.pk)

    # then: no retry can help
    assert outcome == "failed"
    job.refresh_from_db()
    assert (job.status, job.attempts) == ("failed", 1)
    assert Video.objects.get(pk=job.video_id).failure_reason == (
        "The uploaded file is missing from storage; upload the video again.")


def test_sweep_retries_a_job_whose_worker_stopped_heartbeating(
        api, make_clip, settings, django_capture_on_commit_callbacks):
    # given: a running job whose last heartbeat is older than the stale timeout
    settings.MEDIA_JOB_STALE_SECONDS = 30
    settings.MEDIA_JOB_MAX_ATTEMPTS = 2
    job = _uploaded_job(api, make_clip("320x240", 2), django_capture_on_commit_callbacks)
    services._job_claim(job_id=job.pk, worker="gone")
    TranscodeJob.objects.filter(pk=job.pk).update(
        heartbeat_at=timezone.now() - timedelta(seconds=31), step="encoding 240p")

    # when: beat's sweep runs
    with django_capture_on_commit_callbacks(execute=False) as queued:
        counts = services.transcode_jobs_sweep()

    # then: the attempt is recorded as lost and the job queued again
    assert counts == {"retried": 1, "failed": 0, "requeued": 0, "uploads_pruned": 0}
    assert len(queued) == 1
    job.refresh_from_db()
    assert (job.status, job.attempts, job.lease) == ("pending", 1, None)
    assert "during encoding 240p" in job.last_error

    # when: the retry is lost too and the sweep finds it again
    services._job_claim(job_id=job.pk, worker="gone again")
    TranscodeJob.objects.filter(pk=job.pk).update(
        heartbeat_at=timezone.now() - timedelta(seconds=31))
    counts = services.transcode_jobs_sweep()

    # then: attempts are exhausted: the video fails
    assert counts["failed"] == 1
    job.refresh_from_db()
    assert (job.status, job.attempts) == ("failed", 2)
    assert Video.objects.get(pk=job.video_id).status == "failed"
    assert len(_events("video.failed")) == 1


def test_sweep_leaves_live_jobs_alone_and_requeues_lost_messages(
        api, make_clip, settings, django_capture_on_commit_callbacks):
    # given: one job running with a fresh heartbeat, one pending whose message was lost
    settings.MEDIA_JOB_REQUEUE_SECONDS = 600
    live = _uploaded_job(api, make_clip("320x240", 2), django_capture_on_commit_callbacks)
    services._job_claim(job_id=live.pk, worker="alive")
    lost = _uploaded_job(api, make_clip("320x240", 2), django_capture_on_commit_callbacks)
    TranscodeJob.objects.filter(pk=lost.pk).update(
        enqueued_at=timezone.now() - timedelta(seconds=601))

    # when
    with django_capture_on_commit_callbacks(execute=False) as queued:
        counts = services.transcode_jobs_sweep()

    # then
    assert counts == {"retried": 0, "failed": 0, "requeued": 1, "uploads_pruned": 0}
    assert len(queued) == 1
    live.refresh_from_db()
    assert (live.status, live.attempts, live.worker) == ("running", 1, "alive")
    # a duplicate delivery while the live run holds the lease does nothing
    assert services.transcode_job_run(job_id=live.pk) == "skipped"


def test_admin_retry_starts_a_failed_job_over(api, make_clip, settings,
                                              django_capture_on_commit_callbacks):
    # given: a job failed for good
    settings.MEDIA_X264_PRESET = "no-such-preset"
    settings.MEDIA_JOB_MAX_ATTEMPTS = 1
    job = _uploaded_job(api, make_clip("320x240", 2), django_capture_on_commit_callbacks)
    assert services.transcode_job_run(job_id=job.pk) == "failed"

    # when: an operator retries it with the cause fixed
    settings.MEDIA_X264_PRESET = "ultrafast"
    with django_capture_on_commit_callbacks(execute=False) as queued:
        assert services.transcode_job_retry(job_id=job.pk) is True
    assert len(queued) == 1
    video = Video.objects.get(pk=job.video_id)
    assert (video.status, video.failure_reason) == ("uploaded", "")

    # then: the next run succeeds; the old error stays in the history
    assert services.transcode_job_run(job_id=job.pk) == "succeeded"
    job.refresh_from_db()
    assert (job.status, job.attempts, len(job.errors)) == ("succeeded", 1, 1)
    assert services.transcode_job_retry(job_id=job.pk) is False


def test_celery_beat_schedules_the_sweep(settings):
    from media.tasks import sweep_transcode_jobs, transcode_video

    entry = settings.CELERY_BEAT_SCHEDULE["media-sweep-stuck-jobs"]
    assert entry == {"task": sweep_transcode_jobs.name,
                     "schedule": settings.MEDIA_SWEEP_INTERVAL_SECONDS}
    assert (sweep_transcode_jobs.name, transcode_video.name) == (
        "media.sweep_transcode_jobs", "media.transcode_video")
