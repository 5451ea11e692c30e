"""Periodic maintenance of the Kafka side (Celery beat). Tasks are safe to run twice."""

from __future__ import annotations

from celery import shared_task

from .retention import outbox_prune


@shared_task(name="relay.prune_outbox", ignore_result=True)
def prune_outbox() -> int:
    return outbox_prune()


@shared_task(name="relay.prune_inbox", ignore_result=True)
def prune_inbox() -> int:
    from .retention import inbox_prune

    return inbox_prune()
