"""Uploads through the API: the content decides, never the name; bad files leave nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from rest_framework.test import APIClient

from media.models import TranscodeJob, UploadSession, Video
from outbox.models import OutboxEvent

from .conftest import errors_of, files_under, upload

pytestmark = pytest.mark.django_db


def _nothing_left(storage_root: Path) -> None:
    assert Video.objects.count() == 0
    assert TranscodeJob.objects.count() == 0
    assert OutboxEvent.objects.filter(type__startswith="video.").count() == 0
    assert files_under(storage_root) == []


def test_upload_stores_the_source_and_announces_it(api, user, make_clip, storage_root):
    # given: a 2 s 320x240 clip with audio, named like a camera file
    clip = make_clip("320x240", 2)

    # when
    response = upload(api, clip, name="IMG_0001.MOV", title="First!")

    # then: 201 with the probed facts; the file stored under the video's key
    assert response.status_code == 201, response.content
    body = response.json()
    video = Video.objects.get()
    assert body["id"] == video.pk
    assert {k: body[k] for k in ("status", "title", "duration_seconds", "width", "height",
                                 "thumbnail", "renditions", "previews", "failure_reason",
                                 "original_filename", "size_bytes", "processing")} == {
        "status": "uploaded", "title": "First!", "duration_seconds": 2.0, "width": 320,
        "height": 240, "thumbnail": None, "renditions": [], "previews": [],
        "failure_reason": None, "original_filename": "IMG_0001.MOV",
        "size_bytes": clip.stat().st_size, "processing": None,
    }
    assert (video.container, video.video_codec, video.audio_codec, video.rotation) == (
        "mov,mp4,m4a,3gp,3g2,mj2", "h264", "aac", 0)
    assert video.source_name == f"videos/{video.key}/source.mp4"
    assert (storage_root / video.source_name).read_bytes() == clip.read_bytes()
    (event,) = OutboxEvent.objects.filter(type="video.uploaded")
    assert (event.topic, event.key) == ("video-processing", str(video.pk))
    assert event.payload == {
        "video_id": video.pk, "owner_id": user.pk, "size_bytes": clip.stat().st_size,
        "duration_seconds": 2.0, "width": 320, "height": 240,
        "container": "mov,mp4,m4a,3gp,3g2,mj2", "video_codec": "h264", "has_audio": True,
    }
    # the job is the consumer's to record, not the API's
    assert TranscodeJob.objects.count() == 0


def test_webm_upload_is_accepted_by_content(api, make_clip, storage_root):
    clip = make_clip("320x240", 1, container="webm")
    response = upload(api, clip, name="clip.mp4")  # a lying name does not matter either way
    assert response.status_code == 201, response.content
    video = Video.objects.get()
    assert (video.container, video.video_codec, video.audio_codec) == (
        "matroska,webm", "vp8", "opus")
    assert video.source_name.endswith("/source.mkv")


def test_text_file_named_mp4_is_refused(api, tmp_path, storage_root):
    fake = tmp_path / "holiday.mp4"
    fake.write_text("this is not a video, just text pretending\n" * 50)

    response = upload(api, fake)

    assert response.status_code == 400
    assert errors_of(response)["file"] == [
        "The file is not a video we can read (it may be another kind of file, or cut off). "
        "Upload an MP4, MOV, WebM or MKV video."]
    _nothing_left(storage_root)


def test_truncated_video_is_refused(api, make_clip, tmp_path, storage_root):
    # given: the first 60% of a faststart MP4 (its index survives, its data does not)
    clip = make_clip("320x240", 2)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(clip.read_bytes()[: int(clip.stat().st_size * 0.6)])

    response = upload(api, cut)

    assert response.status_code == 400
    assert errors_of(response)["file"] == [
        "The video is truncated (the upload was cut off); upload it again."]
    _nothing_left(storage_root)


def test_video_cut_before_its_index_is_refused(api, make_clip, tmp_path, storage_root):
    clip = make_clip("320x240", 2, faststart=False)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(clip.read_bytes()[: int(clip.stat().st_size * 0.6)])

    response = upload(api, cut)

    assert response.status_code == 400
    assert "not a video we can read" in errors_of(response)["file"][0]
    _nothing_left(storage_root)


def test_oversize_upload_is_refused_while_streaming(api, make_clip, settings, storage_root):
    # given: a limit one byte below the file (inside the envelope's slack)
    clip = make_clip("320x240", 2)
    settings.MEDIA_MAX_UPLOAD_BYTES = clip.stat().st_size - 1

    response = upload(api, clip)

    assert response.status_code == 400
    assert errors_of(response)["file"] == [
        f"The file is larger than the {round((clip.stat().st_size - 1) / 1024)} KB allowed "
        "for videos."]
    _nothing_left(storage_root)


def test_oversize_upload_is_refused_by_its_announced_length(api, make_clip, settings,
                                                            storage_root):
    settings.MEDIA_MAX_UPLOAD_BYTES = 1024
    response = upload(api, make_clip("320x240", 2))
    assert response.status_code == 400
    assert errors_of(response)["file"] == ["The file is larger than the 1 KB allowed for videos."]
    _nothing_left(storage_root)


def test_too_long_video_is_refused(api, make_clip, settings, storage_root):
    settings.MEDIA_MAX_DURATION_SECONDS = 1.5
    response = upload(api, make_clip("320x240", 2))
    assert response.status_code == 400
    assert errors_of(response)["file"] == [
        "The video is 2.0 s long; videos can be at most 1.5 s."]
    _nothing_left(storage_root)


def test_audio_only_file_is_refused(api, tmp_path, storage_root):
    import subprocess

    from media.ffmpeg import ffmpeg_binary

    audio = tmp_path / "song.mp4"
    subprocess.run([ffmpeg_binary(), "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i",
                    "sine=duration=1", "-c:a", "aac", str(audio)], check=True)
    response = upload(api, audio)
    assert response.status_code == 400
    assert errors_of(response)["file"] == ["The file has no video stream (is it an audio file?)."]
    _nothing_left(storage_root)


def test_missing_file_and_anonymous_uploads(api, make_clip, storage_root):
    response = api.post("/api/media/videos/", {"title": "no file"}, format="multipart")
    assert response.status_code == 400
    assert "file" in errors_of(response)

    with open(make_clip("320x240", 2), "rb") as fh:
        anonymous = APIClient().post("/api/media/videos/", {"file": fh}, format="multipart")
    assert anonymous.status_code in (401, 403)
    _nothing_left(storage_root)


# --- resumable uploads ------------------------------------------------------------------------


def test_resumable_upload_in_chunks_with_a_resume(api, make_clip, storage_root, settings,
                                                  django_capture_on_commit_callbacks):
    # given: an upload announced with its size
    data = make_clip("320x240", 2).read_bytes()
    created = api.post("/api/media/uploads/", {"size": len(data), "filename": "a.mp4",
                                               "title": "chunked"}, format="json")
    assert created.status_code == 201, created.content
    session_id = created.json()["id"]
    url = f"/api/media/uploads/{session_id}/"
    assert created.json()["upload_url"].endswith(url)
    half = len(data) // 2

    # when: the first half arrives, a chunk is re-sent from a stale offset, then the rest
    first = api.put(url, data[:half], content_type="application/octet-stream",
                    HTTP_CONTENT_RANGE=f"bytes 0-{half - 1}/{len(data)}")
    stale = api.put(url, data[10:half], content_type="application/octet-stream",
                    HTTP_CONTENT_RANGE=f"bytes 10-{half - 1}/{len(data)}")
    status = api.get(url)
    rest = api.put(url, data[half:], content_type="application/octet-stream",
                   HTTP_CONTENT_RANGE=f"bytes {half}-{len(data) - 1}/{len(data)}")
    with django_capture_on_commit_callbacks(execute=True):
        done = api.post(f"{url}complete/")

    # then
    assert (first.status_code, first.json()["received"]) == (200, half)
    assert (stale.status_code, stale.json()["received"]) == (409, half)
    assert status.json()["received"] == half
    assert (rest.status_code, rest.json()["received"]) == (200, len(data))
    assert done.status_code == 201, done.content
    video = Video.objects.get()
    assert (done.json()["id"], video.title, video.original_filename) == (
        video.pk, "chunked", "a.mp4")
    assert (storage_root / video.source_name).read_bytes() == data
    assert UploadSession.objects.get().video_id == video.pk
    assert list(Path(settings.MEDIA_UPLOAD_CHUNK_DIR).iterdir()) == []  # the part is gone
    assert OutboxEvent.objects.filter(type="video.uploaded").count() == 1


def test_resumable_upload_refuses_to_complete_early_and_hides_others_sessions(
        api, other_user, make_clip, storage_root):
    data = make_clip("320x240", 2).read_bytes()
    session_id = api.post("/api/media/uploads/", {"size": len(data)}, format="json").json()["id"]
    url = f"/api/media/uploads/{session_id}/"
    api.put(url, data[:100], content_type="application/octet-stream",
            HTTP_CONTENT_RANGE=f"bytes 0-99/{len(data)}")

    early = api.post(f"{url}complete/")
    assert early.status_code == 400
    assert errors_of(early)["file"] == [
        f"The upload has 100 of {len(data)} bytes; send the rest before completing it."]

    stranger = APIClient()
    stranger.force_authenticate(other_user)
    assert stranger.get(url).status_code == 404
    assert stranger.put(url, data[100:200], content_type="application/octet-stream",
                        HTTP_CONTENT_RANGE=f"bytes 100-199/{len(data)}").status_code == 404

    bad_range = api.put(url, data[100:200], content_type="application/octet-stream")
    assert bad_range.status_code == 400
    too_big = api.post("/api/media/uploads/", {"size": 10**12}, format="json")
    assert too_big.status_code == 400
    assert errors_of(too_big)["size"] == [
        "The file is 953674 MB; videos can be at most 512 MB."]
    _nothing_left(storage_root)


NASTY_NAMES = ["../x.mp4", "..\\..\\win\\x.mp4", "/etc/passwd/clip.mp4", "a\x07b\u200bc.mp4",
               "&lt;b&gt;.mp4", "n" * 300 + ".mp4"]


@pytest.mark.parametrize("name", NASTY_NAMES)
def test_resumable_and_direct_uploads_clean_the_file_name_the_same_way(
        api, make_clip, storage_root, name):
    # given: the same clip and client file name sent both ways
    data = make_clip("320x240", 1).read_bytes()
    direct = upload(api, make_clip("320x240", 1), name=name)
    assert direct.status_code == 201, direct.content
    created = api.post("/api/media/uploads/", {"size": len(data), "filename": name},
                       format="json")
    url = f"/api/media/uploads/{created.json()['id']}/"
    api.put(url, data, content_type="application/octet-stream",
            HTTP_CONTENT_RANGE=f"bytes 0-{len(data) - 1}/{len(data)}")
    # when
    resumed = api.post(f"{url}complete/")
    # then: one name, no folder in it, what the direct upload stored
    assert resumed.status_code == 201, resumed.content
    direct_name = Video.objects.get(pk=direct.json()["id"]).original_filename
    resumed_name = Video.objects.get(pk=resumed.json()["id"]).original_filename
    assert resumed_name == direct_name
    assert UploadSession.objects.get().filename == direct_name
    assert "/" not in direct_name and "\\" not in direct_name and ".." not in direct_name
    assert direct_name.endswith(".mp4") and len(direct_name) <= 255


@pytest.mark.parametrize("name", ["..", ".", "../", ""])
def test_a_file_name_that_is_only_a_path_is_kept_as_no_name(api, name):
    created = api.post("/api/media/uploads/", {"size": 10, "filename": name}, format="json")
    assert created.status_code == 201, created.content
    assert UploadSession.objects.get().filename == ""
