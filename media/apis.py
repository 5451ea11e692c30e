"""HTTP API of the media app (mounted at /api/media/).

- `POST videos/` (multipart: `file`, optional `title`): upload; 201 with the video, status
  `uploaded`. The content is probed; a file that is not a readable video within the limits is
  refused with 400 and the reason in `errors.file`.
- `GET videos/`: the caller's own videos, newest first (`?status=ready` filters).
- `GET videos/<id>/`: status, renditions, poster and preview URLs (signed, expiring). Others'
  videos are visible only once ready; before that they answer 404.
- Resumable upload: `POST uploads/` {size, filename, title} → `PUT uploads/<id>/` raw bytes with
  `Content-Range: bytes start-end/size` (as many as needed; 409 tells where to resume) →
  `POST uploads/<id>/complete/` → 201 with the video. `GET uploads/<id>/` tells the offset.
- `GET files/<token>`: the bytes behind a signed URL (local storage only), with Range support.
- `GET /media/<name>` (outside /api/): a public image (avatar) at its stable URL.
"""

from __future__ import annotations

import mimetypes
import os
import re
import tempfile
from pathlib import Path

from django.conf import settings
from django.core import signing
from django.core.files.uploadhandler import FileUploadHandler, StopUpload
from django.http import (
    FileResponse,
    HttpResponseRedirect,
    JsonResponse,
    StreamingHttpResponse,
)
from django.urls import reverse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, permissions, serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from showoff.drf import InputSerializer

from . import selectors, services
from . import storage as media_storage
from .models import UploadSession, Video

MAX_CHUNK_BYTES = 64 * 1024 * 1024


def _rejected(exc: services.VideoRejected, field: str = "file") -> exceptions.ValidationError:
    return exceptions.ValidationError({field: [exceptions.ErrorDetail(str(exc), code=exc.code)]})


class _ThumbnailSerializer(serializers.Serializer):
    url = serializers.URLField()
    width = serializers.IntegerField()
    height = serializers.IntegerField()


class _PreviewSerializer(_ThumbnailSerializer):
    at_seconds = serializers.FloatField()


class _RenditionSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="The rung, by the short side: 240p, 360p, ...")
    width = serializers.IntegerField()
    height = serializers.IntegerField()
    video_codec = serializers.CharField()
    audio_codec = serializers.CharField(allow_null=True)
    duration_seconds = serializers.FloatField()
    bitrate = serializers.IntegerField(help_text="Bits per second, whole file.")
    size_bytes = serializers.IntegerField()
    url = serializers.URLField(help_text="Signed; expires at urls_expire_at.")


class _ProcessingSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["pending", "running", "succeeded", "failed"])
    attempts = serializers.IntegerField()
    step = serializers.CharField()


class VideoOutputSerializer(serializers.Serializer):
    """A video as the viewer may see it; `failure_reason`, `processing` and the source fields
    only for its owner. (The fields document the schema; `to_representation` builds it.)"""

    id = serializers.IntegerField()
    owner_id = serializers.IntegerField()
    title = serializers.CharField()
    status = serializers.ChoiceField(choices=Video.Status.choices)
    duration_seconds = serializers.FloatField()
    width = serializers.IntegerField()
    height = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    ready_at = serializers.DateTimeField(allow_null=True)
    thumbnail = _ThumbnailSerializer(allow_null=True, help_text="The poster JPEG, once ready.")
    previews = _PreviewSerializer(many=True)
    renditions = _RenditionSerializer(many=True)
    urls_expire_at = serializers.DateTimeField(allow_null=True)
    failure_reason = serializers.CharField(allow_null=True, required=False,
                                           help_text="Owner only.")
    original_filename = serializers.CharField(required=False, help_text="Owner only.")
    size_bytes = serializers.IntegerField(required=False, help_text="Owner only.")
    processing = _ProcessingSerializer(allow_null=True, required=False,
                                       help_text="Owner only: the transcoding job.")

    def to_representation(self, video: Video) -> dict:
        request = self.context["request"]
        is_owner = request.user.is_authenticated and request.user.pk == video.owner_id

        def url(name: str) -> str:
            return media_storage.file_url(name, request=request)

        ready = video.is_ready
        data = {
            "id": video.pk,
            "owner_id": video.owner_id,
            "title": video.title,
            "status": video.status,
            "duration_seconds": video.duration_seconds,
            "width": video.width,
            "height": video.height,
            "created_at": video.created_at,
            "ready_at": video.ready_at,
            "thumbnail": (
                {"url": url(video.poster_name), "width": video.poster_width,
                 "height": video.poster_height}
                if ready and video.poster_name else None
            ),
            "previews": [
                {"url": url(p["name"]), "at_seconds": p["at"], "width": p["width"],
                 "height": p["height"]}
                for p in (video.previews if ready else [])
            ],
            "renditions": [
                {"name": r.name, "width": r.width, "height": r.height,
                 "video_codec": r.video_codec, "audio_codec": r.audio_codec or None,
                 "duration_seconds": r.duration_seconds, "bitrate": r.bitrate,
                 "size_bytes": r.size_bytes, "url": url(r.storage_name)}
                for r in (video.renditions.all() if ready else [])
            ],
            "urls_expire_at": (
                timezone.now() + timezone.timedelta(seconds=settings.MEDIA_URL_EXPIRE_SECONDS)
                if ready else None
            ),
        }
        if is_owner:
            job = getattr(video, "job", None)
            data.update({
                "failure_reason": video.failure_reason or None,
                "original_filename": video.original_filename,
                "size_bytes": video.size_bytes,
                "processing": (
                    {"status": job.status, "attempts": job.attempts, "step": job.step}
                    if job is not None else None
                ),
            })
        return data


def ready_video_payloads(*, video_ids, request) -> dict[int, dict]:
    """Public payloads (renditions, thumbnail, previews, signed URLs) of the ready videos among
    `video_ids`, by id: for other apps' APIs (a post showing its video) in one query."""
    videos = selectors.videos_ready_by_id(video_ids=video_ids)
    return {v.pk: VideoOutputSerializer(v, context={"request": request}).data for v in videos}


class _SizeLimitHandler(FileUploadHandler):
    """Stops reading an upload as soon as it passes the limit (no Content-Length needed), so an
    oversize body never fills the disk."""

    def __init__(self, request, limit: int):
        super().__init__(request)
        self.limit = limit

    def receive_data_chunk(self, raw_data, start):
        if start + len(raw_data) > self.limit:
            self.request.media_upload_too_large = True
            raise StopUpload(connection_reset=False)
        return raw_data

    def file_complete(self, file_size):
        return None


def _too_large() -> exceptions.ValidationError:
    return exceptions.ValidationError({"file": [exceptions.ErrorDetail(
        f"The file is larger than the {services.human_size(settings.MEDIA_MAX_UPLOAD_BYTES)} "
        "allowed for videos.", code="too_large")]})


class VideoListCreateApi(APIView):
    parser_classes = [MultiPartParser, FormParser]

    class VideoUploadInputSerializer(InputSerializer):
        file = serializers.FileField(allow_empty_file=False)
        title = serializers.CharField(max_length=200, required=False, allow_blank=True,
                                      default="")

    def dispatch(self, request, *args, **kwargs):
        # Installed before anything reads the body (the CSRF check of session auth may).
        if request.method == "POST":
            request.upload_handlers.insert(
                0, _SizeLimitHandler(request, settings.MEDIA_MAX_UPLOAD_BYTES))
        return super().dispatch(request, *args, **kwargs)

    @extend_schema(tags=["media"], operation_id="media_videos_list",
                   parameters=[OpenApiParameter("status", str, enum=Video.Status.values,
                                                description="Only videos in this status.")],
                   responses={200: VideoOutputSerializer(many=True)})
    def get(self, request):
        status_filter = request.query_params.get("status")
        if status_filter is not None and status_filter not in Video.Status.values:
            raise exceptions.ValidationError(
                {"status": [f"Use one of: {', '.join(Video.Status.values)}."]})
        videos = selectors.video_list_for_owner(user=request.user, status=status_filter)[:100]
        return Response(VideoOutputSerializer(videos, many=True,
                                              context={"request": request}).data)

    @extend_schema(tags=["media"], request={"multipart/form-data": VideoUploadInputSerializer},
                   responses={201: VideoOutputSerializer})
    def post(self, request):
        # A body announced past the limit is refused before it is read at all.
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        # (16 KB of slack for the multipart envelope; the handler enforces the exact limit.)
        if length > settings.MEDIA_MAX_UPLOAD_BYTES + 16 * 1024:
            raise _too_large()
        serializer = self.VideoUploadInputSerializer(data=request.data)
        if getattr(request._request, "media_upload_too_large", False):
            raise _too_large()
        serializer.is_valid(raise_exception=True)
        try:
            video = services.video_upload(owner=request.user,
                                          file=serializer.validated_data["file"],
                                          title=serializer.validated_data["title"])
        except services.VideoRejected as exc:
            raise _rejected(exc)
        return Response(VideoOutputSerializer(video, context={"request": request}).data,
                        status=status.HTTP_201_CREATED)


class VideoDetailApi(APIView):
    @extend_schema(tags=["media"], responses={200: VideoOutputSerializer})
    def get(self, request, video_id: int):
        video = selectors.video_get_visible(user=request.user, video_id=video_id)
        if video is None:
            raise exceptions.NotFound(f"There is no video {video_id}.")
        return Response(VideoOutputSerializer(video, context={"request": request}).data)


# --- resumable uploads ------------------------------------------------------------------------


class UploadSessionOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    size = serializers.IntegerField()
    received = serializers.IntegerField(help_text="Bytes stored so far: resume from here.")
    status = serializers.ChoiceField(choices=UploadSession.Status.choices)
    expires_at = serializers.DateTimeField()
    video_id = serializers.IntegerField(allow_null=True)
    upload_url = serializers.URLField()


class _ConflictSerializer(serializers.Serializer):
    type = serializers.CharField()
    detail = serializers.CharField()
    received = serializers.IntegerField()


def _session_payload(session: UploadSession, request) -> dict:
    return {
        "id": str(session.id),
        "size": session.size_bytes,
        "received": session.received_bytes,
        "status": session.status,
        "expires_at": session.expires_at,
        "video_id": session.video_id,
        "upload_url": request.build_absolute_uri(
            reverse("media:upload", kwargs={"session_id": session.id})),
    }


def _own_session(request, session_id) -> UploadSession:
    session = UploadSession.objects.filter(pk=session_id, owner=request.user).first()
    if session is None or (session.status == UploadSession.Status.OPEN
                           and session.expires_at < timezone.now()):
        raise exceptions.NotFound("There is no such upload (or it expired); start a new one.")
    return session


class UploadSessionCreateApi(APIView):
    class UploadSessionCreateInputSerializer(InputSerializer):
        size = serializers.IntegerField(min_value=1)
        filename = serializers.CharField(max_length=1024, required=False, allow_blank=True,
                                         default="")
        title = serializers.CharField(max_length=200, required=False, allow_blank=True,
                                      default="")

    @extend_schema(tags=["media"], request=UploadSessionCreateInputSerializer,
                   responses={201: UploadSessionOutputSerializer})
    def post(self, request):
        serializer = self.UploadSessionCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            session = services.upload_session_create(owner=request.user,
                                                     **serializer.validated_data)
        except services.VideoRejected as exc:
            raise _rejected(exc, "size")
        return Response(_session_payload(session, request), status=status.HTTP_201_CREATED)


_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


class UploadSessionApi(APIView):
    parser_classes: list = []  # PUT bodies are raw bytes, read as a stream below

    @extend_schema(tags=["media"], responses={200: UploadSessionOutputSerializer})
    def get(self, request, session_id):
        return Response(_session_payload(_own_session(request, session_id), request))

    @extend_schema(
        tags=["media"],
        request={"application/octet-stream": OpenApiTypes.BINARY},
        parameters=[OpenApiParameter("Content-Range", str, OpenApiParameter.HEADER,
                                     required=True,
                                     description="bytes <first>-<last>/<size>")],
        responses={200: UploadSessionOutputSerializer, 409: _ConflictSerializer},
    )
    def put(self, request, session_id):
        session = _own_session(request, session_id)
        match = _RANGE.match(request.headers.get("Content-Range", ""))
        if not match:
            raise exceptions.ValidationError({"Content-Range": [
                "Send the header Content-Range: bytes <first>-<last>/<size>."]})
        first, last = int(match[1]), int(match[2])
        if last < first or (match[3] != "*" and int(match[3]) != session.size_bytes):
            raise exceptions.ValidationError({"Content-Range": [
                f"The range must be ascending and the size {session.size_bytes}."]})
        expected = last - first + 1
        if expected > MAX_CHUNK_BYTES:
            raise exceptions.ValidationError({"Content-Range": [
                f"Chunks can be at most {MAX_CHUNK_BYTES // (1024 * 1024)} MB."]})
        with tempfile.NamedTemporaryFile(prefix="showoff-chunk-") as tmp:
            got = 0
            raw = request._request
            while got <= expected:
                block = raw.read(min(1024 * 1024, expected + 1 - got))
                if not block:
                    break
                tmp.write(block)
                got += len(block)
            tmp.flush()
            if got != expected:
                raise exceptions.ValidationError({"Content-Range": [
                    f"The range announces {expected} bytes but the body has {got}."]})
            try:
                session = services.upload_session_append(session_id=session.pk, start=first,
                                                         chunk=Path(tmp.name))
            except services.UploadOffsetMismatch as exc:
                return Response({"type": "conflict", "detail": str(exc),
                                 "received": exc.received}, status=status.HTTP_409_CONFLICT)
            except services.VideoRejected as exc:
                raise _rejected(exc, "Content-Range")
        return Response(_session_payload(session, request))


class UploadSessionCompleteApi(APIView):
    @extend_schema(tags=["media"], request=None, responses={201: VideoOutputSerializer})
    def post(self, request, session_id):
        session = _own_session(request, session_id)
        try:
            video = services.upload_session_complete(session_id=session.pk)
        except services.VideoRejected as exc:
            raise _rejected(exc)
        return Response(VideoOutputSerializer(video, context={"request": request}).data,
                        status=status.HTTP_201_CREATED)


# --- signed file links (local storage) --------------------------------------------------------

_BYTES = re.compile(r"^bytes=(\d*)-(\d*)$")


def _chunks(path: str, start: int, length: int, block: int = 256 * 1024):
    with open(path, "rb") as fh:
        fh.seek(start)
        while length > 0:
            data = fh.read(min(block, length))
            if not data:
                return
            length -= len(data)
            yield data


def _file_error(status_code: int, type_: str, detail: str) -> JsonResponse:
    # The API's error shape here too: this view is plain Django (it streams bytes), not DRF.
    return JsonResponse({"type": type_, "detail": detail}, status=status_code)


def _method_not_allowed(request) -> JsonResponse | None:
    if request.method in ("GET", "HEAD"):
        return None
    response = _file_error(405, "method_not_allowed", f'Method "{request.method}" not allowed.')
    response["Allow"] = "GET, HEAD"
    return response


class FileApi(APIView):
    """`GET /api/media/files/<token>`: the file a signed token names, with HTTP Range. The token
    is the permission: the API checked who may see the video when it handed the link out, as S3
    does with a presigned URL, so there is no sign-in (and no throttle: players fetch ranges)."""

    authentication_classes: list = []
    permission_classes = [permissions.AllowAny]
    throttle_classes: list = []

    def perform_content_negotiation(self, request, force=False):
        # Any Accept header is fine (a player's, an <img> tag's): the answer is the file, or a
        # JSON error, never rendered from a negotiated type.
        return super().perform_content_negotiation(request, force=True)

    @extend_schema(
        tags=["media"], operation_id="media_files_retrieve",
        parameters=[OpenApiParameter("token", str, OpenApiParameter.PATH,
                                     pattern=r"^[A-Za-z0-9_.:-]+$",
                                     description="The signed token of a URL the API gave out."),
                    OpenApiParameter("Range", str, OpenApiParameter.HEADER,
                                     description="bytes=<first>-<last>, bytes=<first>- or "
                                                 "bytes=-<suffix length>.")],
        responses={
            (200, "video/mp4"): OpenApiTypes.BINARY,
            (200, "image/jpeg"): OpenApiTypes.BINARY,
            (206, "video/mp4"): OpenApiTypes.BINARY,
            (206, "image/jpeg"): OpenApiTypes.BINARY,
            403: OpenApiResponse(description="The link has expired (`link_expired`)."),
            404: OpenApiResponse(description="No such file, or a tampered token."),
            416: OpenApiResponse(description="The range is outside the file."),
        },
        summary="The bytes behind a signed rendition, thumbnail or preview URL",
    )
    def get(self, request, token: str):
        try:
            name = media_storage.name_from_token(token)
        except signing.SignatureExpired:
            return _file_error(403, "link_expired", "This link has expired; fetch the video "
                                                    "again for a new one.")
        except signing.BadSignature:
            return _file_error(404, "not_found", "No such file.")
        storage = media_storage.video_storage()
        if not media_storage.is_local(storage) or not storage.exists(name):
            return _file_error(404, "not_found", "No such file.")
        return _local_file_response(request, storage.path(name), name,
                                    cache_control="private, max-age=3600")


def serve_public(request, name: str):
    """A public image (an avatar) at its stable URL: the file with local storage, a redirect
    to a fresh presigned (or CDN) URL with S3. Every upload gets a new name, so browsers and
    CDNs may keep it forever."""
    if (refused := _method_not_allowed(request)) is not None:
        return refused
    storage = media_storage.video_storage()
    if (not name.startswith(media_storage.PUBLIC_PREFIXES) or ".." in name.split("/")
            or not storage.exists(name)):
        return _file_error(404, "not_found", "No such file.")
    if not media_storage.is_local(storage):
        response = HttpResponseRedirect(storage.url(name))
        # The presigned target expires: never cache the redirect longer than half its life.
        response["Cache-Control"] = f"public, max-age={settings.MEDIA_URL_EXPIRE_SECONDS // 2}"
        return response
    return _local_file_response(request, storage.path(name), name,
                                cache_control="public, max-age=31536000, immutable")


def _local_file_response(request, path: str, name: str, *, cache_control: str):
    """The bytes of a local file, with HTTP Range (video players seek with it)."""
    size = os.path.getsize(path)
    ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
    match = _BYTES.match(request.headers.get("Range", "").strip())
    if match and (match[1] or match[2]):
        if match[1]:
            start = int(match[1])
            end = min(int(match[2]), size - 1) if match[2] else size - 1
        else:  # a suffix: the last N bytes
            start = max(0, size - int(match[2]))
            end = size - 1
        if start >= size or end < start:
            response = _file_error(416, "range_not_satisfiable",
                                   f"The file has {size} bytes; ask for a range inside it.")
            response["Content-Range"] = f"bytes */{size}"
            return response
        length = end - start + 1
        response = StreamingHttpResponse(_chunks(path, start, length), status=206,
                                         content_type=ctype)
        response["Content-Range"] = f"bytes {start}-{end}/{size}"
        response["Content-Length"] = str(length)
    else:
        response = FileResponse(open(path, "rb"), content_type=ctype)  # noqa: SIM115
    response["Accept-Ranges"] = "bytes"
    response["Cache-Control"] = cache_control
    return response
