"""The notifications endpoints in the OpenAPI schema: a property-based run of each (as a
staff user, so the bulk endpoints are reached too) finds no 5xx and no response outside the
schema."""

from __future__ import annotations

import uuid

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from rest_framework_simplejwt.tokens import RefreshToken
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from notifications.models import Notification
from showoff.wsgi import application

from .helpers import device, make_user

EXAMPLES = 10


@pytest.fixture
def wsgi_keeps_connection():
    # The WSGI handler closes the connection after each request; the test's transaction lives
    # on it, so do what Django's test client does.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


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
    schema = schemathesis.openapi.from_wsgi("/api/schema/", application)
    checks = [not_a_server_error, response_schema_conformance, status_code_conformance,
              content_type_conformance]
    failures: list[str] = []
    operations = 0
    # when
    for result in schema.get_all_operations():
        operation = result.ok()
        if not operation.path.startswith("/api/notifications/"):
            continue
        operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            @given(case=operation.as_strategy(generation_mode=mode))
            @hypothesis_settings(max_examples=EXAMPLES, deadline=None, database=None,
                                 phases=[Phase.explicit, Phase.generate],
                                 suppress_health_check=list(HealthCheck))
            def run(case):
                case.headers = {**(case.headers or {}), "Authorization": token}
                case.call_and_validate(checks=checks)

            try:
                run()
            except Exception as exc:  # noqa: BLE001 - every failure is collected and shown
                failures.append(f"{operation.method.upper()} {operation.path} [{mode.value}]: "
                                f"{str(exc)[:1500]}")
    # then
    assert operations == 12
    assert failures == [], "\n\n".join(failures)
