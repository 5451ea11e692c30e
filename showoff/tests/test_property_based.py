"""A property-based run (schemathesis) over EVERY operation of the served OpenAPI schema, as a
staff user holding data in every app, so generated requests reach past authentication and the
"no such object" answers: no 5xx, no response outside the schema, no schema-violating request
accepted. And a stateful run that chains operations through the schema's OpenAPI links
(register → send coins to the new user; post → like, comment, tip the author, ...).

`SCHEMATHESIS_EXAMPLES` (default 25) is the number of cases per operation and generation mode
(valid and invalid): about 75 operations x 2 modes x 25, which takes about 3 minutes on the
2-core CI machine (docs/testing.md has the measured figures). Raise it for a deeper local run.
"""

from __future__ import annotations

import os
import uuid

import pytest
import redis
from django.db import transaction
from rest_framework_simplejwt.tokens import RefreshToken

from accounts.tests.fixtures import make_user
from coins import services as coins_services
from coins.models import CoinPackage
from coins.tests.helpers import fund
from media import services as media_services
from notifications import services as notification_services
from notifications.models import Notification
from posts import services as post_services
from social import services as social_services

from .fuzz import fuzz_operations, linked_operations, load_schema, run_stateful

EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "25"))
STATEFUL_EXAMPLES = int(os.environ.get("SCHEMATHESIS_STATEFUL_EXAMPLES", "60"))


@pytest.fixture
def world(settings, tmp_path, make_clip, wsgi_keeps_connection):
    """A staff user ("fuzzer") with something in every app; returns the bearer header."""
    settings.MEDIA_STORAGE = "local"
    settings.MEDIA_STORAGE_LOCATION = str(tmp_path / "media")
    settings.MEDIA_UPLOAD_CHUNK_DIR = str(tmp_path / "chunks")
    settings.MEDIA_X264_PRESET = "ultrafast"
    settings.MEDIA_FFMPEG_THREADS = 1
    settings.MEDIA_PREVIEW_FRAMES = 1
    settings.MEDIA_CELERY_QUEUE = f"media-test-{uuid.uuid4().hex[:12]}"
    settings.COINS_PAYMENT_WEBHOOK_SECRET = "whsec-fuzz"
    settings.COINS_WITHDRAWAL_REQUIRE_KYC = False
    settings.COINS_WITHDRAWAL_MIN_AMOUNT = 1
    # Registrations and logins are throttled per client IP (every generated request has the
    # same one): a budget this run cannot spend, so links keep getting real answers.
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {
        **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"],
        "register": "100000/hour", "login": "100000/min", "otp": "100000/hour"}}
    settings.ANALYTICS_INGEST_RATE = "100000/min"
    user = make_user(username="fuzzer", is_staff=True)
    others = [make_user(username=f"other{i}") for i in range(3)]
    # posts, comments, likes, follows and a block
    for author in (user, others[0]):
        post = post_services.post_create(author=author, text="seed")
        post_services.comment_create(post_id=post.pk, author=others[1], text="seed")
        post_services.post_like(post_id=post.pk, user=others[1])
    social_services.follow_create(follower=user, followee_id=others[0].pk)
    social_services.follow_create(follower=others[1], followee_id=user.pk)
    social_services.block_create(blocker=user, blocked_id=others[2].pk)
    # coins: a balance, a package on sale, a withdrawal
    fund(user, 100_000)
    CoinPackage.objects.create(name="P", coins=100, price_minor=99, currency="USD")
    coins_services.withdrawal_request(user=user, amount=10, destination="x")
    # media: a ready video (transcoded for real) and an open resumable upload
    clip = make_clip("320x240", 1)
    video = media_services.video_create_from_path(owner=user, path=clip)
    with transaction.atomic():
        job, _ = media_services.transcode_job_record(video_id=video.pk)
    assert media_services.transcode_job_run(job_id=job.pk) == "succeeded"
    media_services.upload_session_create(owner=user, size=clip.stat().st_size)
    # notifications: in-app ones, a device, a bulk send
    for i in range(3):
        Notification.objects.create(request_id=uuid.uuid4(), recipient=user, kind="post_liked",
                                    title=f"t{i}", actor=others[0])
    notification_services.device_register(user=user, platform="android", token="t" * 40)
    notification_services.bulk_notification_create(
        created_by=user, kind="announcement", title="t", body="b", segment={"all": True})
    yield f"Bearer {RefreshToken.for_user(user).access_token}"
    redis.Redis.from_url(settings.CELERY_BROKER_URL).delete(settings.MEDIA_CELERY_QUEUE)


def _schema_operations() -> set[str]:
    return {f"{op.ok().method.upper()} {op.ok().path}"
            for op in load_schema().get_all_operations()}


@pytest.mark.django_db
def test_every_operation_finds_no_server_error_and_no_schema_violation(world):
    # when
    result = fuzz_operations(world, EXAMPLES)
    # then: every operation of the schema was run, with both valid and invalid input
    assert set(result.operations) == _schema_operations()
    assert len(result.operations) >= 70
    assert {"POST /api/media/videos/", "PUT /api/media/uploads/{session_id}/",
            "GET /api/media/files/{token}", "POST /api/analytics/events/",
            "GET /api/analytics/metrics/{metric}/"} <= set(result.operations)
    assert result.failures == [], "\n\n".join(result.failures)
    assert result.examples >= len(result.operations) * 2 * min(EXAMPLES, 5)


JOURNEY = {"auth_register_create", "posts_create", "posts_like_create",
           "posts_comments_create", "coins_transfers_create"}


@pytest.mark.django_db
def test_a_stateful_run_of_register_post_like_comment_transfer_finds_no_failure(world):
    # when: chains of calls, each next call fed by a link from an earlier answer (any failed
    # check in any step fails the run)
    taken = run_stateful(world, operation_ids=JOURNEY, steps=6, examples=STATEFUL_EXAMPLES)
    # then: the journey's links were all followed: coins sent to the user just registered,
    # the post just made liked, commented on and its author tipped
    assert {"SendCoins", "LikePost", "CommentOnPost", "TipAuthor"} <= set(taken), sorted(
        set(taken))


@pytest.mark.django_db
def test_a_stateful_run_over_every_linked_operation_finds_no_failure(world):
    taken = run_stateful(world, operation_ids=linked_operations(), steps=8,
                         examples=STATEFUL_EXAMPLES)
    assert len(set(taken)) >= 6, sorted(set(taken))  # a run following no link proves little
