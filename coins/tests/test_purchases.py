"""Purchases: packages, pending orders, the signed webhook (forgery, replay), crediting."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from coins.models import CoinPackage, PurchaseOrder
from coins.payments import test_signature

from .conftest import client_for
from .helpers import assert_ledger_consistent, balance, events, system_balance

pytestmark = pytest.mark.django_db
WEBHOOK = "/api/coins/purchases/webhook/test/"


@pytest.fixture
def package(db):
    return CoinPackage.objects.create(name="Handful", coins=500, price_minor=499,
                                      currency="USD")


@pytest.fixture
def order(alice, as_alice, package):
    response = as_alice.post("/api/coins/purchases/", {"package_id": package.pk}, format="json")
    assert response.status_code == 201, response.json()
    return PurchaseOrder.objects.get(pk=response.json()["id"])


def _webhook(order, *, type_="payment.succeeded", amount=None, currency=None, secret=None,
             timestamp=None, event_id=None, signature=None):
    body = json.dumps({
        "id": event_id or f"evt_{uuid.uuid4().hex}",
        "type": type_,
        "data": {"order_id": str(order.pk), "reference": order.provider_reference,
                 "amount_minor": order.price_minor if amount is None else amount,
                 "currency": currency or order.currency, "reason": "card declined"},
    }).encode()
    header = signature or test_signature(body, timestamp=timestamp, secret=secret)
    return client_for(None).generic("POST", WEBHOOK, body, content_type="application/json",
                                    headers={"Showoff-Signature": header})


def test_packages_lists_what_is_on_sale(as_alice, package):
    CoinPackage.objects.create(name="Old", coins=1, price_minor=1, currency="USD", active=False)
    assert as_alice.get("/api/coins/packages/").json() == [
        {"id": package.pk, "name": "Handful", "coins": 500, "price_minor": 499,
         "currency": "USD"}]


def test_purchase_creates_a_pending_order_and_credits_nothing(alice, order):
    assert (order.status, order.coins, order.price_minor, order.currency) == (
        "pending", 500, 499, "USD")
    assert order.provider_reference == f"test_{order.pk.hex}"
    assert balance(alice) == 0
    assert events("coins.purchased") == []


def test_purchase_of_an_unknown_or_retired_package_is_a_400(as_alice, package):
    package.active = False
    package.save()
    for package_id in (package.pk, 99999, "x"):
        response = as_alice.post("/api/coins/purchases/", {"package_id": package_id},
                                 format="json")
        assert response.status_code == 400
        assert "package_id" in response.json()["errors"]
    assert PurchaseOrder.objects.count() == 0


def test_signed_confirmation_credits_the_order_once(alice, order, webhook_secret):
    # when
    response = _webhook(order)
    # then
    assert response.status_code == 200
    assert response.json() == {"result": "credited"}
    order.refresh_from_db()
    assert order.status == "completed"
    assert balance(alice) == 500
    assert system_balance("purchases") == -500
    [event] = events("coins.purchased")
    assert event.key == str(alice.pk)
    assert event.payload == {
        "user_id": alice.pk, "order_id": str(order.pk), "package_id": order.package_id,
        "coins": 500, "price_minor": 499, "currency": "USD", "provider": "test",
        "transaction_id": order.transaction_id,
    }
    assert_ledger_consistent()


def test_a_replayed_confirmation_is_credited_once(alice, order, webhook_secret):
    first = _webhook(order, event_id="evt_same")
    replay = _webhook(order, event_id="evt_same")
    other_delivery = _webhook(order)
    assert first.json() == {"result": "credited"}
    assert replay.status_code == other_delivery.status_code == 200
    assert replay.json() == other_delivery.json() == {"result": "already_credited"}
    assert balance(alice) == 500
    assert len(events("coins.purchased")) == 1


@pytest.mark.parametrize("forgery", ["wrong-secret", "tampered", "no-header", "garbage",
                                     "stale"])
def test_a_forged_or_stale_webhook_is_a_400_and_credits_nothing(alice, order, webhook_secret,
                                                                 forgery):
    if forgery == "wrong-secret":
        response = _webhook(order, secret="not-the-secret")
    elif forgery == "tampered":
        body = b'{"id": "e", "type": "payment.succeeded"}'
        response = client_for(None).generic(
            "POST", WEBHOOK, json.dumps({"id": "e", "type": "payment.succeeded", "data": {
                "order_id": str(order.pk), "reference": order.provider_reference,
                "amount_minor": 499, "currency": "USD"}}),
            content_type="application/json",
            headers={"Showoff-Signature": test_signature(body)})
    elif forgery == "no-header":
        response = client_for(None).post(WEBHOOK, {"id": "e"}, format="json")
    elif forgery == "garbage":
        response = _webhook(order, signature="t=abc,v1=zz")
    else:
        response = _webhook(order, timestamp=int(time.time()) - 3600)
    assert response.status_code == 400
    assert response.json()["type"] == "invalid_webhook"
    order.refresh_from_db()
    assert order.status == "pending"
    assert balance(alice) == 0
    assert events("coins.purchased") == []


def test_a_signed_but_malformed_event_is_a_400(order, webhook_secret):
    body = b'{"id": "e", "type": "payment.succeeded", "data": {"order_id": "nope"}}'
    response = client_for(None).generic("POST", WEBHOOK, body, content_type="application/json",
                                        headers={"Showoff-Signature": test_signature(body)})
    assert response.status_code == 400
    assert "malformed payment event" in response.json()["detail"]


def test_a_payment_for_the_wrong_amount_credits_nothing(alice, order, webhook_secret):
    for amount, currency in ((1, "USD"), (499, "EUR")):
        response = _webhook(order, amount=amount, currency=currency)
        assert response.status_code == 400
        assert response.json()["type"] == "payment_mismatch"
    assert balance(alice) == 0
    order.refresh_from_db()
    assert order.status == "pending"


def test_a_failed_payment_marks_the_order_failed_then_a_late_success_credits(
        alice, order, webhook_secret):
    assert _webhook(order, type_="payment.failed").json() == {"result": "failed"}
    order.refresh_from_db()
    assert (order.status, order.failure_reason, balance(alice)) == ("failed", "card declined", 0)
    assert _webhook(order, type_="payment.failed").json() == {"result": "already_failed"}
    assert _webhook(order).json() == {"result": "credited"}
    assert balance(alice) == 500


def test_other_event_types_are_acknowledged_and_ignored(alice, order, webhook_secret):
    assert _webhook(order, type_="customer.updated").json() == {"result": "ignored"}
    assert balance(alice) == 0


def test_the_webhook_refuses_everything_without_a_configured_secret(alice, order, settings):
    settings.COINS_PAYMENT_WEBHOOK_SECRET = ""
    response = _webhook(order, secret="anything")
    assert response.status_code == 503
    assert balance(alice) == 0


def test_unknown_provider_is_a_404(order, webhook_secret):
    response = client_for(None).post("/api/coins/purchases/webhook/paypal/", {}, format="json")
    assert response.status_code == 404


def test_an_order_is_visible_to_its_buyer_only(order, as_alice, as_bob):
    url = f"/api/coins/purchases/{order.pk}/"
    assert as_alice.get(url).json()["status"] == "pending"
    assert as_bob.get(url).status_code == 404
    assert client_for(None).get(url).status_code == 401


def test_purchase_with_an_idempotency_key_creates_one_order(as_alice, package):
    first = as_alice.post("/api/coins/purchases/", {"package_id": package.pk}, format="json",
                          headers={"Idempotency-Key": "buy-1"})
    again = as_alice.post("/api/coins/purchases/", {"package_id": package.pk}, format="json",
                          headers={"Idempotency-Key": "buy-1"})
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    assert PurchaseOrder.objects.count() == 1
