"""Changing the relay's shard layout (`run_relay --shards N --change-layout`).

Each shard layout splits the outbox differently (`shard_hash % shards`), and each shard's
position is its own tick; positions of one layout say nothing about another's. So a layout
change hands over at one snapshot, the *barrier*:

1. Take every shard lock of the old layout (its relays must be stopped) and of the new one.
2. Write the layout record `{"shards": N, "state": "changing"}`: from now on a relay of the old
   layout refuses to start, and so does one of the new layout until the change is done.
3. As each old shard, `init_transactions()` (fencing any zombie of it) and read its checkpoint;
   then take the barrier `B = pg_current_snapshot()` and deliver each old shard up to B.
4. In one Kafka transaction: every new shard's checkpoint at the empty tick `(B, B)`, and the
   layout record `{"shards": N, "state": "active"}`. The new relays deliver exactly what
   committed after B; the old layout delivered exactly what was visible in B.

An interrupted change leaves the record "changing": running the command again finishes it
(the old shards resume from their checkpoints, with a new barrier).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from urllib.parse import quote

import psycopg
from django.conf import settings
from django.db import transaction

from .engine import LAYOUT_KEY, Relay, RelayError, Shard, _dumps
from .kafka import ensure_enabled
from .lease import connection_params
from .models import RelayPosition
from .position import Position

log = logging.getLogger("relay")


def _layout_transactional_id() -> str:
    client = quote(settings.KAFKA_CLIENT_ID, safe="")
    prefix = quote(settings.KAFKA_TOPIC_PREFIX, safe="")
    return f"relay:{client}:{prefix}:layout"


def _take_locks(conn: psycopg.Connection, shards: list[Shard]) -> None:
    for shard in shards:
        got = conn.execute("SELECT pg_try_advisory_lock(%s)", [shard.lock_key]).fetchone()[0]
        if not got:
            holder = conn.execute(
                "SELECT a.pid, a.application_name, a.client_addr FROM pg_locks l "
                "JOIN pg_stat_activity a USING (pid) WHERE l.locktype = 'advisory' "
                "AND l.granted AND ((l.classid::bigint << 32) | l.objid::bigint) = %s",
                [shard.lock_key]).fetchone()
            who = (f" by pid {holder[0]} ({holder[1] or 'no application name'}"
                   f"{', ' + str(holder[2]) if holder[2] else ''})" if holder else "")
            raise RelayError(
                f"the lock of relay shard {shard.label} is held{who}: stop every relay of the "
                f"{shard.shards}-shard layout (and its standbys) before changing the layout, "
                "then run this again."
            )


def change_layout(shards: int, *, batch_size: int | None = None) -> list[str]:
    """Hand the outbox over from the current shard layout to `shards`; returns report lines."""
    ensure_enabled("run_relay --change-layout")
    Shard(shards=shards, shard=0)  # validates
    probe = Relay(shard=Shard(shards, 0), use_lock=False, layout_change=True)
    if not probe._wait_for_kafka():
        return []
    probe._check_topics()
    producer = probe._new_producer(_layout_transactional_id())
    producer.init_transactions(settings.RELAY_COMMIT_TIMEOUT_SECONDS)
    found = probe.read_checkpoints()
    layout = found.layout or {}
    if layout.get("state") == "changing":
        old = int(layout["from"])
    elif layout:
        old = int(layout["shards"])
    else:
        seen = sorted(found.layouts_seen | set(
            RelayPosition.objects.values_list("shards", flat=True).distinct()))
        if len(seen) > 1:
            raise RelayError(f"checkpoints of several layouts ({seen}) and no layout record: "
                             "cannot tell which one is current.")
        old = seen[0] if seen else None
    if old == shards and layout.get("state") != "changing":
        return [f"the outbox is already relayed with {shards} shard(s); nothing to change"]

    def write_layout(value: dict, checkpoints: list[tuple[Shard, Position]] = ()) -> None:
        producer.begin_transaction()
        for shard, position in checkpoints:
            value_bytes = _dumps(position.to_record(shards=shard.shards, shard=shard.shard,
                                                    at=datetime.now(UTC).isoformat(),
                                                    layout_change=True))
            partition = shard.shard % probe._checkpoint_partitions
            producer.produce(probe._checkpoint_topic, key=shard.checkpoint_key,
                             value=value_bytes, partition=partition)
        producer.produce(probe._checkpoint_topic, key=LAYOUT_KEY, value=_dumps(value),
                         partition=0)
        producer.commit_transaction(settings.RELAY_COMMIT_TIMEOUT_SECONDS)

    now = datetime.now(UTC).isoformat()
    report = []
    lock_conn = psycopg.connect(**connection_params("showoff-relay-change-layout"),
                                autocommit=True)
    try:
        new_shards = [Shard(shards, j) for j in range(shards)]
        old_shards = [Shard(old, i) for i in range(old)] if old else []
        _take_locks(lock_conn, [*old_shards, *new_shards])
        if old is None:
            write_layout({"shards": shards, "state": "active", "at": now})
            return [f"nothing was relayed yet: the layout is now {shards} shard(s)"]
        write_layout({"shards": shards, "state": "changing", "from": old, "at": now})
        report.append(f"layout record: changing from {old} to {shards} shard(s); relays of "
                      "either layout refuse to start until this finishes")
        relays = [Relay(shard=s, use_lock=False, layout_change=True, batch_size=batch_size)
                  for s in old_shards]
        try:
            for relay in relays:
                relay.start()  # init_transactions fences any zombie of the old shard
            barrier = probe.snapshot()
            for relay in relays:
                relay.barrier = barrier
                delivered = 0
                while n := relay.step():
                    delivered += n
                report.append(f"old shard {relay.shard.label}: delivered its last {delivered} "
                              f"event(s), up to the barrier {barrier}")
        finally:
            for relay in relays:
                relay.close()
        start = Position(barrier, barrier)
        write_layout({"shards": shards, "state": "active", "from": old,
                      "barrier": str(barrier), "at": datetime.now(UTC).isoformat()},
                     [(s, start) for s in new_shards])
        with transaction.atomic():
            RelayPosition.objects.filter(shards__in={old, shards}).delete()
            RelayPosition.objects.bulk_create([
                RelayPosition(shards=shards, shard=s.shard, s_prev=str(barrier),
                              s_cur=str(barrier), cursor_id=0,
                              transactional_id=s.transactional_id) for s in new_shards])
        report.append(f"new layout: {shards} shard(s), each starting after {barrier}; start "
                      f"them with `manage.py run_relay --shards {shards} --shard I`")
        log.warning("relay: shard layout changed from %d to %d (barrier %s)", old, shards,
                    barrier)
        return report
    finally:
        lock_conn.close()
        producer.flush(1)
