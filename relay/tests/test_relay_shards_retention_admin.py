from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction

from outbox.models import OutboxEvent
from outbox.services import Event, publish_bulk, shard_hash
from relay.engine import Relay, Shard
from relay.retention import outbox_prune
from relay.selectors import shard_states
from relay.testing import delete_topics

from .relay_helpers import assert_exactly_once_in_order, create_relay_topics, drain

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def relay_topics(kafka_prefix):
    names = create_relay_topics()
    yield names
    delete_topics(names)


def _write(n: int, keys: int = 10) -> None:
    with transaction.atomic():
        publish_bulk([Event("pipeline.probe", {"probe_id": "s", "key": f"key-{i % keys}",
                                               "seq": i}) for i in range(n)])


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
