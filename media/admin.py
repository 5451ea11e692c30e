from __future__ import annotations

from django.contrib import admin, messages
from django.utils.html import format_html

from . import services
from .models import Rendition, TranscodeJob, UploadSession, Video


def _retry(modeladmin, request, jobs) -> None:
    done = skipped = 0
    for job_id in jobs:
        if services.transcode_job_retry(job_id=job_id):
            done += 1
        else:
            skipped += 1
    if done:
        modeladmin.message_user(request, f"Queued {done} job(s) again.", messages.SUCCESS)
    if skipped:
        modeladmin.message_user(
            request, f"Skipped {skipped} job(s) that succeeded or are running normally.",
            messages.WARNING)


class RenditionInline(admin.TabularInline):
    model = Rendition
    extra = 0
    can_delete = False
    fields = ["name", "width", "height", "crf", "bitrate", "size_bytes", "duration_seconds",
              "encode_seconds", "storage_name"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Video)
class VideoAdmin(admin.ModelAdmin):
    list_display = ["id", "owner", "title", "status", "duration_seconds", "dimensions",
                    "job_attempts", "created_at", "ready_at"]
    list_filter = ["status", "created_at"]
    search_fields = ["=id", "owner__username", "title", "original_filename"]
    list_select_related = ["owner", "job"]
    raw_id_fields = ["owner"]
    inlines = [RenditionInline]
    actions = ["retry_transcoding"]
    readonly_fields = [
        "owner", "key", "status", "failure_reason", "source_name", "original_filename",
        "size_bytes", "container", "duration_seconds", "width", "height", "rotation",
        "frame_rate", "video_codec", "audio_codec", "source_bitrate", "poster_name",
        "poster_width", "poster_height", "previews", "created_at", "updated_at", "ready_at",
        "job_link",
    ]

    @admin.display(description="size")
    def dimensions(self, video: Video) -> str:
        return f"{video.width}x{video.height}"

    @admin.display(description="attempts")
    def job_attempts(self, video: Video):
        job = getattr(video, "job", None)
        return job.attempts if job else None

    @admin.display(description="job")
    def job_link(self, video: Video):
        job = getattr(video, "job", None)
        if job is None:
            return "-"
        return format_html('<a href="../../transcodejob/{}/change/">{}</a>', job.pk, job)

    @admin.action(description="Retry transcoding of the selected videos")
    def retry_transcoding(self, request, queryset) -> None:
        _retry(self, request, TranscodeJob.objects.filter(video__in=queryset)
               .values_list("pk", flat=True))


@admin.register(TranscodeJob)
class TranscodeJobAdmin(admin.ModelAdmin):
    list_display = ["id", "video", "status", "attempts", "step", "worker", "heartbeat_at",
                    "short_error", "created_at"]
    list_filter = ["status"]
    search_fields = ["=id", "=video__id"]
    list_select_related = ["video"]
    actions = ["retry"]
    readonly_fields = [
        "video", "status", "source_event_id", "attempts", "lease", "step", "worker",
        "last_error", "errors", "enqueued_at", "next_attempt_at", "started_at", "heartbeat_at",
        "finished_at", "created_at", "updated_at",
    ]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.display(description="last error")
    def short_error(self, job: TranscodeJob) -> str:
        return (job.last_error[:80] + "…") if len(job.last_error) > 80 else job.last_error

    @admin.action(description="Retry the selected jobs")
    def retry(self, request, queryset) -> None:
        _retry(self, request, queryset.values_list("pk", flat=True))


@admin.register(UploadSession)
class UploadSessionAdmin(admin.ModelAdmin):
    list_display = ["id", "owner", "status", "received_bytes", "size_bytes", "expires_at"]
    list_filter = ["status"]
    readonly_fields = ["owner", "title", "filename", "size_bytes", "received_bytes", "status",
                       "video", "created_at", "expires_at"]

    def has_add_permission(self, request) -> bool:
        return False
