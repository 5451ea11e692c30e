"""Balance, history and the Idempotency-Key contract of the money-moving endpoints."""

from __future__ import annotations

import pytest

from coins.models import IdempotencyKey, Transfer

from .conftest import client_for
from .helpers import balance, events, fund

pytestmark = pytest.mark.django_db


def test_wallet_shows_zero_before_any_coins(as_alice):
    response = as_alice.get("/api/coins/wallet/")
    assert response.status_code == 200
    assert response.json() == {"balance": 0, "kyc_verified": False}


def test_wallet_shows_the_balance(alice, as_alice):
    fund(alice, 12)
    assert as_alice.get("/api/coins/wallet/").json() == {"balance": 12, "kyc_verified": False}


@pytest.mark.parametrize("url", ["/api/coins/wallet/", "/api/coins/history/",
                                 "/api/coins/withdrawals/"])
def test_reads_need_authentication(url):
    assert client_for(None).get(url).status_code == 401


def test_history_is_newest_first_cursor_paginated_and_only_mine(alice, bob, carol, as_alice):
    # given: alice receives 5, sends 3 transfers; bob's own movements are not hers
    fund(alice, 5)
    fund(bob, 50)
    from coins.services import coins_transfer

    for amount in (1, 2, 3):
        coins_transfer(sender=bob, recipient=alice, amount=amount)
    coins_transfer(sender=bob, recipient=carol, amount=7)
    # when
    first = as_alice.get("/api/coins/history/", {"page_size": 3}).json()
    second = client_for(alice).get(first["next"]).json()
    # then
    assert [(e["kind"], e["amount"], e["balance_after"]) for e in first["results"]] == [
        ("transfer", 3, 11), ("transfer", 2, 8), ("transfer", 1, 6)]
    assert first["results"][0]["details"] == {"sender_id": bob.pk, "recipient_id": alice.pk,
                                              "post_id": None}
    assert [(e["kind"], e["amount"]) for e in second["results"]] == [("adjustment", 5)]
    assert second["next"] is None
    # operator ids never leave through the API
    assert second["results"][0]["details"] == {"reason": "test funding"}


def test_history_filters_by_kind(alice, bob, as_alice):
    fund(alice, 10)
    from coins.services import coins_transfer

    coins_transfer(sender=alice, recipient=bob, amount=4)
    kinds = lambda q: [e["kind"] for e in as_alice.get("/api/coins/history/", q).json()["results"]]  # noqa: E731
    assert kinds({"kind": "transfer"}) == ["transfer"]
    assert kinds({"kind": "adjustment"}) == ["adjustment"]
    assert kinds({"kind": "transfer,adjustment"}) == ["transfer", "adjustment"]
    assert kinds({"kind": "purchase"}) == []


@pytest.mark.parametrize("kind", ["gift", "", "transfer,,tip"])
def test_history_unknown_kind_is_a_400(as_alice, kind):
    response = as_alice.get("/api/coins/history/", {"kind": kind})
    assert response.status_code == 400
    assert "kind" in response.json()["errors"]


def test_history_bad_cursor_is_a_400_not_a_500(as_alice):
    response = as_alice.get("/api/coins/history/", {"cursor": "garbage"})
    assert (response.status_code, response.json()["type"]) == (400, "invalid_cursor")


# --- Idempotency-Key -------------------------------------------------------------------------


def _send(client, key, recipient, amount):
    headers = {"Idempotency-Key": key} if key else {}
    return client.post("/api/coins/transfers/", {"recipient_id": recipient.pk,
                                                 "amount": amount}, format="json",
                       headers=headers)


def test_same_key_same_body_returns_the_first_result_and_moves_nothing_again(
        alice, bob, as_alice):
    fund(alice, 100)
    first = _send(as_alice, "key-1", bob, 10)
    again = _send(as_alice, "key-1", bob, 10)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert (balance(alice), balance(bob)) == (90, 10)
    assert Transfer.objects.count() == 1
    assert len(events("coins.transferred")) == 1


def test_same_key_different_body_is_a_422(alice, bob, as_alice):
    fund(alice, 100)
    assert _send(as_alice, "key-2", bob, 10).status_code == 201
    response = _send(as_alice, "key-2", bob, 11)
    assert response.status_code == 422
    assert response.json()["type"] == "idempotency_key_reused"
    assert balance(bob) == 10


def test_same_key_on_another_endpoint_is_a_422(alice, bob, as_alice):
    fund(alice, 5000)
    assert _send(as_alice, "key-3", bob, 10).status_code == 201
    response = as_alice.post("/api/coins/withdrawals/", {"amount": 10, "destination": "x"},
                             format="json", headers={"Idempotency-Key": "key-3"})
    assert response.status_code == 422


def test_keys_are_per_user(alice, bob, carol, as_alice, as_bob):
    fund(alice, 100)
    fund(bob, 100)
    assert _send(as_alice, "shared", carol, 10).status_code == 201
    response = _send(as_bob, "shared", carol, 10)
    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response.headers
    assert balance(carol) == 20


def test_a_failed_request_stores_nothing_so_the_retry_runs(alice, bob, as_alice):
    # given: the first attempt fails for lack of coins
    assert _send(as_alice, "retry-me", bob, 10).json()["type"] == "insufficient_funds"
    assert IdempotencyKey.objects.count() == 0
    # when: coins arrive and the client retries with the same key
    fund(alice, 10)
    response = _send(as_alice, "retry-me", bob, 10)
    # then
    assert response.status_code == 201
    assert balance(bob) == 10


def test_invalid_body_with_a_key_stores_nothing(alice, bob, as_alice):
    response = as_alice.post("/api/coins/transfers/", {"amount": "x"}, format="json",
                             headers={"Idempotency-Key": "k"})
    assert response.status_code == 400
    assert IdempotencyKey.objects.count() == 0


@pytest.mark.parametrize("key", ["", "x" * 256, "naïve"])
def test_malformed_keys_are_a_400(alice, bob, as_alice, key):
    fund(alice, 10)
    response = as_alice.post(
        "/api/coins/transfers/", {"recipient_id": bob.pk, "amount": 1}, format="json",
        headers={"Idempotency-Key": key})
    assert response.status_code == 400
    assert response.json()["type"] == "invalid_idempotency_key"
    assert balance(bob) == 0


def test_without_a_key_every_request_moves_coins(alice, bob, as_alice):
    fund(alice, 10)
    _send(as_alice, None, bob, 1)
    _send(as_alice, None, bob, 1)
    assert balance(bob) == 2


def test_expired_keys_are_pruned(alice, bob, as_alice, settings):
    import datetime as dt

    from django.utils import timezone

    from coins.tasks import idempotency_keys_prune

    fund(alice, 10)
    _send(as_alice, "old", bob, 1)
    _send(as_alice, "new", bob, 1)
    IdempotencyKey.objects.filter(key="old").update(
        created_at=timezone.now() - dt.timedelta(hours=settings.COINS_IDEMPOTENCY_KEY_TTL_HOURS,
                                                 minutes=1))
    assert idempotency_keys_prune() == 1
    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["new"]
