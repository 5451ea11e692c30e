"""Concurrent transfers from one wallet reach Kafka in commit order (issue 13): the real
transfer API with Idempotency-Key (its key row is written before the wallet is locked, so the
request's transaction id is older than its lock), the relay running meanwhile, the real broker.
Each event names its ledger transaction, whose entry holds the sender's balance computed under
the wallet lock: in Kafka order those balances must strictly fall."""

from __future__ import annotations

import json
import random
import uuid

import pytest

from coins.models import Entry, Wallet
from outbox.tests.lock_order import older_commits_last, relay_running, run_threads, txid_id_order
from relay.kafka import topic_name
from relay.testing import delete_topics, read_all
from relay.tests.relay_helpers import create_relay_topics

from .conftest import client_for
from .helpers import fund, make_user

pytestmark = pytest.mark.django_db(transaction=True)

TRANSFERS = 36
WRITERS = 6
START = 100_000


@pytest.fixture
def relay_topics(kafka_prefix):
    names = create_relay_topics()
    yield names
    delete_topics(names)


def send(sender, recipient, amount: int) -> None:
    response = client_for(sender).post(
        "/api/coins/transfers/", {"recipient_id": recipient.pk, "amount": amount},
        format="json", headers={"Idempotency-Key": str(uuid.uuid4())})
    assert response.status_code == 201, response.json()


def balances(events: list[dict], wallet: Wallet) -> list[int]:
    """The sender's balance after each event's movement, as computed under the wallet lock."""
    after = dict(Entry.objects.filter(wallet=wallet).values_list("transaction_id",
                                                                 "balance_after"))
    return [after[e["transaction_id"]] for e in events]


def test_concurrent_transfers_from_one_wallet_reach_kafka_in_commit_order(relay_topics):
    # given: a funded sender and a few recipients
    sender = make_user()
    fund(sender, START)
    wallet = Wallet.objects.get(user=sender)
    recipients = [make_user() for _ in range(4)]
    rng = random.Random(13)
    amounts = [rng.randint(1, 500) for _ in range(TRANSFERS)]

    def writer(share):
        for n in share:
            send(sender, recipients[n % len(recipients)], amounts[n])

    rest = list(range(2, TRANSFERS))
    # when: the transfers run concurrently through the API while the relay delivers
    with relay_running():
        older_commits_last(lambda: send(sender, recipients[0], amounts[0]),
                           lambda: send(sender, recipients[1], amounts[1]))
        run_threads([lambda s=rest[i::WRITERS]: writer(s) for i in range(WRITERS)])
    # then: Kafka holds each transfer once, and the sender's balance falls at every one
    records = sorted((r for r in read_all([topic_name("transaction-events")])
                      if r.key == str(sender.pk).encode()
                      and r.header("ce_type") == "coins.transferred"),
                     key=lambda r: r.offset)
    events = [json.loads(r.value) for r in records]
    assert len({e["transfer_id"] for e in events}) == len(events) == TRANSFERS
    in_kafka = balances(events, wallet)
    assert all(a > b for a, b in zip(in_kafka, in_kafka[1:], strict=False)), in_kafka
    assert in_kafka[-1] == START - sum(amounts)
    # and the (txid, id) order the relay used before ticks would not have
    old = balances(txid_id_order("coins.transferred", str(sender.pk)), wallet)
    assert sorted(old, reverse=True) == in_kafka and old != in_kafka
