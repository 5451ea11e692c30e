"""Reads of the media app, with the visibility rule in one place: a video is visible to its
owner in every state and to everyone else only once it is ready."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet

from .models import Video


def videos_visible_to(*, user) -> QuerySet[Video]:
    ready = Q(status=Video.Status.READY)
    if user is not None and user.is_authenticated:
        return Video.objects.filter(ready | Q(owner=user))
    return Video.objects.filter(ready)


def video_get_visible(*, user, video_id: int) -> Video | None:
    """The video if `user` may see it, else None (the API answers 404 either way, so a
    processing video's existence is not revealed)."""
    return (videos_visible_to(user=user).select_related("owner", "job")
            .prefetch_related("renditions").filter(pk=video_id).first())


def videos_ready_by_id(*, video_ids) -> QuerySet[Video]:
    ids = {int(v) for v in video_ids if v is not None}
    return (Video.objects.filter(pk__in=ids, status=Video.Status.READY)
            .prefetch_related("renditions"))


def video_list_for_owner(*, user, status: str | None = None) -> QuerySet[Video]:
    qs = Video.objects.filter(owner=user).prefetch_related("renditions").select_related("job")
    if status:
        qs = qs.filter(status=status)
    return qs.order_by("-created_at", "-pk")


def video_attachable(*, user, video_id: int | None) -> Video:
    """The video `user` may attach to a post: their own and ready.

    For `posts` to call in its post create/update service before saving `Post.video_id`.
    Raises django ValidationError({"video_id": [...]}) naming the problem otherwise (the API's
    exception handler turns it into a 400).
    """
    if video_id is None:
        raise ValidationError({"video_id": ["Choose a video to attach."]}, code="required")
    video = Video.objects.filter(pk=video_id).first()
    if video is None or (video.owner_id != user.pk and not video.is_ready):
        raise ValidationError({"video_id": [f"There is no video {video_id}."]},
                              code="not_found")
    if video.owner_id != user.pk:
        raise ValidationError({"video_id": ["You can only attach your own videos."]},
                              code="not_owner")
    if video.status == Video.Status.FAILED:
        raise ValidationError(
            {"video_id": [f"Video {video_id} could not be processed ({video.failure_reason}); "
                          "upload it again."]}, code="failed")
    if not video.is_ready:
        raise ValidationError(
            {"video_id": [f"Video {video_id} is still being processed; attach it once its "
                          "status is ready."]}, code="not_ready")
    return video
