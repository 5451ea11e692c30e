"""Reads about the relay's progress: what is delivered, what waits, and for how long."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import connection

from .models import RelayPosition, SetAsideEvent
from .position import START, Position


@dataclass(frozen=True)
class ShardState:
    shards: int
    shard: int
    # The last delivered row (none yet, or none since a re-anchor or layout change).
    txid: int | None
    last_id: int | None
    last_commit_at: datetime | None
    events_total: int
    backlog: int
    lag_seconds: float
    # The tick (S_prev, S_cur) being delivered and the cursor in it (the database copy).
    position: Position = Position(START, START)

    @property
    def s_prev(self) -> str:
        return str(self.position.prev)

    @property
    def s_cur(self) -> str:
        return str(self.position.cur)

    @property
    def cursor_id(self) -> int:
        return self.position.cursor_id


def _shard_sql(shards: int, shard: int) -> str:
    # Only integers are formatted into the SQL.
    return "" if shards == 1 else f"shard_hash %% {shards:d} = {shard:d} AND "


def delivered_condition(shards: int | None = None) -> tuple[str, list]:
    """SQL condition (and params) true for outbox rows their shard's position says are in
    Kafka (the database copy, never ahead of Kafka's checkpoint)."""
    shards = shards or settings.RELAY_SHARDS
    positions = list(RelayPosition.objects.filter(shards=shards))
    if not positions:
        return "FALSE", []
    parts, params = [], []
    for pos in positions:
        condition, cparams = pos.position.delivered_sql()
        parts.append(f"({_shard_sql(shards, pos.shard)}{condition})")
        params += cparams
    return "(" + " OR ".join(parts) + ")", params


def shard_states(shards: int | None = None) -> list[ShardState]:
    shards = shards or settings.RELAY_SHARDS
    by_shard = {p.shard: p for p in RelayPosition.objects.filter(shards=shards)}
    states = []
    with connection.cursor() as cur:
        for shard in range(shards):
            pos = by_shard.get(shard)
            position = pos.position if pos else Position(START, START)
            condition, params = position.undelivered_sql()
            cur.execute(
                "SELECT count(*), EXTRACT(EPOCH FROM now() - min(created_at)) FROM outbox_event "
                f"WHERE {_shard_sql(shards, shard)}{condition}", params,
            )
            backlog, lag = cur.fetchone()
            states.append(ShardState(
                shards=shards, shard=shard, position=position,
                txid=pos.txid if pos else None, last_id=pos.last_id if pos else None,
                last_commit_at=pos.last_commit_at if pos else None,
                events_total=pos.events_total if pos else 0,
                backlog=backlog, lag_seconds=float(lag or 0.0),
            ))
    return states


def set_aside_count() -> int:
    return SetAsideEvent.objects.count()


def oldest_open_transaction() -> dict | None:
    """The oldest open transaction in the cluster (with a transaction id or a snapshot). It no
    longer holds delivery back (the relay reads ticks), but it keeps vacuum from cleaning up
    and usually means a stuck request or a forgotten session."""
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
