"""Outbox retention: delete delivered rows, never an undelivered one."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.utils import timezone

from .models import RelayPosition

log = logging.getLogger("relay.retention")


def outbox_prune(*, older_than: timedelta | None = None, shards: int | None = None,
                 chunk: int = 10_000) -> int:
    """Delete outbox rows visible in their shard's `S_prev` and older than `older_than`.

    Rows visible in `S_prev` belong to ticks the relay finished (DESIGN.md §3); the tick being
    delivered is kept whole even when part of it is in Kafka. The position read is the
    database copy, written only after the Kafka commit, so never ahead of the Kafka checkpoint.
    Rows restored from another cluster go once the re-anchor's tick is done. Set-aside events
    keep their own copy (relay_set_aside). Deletes in chunks so no transaction grows large."""
    older_than = older_than if older_than is not None else timedelta(
        hours=settings.OUTBOX_RETENTION_HOURS)
    shards = shards or settings.RELAY_SHARDS
    cutoff = timezone.now() - older_than
    deleted = 0
    for pos in RelayPosition.objects.filter(shards=shards):
        condition, params = pos.position.retention_sql()
        shard_sql = "" if shards == 1 else f" AND shard_hash %% {shards:d} = {pos.shard:d}"
        while True:
            with connection.cursor() as cur:
                cur.execute(
                    "DELETE FROM outbox_event WHERE id IN (SELECT id FROM outbox_event "
                    f"WHERE {condition} AND created_at < %s{shard_sql} LIMIT %s)",
                    [*params, cutoff, chunk],
                )
                n = cur.rowcount
            deleted += n
            if n < chunk:
                break
    log.info("outbox prune: deleted %d delivered rows older than %s", deleted, older_than)
    return deleted


def inbox_prune(*, older_than: timedelta | None = None, chunk: int = 10_000) -> int:
    """Delete inbox rows older than INBOX_RETENTION_HOURS, in chunks.

    The inbox must remember an event for as long as Kafka can deliver it again: keep this above
    the topics' retention (a `--to-earliest` offset reset re-reads that far back)."""
    older_than = older_than if older_than is not None else timedelta(
        hours=settings.INBOX_RETENTION_HOURS)
    cutoff = timezone.now() - older_than
    deleted = 0
    while True:
        with connection.cursor() as cur:
            cur.execute(
                "DELETE FROM relay_inbox WHERE id IN (SELECT id FROM relay_inbox "
                "WHERE processed_at < %s ORDER BY processed_at LIMIT %s)",
                [cutoff, chunk],
            )
            n = cur.rowcount
        deleted += n
        if n < chunk:
            break
    log.info("inbox prune: deleted %d rows older than %s", deleted, older_than)
    return deleted
