"""Coins services publish after locking the wallet of the user their events are keyed by
(DESIGN.md §3; see outbox/tests/lock_order.py for why and how it is checked)."""

from __future__ import annotations

import pytest

from coins import services
from coins.models import CoinPackage, Wallet
from coins.payments import PaymentConfirmation
from outbox.tests.lock_order import assert_publishes_after_lock

from .helpers import fund, make_user, operator

pytestmark = pytest.mark.django_db(transaction=True)

LOCK_WALLET = "SELECT 1 FROM coins_wallet WHERE user_id = %s FOR NO KEY UPDATE"


def _purchase(user):
    package = CoinPackage.objects.create(name="P", coins=300, price_minor=299, currency="EUR")
    order, _ = services.purchase_order_create(user=user, package=package)
    return lambda: services.purchase_confirm(confirmation=PaymentConfirmation(
        provider=order.provider, event_id="evt-1", order_id=order.pk, outcome="succeeded",
        amount_minor=order.price_minor, currency=order.currency,
        reference=order.provider_reference))


def _withdrawal(user, decide):
    withdrawal = services.withdrawal_request(user=user, amount=2000, destination="IBAN X")
    return lambda: decide(withdrawal_id=withdrawal.pk, operator=operator())


CASES = {
    "coins.transferred": lambda user: lambda: services.coins_transfer(
        sender=user, recipient=make_user(), amount=10),
    "coins.adjusted": lambda user: lambda: services.wallet_adjust(
        user=user, amount=-5, reason="correction", operator=operator()),
    "coins.rewarded": lambda user: lambda: services.reward_grant(user_id=user.pk,
                                                                 rule_code="signup_bonus"),
    "coins.purchased": _purchase,
    "coins.withdrawal_requested": lambda user: lambda: services.withdrawal_request(
        user=user, amount=2000, destination="IBAN X"),
    "coins.withdrawal_completed": lambda user: _withdrawal(user, services.withdrawal_approve),
    "coins.withdrawal_rejected": lambda user: _withdrawal(
        user, lambda **kw: services.withdrawal_reject(**kw, reason="not you")),
}


@pytest.mark.parametrize("event_type", sorted(CASES))
def test_coins_services_publish_after_locking_the_users_wallet(monkeypatch, settings,
                                                               event_type):
    # given: a user with a funded wallet, and the service about to run
    settings.COINS_WITHDRAWAL_REQUIRE_KYC = False
    user = make_user()
    fund(user, 10_000)
    call = CASES[event_type](user)
    assert Wallet.objects.filter(user=user).exists()
    # when / then: it waits for the user's wallet before it publishes
    assert_publishes_after_lock(monkeypatch, module=services, event_type=event_type,
                                lock_sql=LOCK_WALLET, lock_params=[user.pk], call=call)
