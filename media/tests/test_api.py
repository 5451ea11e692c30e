"""Reading videos: who sees what, signed file links, attaching to posts, the handler, admin."""

from __future__ import annotations

import uuid

import pytest
from django.core import signing
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from accounts.models import User
from media import services
from media.apis import ready_video_payloads
from media.handlers import record_transcode_job
from media.models import TranscodeJob, Video
from media.selectors import video_attachable
from outbox.models import OutboxEvent
from relay.registry import ConsumedEvent, PermanentError, handlers_for

from .conftest import consumed, errors_of, inspect_mp4, upload

pytestmark = pytest.mark.django_db


@pytest.fixture
def ready_video(api, make_clip, django_capture_on_commit_callbacks) -> Video:
    response = upload(api, make_clip("320x240", 2), title="ready one")
    event = OutboxEvent.objects.get(type="video.uploaded", key=str(response.json()["id"]))
    with django_capture_on_commit_callbacks(execute=False):
        record_transcode_job(consumed(event))
    job = TranscodeJob.objects.get(video_id=response.json()["id"])
    assert services.transcode_job_run(job_id=job.pk) == "succeeded"
    return Video.objects.get(pk=job.video_id)


@pytest.fixture
def stranger(other_user) -> APIClient:
    client = APIClient()
    client.force_authenticate(other_user)
    return client


# --- the handler ------------------------------------------------------------------------------


def test_handler_records_one_job_and_queues_it_after_commit(
        api, make_clip, django_capture_on_commit_callbacks):
    # given: the outbox row of an upload, as the consumer would receive it
    video_id = upload(api, make_clip("320x240", 2)).json()["id"]
    event = consumed(OutboxEvent.objects.get(type="video.uploaded"))
    assert [r.fn for r in handlers_for("media", "video.uploaded")] == [record_transcode_job]

    # when: it is handled, then replayed (past the inbox), and handled again
    with django_capture_on_commit_callbacks(execute=False) as first:
        record_transcode_job(event)
    with django_capture_on_commit_callbacks(execute=False) as replay:
        record_transcode_job(event)
        record_transcode_job(ConsumedEvent(id=uuid.uuid4(), type=event.type, data=event.data,
                                           topic=event.topic))

    # then: one job, queued once, only when the record's transaction commits
    job = TranscodeJob.objects.get()
    assert (job.video_id, job.status, job.attempts, job.source_event_id) == (
        video_id, "pending", 0, event.id)
    assert len(first) == 1
    assert replay == []


def test_handler_dead_letters_events_of_unknown_videos():
    with pytest.raises(PermanentError, match="video 999999 does not exist"):
        record_transcode_job(ConsumedEvent(id=uuid.uuid4(), type="video.uploaded",
                                           data={"video_id": 999999}, topic="video-processing"))
    with pytest.raises(PermanentError, match="usable video_id"):
        record_transcode_job(ConsumedEvent(id=uuid.uuid4(), type="video.uploaded",
                                           data={"video_id": None}, topic="video-processing"))
    assert TranscodeJob.objects.count() == 0


# --- visibility -------------------------------------------------------------------------------


def test_only_the_owner_sees_a_video_before_it_is_ready(api, stranger, make_clip):
    video_id = upload(api, make_clip("320x240", 2)).json()["id"]

    own = api.get(f"/api/media/videos/{video_id}/")
    other = stranger.get(f"/api/media/videos/{video_id}/")
    anonymous = APIClient().get(f"/api/media/videos/{video_id}/")

    assert (own.status_code, own.json()["status"]) == (200, "uploaded")
    assert other.status_code == 404
    assert anonymous.status_code in (401, 403)
    assert stranger.get("/api/media/videos/").json() == []
    assert [v["id"] for v in api.get("/api/media/videos/").json()] == [video_id]


def test_a_ready_video_shows_renditions_thumbnail_and_working_links(
        ready_video, api, stranger, storage_root):
    # when: someone else reads it
    body = stranger.get(f"/api/media/videos/{ready_video.pk}/").json()

    # then: public fields, signed links, none of the owner's details
    assert body["status"] == "ready"
    assert "failure_reason" not in body and "processing" not in body
    assert [(r["name"], r["width"], r["height"], r["video_codec"], r["audio_codec"])
            for r in body["renditions"]] == [("240p", 320, 240, "h264", "aac")]
    assert (body["thumbnail"]["width"], body["thumbnail"]["height"]) == (320, 240)
    assert len(body["previews"]) == 3
    rendition_url = body["renditions"][0]["url"]
    assert rendition_url.startswith("http://testserver/api/media/files/")

    # and: the link serves the file to a player without credentials, with ranges
    player = APIClient()
    whole = player.get(rendition_url)
    assert whole.status_code == 200
    assert whole["Content-Type"] == "video/mp4"
    data = b"".join(whole.streaming_content)
    stored = storage_root / ready_video.renditions.get().storage_name
    assert data == stored.read_bytes()
    part = player.get(rendition_url, HTTP_RANGE="bytes=100-199")
    assert part.status_code == 206
    assert part["Content-Range"] == f"bytes 100-199/{len(data)}"
    assert b"".join(part.streaming_content) == data[100:200]
    tail = player.get(rendition_url, HTTP_RANGE="bytes=-10")
    assert b"".join(tail.streaming_content) == data[-10:]
    assert player.get(rendition_url, HTTP_RANGE=f"bytes={len(data)}-").status_code == 416
    poster = player.get(body["thumbnail"]["url"])
    assert poster["Content-Type"] == "image/jpeg"

    # and: what is served is the rendition ffmpeg made, playable
    probed = inspect_mp4(stored)
    assert (probed["video_codec"], probed["frames"]) == ("h264", 50)

    # and: the owner sees the processing details
    own = api.get(f"/api/media/videos/{ready_video.pk}/").json()
    assert own["processing"] == {"status": "succeeded", "attempts": 1, "step": "done"}
    assert own["failure_reason"] is None


def test_file_links_are_tamper_proof_and_expire(ready_video, settings):
    name = ready_video.renditions.get().storage_name
    forged = signing.dumps(f"videos/{uuid.uuid4()}/source.mp4", salt="wrong.salt")
    assert APIClient().get(reverse("media:file", kwargs={"token": forged})).status_code == 404

    token = signing.dumps(name, salt="media.file", compress=True)
    url = reverse("media:file", kwargs={"token": token})
    assert APIClient().get(url).status_code == 200
    settings.MEDIA_URL_EXPIRE_SECONDS = -1
    expired = APIClient().get(url)
    assert expired.status_code == 403
    assert expired.json() == {"type": "link_expired", "detail": "This link has expired; fetch "
                              "the video again for a new one."}


@pytest.mark.parametrize("status", ["done", ""])
def test_status_filter_is_validated(api, status):
    response = api.get(f"/api/media/videos/?status={status}")
    assert response.status_code == 400
    assert errors_of(response)["status"] == [
        "Use one of: uploaded, processing, ready, failed."]


# --- attaching to posts -----------------------------------------------------------------------


def test_video_attachable_accepts_only_the_owners_ready_videos(
        ready_video, user, other_user, api, make_clip):
    processing_id = upload(api, make_clip("320x240", 2)).json()["id"]
    Video.objects.filter(pk=processing_id).update(status="processing")
    failed = Video.objects.create(
        owner=user, source_name="x", size_bytes=1, container="avi", duration_seconds=1,
        width=2, height=2, video_codec="h264", status="failed", failure_reason="bad source")

    assert video_attachable(user=user, video_id=ready_video.pk) == ready_video

    def message(u: User, vid) -> str:
        with pytest.raises(ValidationError) as exc:
            video_attachable(user=u, video_id=vid)
        return exc.value.message_dict["video_id"][0]

    assert message(other_user, ready_video.pk) == "You can only attach your own videos."
    assert message(other_user, processing_id) == f"There is no video {processing_id}."
    assert message(user, processing_id) == (
        f"Video {processing_id} is still being processed; attach it once its status is ready.")
    assert message(user, failed.pk) == (
        f"Video {failed.pk} could not be processed (bad source); upload it again.")
    assert message(user, 10**9) == f"There is no video {10**9}."
    assert message(user, None) == "Choose a video to attach."


# --- admin ------------------------------------------------------------------------------------


def test_admin_lists_videos_and_jobs_and_retries_a_failed_job(
        ready_video, make_clip, api, settings, django_capture_on_commit_callbacks):
    # given: a failed job next to the ready one
    settings.MEDIA_X264_PRESET = "no-such-preset"
    settings.MEDIA_JOB_MAX_ATTEMPTS = 1
    video_id = upload(api, make_clip("320x240", 2)).json()["id"]
    with django_capture_on_commit_callbacks(execute=False):
        job, _ = services.transcode_job_record(video_id=video_id)
    assert services.transcode_job_run(job_id=job.pk) == "failed"
    admin_user = User.objects.create_superuser("root", "root@example.com", "pw-root-123")
    client = Client()
    client.force_login(admin_user)

    # when: the operator looks and retries both
    videos_page = client.get("/admin/media/video/")
    jobs_page = client.get("/admin/media/transcodejob/?status__exact=failed")
    detail = client.get(f"/admin/media/transcodejob/{job.pk}/change/")
    with django_capture_on_commit_callbacks(execute=False) as queued:
        response = client.post("/admin/media/transcodejob/", {
            "action": "retry", "_selected_action": [job.pk, ready_video.job.pk]}, follow=True)

    # then
    assert videos_page.status_code == jobs_page.status_code == detail.status_code == 200
    assert f"transcode job {job.pk} of video {video_id}".encode() in jobs_page.content
    assert b"ffmpeg exited with" in detail.content
    assert response.status_code == 200
    assert b"Queued 1 job(s) again." in response.content
    assert b"Skipped 1 job(s)" in response.content
    assert len(queued) == 1
    job.refresh_from_db()
    assert (job.status, job.attempts) == ("pending", 0)
    assert Video.objects.get(pk=video_id).status == "uploaded"


def test_ready_video_payloads_for_other_apps(ready_video, api, make_clip, rf, other_user):
    # given: one ready video and one still uploaded
    pending_id = upload(api, make_clip("320x240", 2)).json()["id"]
    request = rf.get("/api/posts/")
    request.user = other_user

    # when: posts asks for both (and a missing one)
    payloads = ready_video_payloads(video_ids=[ready_video.pk, pending_id, 10**9, None],
                                    request=request)

    # then: only the ready one, with its public fields and signed URLs
    assert list(payloads) == [ready_video.pk]
    payload = payloads[ready_video.pk]
    assert (payload["status"], payload["title"]) == ("ready", "ready one")
    assert payload["renditions"][0]["url"].startswith("http://testserver/api/media/files/")
    assert "failure_reason" not in payload


def test_large_uploads_spooled_to_disk_are_probed_in_place(api, make_clip, settings,
                                                          storage_root):
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 1024  # Django writes the upload to a temp file
    clip = make_clip("320x240", 2)
    response = upload(api, clip)
    assert response.status_code == 201, response.content
    assert (storage_root / Video.objects.get().source_name).read_bytes() == clip.read_bytes()
