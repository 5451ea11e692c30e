"""Kafka handlers of the notifications app (registered with the consumer runtime in `relay/`).

Consumer names, one Kafka consumer group each (`{KAFKA_CONSUMER_GROUP}.<name>`):
- `notifications`: the triggers (`triggers.py`) on user-events, post-events,
  transaction-events and video-processing: domain events → `notification.requested`;
- `notifications-route`: notification-events → the in-app notification, push deliveries,
  `email.requested`, `sms.requested`;
- `notifications-email`: email-events → an email delivery (rendered);
- `notifications-sms`: sms-events → an SMS delivery.

Separate names keep the channels apart: a provider outage that makes SMS records back off
never holds up in-app notifications, and each has its own lag to watch and scale by. Each
handler runs in the consumed record's transaction; deliveries are sent by Celery after it
commits.
"""

from __future__ import annotations

from relay.registry import ConsumedEvent, PermanentError, handler

from . import services, triggers  # noqa: F401 - importing triggers registers them

ROUTE, EMAIL, SMS = "notifications-route", "notifications-email", "notifications-sms"


@handler(ROUTE, "notification.requested", batch=True)
def route_notifications(events: list[ConsumedEvent]) -> None:
    """The batch's requests routed together (a fixed number of statements per batch). A
    request that can never be routed fails the batch with `PermanentError`; the runtime then
    re-runs smaller batches until that request is alone, and dead-letters it."""
    try:
        services.notifications_route(requests=[
            services.RouteRequest(e.id, e.data, e.trace_headers()) for e in events])
    except (services.RecipientMissing, services.RequestInvalid) as exc:
        raise PermanentError(f"notification.requested: {exc}") from None


@handler(EMAIL, "email.requested")
def record_email(event: ConsumedEvent) -> None:
    try:
        services.email_request_record(event_id=event.id, data=event.data)
    except services.RequestInvalid as exc:
        raise PermanentError(f"email.requested {event.id}: {exc}")


@handler(SMS, "sms.requested")
def record_sms(event: ConsumedEvent) -> None:
    try:
        services.sms_request_record(event_id=event.id, data=event.data)
    except services.RequestInvalid as exc:
        raise PermanentError(f"sms.requested {event.id}: {exc}")
