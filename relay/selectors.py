"""Reads about the relay's progress: what is delivered, what waits, and for how long."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import connection

from .models import RelayPosition


@dataclass(frozen=True)
class ShardState:
    shards: int
    shard: int
    txid: int
    last_id: int
    last_commit_at: datetime | None
    events_total: int
    backlog: int
    lag_seconds: float


def delivered_condition(shards: int | None = None) -> tuple[str, list]:
    """SQL condition (and params) true for outbox rows at or below their shard's position."""
    shards = shards or settings.RELAY_SHARDS
    positions = list(RelayPosition.objects.filter(shards=shards))
    if not positions:
        return "FALSE", []
    parts, params = [], []
    for pos in positions:
        shard_sql = "" if shards == 1 else f"shard_hash %% {shards:d} = {pos.shard:d} AND "
        parts.append(f"({shard_sql}(txid, id) <= (%s::xid8, %s))")
        params += [str(pos.txid), pos.last_id]
    return "(" + " OR ".join(parts) + ")", params


def shard_states(shards: int | None = None) -> list[ShardState]:
    shards = shards or settings.RELAY_SHARDS
    by_shard = {p.shard: p for p in RelayPosition.objects.filter(shards=shards)}
    states = []
    with connection.cursor() as cur:
        for shard in range(shards):
            pos = by_shard.get(shard)
            txid, last_id = (pos.txid, pos.last_id) if pos else (0, 0)
            shard_sql = "" if shards == 1 else f" AND shard_hash %% {shards:d} = {shard:d}"
            cur.execute(
                "SELECT count(*), EXTRACT(EPOCH FROM now() - min(created_at)) FROM outbox_event "
                "WHERE (txid, id) > (%s::xid8, %s)" + shard_sql,
                [str(txid), last_id],
            )
            backlog, lag = cur.fetchone()
            states.append(ShardState(
                shards=shards, shard=shard, txid=txid, last_id=last_id,
                last_commit_at=pos.last_commit_at if pos else None,
                events_total=pos.events_total if pos else 0,
                backlog=backlog, lag_seconds=float(lag or 0.0),
            ))
    return states


def oldest_open_transaction() -> dict | None:
    """The transaction holding `pg_snapshot_xmin` back longest (it delays delivery)."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT pid, usename, application_name, state, "
            "EXTRACT(EPOCH FROM now() - xact_start), left(query, 200) "
            "FROM pg_stat_activity WHERE (backend_xid IS NOT NULL OR backend_xmin IS NOT NULL) "
            "AND pid <> pg_backend_pid() ORDER BY xact_start NULLS LAST LIMIT 1"
        )
        row = cur.fetchone()
    if not row:
        return None
    keys = ("pid", "user", "application", "state", "age_seconds", "query")
    return dict(zip(keys, row, strict=True))
