"""Helpers of the feeds tests: apply events to the feeds consumer's handler as the runtime
would (one batch, one transaction), and read feeds through the API."""

from __future__ import annotations

from django.db import transaction

from feeds import handlers
from feeds.fanout import FanoutWorker
from notifications.tests.helpers import consumed
from outbox.models import OutboxEvent


def apply_outbox(*, since_id: int = 0) -> int:
    """Hand every outbox event after `since_id` that the feeds consumer reads to its handler,
    as one batch; returns the last outbox id seen."""
    rows = list(OutboxEvent.objects.filter(id__gt=since_id, type__in=handlers.TYPES)
                .order_by("id"))
    if rows:
        with transaction.atomic():
            handlers.apply([consumed(r.type, r.payload, event_id=r.event_id) for r in rows])
    last = OutboxEvent.objects.order_by("-id").values_list("id", flat=True).first()
    return last or since_id


def run_fanout() -> int:
    """Run the fan-out worker until no job waits; returns the chunks written."""
    worker = FanoutWorker(max_idle=0)
    while worker.step():
        pass
    return worker.chunks


def feed_ids(client, **params) -> list[int]:
    resp = client.get("/api/feed/", params)
    assert resp.status_code == 200, resp.content
    return [p["id"] for p in resp.json()["results"]]
