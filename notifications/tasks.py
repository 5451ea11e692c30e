"""Celery tasks of the notifications app: ids in, services do the work, safe to run twice."""

from __future__ import annotations

from uuid import UUID

from celery import shared_task

from . import services


@shared_task(name="notifications.send_delivery", ignore_result=True)
def send_delivery(delivery_id: str) -> str:
    return services.delivery_send(delivery_id=UUID(delivery_id))


@shared_task(name="notifications.send_deliveries", ignore_result=True)
def send_deliveries(delivery_ids: list[str]) -> dict[str, int]:
    """Several deliveries queued together (a routed batch): one attempt each, in turn; one
    failing send never stops the others (each records its own outcome and retry)."""
    outcomes: dict[str, int] = {}
    for delivery_id in delivery_ids:
        outcome = services.delivery_send(delivery_id=UUID(delivery_id))
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return outcomes


@shared_task(name="notifications.dispatch_due", ignore_result=True)
def dispatch_due() -> dict[str, int]:
    return {"deliveries": services.deliveries_dispatch_due(),
            "bulks": services.bulk_notifications_resume_stalled()}


@shared_task(name="notifications.bulk_fan_out", ignore_result=True)
def bulk_fan_out(bulk_id: int) -> int:
    return services.bulk_notification_fan_out(bulk_id=bulk_id)
