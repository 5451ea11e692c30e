"""Writes of the media app: uploads, transcoding jobs, their runs, sweeps and retries.

Job protocol (DESIGN.md §4-5): the `media` consumer records one job per video and hands it to
Celery after commit. A run *claims* the job in a short transaction (attempt + 1, a fresh lease),
works outside any transaction while heartbeating, writes every output under a folder named by
its lease, and records results only if it still holds the lease. So whatever runs twice (a
duplicate message, a retry, a worker killed mid-encode and swept) ends with one set of
renditions, and a loser deletes its own files. Lock order everywhere: job, then video.
"""

from __future__ import annotations

import html
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import SuspiciousFileOperation
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from outbox.services import publish

from . import ffmpeg
from . import probe as probing
from . import storage as media_storage
from .models import Rendition, TranscodeJob, UploadSession, Video

logger = logging.getLogger(__name__)


class VideoRejected(ValueError):
    """An upload that is not an acceptable video; the message tells the uploader why."""

    def __init__(self, message: str, *, code: str):
        super().__init__(message)
        self.code = code


class VideoMissing(LookupError):
    pass


class PermanentTranscodeError(RuntimeError):
    """No retry can help (the source is gone or unreadable)."""


class LeaseLost(RuntimeError):
    """Another run took the job over (this one was presumed dead)."""


# --- uploads ----------------------------------------------------------------------------------


def human_size(n: int) -> str:
    if n < 1024 * 1024:
        return f"{n / 1024:.0f} KB"
    return f"{n / (1024 * 1024):.0f} MB"


def video_check_size(*, size: int) -> None:
    if size > settings.MEDIA_MAX_UPLOAD_BYTES:
        raise VideoRejected(
            f"The file is {human_size(size)}; videos can be at most "
            f"{human_size(settings.MEDIA_MAX_UPLOAD_BYTES)}.", code="too_large")
    if size <= 0:
        raise VideoRejected("The file is empty.", code="empty")


def _check_limits(info: probing.MediaInfo) -> None:
    if info.duration > settings.MEDIA_MAX_DURATION_SECONDS:
        raise VideoRejected(
            f"The video is {info.duration:.1f} s long; videos can be at most "
            f"{settings.MEDIA_MAX_DURATION_SECONDS:g} s.", code="too_long")
    if info.duration < settings.MEDIA_MIN_DURATION_SECONDS:
        raise VideoRejected(
            f"The video is {info.duration:.2f} s long; videos must last at least "
            f"{settings.MEDIA_MIN_DURATION_SECONDS:g} s.", code="too_short")
    if max(info.width, info.height) > settings.MEDIA_MAX_SOURCE_SIDE:
        raise VideoRejected(
            f"The video is {info.width}x{info.height}; its longer side can be at most "
            f"{settings.MEDIA_MAX_SOURCE_SIDE} pixels.", code="too_big")


@contextmanager
def _local_path(file: UploadedFile) -> Iterator[Path]:
    """Django keeps large uploads in a temporary file and small ones in memory; PyAV and ffmpeg
    want a path either way."""
    if hasattr(file, "temporary_file_path"):
        yield Path(file.temporary_file_path())
        return
    with tempfile.NamedTemporaryFile(prefix="showoff-upload-", suffix=".bin") as tmp:
        file.seek(0)
        shutil.copyfileobj(file, tmp, 1024 * 1024)
        tmp.flush()
        yield Path(tmp.name)


def upload_filename_clean(name: str) -> str:
    """A client's file name as Django cleans a multipart upload's (the direct upload), for
    names that arrive another way (a resumable upload's JSON): HTML entities decoded, any folder
    dropped (`/` and `\\`), unprintable characters removed, at most 255 characters keeping the
    extension; "" when nothing is left. Only ever shown back to its owner."""
    name = html.unescape(name).rsplit("/")[-1].rsplit("\\")[-1]
    name = "".join(c for c in name if c.isprintable())
    if name in {"", ".", ".."}:
        return ""
    try:
        return UploadedFile(name=name).name or ""
    except SuspiciousFileOperation:
        return ""


def video_create_from_path(*, owner, path: Path, original_filename: str = "",
                           title: str = "") -> Video:
    """Probe the file at `path`, store it and record the Video with its `video.uploaded`.

    Raises VideoRejected (nothing stored, nothing recorded) when the content is not a video
    within the limits. The client's file name plays no part in the decision.
    """
    size = os.path.getsize(path)
    video_check_size(size=size)
    try:
        info = probing.probe(path)
    except probing.ProbeError as exc:
        raise VideoRejected(str(exc), code="invalid_video") from None
    _check_limits(info)

    key = uuid.uuid4()
    storage = media_storage.video_storage()
    stored = media_storage.save_file(
        storage, f"videos/{key}/source{probing.EXTENSIONS[info.container]}", path)
    try:
        with transaction.atomic():
            video = Video.objects.create(
                owner=owner,
                key=key,
                title=title,
                source_name=stored,
                original_filename=original_filename[:255],
                size_bytes=size,
                container=info.container,
                duration_seconds=info.duration,
                width=info.width,
                height=info.height,
                rotation=info.rotation,
                frame_rate=info.frame_rate,
                video_codec=info.video_codec,
                audio_codec=info.audio_codec or "",
                source_bitrate=info.bitrate,
            )
            publish("video.uploaded", {
                "video_id": video.pk,
                "owner_id": owner.pk,
                "size_bytes": size,
                "duration_seconds": info.duration,
                "width": info.width,
                "height": info.height,
                "container": info.container,
                "video_codec": info.video_codec,
                "has_audio": info.has_audio,
            })
    except BaseException:
        storage.delete(stored)
        raise
    return video


def video_upload(*, owner, file: UploadedFile, title: str = "") -> Video:
    video_check_size(size=file.size or 0)
    with _local_path(file) as path:
        return video_create_from_path(owner=owner, path=path,
                                      original_filename=file.name or "", title=title)


# --- resumable uploads ------------------------------------------------------------------------


def _part_path(session_id: uuid.UUID) -> Path:
    return Path(settings.MEDIA_UPLOAD_CHUNK_DIR) / f"{session_id}.part"


def upload_session_create(*, owner, size: int, filename: str = "", title: str = "",
                          ) -> UploadSession:
    video_check_size(size=size)
    session = UploadSession.objects.create(
        owner=owner, size_bytes=size, filename=upload_filename_clean(filename), title=title,
        expires_at=timezone.now() + timedelta(hours=settings.MEDIA_UPLOAD_SESSION_HOURS),
    )
    path = _part_path(session.id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    return session


class UploadOffsetMismatch(ValueError):
    def __init__(self, received: int):
        super().__init__(f"This upload has {received} bytes; send the bytes from {received}.")
        self.received = received


def upload_session_append(*, session_id: uuid.UUID, start: int, chunk: Path) -> UploadSession:
    """Append the chunk at `chunk` if it starts where the upload stands (else
    UploadOffsetMismatch: the client resumes from `.received`)."""
    length = os.path.getsize(chunk)
    with transaction.atomic():
        # The row lock serialises two racing PUTs of one upload.
        session = UploadSession.objects.select_for_update().get(pk=session_id)
        if session.status != UploadSession.Status.OPEN:
            raise VideoRejected("This upload is already completed.", code="completed")
        if start != session.received_bytes:
            raise UploadOffsetMismatch(session.received_bytes)
        if start + length > session.size_bytes:
            raise VideoRejected(
                f"The chunk ends at byte {start + length}, past the announced size "
                f"{session.size_bytes}.", code="past_end")
        with open(_part_path(session.id), "r+b") as out, open(chunk, "rb") as src:
            # A previous append may have written bytes and then lost its transaction.
            out.truncate(start)
            out.seek(start)
            shutil.copyfileobj(src, out, 1024 * 1024)
            out.flush()
            os.fsync(out.fileno())
        session.received_bytes = start + length
        session.save(update_fields=["received_bytes"])
    return session


def upload_session_complete(*, session_id: uuid.UUID) -> Video:
    with transaction.atomic():
        session = UploadSession.objects.select_for_update().get(pk=session_id)
        if session.status == UploadSession.Status.COMPLETED and session.video_id:
            return session.video  # a repeated "complete" answers the same video
        if session.received_bytes != session.size_bytes:
            raise VideoRejected(
                f"The upload has {session.received_bytes} of {session.size_bytes} bytes; send "
                "the rest before completing it.", code="incomplete")
        video = video_create_from_path(owner=session.owner, path=_part_path(session.id),
                                       original_filename=session.filename, title=session.title)
        session.status = UploadSession.Status.COMPLETED
        session.video = video
        session.save(update_fields=["status", "video"])
        part = _part_path(session.id)
        transaction.on_commit(lambda: part.unlink(missing_ok=True))
    return video


def upload_sessions_prune(*, now: datetime | None = None) -> int:
    now = now or timezone.now()
    expired = list(UploadSession.objects.filter(expires_at__lt=now)
                   .values_list("pk", flat=True))
    for pk in expired:
        _part_path(pk).unlink(missing_ok=True)
    UploadSession.objects.filter(pk__in=expired).delete()
    return len(expired)


# --- jobs: recording and queueing -------------------------------------------------------------


def transcode_job_enqueue(*, job_id: int, countdown: float | None = None) -> None:
    """Hand the job to Celery. Called after commit; a broker outage is not fatal: the beat
    sweep re-queues pending jobs that never started."""
    from .tasks import transcode_video

    try:
        transcode_video.apply_async(args=[job_id], queue=settings.MEDIA_CELERY_QUEUE,
                                    countdown=countdown)
    except Exception:  # noqa: BLE001 - the sweep retries; the job row is safe in the database
        logger.exception("could not queue transcode job %s; the sweep will re-queue it", job_id)


def transcode_job_record(*, video_id: int, event_id: uuid.UUID | None = None,
                         ) -> tuple[TranscodeJob, bool]:
    """Record the video's job once (a repeat returns the existing job) and queue it after
    commit. Runs inside the consumer's transaction."""
    if not Video.objects.filter(pk=video_id).exists():
        raise VideoMissing(f"video {video_id} does not exist")
    job, created = TranscodeJob.objects.get_or_create(
        video_id=video_id,
        defaults={"source_event_id": event_id, "enqueued_at": timezone.now()},
    )
    if created:
        transaction.on_commit(partial(transcode_job_enqueue, job_id=job.pk))
    return job, created


# --- jobs: running ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    job_id: int
    video_id: int
    owner_id: int
    video_key: uuid.UUID
    source_name: str
    attempt: int
    lease: uuid.UUID

    @property
    def prefix(self) -> str:
        # Each run writes into its own folder: two runs never overwrite each other's files.
        return f"videos/{self.video_key}/run-{self.lease.hex[:16]}"


@dataclass(frozen=True)
class RenditionOutput:
    name: str
    storage_name: str
    width: int
    height: int
    crf: int
    video_codec: str
    audio_codec: str
    duration: float
    bitrate: int
    size_bytes: int
    encode_seconds: float


@dataclass(frozen=True)
class TranscodeOutput:
    renditions: list[RenditionOutput]
    poster_name: str
    poster_width: int
    poster_height: int
    previews: list[dict[str, Any]]


def _record_attempt_failure(job: TranscodeJob, video: Video, *, reason: str, permanent: bool,
                            now: datetime, retry_in: float | None) -> str:
    """With both rows locked: note the failed attempt, then either schedule the next one
    (queued after commit unless `retry_in` is None) or fail the video for good."""
    reason = reason.strip()[:2000] or "unknown error"
    job.errors = [*job.errors, {"attempt": job.attempts, "error": reason, "at": now.isoformat()}]
    job.last_error = reason
    job.lease = None
    job.step = ""
    if permanent or job.attempts >= settings.MEDIA_JOB_MAX_ATTEMPTS:
        job.status = TranscodeJob.Status.FAILED
        job.finished_at = now
        job.save()
        video.status = Video.Status.FAILED
        video.failure_reason = (
            reason if permanent
            else f"Transcoding failed {job.attempts} times; the last error was: {reason}"
        )[:2000]
        video.save(update_fields=["status", "failure_reason", "updated_at"])
        publish("video.failed", {
            "video_id": video.pk,
            "owner_id": video.owner_id,
            "reason": video.failure_reason,
            "attempts": job.attempts,
        })
        return "failed"
    job.status = TranscodeJob.Status.PENDING
    delay = retry_in or 0.0
    job.next_attempt_at = now + timedelta(seconds=delay)
    if retry_in is not None:
        job.enqueued_at = now
        transaction.on_commit(partial(transcode_job_enqueue, job_id=job.pk,
                                      countdown=delay or None))
    job.save()
    return "retrying"


def _backoff(attempts: int) -> float:
    return settings.MEDIA_JOB_RETRY_BACKOFF_SECONDS * 2 ** max(0, attempts - 1)


def _lost_reason(job: TranscodeJob) -> str:
    last = job.heartbeat_at or job.started_at
    return (f"attempt {job.attempts} stopped reporting progress (last heartbeat "
            f"{last.isoformat() if last else 'never'}, during {job.step or 'start'}): its "
            "worker was killed, crashed or hung")


def _job_claim(*, job_id: int, worker: str) -> Claim | None:
    now = timezone.now()
    with transaction.atomic():
        job = TranscodeJob.objects.select_for_update().filter(pk=job_id).first()
        if job is None or job.status in (TranscodeJob.Status.SUCCEEDED,
                                         TranscodeJob.Status.FAILED):
            return None
        video = Video.objects.select_for_update().get(pk=job.video_id)
        if job.status == TranscodeJob.Status.RUNNING:
            if not job.is_stale(now):
                return None  # a live run holds it; this delivery is a duplicate
            if _record_attempt_failure(job, video, reason=_lost_reason(job), permanent=False,
                                       now=now, retry_in=None) == "failed":
                return None
        job.attempts += 1
        job.status = TranscodeJob.Status.RUNNING
        job.lease = uuid.uuid4()
        job.worker = worker[:200]
        job.step = "starting"
        job.started_at = job.heartbeat_at = now
        job.next_attempt_at = None
        job.finished_at = None
        job.save()
        if video.status != Video.Status.PROCESSING:
            video.status = Video.Status.PROCESSING
            video.save(update_fields=["status", "updated_at"])
        return Claim(job.pk, video.pk, video.owner_id, video.key, video.source_name,
                     job.attempts, job.lease)


def _heartbeat(claim: Claim, step: str | None = None) -> None:
    fields: dict[str, Any] = {"heartbeat_at": timezone.now()}
    if step is not None:
        fields["step"] = step
    alive = TranscodeJob.objects.filter(
        pk=claim.job_id, lease=claim.lease, status=TranscodeJob.Status.RUNNING
    ).update(**fields)
    if not alive:
        raise LeaseLost(f"job {claim.job_id} attempt {claim.attempt} lost its lease")


def _transcode(claim: Claim) -> TranscodeOutput:
    storage = media_storage.video_storage()
    workdir = Path(tempfile.mkdtemp(prefix="showoff-transcode-"))
    deadline_at = timezone.now() + timedelta(seconds=settings.MEDIA_TRANSCODE_TIMEOUT_SECONDS)
    every = settings.MEDIA_JOB_HEARTBEAT_SECONDS

    def run(cmd: list[str]) -> float:
        remaining = (deadline_at - timezone.now()).total_seconds()
        if remaining <= 0:
            raise ffmpeg.FFmpegError(
                f"transcoding took longer than {settings.MEDIA_TRANSCODE_TIMEOUT_SECONDS}s")
        return ffmpeg.run(cmd, timeout=remaining, tick=lambda: _heartbeat(claim),
                          tick_every=every)

    try:
        _heartbeat(claim, "reading source")
        if not storage.exists(claim.source_name):
            raise PermanentTranscodeError(
                "The uploaded file is missing from storage; upload the video again.")
        src = media_storage.local_copy(storage, claim.source_name, workdir)
        try:
            info = probing.probe(src)
        except probing.ProbeError as exc:
            raise PermanentTranscodeError(str(exc)) from None

        renditions = []
        rungs = ffmpeg.choose_ladder(info)
        for rung in rungs:
            _heartbeat(claim, f"encoding {rung.name}")
            out = workdir / f"{rung.name}.mp4"
            seconds = run(ffmpeg.rendition_command(src, out, rung, info))
            try:
                made = probing.probe(out)
            except probing.ProbeError as exc:
                raise ffmpeg.FFmpegError(f"the {rung.name} rendition is unreadable: {exc}")
            size = out.stat().st_size
            stored = media_storage.save_file(storage, f"{claim.prefix}/{rung.name}.mp4", out)
            renditions.append(RenditionOutput(
                name=rung.name, storage_name=stored, width=made.width, height=made.height,
                crf=rung.crf, video_codec=made.video_codec, audio_codec=made.audio_codec or "",
                duration=made.duration,
                bitrate=int(round(size * 8 / made.duration)) if made.duration else 0,
                size_bytes=size, encode_seconds=round(seconds, 3),
            ))

        _heartbeat(claim, "poster")
        top = rungs[-1]
        poster = workdir / "poster.jpg"
        run(ffmpeg.frame_command(src, poster, info, at=min(info.duration * 0.1, 3.0),
                                 width=top.width, height=top.height))
        if not poster.exists() or poster.stat().st_size == 0:
            raise ffmpeg.FFmpegError("ffmpeg wrote no poster frame")
        poster_name = media_storage.save_file(storage, f"{claim.prefix}/poster.jpg", poster)

        _heartbeat(claim, "previews")
        short = min(settings.MEDIA_PREVIEW_SHORT_SIDE, info.width, info.height)
        pw, ph = ffmpeg.scaled(info.width, info.height, short)
        previews = []
        count = settings.MEDIA_PREVIEW_FRAMES
        for i in range(count):
            at = round(info.duration * (i + 0.5) / count, 3)
            frame = workdir / f"preview-{i + 1:02d}.jpg"
            run(ffmpeg.frame_command(src, frame, info, at=at, width=pw, height=ph))
            if frame.exists() and frame.stat().st_size:
                previews.append({
                    "name": media_storage.save_file(storage, f"{claim.prefix}/{frame.name}",
                                                    frame),
                    "at": at, "width": pw, "height": ph,
                })
        return TranscodeOutput(renditions, poster_name, top.width, top.height, previews)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _delete_run(prefix: str) -> None:
    try:
        media_storage.delete_tree(media_storage.video_storage(), prefix)
    except Exception:  # noqa: BLE001 - leftover files are untidy, not wrong
        logger.exception("could not delete %s", prefix)


def _delete_other_runs(video_key: uuid.UUID, keep: str) -> None:
    storage = media_storage.video_storage()
    base = f"videos/{video_key}"
    try:
        dirs, _ = storage.listdir(base)
    except FileNotFoundError:
        return
    for d in dirs:
        if f"{base}/{d}" != keep and d.startswith("run-"):
            _delete_run(f"{base}/{d}")


def _job_complete(claim: Claim, out: TranscodeOutput) -> str:
    now = timezone.now()
    with transaction.atomic():
        job = TranscodeJob.objects.select_for_update().get(pk=claim.job_id)
        if job.lease != claim.lease or job.status != TranscodeJob.Status.RUNNING:
            won = False
        else:
            won = True
            video = Video.objects.select_for_update().get(pk=claim.video_id)
            # One set of renditions, whatever ran before.
            video.renditions.all().delete()
            Rendition.objects.bulk_create([
                Rendition(video=video, name=r.name, storage_name=r.storage_name, width=r.width,
                          height=r.height, crf=r.crf, video_codec=r.video_codec,
                          audio_codec=r.audio_codec, duration_seconds=r.duration,
                          bitrate=r.bitrate, size_bytes=r.size_bytes,
                          encode_seconds=r.encode_seconds)
                for r in out.renditions
            ])
            video.poster_name = out.poster_name
            video.poster_width = out.poster_width
            video.poster_height = out.poster_height
            video.previews = out.previews
            video.status = Video.Status.READY
            video.failure_reason = ""
            video.ready_at = now
            video.save()
            job.status = TranscodeJob.Status.SUCCEEDED
            job.lease = None
            job.step = "done"
            job.heartbeat_at = job.finished_at = now
            job.save()
            publish("video.transcoded", {
                "video_id": video.pk,
                "owner_id": video.owner_id,
                "attempt": claim.attempt,
                "duration_seconds": video.duration_seconds,
                "renditions": [
                    {"name": r.name, "width": r.width, "height": r.height, "bitrate": r.bitrate,
                     "size_bytes": r.size_bytes, "storage_name": r.storage_name}
                    for r in out.renditions
                ],
            })
            publish("video.thumbnail_generated", {
                "video_id": video.pk,
                "owner_id": video.owner_id,
                "poster_storage_name": out.poster_name,
                "width": out.poster_width,
                "height": out.poster_height,
                "preview_count": len(out.previews),
            })
            transaction.on_commit(partial(_delete_other_runs, claim.video_key, claim.prefix))
    if not won:
        _delete_run(claim.prefix)
        return "superseded"
    return "succeeded"


def _job_attempt_failed(claim: Claim, *, reason: str, permanent: bool) -> str:
    now = timezone.now()
    with transaction.atomic():
        job = TranscodeJob.objects.select_for_update().get(pk=claim.job_id)
        if job.lease != claim.lease or job.status != TranscodeJob.Status.RUNNING:
            outcome = "superseded"
        else:
            video = Video.objects.select_for_update().get(pk=claim.video_id)
            outcome = _record_attempt_failure(job, video, reason=reason, permanent=permanent,
                                              now=now, retry_in=_backoff(job.attempts))
    _delete_run(claim.prefix)
    return outcome


def transcode_job_run(*, job_id: int, worker: str = "") -> str:
    """The Celery task's body. Returns what happened: "succeeded", "retrying", "failed",
    "skipped" (finished, or a live run holds it) or "superseded" (this run was presumed dead
    and another took over; its files are deleted)."""
    claim = _job_claim(job_id=job_id, worker=worker)
    if claim is None:
        return "skipped"
    logger.info("transcoding video %s (job %s, attempt %s)", claim.video_id, claim.job_id,
                claim.attempt)
    try:
        out = _transcode(claim)
    except LeaseLost:
        _delete_run(claim.prefix)
        return "superseded"
    except PermanentTranscodeError as exc:
        return _job_attempt_failed(claim, reason=str(exc), permanent=True)
    except Exception as exc:  # noqa: BLE001 - every failed attempt is recorded on the job
        logger.exception("transcode job %s attempt %s failed", claim.job_id, claim.attempt)
        return _job_attempt_failed(claim, reason=f"{type(exc).__name__}: {exc}",
                                   permanent=False)
    return _job_complete(claim, out)


# --- jobs: sweeping and retrying --------------------------------------------------------------


def transcode_jobs_sweep(*, now: datetime | None = None) -> dict[str, int]:
    """Celery beat's maintenance: running jobs whose heartbeat stopped are retried (or failed
    after MEDIA_JOB_MAX_ATTEMPTS); pending jobs whose message was lost are queued again;
    expired resumable uploads are deleted."""
    now = now or timezone.now()
    counts = {"retried": 0, "failed": 0, "requeued": 0, "uploads_pruned": 0}
    stale_before = now - timedelta(seconds=settings.MEDIA_JOB_STALE_SECONDS)
    stale = TranscodeJob.objects.filter(status=TranscodeJob.Status.RUNNING,
                                        heartbeat_at__lt=stale_before)
    for job_id in stale.values_list("pk", flat=True):
        with transaction.atomic():
            job = (TranscodeJob.objects.select_for_update(skip_locked=True)
                   .filter(pk=job_id).first())
            if job is None or not job.is_stale(now):
                continue
            video = Video.objects.select_for_update().get(pk=job.video_id)
            outcome = _record_attempt_failure(job, video, reason=_lost_reason(job),
                                              permanent=False, now=now, retry_in=0.0)
            counts["retried" if outcome == "retrying" else "failed"] += 1

    requeue_before = now - timedelta(seconds=settings.MEDIA_JOB_REQUEUE_SECONDS)
    lost = TranscodeJob.objects.filter(status=TranscodeJob.Status.PENDING).filter(
        Q(enqueued_at__isnull=True)
        | Q(next_attempt_at__isnull=True, enqueued_at__lt=requeue_before)
        | Q(next_attempt_at__lt=requeue_before)
    )
    for job_id in lost.values_list("pk", flat=True):
        with transaction.atomic():
            updated = TranscodeJob.objects.filter(
                pk=job_id, status=TranscodeJob.Status.PENDING
            ).update(enqueued_at=now, next_attempt_at=None)
            if updated:
                transaction.on_commit(partial(transcode_job_enqueue, job_id=job_id))
                counts["requeued"] += 1
    counts["uploads_pruned"] = upload_sessions_prune(now=now)
    return counts


def transcode_job_retry(*, job_id: int) -> bool:
    """The admin's retry: a failed job (or a stuck or never-started one) starts over with a
    fresh attempt count; its error history is kept. Returns False for a job that is running
    normally or already succeeded."""
    now = timezone.now()
    with transaction.atomic():
        job = TranscodeJob.objects.select_for_update().get(pk=job_id)
        if job.status == TranscodeJob.Status.SUCCEEDED or (
            job.status == TranscodeJob.Status.RUNNING and not job.is_stale(now)
        ):
            return False
        video = Video.objects.select_for_update().get(pk=job.video_id)
        job.status = TranscodeJob.Status.PENDING
        job.attempts = 0
        job.lease = None
        job.step = ""
        job.enqueued_at = now
        job.next_attempt_at = None
        job.finished_at = None
        job.save()
        video.status = Video.Status.UPLOADED
        video.failure_reason = ""
        video.save(update_fields=["status", "failure_reason", "updated_at"])
        transaction.on_commit(partial(transcode_job_enqueue, job_id=job.pk))
    return True
