"""Admin: read-only ledger, withdrawal approve/reject actions, audited manual adjustments."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from coins.models import Adjustment, Entry, Wallet, Withdrawal
from coins.services import withdrawal_request

from .helpers import balance, events, fund, make_user, system_balance

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(admin_user):
    client = Client()
    client.force_login(admin_user)
    return client


def _wallet(user) -> Wallet:
    fund(user, 1)  # creates the wallet
    return Wallet.objects.get(user=user)


def test_adjust_action_credits_with_reason_and_operator(admin_client, admin_user, alice):
    wallet = _wallet(alice)
    response = admin_client.post("/admin/coins/wallet/", {
        "action": "adjust_balance", "_selected_action": [wallet.pk], "apply": "1",
        "amount": "25", "reason": "Goodwill after outage #12"}, follow=True)
    assert response.status_code == 200
    assert balance(alice) == 26
    adjustment = Adjustment.objects.get(reason="Goodwill after outage #12")
    assert (adjustment.amount, adjustment.operator_id) == (25, admin_user.pk)
    assert adjustment.transaction.created_by_id == admin_user.pk
    assert system_balance("adjustments") == -26
    assert events("coins.adjusted")[-1].payload["operator_id"] == admin_user.pk


def test_adjust_action_shows_the_form_and_requires_a_reason(admin_client, alice):
    wallet = _wallet(alice)
    form = admin_client.post("/admin/coins/wallet/", {
        "action": "adjust_balance", "_selected_action": [wallet.pk]})
    assert form.status_code == 200
    assert b'name="reason"' in form.content
    missing = admin_client.post("/admin/coins/wallet/", {
        "action": "adjust_balance", "_selected_action": [wallet.pk], "apply": "1",
        "amount": "5", "reason": ""})
    assert missing.status_code == 200
    assert b"This field is required" in missing.content
    absurd = admin_client.post("/admin/coins/wallet/", {
        "action": "adjust_balance", "_selected_action": [wallet.pk], "apply": "1",
        "amount": str(10**20), "reason": "typo"})
    assert absurd.status_code == 200
    assert b"less than or equal to" in absurd.content
    assert balance(alice) == 1


def test_adjust_action_cannot_overdraw(admin_client, alice):
    wallet = _wallet(alice)
    response = admin_client.post("/admin/coins/wallet/", {
        "action": "adjust_balance", "_selected_action": [wallet.pk], "apply": "1",
        "amount": "-2", "reason": "chargeback"}, follow=True)
    assert b"Not enough coins" in response.content
    assert balance(alice) == 1


def test_adjust_needs_the_add_adjustment_permission(alice):
    staff = make_user(is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_wallet"))
    client = Client()
    client.force_login(staff)
    wallet = _wallet(alice)
    client.post("/admin/coins/wallet/", {
        "action": "adjust_balance", "_selected_action": [wallet.pk], "apply": "1",
        "amount": "25", "reason": "sneaky"})
    assert balance(alice) == 1
    assert Adjustment.objects.filter(reason="sneaky").count() == 0


def test_wallets_and_entries_are_read_only(admin_client, alice):
    wallet = _wallet(alice)
    entry = Entry.objects.filter(wallet=wallet).first()
    assert admin_client.get("/admin/coins/wallet/add/").status_code == 403
    page = admin_client.get(f"/admin/coins/wallet/{wallet.pk}/change/")
    assert page.status_code == 200
    assert b'name="_save"' not in page.content
    admin_client.post(f"/admin/coins/wallet/{wallet.pk}/change/", {"balance": "999"})
    assert balance(alice) == 1
    assert admin_client.post(f"/admin/coins/entry/{entry.pk}/delete/").status_code == 403
    assert admin_client.get("/admin/coins/ledgertransaction/").status_code == 200


def test_approve_and_reject_actions(admin_client, admin_user, alice, settings):
    settings.COINS_WITHDRAWAL_REQUIRE_KYC = False
    settings.COINS_WITHDRAWAL_MIN_AMOUNT = 1
    fund(alice, 100)
    paid = withdrawal_request(user=alice, amount=30, destination="x")
    returned = withdrawal_request(user=alice, amount=20, destination="y")
    admin_client.post("/admin/coins/withdrawal/", {"action": "approve",
                                                  "_selected_action": [paid.pk]})
    admin_client.post("/admin/coins/withdrawal/", {"action": "reject", "apply": "1",
                                                  "_selected_action": [returned.pk],
                                                  "reason": "Wrong IBAN"})
    paid.refresh_from_db()
    returned.refresh_from_db()
    assert (paid.status, paid.reviewed_by_id) == ("completed", admin_user.pk)
    assert (returned.status, returned.rejection_reason) == ("rejected", "Wrong IBAN")
    assert balance(alice) == 70
    # deciding again reports the state instead of failing
    response = admin_client.post("/admin/coins/withdrawal/", {
        "action": "approve", "_selected_action": [paid.pk]}, follow=True)
    assert b"already completed" in response.content
    assert Withdrawal.objects.get(pk=paid.pk).status == "completed"


def test_kyc_action_marks_the_wallet_verified(admin_client, alice):
    wallet = _wallet(alice)
    admin_client.post("/admin/coins/wallet/", {"action": "verify_kyc",
                                              "_selected_action": [wallet.pk]})
    wallet.refresh_from_db()
    assert wallet.kyc_verified_at is not None


@pytest.mark.parametrize("model", ["wallet", "ledgertransaction", "entry", "withdrawal",
                                   "adjustment", "transfer", "purchaseorder", "coinpackage",
                                   "rewardrule", "rewardgrant"])
def test_every_admin_list_renders(admin_client, alice, model):
    fund(alice, 5)
    assert admin_client.get(f"/admin/coins/{model}/").status_code == 200
