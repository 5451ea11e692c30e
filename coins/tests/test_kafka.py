"""Coins events reach Kafka's `transaction-events` through the real relay, exactly once, keyed
by the acting user, as CloudEvents."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from coins import services
from outbox.models import OutboxEvent
from relay.engine import Relay
from relay.kafka import topic_name
from relay.testing import delete_topics, read_all
from relay.tests.relay_helpers import create_relay_topics, drain

from .helpers import fund, make_user

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def relay_topics(kafka_prefix):
    names = create_relay_topics(partitions=2)
    yield names
    delete_topics(names)


def test_coins_events_are_delivered_once_keyed_by_the_acting_user(relay_topics):
    # given: committed movements of several kinds
    alice, bob = make_user(), make_user()
    fund(alice, 100)
    transfer = services.coins_transfer(sender=alice, recipient=bob, amount=40)
    services.coins_transfer(sender=bob, recipient=alice, amount=5)
    grant, _ = services.reward_grant(user_id=bob.pk, rule_code="signup_bonus")
    expected = {str(e.event_id): e for e in OutboxEvent.objects.filter(
        topic="transaction-events")}
    assert len(expected) == 4  # adjusted, 2 x transferred, rewarded
    # when
    relay = Relay(use_lock=False)
    relay.start()
    drain(relay)
    relay.close()
    # then
    records = read_all([topic_name("transaction-events")])
    ids = Counter(r.header("ce_id") for r in records)
    assert set(ids) == set(expected)
    assert set(ids.values()) == {1}
    for record in records:
        row = expected[record.header("ce_id")]
        assert record.header("ce_type") == row.type
        assert record.key.decode() == row.key
        assert json.loads(record.value) == row.payload
    by_type = {r.header("ce_type"): r for r in records if r.header("ce_type") != (
        "coins.transferred")}
    sent = [json.loads(r.value) for r in records if r.header("ce_type") == "coins.transferred"]
    assert sorted((s["sender_id"], s["recipient_id"], s["amount"]) for s in sent) == sorted(
        [(alice.pk, bob.pk, 40), (bob.pk, alice.pk, 5)])
    first = next(r for r in records
                 if json.loads(r.value).get("transfer_id") == transfer.pk)
    assert first.key == str(alice.pk).encode()
    assert json.loads(by_type["coins.rewarded"].value)["grant_id"] == grant.pk
    assert by_type["coins.rewarded"].key == str(bob.pk).encode()
