"""Reports: filed through the API, reviewed in the admin (hide the content or dismiss)."""

from __future__ import annotations

import pytest

from accounts.tests.fixtures import client_for, events, make_user
from posts import services as post_services
from posts.models import Comment, Post
from social import services
from social.models import Report

pytestmark = pytest.mark.django_db


@pytest.fixture
def post(alice):
    return post_services.post_create(author=alice, text="spammy")


def _report(client, target_type, target_id, reason="spam", **extra):
    return client.post("/api/reports/", {"target_type": target_type, "target_id": target_id,
                                         "reason": reason, **extra}, format="json")


def test_reporting_a_post_files_one_open_report_with_its_event(as_bob, bob, alice, post):
    first = _report(as_bob, "post", post.pk, details="buy followers")
    second = _report(as_bob, "post", post.pk)
    assert first.status_code == 201 and second.status_code == 200
    assert first.json()["id"] == second.json()["id"]
    assert {k: first.json()[k] for k in ("target_type", "target_id", "reason", "details",
                                         "status")} == {
        "target_type": "post", "target_id": post.pk, "reason": "spam",
        "details": "buy followers", "status": "open"}
    report = Report.objects.get()
    assert (report.reporter_id, report.target_user_id) == (bob.pk, alice.pk)
    [event] = events("report.filed")
    assert event.payload["report_id"] == report.pk and event.payload["target_user_id"] == alice.pk


def test_bad_reports_get_clear_errors(as_alice, as_bob, alice, post):
    own = _report(as_alice, "post", post.pk)
    assert own.status_code == 400
    assert own.json()["errors"] == {"target_id": ["You cannot report your own post."]}
    assert _report(as_bob, "post", 987654).status_code == 404
    assert _report(as_bob, "comment", 987654).json()["detail"] == "No such comment."
    bad = _report(as_bob, "video", 1, reason="boring")
    assert bad.status_code == 400 and set(bad.json()["errors"]) == {"target_type", "reason"}
    assert Report.objects.count() == 0


def test_hiding_a_reported_post_removes_it_everywhere_and_resolves_every_report(
        as_bob, anon, alice, post, admin_client, admin_user):
    # given: two people reported it, and alice has another post
    keep = post_services.post_create(author=alice, text="fine")
    _report(as_bob, "post", post.pk)
    _report(client_for(make_user()), "post", post.pk, reason="hate")
    first = Report.objects.order_by("pk").first()
    # when: an operator hides it in the admin
    resp = admin_client.post("/admin/social/report/", {
        "action": "hide_content", "_selected_action": [first.pk]}, follow=True)
    # then
    assert resp.status_code == 200
    assert list(Report.objects.values_list("status", "resolved_by")) == [
        ("hidden", admin_user.pk), ("hidden", admin_user.pk)]
    assert Post.objects.get(pk=post.pk).hidden_at is not None
    assert anon.get(f"/api/posts/{post.pk}/").status_code == 404
    assert [p["id"] for p in anon.get("/api/posts/").json()["results"]] == [keep.pk]
    assert anon.get(f"/api/users/{alice.pk}/").json()["posts_count"] == 1
    assert as_bob.post(f"/api/posts/{post.pk}/like/").status_code == 404
    [hidden] = events("post.hidden")
    assert (hidden.payload["post_id"], hidden.payload["actor_id"]) == (post.pk, admin_user.pk)
    assert len(events("report.resolved")) == 2


def test_dismissing_keeps_the_content(as_bob, anon, post, admin_user):
    _report(as_bob, "post", post.pk)
    assert services.report_resolve(report=Report.objects.get(), operator=admin_user,
                                   hide=False) == 1
    assert Report.objects.get().status == "dismissed"
    assert anon.get(f"/api/posts/{post.pk}/").status_code == 200
    # a decided report is not decided twice
    assert services.report_resolve(report=Report.objects.get(), operator=admin_user,
                                   hide=True) == 0
    assert Post.objects.get(pk=post.pk).hidden_at is None


def test_hiding_a_comment_drops_it_from_the_list_and_the_count(as_bob, anon, alice, post,
                                                               admin_user):
    comment = post_services.comment_create(post_id=post.pk, author=alice, text="rude")
    post_services.comment_create(post_id=post.pk, author=alice, text="nice")
    _report(as_bob, "comment", comment.pk, reason="harassment")
    services.report_resolve(report=Report.objects.get(), operator=admin_user, hide=True)
    assert Comment.objects.get(pk=comment.pk).hidden_at is not None
    listed = anon.get(f"/api/posts/{post.pk}/comments/").json()["results"]
    assert [c["text"] for c in listed] == ["nice"]
    assert anon.get(f"/api/posts/{post.pk}/").json()["comment_count"] == 1
    [event] = events("comment.hidden")
    assert (event.payload["comment_id"], event.payload["comment_count"]) == (comment.pk, 1)


def test_hiding_a_reported_user_deactivates_the_account(as_bob, anon, alice, admin_user):
    _report(as_bob, "user", alice.pk, reason="impersonation")
    services.report_resolve(report=Report.objects.get(), operator=admin_user, hide=True)
    alice.refresh_from_db()
    assert alice.is_active is False
    assert anon.get(f"/api/users/{alice.pk}/").status_code == 404
    assert events("user.account_changed")[-1].payload["change"] == "deactivated"


def test_reports_need_a_signed_in_user(anon, post):
    assert _report(anon, "post", post.pk).status_code == 401
