"""Account recovery end to end on the real services: the API writes the request, the real relay
puts it on Kafka, the `accounts` consumer issues the link, `notifications-email` records the
delivery, Celery sends it through the email backend the tests use (locmem), and the token read
from the delivered email works on the API.

The first test runs in the production shape (`run_relay` and `consume email-events`
subprocesses, a real Celery worker on Redis); the others run the same relay and consumers
in-process (`recovery_pipeline`, accounts/tests/pipeline.py), faster, for the Spanish email and
the verification link."""

from __future__ import annotations

import re
import time
import uuid

import pytest
from celery import signals
from celery.contrib.testing.worker import start_worker
from django.core import mail
from django.db import connections

from accounts.models import AccountToken, User
from accounts.tests.fixtures import PASSWORD, client_for, make_user
from notifications import services as notification_services
from notifications import tasks as notification_tasks  # noqa: F401 - registers the tasks
from notifications.models import Delivery
from notifications.tests.conftest import clear_queue
from relay.models import InboxEntry
from relay.testing import ManageProcess, create_topic, delete_topics, wait_for
from relay.tests.relay_helpers import RelayProcess, create_relay_topics

pytestmark = pytest.mark.django_db(transaction=True)
NEW_PASSWORD = "from-The-email-42"
LINK = re.compile(r"http://localhost:3000/(reset-password|verify-email)\?token=([A-Za-z0-9_-]+)")


def _token_in(message, page: str) -> str:
    """The token of the link in the email, the same in its text and its HTML."""
    [(found_page, token)] = LINK.findall(message.body)
    assert found_page == page
    html = message.alternatives[0][0]
    assert f'href="http://localhost:3000/{page}?token={token}"' in html
    return token


@pytest.fixture
def celery_queue(settings):
    settings.NOTIFICATIONS_CELERY_QUEUE = f"recovery-test-{uuid.uuid4().hex[:12]}"
    yield settings.NOTIFICATIONS_CELERY_QUEUE
    clear_queue(settings.NOTIFICATIONS_CELERY_QUEUE)


def _logging_is_configured(**kwargs) -> None:
    pass


@pytest.fixture
def celery_worker(celery_queue):
    """A real Celery worker (a thread of this process, so locmem mail lands in mail.outbox)."""
    from showoff.celery import app

    db = connections.databases["default"]
    max_age = db.get("CONN_MAX_AGE")
    db["CONN_MAX_AGE"] = 0
    # start_worker would set Celery's logging up (the root logger at ERROR, for the rest of the
    # session: later tests capturing warnings would see none). A setup_logging receiver tells
    # Celery the logging is configured already.
    signals.setup_logging.connect(_logging_is_configured)
    try:
        with start_worker(app, pool="solo", perform_ping_check=False, queues=[celery_queue],
                          shutdown_timeout=30) as worker:
            yield worker
    finally:
        db["CONN_MAX_AGE"] = max_age
        signals.setup_logging.disconnect(_logging_is_configured)


@pytest.fixture
def email_topics(kafka_prefix):
    names = create_relay_topics()
    create_topic(f"{kafka_prefix}email-events.dlq", 3)
    yield
    delete_topics([*names, f"{kafka_prefix}email-events.dlq"])


def test_a_reset_link_read_from_the_delivered_email_sets_the_password(
        email_topics, celery_worker, celery_queue, tmp_path):
    # given: an account, a stranger's address, and the production processes
    ann = make_user(username="ann", email="ann@example.com", display_name="Ann")
    anon = client_for(None)
    env = {"KAFKA_CONSUMER_GROUP": f"recovery-{uuid.uuid4().hex[:8]}",
           "NOTIFICATIONS_CELERY_QUEUE": celery_queue}
    relay = RelayProcess(tmp_path)
    consumer = ManageProcess(["consume", "email-events", "--poll-timeout", "0.2"],
                             log_dir=tmp_path, **env)
    try:
        # when: both ask for a link
        for email in ("ann@example.com", "stranger@example.com"):
            assert anon.post("/api/auth/password/reset/", {"email": email}).status_code == 202
        wait_for(lambda: InboxEntry.objects.filter(consumer="accounts").count() == 2,
                 timeout=90, what="both requests handled by the accounts consumer")
        wait_for(lambda: len(mail.outbox) >= 1, timeout=60, what="the reset email")
        time.sleep(1.0)  # a second email, if one were wrongly sent, shows up by now
    finally:
        consumer.terminate()
        relay.terminate()
    # then: one email, to Ann only, with the link
    [message] = mail.outbox
    assert (message.to, message.subject) == (["ann@example.com"], "Reset your ShowOff password")
    assert message.body.startswith("Hi Ann,\n\nSomeone (we hope you) asked to reset")
    assert "expires in 60 minutes" in message.body
    token = _token_in(message, "reset-password")
    [delivery] = Delivery.objects.filter(channel="email")
    assert (delivery.status, delivery.address, delivery.attempts) == (
        "sent", "ann@example.com", 1)
    assert token not in str(delivery.payload)  # stored sealed, rendered only to send
    # when: the token from the email is used
    resp = anon.post("/api/auth/password/reset/confirm/",
                     {"token": token, "new_password": NEW_PASSWORD})
    # then
    assert resp.status_code == 204, resp.content
    assert anon.post("/api/auth/login/", {"login": "ann@example.com",
                                          "password": NEW_PASSWORD}).status_code == 200
    assert anon.post("/api/auth/login/", {"login": "ann", "password": PASSWORD}
                     ).status_code == 400
    assert AccountToken.objects.get(user=ann).used_at is not None


def test_the_reset_email_is_in_the_users_language(recovery_pipeline):
    # given: a user who reads Spanish
    ana = make_user(username="ana", email="ana@example.com", display_name="Ana")
    notification_services.preferences_update(user=ana, language="es")
    # when
    client_for(None).post("/api/auth/password/reset/", {"email": "ANA@example.com"})
    recovery_pipeline.run_until(lambda: len(mail.outbox) >= 1)
    # then
    [message] = mail.outbox
    assert message.subject == "Restablece tu contraseña de ShowOff"
    assert message.body.startswith("Hola, Ana:\n\nAlguien (esperamos que tú) pidió restablecer")
    assert "El enlace funciona una sola vez y caduca en 60 minutos." in message.body
    assert "Elegir una nueva contraseña" in message.alternatives[0][0]
    token = _token_in(message, "reset-password")
    assert client_for(None).post("/api/auth/password/reset/confirm/", {
        "token": token, "new_password": NEW_PASSWORD}).status_code == 204


def test_the_verification_email_from_registration_verifies_the_address(recovery_pipeline):
    # when: someone registers (the welcome email goes through notifications, not run here)
    anon = client_for(None)
    assert anon.post("/api/auth/register/", {"username": "eve", "email": "eve@example.com",
                                             "password": PASSWORD, "display_name": "Eve"}
                     ).status_code == 201
    recovery_pipeline.run_until(lambda: len(mail.outbox) >= 1)
    # then
    [message] = mail.outbox
    assert (message.to, message.subject) == (["eve@example.com"],
                                             "Confirm your email address for ShowOff")
    assert "Please confirm that eve@example.com is your email address" in message.body
    assert "expires in 72 hours" in message.body
    token = _token_in(message, "verify-email")
    assert anon.post("/api/auth/email/verify/", {"token": token}).status_code == 204
    assert User.objects.get(username="eve").email_verified_at is not None
