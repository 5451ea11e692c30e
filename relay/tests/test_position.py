"""The relay's tick position (relay/position.py): snapshots, the refined read against the plain
one of DESIGN.md §3 on real rows, what counts as delivered, the database copy's guard against
moving backwards, and the upgrade from a `(txid, id)` position."""

from __future__ import annotations

import json
import random

import pytest
from django.db import connection

from relay.models import RelayPosition
from relay.position import START, Position, PositionError, Restored, Snapshot


def test_snapshot_text_round_trips_and_answers_visibility_like_postgresql():
    snap = Snapshot.parse("10:20:12,15")
    assert (snap.xmin, snap.xmax, snap.xip, str(snap)) == (10, 20, (12, 15), "10:20:12,15")
    assert [t for t in range(8, 23) if snap.visible(t)] == [8, 9, 10, 11, 13, 14, 16, 17, 18,
                                                            19]
    with pytest.raises(PositionError, match="not a pg_snapshot"):
        Snapshot.parse("10:x:")
    with pytest.raises(PositionError, match="not a valid pg_snapshot"):
        Snapshot.parse("0:0:")


def test_a_later_snapshot_includes_an_earlier_one_and_not_the_reverse():
    earlier, later = Snapshot.parse("10:20:12,15"), Snapshot.parse("12:25:12,21")
    assert later.includes(earlier) and not earlier.includes(later)
    assert earlier.includes(earlier)
    # same xmax, one of the running ones finished since
    assert Snapshot.parse("10:20:12").includes(earlier)
    assert not earlier.includes(Snapshot.parse("10:20:12"))


def test_a_legacy_checkpoint_maps_to_a_one_transaction_tick_resumed_after_its_id():
    assert Position.from_record({"txid": "7131", "id": 42, "shards": 1, "shard": 0}) == Position(
        Snapshot(7131, 7131), Snapshot(7132, 7132), 42)
    assert Position.from_record({"txid": "0", "id": 0}) == Position(START, START, 0)
    pos = Position(Snapshot.parse("5:9:6"), Snapshot.parse("8:12:8,10"), 77,
                   Restored(500, Snapshot.parse("3:4:")))
    assert Position.from_record(json.loads(json.dumps(pos.to_record(shards=2)))) == pos


def _visible_sql(snapshot: Snapshot, txid: int) -> bool:
    with connection.cursor() as cur:
        cur.execute("SELECT pg_visible_in_snapshot(%s::xid8, %s::pg_snapshot)",
                    [str(txid), str(snapshot)])
        return cur.fetchone()[0]


@pytest.mark.django_db
def test_visibility_and_inclusion_agree_with_postgresql():
    rng = random.Random(3)
    for _ in range(40):
        xmin = rng.randint(100, 120)
        xmax = xmin + rng.randint(0, 10)
        xip = sorted(rng.sample(range(xmin, xmax), k=min(3, xmax - xmin)))
        snap = Snapshot(xmin, xmax, tuple(xip))
        for txid in range(95, 135, 3):
            assert snap.visible(txid) == _visible_sql(snap, txid), (snap, txid)


@pytest.fixture
def fake_outbox(django_db_blocker):
    """A table shaped like outbox_event's read columns, with chosen transaction ids."""
    with django_db_blocker.unblock(), connection.cursor() as cur:
        cur.execute("CREATE TEMP TABLE outbox_event_t (id bigint PRIMARY KEY, txid xid8 NOT "
                    "NULL, created_at timestamptz DEFAULT now())")
        cur.execute("CREATE INDEX ON outbox_event_t (txid, id)")
        yield cur
        cur.execute("DROP TABLE outbox_event_t")


def _ids(cur, condition: str, params: list) -> list[int]:
    cur.execute(f"SELECT id FROM outbox_event_t WHERE {condition} ORDER BY id", params)
    return [r[0] for r in cur.fetchall()]


def _random_history(rng: random.Random):
    """Transactions 1000..1099 with random start (txid) and commit moments, some rolled back;
    snapshots taken at random moments, in time order."""
    txids = list(range(1000, 1100))
    commits = sorted(rng.sample(range(0, 400), len(txids)))
    starts = sorted(rng.sample(range(0, 400), len(txids)))
    spans = {t: (s, max(s + 1, c)) for t, s, c in zip(txids, starts, commits, strict=True)}
    rolled_back = set(rng.sample(txids, 10))
    rows, next_id = [], 1
    for t in txids:
        for _ in range(rng.randint(0, 3)):
            if t not in rolled_back:
                rows.append((next_id, t))
            next_id += 1
    rng.shuffle(rows)

    def snapshot_at(moment: int) -> Snapshot:
        started = [t for t in txids if spans[t][0] <= moment]
        xmax = max(started) + 1 if started else 1000
        running = [t for t in started if spans[t][1] > moment]
        return Snapshot(min(running) if running else xmax, xmax, tuple(running))

    moments = sorted(rng.sample(range(0, 420), 12))
    return rows, [START, *[snapshot_at(m) for m in moments]]


@pytest.mark.django_db
def test_refined_read_returns_the_plain_reads_rows_and_ticks_partition_every_row(fake_outbox):
    cur = fake_outbox
    rng = random.Random(11)
    rows, snapshots = _random_history(rng)
    cur.executemany("INSERT INTO outbox_event_t (id, txid) VALUES (%s, %s::xid8)",
                    [(i, str(t)) for i, t in rows])
    seen: list[int] = []
    for prev, cur_snap in zip(snapshots, snapshots[1:]):
        pos = Position(prev, cur_snap)
        refined = _ids(cur, *pos.tick_sql(refined=True))
        plain = _ids(cur, *pos.tick_sql(refined=False))
        design = _ids(cur, "txid >= pg_snapshot_xmin(%s::pg_snapshot) AND txid < "
                           "pg_snapshot_xmax(%s::pg_snapshot) AND pg_visible_in_snapshot(txid, "
                           "%s::pg_snapshot) AND NOT pg_visible_in_snapshot(txid, "
                           "%s::pg_snapshot)", [str(prev), str(cur_snap), str(cur_snap),
                                                str(prev)])
        assert refined == plain == design
        seen += refined
        # what the position says is delivered / undelivered, halfway through the tick
        half = Position(prev, cur_snap, refined[len(refined) // 2] if refined else 0)
        delivered = set(_ids(cur, *half.delivered_sql()))
        undelivered = set(_ids(cur, *half.undelivered_sql()))
        assert delivered | undelivered == {i for i, _ in rows}
        assert not delivered & undelivered
        assert set(seen) - set(refined[len(refined) // 2 + 1:]) <= delivered
    # every row committed by the last snapshot is in exactly one tick
    last = snapshots[-1]
    assert sorted(seen) == sorted(i for i, t in rows if last.visible(t))
    assert len(seen) == len(set(seen))


@pytest.mark.django_db
def test_restored_rows_are_in_the_reanchor_tick_only(fake_outbox):
    cur = fake_outbox
    # rows 1-3 came from another cluster with transaction ids far ahead of this one; 4 is local
    cur.executemany("INSERT INTO outbox_event_t (id, txid) VALUES (%s, %s::xid8)",
                    [(1, "900000"), (2, "900001"), (3, "50"), (4, "120"), (5, "130")])
    anchor = Snapshot(125, 125)
    first = Position(START, anchor, 0, Restored(4, anchor))
    assert _ids(cur, *first.tick_sql()) == [1, 2, 3, 4]
    # later ticks, even once local transaction ids pass the restored ones, skip them
    later = first.next_tick(Snapshot(950000, 950000))
    assert _ids(cur, *later.tick_sql()) == [5]
    assert _ids(cur, *later.tick_sql(refined=False)) == [5]
    assert _ids(cur, *later.delivered_sql()) == [1, 2, 3, 4]
    assert _ids(cur, *later.retention_sql()) == [1, 2, 3, 4]
    assert _ids(cur, *Position(START, anchor, 2, Restored(4, anchor)).undelivered_sql()) == [
        3, 4, 5]


def _index_entries_read(cur, sql: str, params: list) -> int:
    """EXPLAIN ANALYZE: rows the scans of a statement touched (index entries or table rows,
    those its filters removed included)."""
    cur.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params)
    plan = cur.fetchone()[0]
    plan = json.loads(plan) if isinstance(plan, str) else plan

    def walk(node) -> int:
        kind = node["Node Type"]
        own = 0
        if kind.endswith("Scan") and kind != "Bitmap Heap Scan":
            own = node.get("Actual Rows", 0) * node.get("Actual Loops", 1) + node.get(
                "Rows Removed by Filter", 0)
        return own + sum(walk(n) for n in node.get("Plans", []))

    return walk(plan[0]["Plan"])


@pytest.mark.django_db(transaction=True)
def test_relay_read_scans_from_xmax_of_s_prev_whatever_its_xmin():
    """PgQ's refinement, proven on the relay's own statement: with a transaction left open long
    ago (an old xmin in S_prev) and 100,000 delivered rows since, a tick's read touches the
    tick's rows, not everything since the open transaction began."""
    from relay.engine import Relay

    with connection.cursor() as cur:
        # Transaction ids below the server's current one, so that a snapshot taken now sees
        # them all committed (a new cluster's counter may be low: ids are used up until it is
        # high enough): `open` is the transaction left open; 100,000 rows of 1,000 transactions
        # that committed after it began were delivered; the tick holds 20 rows of the next 20.
        while True:
            cur.execute("SELECT pg_current_xact_id()::text::bigint")  # autocommit: one id each
            now = cur.fetchone()[0]
            if now >= 1_200:
                break
        open_ = now - 1_100
        cur.execute(
            "INSERT INTO outbox_event (event_id, type, topic, key, shard_hash, headers, "
            "payload, txid) SELECT gen_random_uuid(), 'pipeline.probe', 'analytics-events', "
            "'k' || (g %% 50), g %% 50, '{}'::jsonb, jsonb_build_object('seq', g), "
            "(CASE WHEN g <= 100000 THEN %s + 1 + g %% 1000 ELSE %s + 1000 + (g - 100000) END)"
            "::text::xid8 FROM generate_series(1, 100020) g", [open_, open_])
        cur.execute("ANALYZE outbox_event")
        # `open` is still open in both snapshots; the tick holds the last 20 rows
        prev = Snapshot(open_, open_ + 1_001, (open_,))
        tick = Position(prev, Snapshot(open_, open_ + 1_021, (open_,)))
        cur.execute("SELECT max(id) FROM outbox_event")
        last = cur.fetchone()[0]
        relay = Relay(use_lock=False, batch_size=500)
        assert [r[0] for r in relay.read(tick).rows] == list(range(last - 19, last + 1))
        refined = _index_entries_read(cur, *relay.read_sql(tick))
        # the next tick's read, which takes S_cur in the same statement, is as short
        after_prev = Position(Snapshot(open_, open_), prev)
        assert [r[0] for r in relay.read_new_tick(after_prev).rows] == list(
            range(last - 19, last + 1))
        new_tick = _index_entries_read(cur, *relay.new_tick_sql(after_prev))
        naive_sql = ("SELECT id FROM outbox_event WHERE txid >= pg_snapshot_xmin(%s::pg_snapshot)"
                     " AND txid < pg_snapshot_xmax(%s::pg_snapshot) AND pg_visible_in_snapshot("
                     "txid, %s::pg_snapshot) AND NOT pg_visible_in_snapshot(txid, "
                     "%s::pg_snapshot) ORDER BY id LIMIT 500")
        naive = _index_entries_read(cur, naive_sql, [str(prev), str(tick.cur), str(tick.cur),
                                                     str(prev)])
        cur.execute("TRUNCATE outbox_event")
    # the join fetches the 20 rows again by primary key: 20 index entries + 20 rows
    assert refined <= 60, refined
    assert new_tick <= 60, new_tick
    assert naive >= 100_000, naive


@pytest.mark.django_db(transaction=True)
def test_the_database_copy_never_moves_backwards():
    old = Position(Snapshot.parse("100:110:105"), Snapshot.parse("105:120:105,112"), 50)
    RelayPosition.objects.create(shards=1, shard=0, s_prev=str(old.prev), s_cur=str(old.cur),
                                 cursor_id=old.cursor_id, transactional_id="t")

    def write(pos: Position) -> Position:
        RelayPosition.objects.filter(shards=1, shard=0).update(
            s_prev=str(pos.prev), s_cur=str(pos.cur), cursor_id=pos.cursor_id)
        return RelayPosition.objects.get(shards=1, shard=0).position

    # an older tick, or the same tick with a smaller cursor: skipped
    assert write(Position(Snapshot.parse("100:105:"), Snapshot.parse("100:110:105"), 900)) == old
    assert write(old.after(49)) == old
    # a snapshot in which 100 still runs is older than one where it had finished
    assert write(Position(old.cur, Snapshot.parse("100:120:100,105,112"), 1)) == old
    # the same tick further on, then the next tick: taken
    assert write(old.after(51)) == old.after(51)
    newer = old.next_tick(Snapshot.parse("105:121:105"))
    assert write(newer) == newer


def test_transactional_ids_name_prefix_and_layout_unambiguously(settings):
    from relay.engine import Shard

    ids = set()
    for prefix, shards, shard in [("a1", 12, 0), ("a11", 2, 0), ("a1", 2, 1), ("a", 12, 1),
                                  ("a1:2", 1, 0), ("a1", 1, 0)]:
        settings.KAFKA_TOPIC_PREFIX = prefix
        ids.update(Shard(shards=shards, shard=shard).transactional_ids)
    assert len(ids) == 12  # each shard's two producers too: no id is another shard's
    settings.KAFKA_TOPIC_PREFIX = "t1."
    assert Shard(shards=4, shard=3).transactional_id == "relay:showoff:t1.:shard-3-of-4"
    assert Shard(shards=4, shard=3).transactional_ids == (
        "relay:showoff:t1.:shard-3-of-4", "relay:showoff:t1.:shard-3-of-4:b")


@pytest.mark.django_db(transaction=True)
def test_migration_converts_a_txid_id_position_to_its_tick():
    from django.core.management import call_command

    call_command("migrate", "relay", "0001", verbosity=0)
    try:
        with connection.cursor() as cur:
            cur.execute("INSERT INTO relay_position (shards, shard, txid, last_id, "
                        "transactional_id, events_total, batches_total, updated_at) VALUES "
                        "(1, 0, '7131'::xid8, 42, 'old', 5, 1, now()), "
                        "(2, 1, '0'::xid8, 0, 'old', 0, 0, now())")
    finally:
        call_command("migrate", "relay", verbosity=0)
    converted = {(p.shards, p.shard): p.position for p in RelayPosition.objects.all()}
    assert converted == {(1, 0): Position.from_legacy(7131, 42),
                         (2, 1): Position.from_legacy(0, 0)}
    RelayPosition.objects.all().delete()

