"""Videos, their renditions and the transcoding job of each.

A video's life: `uploaded` (source stored, `video.uploaded` written) → `processing` (a worker
holds the job) → `ready` (renditions, poster and previews recorded) or `failed` (with a reason
the owner can read). Only the admin's retry takes a failed video back to `uploaded`.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import models


class Video(models.Model):
    class Status(models.TextChoices):
        UPLOADED = "uploaded"
        PROCESSING = "processing"
        READY = "ready"
        FAILED = "failed"

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="videos"
    )
    # Storage folder of every file of this video: not guessable, unlike the integer id.
    key = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    title = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.UPLOADED)
    failure_reason = models.TextField(blank=True)

    # The upload, as stored and as probed (the client's name is kept only for display).
    source_name = models.CharField(max_length=500)
    original_filename = models.CharField(max_length=255, blank=True)
    size_bytes = models.BigIntegerField()
    container = models.CharField(max_length=100)
    duration_seconds = models.FloatField()
    # Display dimensions (rotation applied), as the viewer sees the picture.
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    rotation = models.SmallIntegerField(default=0)
    frame_rate = models.FloatField(null=True)
    video_codec = models.CharField(max_length=50)
    audio_codec = models.CharField(max_length=50, blank=True)
    source_bitrate = models.BigIntegerField(null=True)

    # Results of the transcode that won (storage names).
    poster_name = models.CharField(max_length=500, blank=True)
    poster_width = models.PositiveIntegerField(null=True)
    poster_height = models.PositiveIntegerField(null=True)
    # [{"name": storage name, "at": seconds into the video}, ...]
    previews = models.JSONField(default=list, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    ready_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "media_video"
        indexes = [
            models.Index(fields=["owner", "-created_at"], name="media_video_owner_created"),
        ]

    def __str__(self) -> str:
        return f"video {self.pk} ({self.status})"

    @property
    def is_ready(self) -> bool:
        return self.status == self.Status.READY


class Rendition(models.Model):
    """One rung of the ladder: an H.264 + AAC MP4 with `faststart`, probed after encoding."""

    video = models.ForeignKey(Video, on_delete=models.CASCADE, related_name="renditions")
    name = models.CharField(max_length=20)  # "240p", "720p": by the short side
    storage_name = models.CharField(max_length=500)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    crf = models.PositiveSmallIntegerField()
    video_codec = models.CharField(max_length=50)
    audio_codec = models.CharField(max_length=50, blank=True)
    duration_seconds = models.FloatField()
    bitrate = models.BigIntegerField()  # bits per second, whole file
    size_bytes = models.BigIntegerField()
    encode_seconds = models.FloatField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "media_rendition"
        ordering = ["height", "width"]
        constraints = [
            models.UniqueConstraint(fields=["video", "name"], name="media_rendition_once"),
        ]

    def __str__(self) -> str:
        return f"{self.name} of video {self.video_id}"


class TranscodeJob(models.Model):
    """The work of turning one upload into renditions: one row per video, ever.

    Recorded by the `media` consumer when `video.uploaded` arrives (the unique video makes a
    replay a no-op) and run by Celery. A run first *claims* the job (attempt + 1, a fresh
    `lease`), heartbeats while ffmpeg works, and writes its results only if it still holds the
    lease, so a run repeated by a retry, a crash or a duplicate message ends with one set of
    renditions. A running job whose heartbeat stops is swept by Celery beat and retried.
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    video = models.OneToOneField(Video, on_delete=models.CASCADE, related_name="job")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    # The video.uploaded event that recorded this job.
    source_event_id = models.UUIDField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    lease = models.UUIDField(null=True, blank=True)
    step = models.CharField(max_length=100, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    last_error = models.TextField(blank=True)
    # [{"attempt": n, "error": "...", "at": iso time}, ...]
    errors = models.JSONField(default=list, blank=True)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "media_transcode_job"
        indexes = [
            models.Index(fields=["status", "heartbeat_at"], name="media_job_status_heartbeat"),
        ]

    def __str__(self) -> str:
        return f"transcode job {self.pk} of video {self.video_id} ({self.status})"

    def is_stale(self, now: datetime) -> bool:
        """A running job whose worker stopped heartbeating (killed, lost, hung)."""
        if self.status != self.Status.RUNNING:
            return False
        last = self.heartbeat_at or self.started_at
        return last is None or now - last > timedelta(seconds=settings.MEDIA_JOB_STALE_SECONDS)


class UploadSession(models.Model):
    """A resumable upload: the client sends byte ranges, then completes it into a Video."""

    class Status(models.TextChoices):
        OPEN = "open"
        COMPLETED = "completed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="upload_sessions"
    )
    title = models.CharField(max_length=200, blank=True)
    filename = models.CharField(max_length=255, blank=True)
    size_bytes = models.BigIntegerField()
    received_bytes = models.BigIntegerField(default=0)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    video = models.OneToOneField(Video, null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="upload_session")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()

    class Meta:
        db_table = "media_upload_session"

    def __str__(self) -> str:
        return f"upload {self.id} ({self.received_bytes}/{self.size_bytes})"
