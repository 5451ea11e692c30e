"""The notifications endpoints in the OpenAPI schema: a property-based run of each (as a
staff user, so the bulk endpoints are reached too) finds no 5xx and no response outside the
schema."""

from __future__ import annotations

import uuid

import pytest
from rest_framework_simplejwt.tokens import RefreshToken

from notifications.models import Notification
from showoff.tests.fuzz import fuzz_api

from .helpers import device, make_user

EXAMPLES = 10


@pytest.mark.django_db
def test_notifications_operations_find_no_server_error_and_no_schema_violation(
        wsgi_keeps_connection, django_capture_on_commit_callbacks):
    # given: a staff user with notifications and a device
    user = make_user(is_staff=True)
    for i in range(3):
        Notification.objects.create(request_id=uuid.uuid4(), recipient=user, kind="post_liked",
                                    title=f"t{i}", actor=user)
    device(user)
    token = f"Bearer {RefreshToken.for_user(user).access_token}"
    # when
    operations, failures = fuzz_api(("/api/notifications/",), token, EXAMPLES)
    # then
    assert operations == 12
    assert failures == [], "\n\n".join(failures)
