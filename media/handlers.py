"""Kafka handlers of the `media` consumer (`manage.py consume video-processing`)."""

from __future__ import annotations

from relay.registry import ConsumedEvent, PermanentError, handler

from . import services


@handler("media", "video.uploaded")
def record_transcode_job(event: ConsumedEvent) -> None:
    """Record the video's transcoding job and queue it for Celery after the record's commit.

    The runtime's inbox skips a redelivered event; the one-job-per-video constraint makes even
    a replay past the inbox (or a second video.uploaded) a no-op. The Kafka poll loop never
    waits on ffmpeg: the job runs in a Celery worker.
    """
    video_id = event.data.get("video_id")
    try:
        services.transcode_job_record(video_id=int(video_id), event_id=event.id)
    except (TypeError, ValueError):
        raise PermanentError(f"video.uploaded without a usable video_id: {video_id!r}")
    except services.VideoMissing as exc:
        raise PermanentError(str(exc))
