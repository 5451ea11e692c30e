"""The relay's position: PgQ-style ticks over PostgreSQL snapshots (DESIGN.md §3).

A *tick* is the set of transactions that committed between two snapshots `S_prev` and `S_cur`
(`pg_current_snapshot()`, taken by the relay in autocommit): visible in `S_cur`, not visible in
`S_prev`. Ticks are delivered one after the other, so across ticks events go in commit order;
inside a tick rows go in `id` order, which is commit order per key because writers of one key
serialise on that key's row lock and `publish` after taking it. A transaction still open when
`S_cur` is taken only delays itself: it is in a later tick.

The position is `(S_prev, S_cur, cursor_id)`: the tick being delivered and the id of the last
row of it already in Kafka. A tick larger than one batch is delivered in several Kafka
transactions with the same two snapshots and a moving `cursor_id`; when it is exhausted the next
tick starts from `S_prev := S_cur`.

PgQ's refinement keeps every read short when `S_prev` has an old `xmin` (a transaction left open
anywhere in the cluster): the rows of a tick are those with `txid` in `[xmax(S_prev), xmax(S_cur))`
visible in `S_cur` (an index range scan) plus those whose `txid` is one of the few ids of
`xip(S_prev)` that `S_cur` shows finished (an explicit list), never a scan from `xmin(S_prev)`.

`Restored` covers a database restored into another cluster (`run_relay --reanchor`): the outbox
rows it brought carry transaction ids of the old cluster, which mean nothing here. They are the
rows with `id <= max_id` and `txid >= xmax(snapshot)` at the moment of the re-anchor (a row
written here after that has a larger id, and one written before has a smaller transaction id);
they are delivered in the re-anchor's first tick and excluded from every later one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

CHECKPOINT_VERSION = 2


class PositionError(ValueError):
    pass


def _xid_array(ids) -> str:
    """An `xid8[]` literal (one parameter, whatever the number of ids)."""
    return "{" + ",".join(str(int(x)) for x in ids) + "}"


@dataclass(frozen=True)
class Snapshot:
    """A `pg_snapshot`: every transaction id below `xmin` finished, every one from `xmax` on had
    not started, and `xip` lists those in between still running."""

    xmin: int
    xmax: int
    xip: tuple[int, ...] = ()

    @classmethod
    def parse(cls, text: str) -> Snapshot:
        try:
            xmin, xmax, xip = str(text).split(":")
            ids = tuple(sorted(int(x) for x in xip.split(",") if x))
            snap = cls(int(xmin), int(xmax), ids)
        except ValueError:
            raise PositionError(f"{text!r} is not a pg_snapshot (xmin:xmax:xip,...)") from None
        if not 1 <= snap.xmin <= snap.xmax or any(not snap.xmin <= x < snap.xmax for x in ids):
            raise PositionError(f"{text!r} is not a valid pg_snapshot")
        return snap

    def __str__(self) -> str:
        return f"{self.xmin}:{self.xmax}:{','.join(str(x) for x in self.xip)}"

    def visible(self, txid: int) -> bool:
        """`pg_visible_in_snapshot(txid, self)`."""
        return txid < self.xmin or (txid < self.xmax and txid not in self.xip)

    def includes(self, other: Snapshot) -> bool:
        """Every transaction visible in `other` is visible here (this one is not older)."""
        return other.xmax <= self.xmax and not any(other.visible(x) for x in self.xip)


# Nothing visible: the start of an outbox (transaction id 1 is never a real transaction's).
START = Snapshot(1, 1)


@dataclass(frozen=True)
class Restored:
    """Rows restored from another cluster: `id <= max_id AND txid >= snapshot.xmax`; delivered
    in the tick ending at `snapshot` (the re-anchor's first)."""

    max_id: int
    snapshot: Snapshot

    def sql(self) -> tuple[str, list]:
        return "(id <= %s AND txid >= %s::xid8)", [self.max_id, str(self.snapshot.xmax)]


@dataclass(frozen=True)
class Position:
    prev: Snapshot
    cur: Snapshot
    cursor_id: int = 0
    restored: Restored | None = None

    # -- moving ------------------------------------------------------------------------------

    def after(self, last_id: int) -> Position:
        return replace(self, cursor_id=last_id)

    def next_tick(self, cur: Snapshot) -> Position:
        return Position(self.cur, cur, 0, self.restored)

    @property
    def restored_tick(self) -> bool:
        """This tick delivers the restored rows (the first after a re-anchor)."""
        return self.restored is not None and self.cur == self.restored.snapshot

    @property
    def restored_done(self) -> bool:
        return self.restored is not None and not self.restored_tick

    def not_older_than(self, other: Position) -> bool:
        if self.cur == other.cur:
            return self.cursor_id >= other.cursor_id
        return self.cur.includes(other.cur)

    # -- SQL -------------------------------------------------------------------------------------

    def finished_in_tick(self) -> list[int]:
        """Ids of `xip(S_prev)` that `S_cur` shows finished: the explicit list of the refined
        read (usually empty or a handful)."""
        return [x for x in self.prev.xip if self.cur.visible(x)]

    def _plain_tick(self) -> tuple[str, list]:
        return ("(pg_visible_in_snapshot(txid, %s::pg_snapshot) "
                "AND NOT pg_visible_in_snapshot(txid, %s::pg_snapshot))",
                [str(self.cur), str(self.prev)])

    def _refined_tick(self) -> tuple[str, list]:
        parts = ["(txid >= %s::xid8 AND txid < %s::xid8 "
                 "AND pg_visible_in_snapshot(txid, %s::pg_snapshot))"]
        params: list[Any] = [str(self.prev.xmax), str(self.cur.xmax), str(self.cur)]
        finished = self.finished_in_tick()
        if finished:
            parts.append("txid = ANY(%s::xid8[])")
            params.append(_xid_array(finished))
        return "(" + " OR ".join(parts) + ")", params

    def tick_sql(self, *, refined: bool = True) -> tuple[str, list]:
        """The rows of this tick (cursor not applied). `refined`: PgQ's index-friendly form;
        otherwise the plain one (for a walk along the primary key)."""
        sql, params = self._refined_tick() if refined else self._plain_tick()
        if self.restored is None:
            return sql, params
        rsql, rparams = self.restored.sql()
        if self.restored_tick:
            return f"({sql} OR {rsql})", [*params, *rparams]
        return f"({sql} AND NOT {rsql})", [*params, *rparams]

    def delivered_sql(self) -> tuple[str, list]:
        """True for outbox rows this position says are in Kafka."""
        plain, pparams = self._plain_tick()
        sql = ("((txid < %s::xid8 AND pg_visible_in_snapshot(txid, %s::pg_snapshot)) "
               f"OR ({plain} AND id <= %s))")
        params: list[Any] = [str(self.prev.xmax), str(self.prev), *pparams, self.cursor_id]
        if self.restored is None:
            return sql, params
        rsql, rparams = self.restored.sql()
        if self.restored_done:
            return f"(({sql} AND NOT {rsql}) OR {rsql})", [*params, *rparams, *rparams]
        # During the re-anchor's tick a restored row is in Kafka only up to the cursor (its
        # transaction id says nothing here).
        return (f"(({sql} AND NOT {rsql}) OR ({rsql} AND id <= %s))",
                [*params, *rparams, *rparams, self.cursor_id])

    def undelivered_sql(self) -> tuple[str, list]:
        """True for committed outbox rows not yet in Kafka, in a form whose index range starts at
        `xmax(S_prev)` (plus the ids of `xip(S_prev)`), whatever `xmin(S_prev)` is. (Restored
        rows not delivered yet have transaction ids from `xmax(S_cur)` on, so they are in the
        range too.)"""
        candidates = ["txid >= %s::xid8"]
        params: list[Any] = [str(self.prev.xmax)]
        if self.prev.xip:
            candidates.append("txid = ANY(%s::xid8[])")
            params.append(_xid_array(self.prev.xip))
        delivered, dparams = self.delivered_sql()
        return f"(({' OR '.join(candidates)}) AND NOT {delivered})", [*params, *dparams]

    def retention_sql(self) -> tuple[str, list]:
        """Rows retention may delete: visible in `S_prev` (and restored rows once their tick is
        done). Rows of the tick being delivered are kept even when already in Kafka."""
        sql = "(txid < %s::xid8 AND pg_visible_in_snapshot(txid, %s::pg_snapshot))"
        params: list[Any] = [str(self.prev.xmax), str(self.prev)]
        if self.restored is None:
            return sql, params
        rsql, rparams = self.restored.sql()
        if self.restored_done:
            return f"(({sql} AND NOT {rsql}) OR {rsql})", [*params, *rparams, *rparams]
        return f"({sql} AND NOT {rsql})", [*params, *rparams]

    # -- checkpoint records ------------------------------------------------------------------

    def to_record(self, **extra: Any) -> dict[str, Any]:
        value: dict[str, Any] = {"v": CHECKPOINT_VERSION, "s_prev": str(self.prev),
                                 "s_cur": str(self.cur), "cursor_id": self.cursor_id}
        if self.restored is not None:
            value["restored"] = {"max_id": self.restored.max_id,
                                 "snapshot": str(self.restored.snapshot)}
        value.update(extra)
        return value

    @classmethod
    def from_record(cls, value: dict[str, Any]) -> Position:
        """A checkpoint record's position; a `(txid, id)` record of the relay before ticks is
        converted (see `from_legacy`)."""
        if "s_prev" not in value:
            if "txid" in value:
                return cls.from_legacy(int(value["txid"]), int(value.get("id") or 0))
            raise PositionError(f"checkpoint record without a position: {value!r}")
        restored = value.get("restored")
        return cls(
            Snapshot.parse(value["s_prev"]), Snapshot.parse(value["s_cur"]),
            int(value.get("cursor_id") or 0),
            Restored(int(restored["max_id"]), Snapshot.parse(restored["snapshot"]))
            if restored else None,
        )

    @classmethod
    def from_legacy(cls, txid: int, last_id: int) -> Position:
        """The relay before ticks checkpointed `(T, I)`: it delivered rows in `(txid, id)` order,
        only from transactions older than every running one. So when it wrote (T, I), every
        transaction below T had finished and all their rows were in Kafka, and T's rows up to
        id I. That is the tick `S_prev = T:T:` (visible: everything below T), `S_cur =
        T+1:T+1:` (T alone added), resumed after id I; the next tick takes everything after.
        `(0, 0)` (a fresh or re-anchored relay) is the start of the outbox."""
        if txid <= 0:
            return cls(START, START, 0)
        return cls(Snapshot(txid, txid), Snapshot(txid + 1, txid + 1), last_id)

    @classmethod
    def parse_json(cls, raw: bytes) -> Position:
        try:
            value = json.loads(raw)
        except ValueError:
            raise PositionError(f"checkpoint record is not JSON: {raw[:200]!r}") from None
        return cls.from_record(value)

    def __str__(self) -> str:
        text = f"(S_prev {self.prev}, S_cur {self.cur}, cursor {self.cursor_id})"
        if self.restored is not None:
            text += f" restored rows up to id {self.restored.max_id}"
        return text
