"""Withdrawals: hold, approve (payout + fee) or reject (coins return); KYC and minimum."""

from __future__ import annotations

import pytest

from coins.errors import InsufficientFunds, InvalidAmount, InvalidState, KycRequired, PayoutFailed
from coins.models import Withdrawal
from coins.services import (
    wallet_kyc_verify,
    withdrawal_approve,
    withdrawal_reject,
    withdrawal_request,
)

from .conftest import client_for
from .helpers import assert_ledger_consistent, balance, events, fund, system_balance

pytestmark = pytest.mark.django_db


@pytest.fixture
def verified_alice(alice, admin_user, settings):
    settings.COINS_WITHDRAWAL_MIN_AMOUNT = 100
    fund(alice, 1_000, by=admin_user)
    wallet_kyc_verify(user=alice, operator=admin_user)
    return alice


def test_request_holds_the_coins(verified_alice):
    w = withdrawal_request(user=verified_alice, amount=400, destination="iban:DE00")
    assert (w.status, w.amount, w.fee) == ("pending", 400, 0)
    assert balance(verified_alice) == 600
    assert system_balance("withdrawals_held") == 400
    [event] = events("coins.withdrawal_requested")
    assert event.payload == {"withdrawal_id": w.pk, "user_id": verified_alice.pk, "amount": 400,
                             "fee": 0, "transaction_id": w.hold_transaction_id}


def test_minimum_amount_and_funds_are_checked(verified_alice):
    with pytest.raises(InvalidAmount, match="at least 100"):
        withdrawal_request(user=verified_alice, amount=99, destination="x")
    with pytest.raises(InsufficientFunds):
        withdrawal_request(user=verified_alice, amount=1_001, destination="x")
    assert balance(verified_alice) == 1_000
    assert Withdrawal.objects.count() == 0


def test_kyc_is_required_when_the_setting_says_so(bob, settings):
    settings.COINS_WITHDRAWAL_MIN_AMOUNT = 1
    fund(bob, 10)
    with pytest.raises(KycRequired):
        withdrawal_request(user=bob, amount=5, destination="x")
    settings.COINS_WITHDRAWAL_REQUIRE_KYC = False
    withdrawal_request(user=bob, amount=5, destination="x")
    assert balance(bob) == 5


def test_approve_pays_out_and_keeps_the_fee(alice, admin_user, settings):
    # given: a 2.5% fee
    settings.COINS_WITHDRAWAL_FEE_BPS = 250
    settings.COINS_WITHDRAWAL_REQUIRE_KYC = False
    settings.COINS_WITHDRAWAL_MIN_AMOUNT = 1
    fund(alice, 1_000)
    w = withdrawal_request(user=alice, amount=999, destination="iban:DE00")
    assert w.fee == 24  # 999 * 250 // 10000, rounded down
    # when
    w = withdrawal_approve(withdrawal_id=w.pk, operator=admin_user)
    # then
    assert (w.status, w.reviewed_by_id, w.payout_reference) == (
        "completed", admin_user.pk, f"test_payout_withdrawal-{w.pk}")
    assert system_balance("withdrawals_held") == 0
    assert system_balance("payouts") == 975
    assert system_balance("fees") == 24
    assert balance(alice) == 1
    [event] = events("coins.withdrawal_completed")
    assert event.payload == {"withdrawal_id": w.pk, "user_id": alice.pk, "amount": 999,
                             "fee": 24, "payout_reference": w.payout_reference,
                             "reviewed_by": admin_user.pk,
                             "transaction_id": w.settle_transaction_id}
    assert_ledger_consistent()


def test_reject_returns_the_coins(verified_alice, admin_user):
    w = withdrawal_request(user=verified_alice, amount=300, destination="x")
    w = withdrawal_reject(withdrawal_id=w.pk, operator=admin_user, reason="Name mismatch")
    assert (w.status, w.rejection_reason) == ("rejected", "Name mismatch")
    assert balance(verified_alice) == 1_000
    assert system_balance("withdrawals_held") == 0
    [event] = events("coins.withdrawal_rejected")
    assert event.payload["reason"] == "Name mismatch"
    assert event.payload["reviewed_by"] == admin_user.pk
    with pytest.raises(InvalidAmount, match="reason"):
        withdrawal_reject(withdrawal_id=w.pk, operator=admin_user, reason=" ")


def test_a_decided_withdrawal_cannot_be_decided_again(verified_alice, admin_user):
    w = withdrawal_request(user=verified_alice, amount=300, destination="x")
    withdrawal_approve(withdrawal_id=w.pk, operator=admin_user)
    with pytest.raises(InvalidState, match="already completed"):
        withdrawal_approve(withdrawal_id=w.pk, operator=admin_user)
    with pytest.raises(InvalidState, match="already completed"):
        withdrawal_reject(withdrawal_id=w.pk, operator=admin_user, reason="late")
    assert system_balance("payouts") == 300
    assert balance(verified_alice) == 700


def test_a_refused_payout_changes_nothing(verified_alice, admin_user):
    w = withdrawal_request(user=verified_alice, amount=300, destination="fail:blocked")
    with pytest.raises(PayoutFailed):
        withdrawal_approve(withdrawal_id=w.pk, operator=admin_user)
    w.refresh_from_db()
    assert w.status == "pending"
    assert system_balance("withdrawals_held") == 300
    assert events("coins.withdrawal_completed") == []


# --- API -------------------------------------------------------------------------------------


def test_withdraw_api_and_status(verified_alice, admin_user):
    client = client_for(verified_alice)
    created = client.post("/api/coins/withdrawals/", {"amount": 250, "destination": "iban:X"},
                          format="json")
    assert created.status_code == 201, created.json()
    wid = created.json()["id"]
    assert created.json()["status"] == "pending"
    withdrawal_reject(withdrawal_id=wid, operator=admin_user, reason="Try again")
    detail = client.get(f"/api/coins/withdrawals/{wid}/").json()
    assert (detail["status"], detail["rejection_reason"]) == ("rejected", "Try again")
    listing = client.get("/api/coins/withdrawals/").json()
    assert [w["id"] for w in listing["results"]] == [wid]


def test_withdrawals_of_others_are_not_visible(verified_alice, as_bob):
    w = withdrawal_request(user=verified_alice, amount=250, destination="x")
    assert as_bob.get(f"/api/coins/withdrawals/{w.pk}/").status_code == 404
    assert as_bob.get("/api/coins/withdrawals/").json()["results"] == []
    assert client_for(None).get(f"/api/coins/withdrawals/{w.pk}/").status_code == 401


@pytest.mark.parametrize(("payload", "field"), [
    ({"amount": 99, "destination": "x"}, "amount"),
    ({"amount": "x", "destination": "x"}, "amount"),
    ({"amount": 10**23, "destination": "x"}, "amount"),
    ({"amount": 200}, "destination"),
    ({"amount": 200, "destination": ""}, "destination"),
])
def test_withdraw_api_bad_input(verified_alice, payload, field):
    response = client_for(verified_alice).post("/api/coins/withdrawals/", payload, format="json")
    assert response.status_code == 400
    assert field in response.json()["errors"]
    assert balance(verified_alice) == 1_000


def test_withdraw_api_without_kyc_is_a_403(bob, settings):
    settings.COINS_WITHDRAWAL_MIN_AMOUNT = 1
    fund(bob, 10)
    response = client_for(bob).post("/api/coins/withdrawals/", {"amount": 5,
                                                                "destination": "x"},
                                    format="json")
    assert response.status_code == 403
    assert response.json()["type"] == "kyc_required"
