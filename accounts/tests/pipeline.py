"""`recovery_pipeline`: the real relay and the `accounts` and `notifications-email` consumers
in-process on the test's own topics, Celery eager (the email lands in `mail.outbox`)."""

from __future__ import annotations

import pytest

from notifications.tests.conftest import eager_celery, pipeline_on_topics  # noqa: F401

CONSUMERS = {"accounts": ["email-events"], "notifications-email": ["email-events"]}


@pytest.fixture
def recovery_pipeline(kafka_prefix, eager_celery):  # noqa: F811 - the imported fixture
    yield from pipeline_on_topics(kafka_prefix, CONSUMERS)
