"""Own profile, public profiles, avatars, and account changes through the API."""

from __future__ import annotations

import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from accounts.models import User
from accounts.tests.fixtures import PASSWORD, client_for, events
from posts.models import Comment, Post

pytestmark = pytest.mark.django_db


def _png(size=(8, 8), fmt="PNG") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 10, 10)).save(buf, fmt)
    return buf.getvalue()


# --- own profile ----------------------------------------------------------------------------


def test_me_shows_private_fields_to_the_owner(as_alice, alice):
    body = as_alice.get("/api/me/").json()
    assert body["email"] == "alice@example.com"
    assert body["phone"] is None
    assert body["phone_verified"] is False
    assert "password" not in body


def test_me_needs_a_signed_in_user(anon):
    resp = anon.get("/api/me/")
    assert resp.status_code == 401
    assert resp.json() == {"type": "not_authenticated",
                           "detail": "Authentication credentials were not provided."}
    assert anon.patch("/api/me/", {"bio": "x"}).status_code == 401


def test_profile_update_emits_only_the_changed_fields(as_alice, alice):
    # when
    resp = as_alice.patch("/api/me/", {"display_name": "Alice", "bio": "Skater."})
    # then
    assert resp.status_code == 200
    assert resp.json()["bio"] == "Skater."
    [event] = events("user.profile_updated")
    assert event.payload == {"user_id": alice.pk, "changed": {"bio": "Skater."}}


def test_profile_update_with_nothing_changed_emits_nothing(as_alice):
    resp = as_alice.patch("/api/me/", {"display_name": "Alice"})
    assert resp.status_code == 200
    assert events("user.profile_updated") == []


@pytest.mark.parametrize(("payload", "field"), [
    ({"bio": "x" * 501}, "bio"),
    ({"display_name": "x" * 81}, "display_name"),
    ({"display_name": {"a": 1}}, "display_name"),
])
def test_profile_update_rejects_bad_input(as_alice, payload, field):
    resp = as_alice.patch("/api/me/", payload, format="json")
    assert resp.status_code == 400
    assert field in resp.json()["errors"]
    assert events() == []


def test_another_users_profile_hides_private_fields(as_bob, anon, alice):
    for client in (as_bob, anon):
        body = client.get(f"/api/users/{alice.pk}/").json()
        assert body == {"id": alice.pk, "username": "alice", "display_name": "Alice", "bio": "",
                        "avatar_url": None, "date_joined": body["date_joined"],
                        "followers_count": 0, "following_count": 0, "posts_count": 0,
                        "followed_by_me": False}


def test_unknown_or_deactivated_users_are_404(anon, alice):
    assert anon.get("/api/users/999999/").status_code == 404
    assert anon.get(f"/api/users/{2**64}/").status_code == 404
    User.objects.filter(pk=alice.pk).update(is_active=False)
    resp = anon.get(f"/api/users/{alice.pk}/")
    assert resp.status_code == 404
    assert resp.json() == {"type": "not_found", "detail": "No such user."}


# --- avatar ---------------------------------------------------------------------------------


@pytest.fixture
def media_folder(settings, tmp_path):
    settings.MEDIA_STORAGE = "local"
    settings.MEDIA_STORAGE_LOCATION = str(tmp_path)
    return tmp_path


def test_avatar_upload_stores_the_image_and_announces_its_url(
        as_alice, alice, anon, media_folder, django_capture_on_commit_callbacks):
    # when
    image = _png()
    resp = as_alice.put("/api/me/avatar/", {"avatar": SimpleUploadedFile(
        "me.png", image, content_type="image/png")}, format="multipart")
    # then: stored in the media storage, at a stable absolute URL anyone can fetch
    assert resp.status_code == 200, resp.json()
    url = resp.json()["avatar_url"]
    assert url == f"http://testserver/media/avatars/{alice.pk}/1.png"
    assert (media_folder / f"avatars/{alice.pk}/1.png").read_bytes() == image
    fetched = anon.get(url)
    assert fetched.status_code == 200
    assert fetched["Content-Type"] == "image/png"
    assert fetched["Cache-Control"] == "public, max-age=31536000, immutable"
    assert b"".join(fetched.streaming_content) == image
    assert anon.get(f"/api/users/{alice.pk}/").json()["avatar_url"] == url
    [event] = events("user.profile_updated")
    assert event.payload == {"user_id": alice.pk,
                             "changed": {"avatar_url": f"/media/avatars/{alice.pk}/1.png"}}
    # and removing it deletes the file: its URL is a JSON 404
    with django_capture_on_commit_callbacks(execute=True):
        assert as_alice.delete("/api/me/avatar/").json() == {"avatar_url": None}
    alice.refresh_from_db()
    assert not alice.avatar
    assert not (media_folder / f"avatars/{alice.pk}/1.png").exists()
    gone = anon.get(url)
    assert (gone.status_code, gone.json()["type"]) == (404, "not_found")


def test_only_public_folders_are_served_without_a_signature(anon, media_folder):
    # given: a video source next to the avatars in the same storage
    (media_folder / "videos" / "k").mkdir(parents=True)
    (media_folder / "videos" / "k" / "source.mp4").write_bytes(b"private")
    (media_folder / "avatars").mkdir()
    # then: neither its path nor a way around the prefix serves it
    for path in ("/media/videos/k/source.mp4", "/media/avatars/../videos/k/source.mp4",
                 "/media/avatars/%2e%2e/videos/k/source.mp4"):
        resp = anon.get(path)
        assert resp.status_code == 404, path


def test_avatar_rejects_a_file_that_is_not_an_image(as_alice):
    resp = as_alice.put("/api/me/avatar/", {"avatar": SimpleUploadedFile(
        "me.png", b"<?php echo 1; ?>", content_type="image/png")}, format="multipart")
    assert resp.status_code == 400
    assert resp.json()["errors"]["avatar"] == [
        "The file is not a readable image; upload a JPEG, PNG, WebP or GIF."]
    assert events() == []


def test_avatar_rejects_an_oversize_upload(as_alice, settings):
    settings.ACCOUNTS_AVATAR_MAX_BYTES = 100
    data = _png((64, 64))
    resp = as_alice.put("/api/me/avatar/", {"avatar": SimpleUploadedFile(
        "big.png", data, content_type="image/png")}, format="multipart")
    assert resp.status_code == 400
    assert resp.json()["errors"]["avatar"] == [
        f"The image is {len(data)} bytes; the limit is 100 bytes."]


def test_avatar_rejects_unsupported_formats_and_missing_files(as_alice):
    resp = as_alice.put("/api/me/avatar/", {"avatar": SimpleUploadedFile(
        "a.bmp", _png(fmt="BMP"), content_type="image/bmp")}, format="multipart")
    assert resp.status_code == 400
    assert "BMP images are not accepted" in resp.json()["errors"]["avatar"][0]
    resp = as_alice.put("/api/me/avatar/", {}, format="multipart")
    assert resp.status_code == 400
    resp = as_alice.put("/api/me/avatar/", {"avatar": "x"}, format="json")
    assert resp.status_code == 415


def test_avatar_needs_a_signed_in_user(anon):
    resp = anon.put("/api/me/avatar/", {"avatar": SimpleUploadedFile(
        "me.png", _png(), content_type="image/png")}, format="multipart")
    assert resp.status_code == 401


# --- account changes ----------------------------------------------------------------------


def test_email_change_needs_the_password_and_announces_old_and_new(as_alice, alice):
    wrong = as_alice.post("/api/me/email/", {"new_email": "a2@example.com", "password": "no"})
    assert wrong.status_code == 400
    assert wrong.json()["errors"] == {"password": ["Wrong password."]}
    # when
    resp = as_alice.post("/api/me/email/", {"new_email": "a2@example.com",
                                            "password": PASSWORD})
    # then
    assert resp.status_code == 200
    assert resp.json()["email"] == "a2@example.com"
    [event] = events("user.account_changed")
    assert {k: v for k, v in event.payload.items() if k != "changed_at"} == {
        "user_id": alice.pk, "change": "email", "old_email": "alice@example.com",
        "new_email": "a2@example.com"}
    assert PASSWORD not in str(event.payload)


def test_email_change_to_another_accounts_email_is_400(as_alice, bob):
    resp = as_alice.post("/api/me/email/", {"new_email": "BOB@example.com",
                                            "password": PASSWORD})
    assert resp.status_code == 400
    assert resp.json()["errors"] == {"new_email": ["Another account uses this email."]}


def test_password_change_signs_out_every_session_and_returns_new_tokens(anon, alice):
    # given: two sessions
    s1 = anon.post("/api/auth/login/", {"login": "alice", "password": PASSWORD}).json()
    s2 = anon.post("/api/auth/login/", {"login": "alice", "password": PASSWORD}).json()
    c1 = client_for(None)
    c1.credentials(HTTP_AUTHORIZATION=f"Bearer {s1['access']}")
    # when
    resp = c1.post("/api/me/password/", {"old_password": PASSWORD,
                                         "new_password": "another-Long-pass-42"})
    # then
    assert resp.status_code == 200
    new = resp.json()
    assert c1.get("/api/me/").status_code == 401  # old access token
    for old in (s1, s2):
        assert anon.post("/api/auth/refresh/", {"refresh": old["refresh"]}).status_code == 401
    c1.credentials(HTTP_AUTHORIZATION=f"Bearer {new['access']}")
    assert c1.get("/api/me/").status_code == 200
    [event] = events("user.account_changed")
    assert set(event.payload) == {"user_id", "change", "changed_at"}
    assert event.payload["change"] == "password"
    assert "another-Long-pass-42" not in str(event.payload)


def test_password_change_validates_both_passwords(as_alice):
    resp = as_alice.post("/api/me/password/", {"old_password": "no", "new_password": "x"})
    assert resp.status_code == 400
    assert resp.json()["errors"] == {"old_password": ["Wrong password."]}
    resp = as_alice.post("/api/me/password/", {"old_password": PASSWORD,
                                               "new_password": "123"})
    assert resp.status_code == 400
    assert "new_password" in resp.json()["errors"]


def test_deactivate_hides_the_account_and_signs_it_out(as_alice, alice, anon):
    assert as_alice.post("/api/me/deactivate/", {"password": "no"}).status_code == 400
    # when
    resp = as_alice.post("/api/me/deactivate/", {"password": PASSWORD})
    # then
    assert resp.status_code == 204
    assert as_alice.get("/api/me/").status_code == 401
    assert anon.post("/api/auth/login/", {"login": "alice", "password": PASSWORD}
                     ).status_code == 400
    assert anon.get(f"/api/users/{alice.pk}/").status_code == 404
    [event] = events("user.account_changed")
    assert event.payload["change"] == "deactivated"


def test_delete_removes_personal_data_and_hides_content(as_alice, alice, bob, anon):
    # given
    from posts import services as post_services

    own = post_services.post_create(author=alice, text="mine")
    bobs = post_services.post_create(author=bob, text="bob's")
    post_services.comment_create(post_id=bobs.pk, author=alice, text="nice")
    post_services.post_like(post_id=bobs.pk, user=alice)
    # when
    resp = as_alice.post("/api/me/delete/", {"password": PASSWORD})
    # then
    assert resp.status_code == 204
    alice.refresh_from_db()
    assert (alice.username, alice.email, alice.display_name, alice.phone) == (
        f"deleted-{alice.pk}", None, "", None)
    assert not alice.has_usable_password() and not alice.is_active
    assert alice.deleted_at is not None
    own.refresh_from_db()
    assert own.deleted_at is not None and own.text == ""
    assert Comment.objects.filter(author=alice).count() == 0
    bobs.refresh_from_db()
    assert (bobs.comment_count, bobs.like_count) == (0, 1)
    assert anon.get(f"/api/posts/{own.pk}/").status_code == 404
    assert [e.payload["post_id"] for e in events("post.deleted")] == [own.pk]
    [event] = events("user.account_changed")
    assert event.payload["change"] == "deleted"
    assert not Post.objects.filter(author=alice, deleted_at__isnull=True).exists()


def test_account_changes_need_a_signed_in_user(anon):
    for path in ("/api/me/email/", "/api/me/password/", "/api/me/deactivate/",
                 "/api/me/delete/", "/api/me/phone/code/", "/api/me/phone/verify/"):
        assert anon.post(path, {}).status_code == 401, path
