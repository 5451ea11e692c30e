"""Transfers and tips: services, events and the API."""

from __future__ import annotations

import pytest
from django.db import transaction
from django.utils import timezone

from coins.errors import (
    InsufficientFunds,
    InvalidAmount,
    PostNotTippable,
    RecipientUnavailable,
    SelfTransfer,
)
from coins.models import Transfer
from coins.services import coins_transfer
from posts.models import Post

from .helpers import assert_ledger_consistent, balance, events, fund

pytestmark = pytest.mark.django_db


def test_transfer_moves_coins_and_emits_one_event(alice, bob):
    # given
    fund(alice, 100)
    # when
    transfer = coins_transfer(sender=alice, recipient=bob, amount=30, note="thanks!")
    # then
    assert (balance(alice), balance(bob)) == (70, 30)
    [event] = events("coins.transferred")
    assert event.key == str(alice.pk)
    assert event.topic == "transaction-events"
    assert event.payload == {
        "transfer_id": transfer.pk, "sender_id": alice.pk, "recipient_id": bob.pk,
        "amount": 30, "post_id": None, "kind": "transfer", "note": "thanks!",
        "transaction_id": transfer.transaction_id,
    }
    assert_ledger_consistent()


def test_transfer_to_self_is_refused(alice):
    fund(alice, 10)
    with pytest.raises(SelfTransfer):
        coins_transfer(sender=alice, recipient=alice, amount=1)
    assert balance(alice) == 10
    assert events("coins.transferred") == []


def test_overdraw_is_refused_and_moves_nothing(alice, bob):
    fund(alice, 10)
    with pytest.raises(InsufficientFunds):
        coins_transfer(sender=alice, recipient=bob, amount=11)
    assert (balance(alice), balance(bob)) == (10, 0)
    assert Transfer.objects.count() == 0
    assert events("coins.transferred") == []


def test_amount_limits_come_from_settings(alice, bob, settings):
    settings.COINS_TRANSFER_MIN_AMOUNT = 5
    settings.COINS_TRANSFER_MAX_AMOUNT = 50
    fund(alice, 100)
    with pytest.raises(InvalidAmount, match="at least 5"):
        coins_transfer(sender=alice, recipient=bob, amount=4)
    with pytest.raises(InvalidAmount, match="at most 50"):
        coins_transfer(sender=alice, recipient=bob, amount=51)
    coins_transfer(sender=alice, recipient=bob, amount=50)
    assert balance(bob) == 50


def test_inactive_recipient_cannot_receive(alice, bob):
    fund(alice, 10)
    bob.is_active = False
    bob.save()
    with pytest.raises(RecipientUnavailable):
        coins_transfer(sender=alice, recipient=bob, amount=1)
    assert balance(alice) == 10


def test_a_rolled_back_transfer_leaves_no_event_and_no_movement(alice, bob):
    fund(alice, 10)
    with pytest.raises(RuntimeError):
        with transaction.atomic():
            coins_transfer(sender=alice, recipient=bob, amount=3)
            raise RuntimeError("the caller failed after the transfer")
    assert (balance(alice), balance(bob)) == (10, 0)
    assert events("coins.transferred") == []


def test_a_tip_goes_to_the_post_author(alice, bob):
    # given
    fund(alice, 20)
    post = Post.objects.create(author=bob, text="hello")
    # when
    transfer = coins_transfer(sender=alice, amount=5, post_id=post.pk)
    # then
    assert transfer.recipient_id == bob.pk
    assert transfer.post_id == post.pk
    assert (balance(alice), balance(bob)) == (15, 5)
    [event] = events("coins.transferred")
    assert (event.payload["kind"], event.payload["post_id"], event.payload["recipient_id"]) == (
        "tip", post.pk, bob.pk)
    assert transfer.transaction.kind == "tip"


def test_tips_on_missing_or_deleted_posts_or_to_someone_else_are_refused(alice, bob, carol):
    fund(alice, 20)
    post = Post.objects.create(author=bob, text="hello")
    gone = Post.objects.create(author=bob, text="bye", deleted_at=timezone.now())
    with pytest.raises(PostNotTippable, match="does not exist"):
        coins_transfer(sender=alice, amount=1, post_id=gone.pk)
    with pytest.raises(PostNotTippable, match="does not exist"):
        coins_transfer(sender=alice, amount=1, post_id=post.pk + 1000)
    with pytest.raises(PostNotTippable, match="post's author"):
        coins_transfer(sender=alice, recipient=carol, amount=1, post_id=post.pk)
    with pytest.raises(SelfTransfer):
        coins_transfer(sender=bob, amount=1, post_id=post.pk)
    assert balance(alice) == 20


# --- API -------------------------------------------------------------------------------------


def test_transfer_api_returns_the_transfer_and_the_new_balance(alice, bob, as_alice):
    fund(alice, 40)
    response = as_alice.post("/api/coins/transfers/", {"recipient_id": bob.pk, "amount": 15},
                             format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    transfer = Transfer.objects.get()
    assert body == {
        "id": transfer.pk, "sender_id": alice.pk, "recipient_id": bob.pk, "amount": 15,
        "post_id": None, "kind": "transfer", "note": "", "transaction_id":
        transfer.transaction_id, "created_at": body["created_at"], "balance": 25,
    }


def test_tip_api_needs_only_the_post(alice, bob, as_alice):
    fund(alice, 40)
    post = Post.objects.create(author=bob, text="tip me")
    response = as_alice.post("/api/coins/transfers/", {"post_id": post.pk, "amount": 2},
                             format="json")
    assert response.status_code == 201, response.json()
    assert (response.json()["recipient_id"], response.json()["kind"]) == (bob.pk, "tip")


@pytest.mark.parametrize(("payload", "field"), [
    ({"amount": 5}, "recipient_id"),
    ({"recipient_id": 999999, "amount": 5}, "recipient_id"),
    ({"recipient_id": "bob", "amount": 5}, "recipient_id"),
    ({"recipient_id": None, "amount": 5}, "recipient_id"),
    ({"amount": "lots"}, "amount"),
    ({"amount": 2.5}, "amount"),
    ({"amount": 0}, "amount"),
    ({"amount": -3}, "amount"),
    ({"amount": 10**12}, "amount"),
    ({"amount": 1, "post_id": 0}, "post_id"),
    ({"amount": 1, "note": "x" * 141}, "note"),
])
def test_transfer_api_bad_input_is_a_400_with_the_field(alice, bob, as_alice, payload, field):
    fund(alice, 40)
    if "recipient_id" not in payload and field != "recipient_id":
        payload = {**payload, "recipient_id": bob.pk}
    response = as_alice.post("/api/coins/transfers/", payload, format="json")
    assert response.status_code == 400
    assert response.json()["type"] == "validation_error"
    assert field in response.json()["errors"]
    assert balance(alice) == 40


@pytest.mark.parametrize(("setup", "amount", "status", "type_"), [
    ("self", 1, 400, "self_transfer"),
    ("poor", 41, 400, "insufficient_funds"),
    ("inactive", 1, 400, "recipient_unavailable"),
])
def test_transfer_api_business_errors(alice, bob, as_alice, setup, amount, status, type_):
    fund(alice, 40)
    recipient = alice if setup == "self" else bob
    if setup == "inactive":
        bob.is_active = False
        bob.save()
    response = as_alice.post("/api/coins/transfers/", {"recipient_id": recipient.pk,
                                                      "amount": amount}, format="json")
    assert response.status_code == status
    assert response.json()["type"] == type_
    assert balance(alice) == 40


def test_transfer_api_needs_authentication(bob):
    from .conftest import client_for

    response = client_for(None).post("/api/coins/transfers/", {"recipient_id": bob.pk,
                                                               "amount": 1}, format="json")
    assert response.status_code == 401
