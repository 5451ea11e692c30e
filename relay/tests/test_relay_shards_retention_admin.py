from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from django.db import transaction

from outbox.models import OutboxEvent
from outbox.services import Event, publish_bulk, shard_hash
from relay.engine import Relay, Shard
from relay.retention import outbox_prune
from relay.selectors import shard_states

from .relay_helpers import assert_exactly_once_in_order, drain

pytestmark = pytest.mark.django_db(transaction=True)


_seq = itertools.count(1)


def _write(n: int, keys: int = 10) -> None:
    """n events on `keys` keys in one transaction; `seq` grows with every write (commit
    order, as the checks want)."""
    with transaction.atomic():
        publish_bulk([Event("pipeline.probe", {"probe_id": "s", "key": f"key-{i % keys}",
                                               "seq": next(_seq)}) for i in range(n)])


def test_two_shards_split_by_key_and_deliver_everything_once(relay_topics, settings):
    # given
    _write(200)
    expected = {0: 0, 1: 0}
    for key in OutboxEvent.objects.values_list("key", flat=True):
        expected[shard_hash(key) % 2] += 1
    assert expected[0] and expected[1], "the keys should land on both shards"
    relays = [Relay(shard=Shard(shards=2, shard=i), use_lock=False, batch_size=30)
              for i in (0, 1)]
    for relay in relays:
        relay.start()
    # when
    delivered = {i: drain(relay) for i, relay in enumerate(relays)}
    for relay in relays:
        relay.close()
    # then
    assert delivered == expected
    assert_exactly_once_in_order(expect_count=200)
    settings.RELAY_SHARDS = 2
    assert [s.backlog for s in shard_states()] == [0, 0]


def test_prune_deletes_only_delivered_rows_older_than_the_cutoff(relay_topics):
    _write(30)
    relay = Relay(use_lock=False)
    relay.start()
    assert drain(relay) == 30
    _write(5)  # not delivered yet
    relay.close()

    assert outbox_prune(older_than=timedelta(hours=1)) == 0  # all too young
    assert outbox_prune(older_than=timedelta(0)) == 30
    assert OutboxEvent.objects.count() == 5
    (state,) = shard_states()
    assert state.backlog == 5


def test_prune_keeps_the_tick_being_delivered_whole(relay_topics):
    # given: one transaction of 10 rows, a tick the relay delivers in batches of 4
    _write(10)
    relay = Relay(use_lock=False, batch_size=4)
    relay.start()
    assert relay.step() + relay.step() == 8
    relay.flush_position()
    # then: retention waits until the tick is done, though 8 of its rows are in Kafka
    assert outbox_prune(older_than=timedelta(0)) == 0
    (state,) = shard_states()
    assert (state.backlog, state.cursor_id) == (2, relay.position.cursor_id)
    assert drain(relay) == 2
    relay.close()
    assert outbox_prune(older_than=timedelta(0)) == 10


def test_layout_change_hands_over_at_one_snapshot_and_fences_the_old_layout(relay_topics,
                                                                             settings):
    import psycopg

    from relay.engine import Fenced, RelayError
    from relay.layout import change_layout
    from relay.testing import database_url

    # given: two shards delivering, then a backlog they leave behind when stopped
    _write(100)
    old = [Relay(shard=Shard(shards=2, shard=i), use_lock=False, batch_size=30)
           for i in (0, 1)]
    for relay in old:
        relay.start()
        drain(relay)
    _write(100)
    old[0].close()
    zombie = old[1]  # never stopped: still has its producer
    # when: a 4-shard relay starts before the change, it refuses and says what to do
    four = Relay(shard=Shard(shards=4, shard=0), use_lock=False)
    with pytest.raises(RelayError, match=r"relayed with 2 shard\(s\).*--change-layout"):
        four.start()
    four.close()
    # and the change refuses while a relay of the old layout holds its shard lock
    holder = psycopg.connect(database_url(), autocommit=True)
    holder.execute("SELECT pg_advisory_lock(%s)", [Shard(shards=2, shard=0).lock_key])
    with pytest.raises(RelayError, match="lock of relay shard 0/2 is held"):
        change_layout(4)
    holder.close()
    report = change_layout(4, batch_size=30)
    assert "delivered its last" in report[1]
    _write(50)
    # then: the old layout cannot deliver: its zombie is fenced, a restarted one refuses
    with pytest.raises(Fenced):
        zombie.step()
    zombie.close()
    again = Relay(shard=Shard(shards=2, shard=1), use_lock=False)
    with pytest.raises(RelayError, match=r"relayed with 4 shard\(s\).*--shards 4"):
        again.start()
    again.close()
    # and the new layout delivers exactly what committed after the hand-over
    new = [Relay(shard=Shard(shards=4, shard=i), use_lock=False) for i in range(4)]
    delivered = 0
    for relay in new:
        relay.start()
        delivered += drain(relay)
        relay.close()
    assert delivered == 50
    assert_exactly_once_in_order(expect_count=250)
    settings.RELAY_SHARDS = 4
    assert [s.backlog for s in shard_states()] == [0, 0, 0, 0]


def test_admin_pages_show_outbox_and_relay_state(relay_topics, admin_client):
    _write(4)
    relay = Relay(use_lock=False)
    relay.start()
    drain(relay)
    relay.close()
    _write(3)

    pending = admin_client.get("/admin/outbox/outboxevent/?delivery=pending")
    delivered = admin_client.get("/admin/outbox/outboxevent/?delivery=delivered")
    positions = admin_client.get("/admin/relay/relayposition/")

    assert pending.status_code == delivered.status_code == positions.status_code == 200
    assert len(pending.context["cl"].result_list) == 3
    assert len(delivered.context["cl"].result_list) == 4
    assert b"0/1" in positions.content
    assert admin_client.get("/admin/outbox/outboxevent/add/").status_code == 403


def test_admin_pages_refuse_anonymous_users(client):
    response = client.get("/admin/relay/relayposition/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_inbox_prune_keeps_recent_rows(settings):
    import uuid

    from django.utils import timezone

    from relay.models import InboxEntry
    from relay.retention import inbox_prune

    old = InboxEntry.objects.create(consumer="c", event_id=uuid.uuid4(), event_type="t",
                                    topic="x", partition=0, offset=1)
    recent = InboxEntry.objects.create(consumer="c", event_id=uuid.uuid4(), event_type="t",
                                       topic="x", partition=0, offset=2)
    retention = timedelta(hours=settings.INBOX_RETENTION_HOURS)
    InboxEntry.objects.filter(pk=old.pk).update(
        processed_at=timezone.now() - retention - timedelta(hours=1))

    assert inbox_prune() == 1
    assert list(InboxEntry.objects.values_list("pk", flat=True)) == [recent.pk]
