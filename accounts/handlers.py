"""Kafka handlers of the accounts app (registered with the consumer runtime in `relay/`).

Consumer `accounts` (its own group, `{KAFKA_CONSUMER_GROUP}.accounts`, run by
`manage.py consume email-events` beside `notifications-email`): a password reset request for an
address becomes, for an active account using it, a single-use link and its email. The API only
records the request, so its answer and its work are the same for every address.
"""

from __future__ import annotations

from django.utils.dateparse import parse_datetime

from relay.registry import ConsumedEvent, handler

from . import services

CONSUMER = "accounts"


@handler(CONSUMER, "email.password_reset_requested")
def issue_password_reset(event: ConsumedEvent) -> None:
    data = event.data
    services.password_reset_issue(email=data["email"], ip=data.get("ip"),
                                  requested_at=parse_datetime(data["requested_at"]),
                                  source_event_id=event.id)
