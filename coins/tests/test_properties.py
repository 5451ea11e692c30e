"""Property-based: any sequence of operations keeps the ledger balanced and every balance equal
to the sum of its entries, and the services agree with a simple model of who has what."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coins import services
from coins.errors import InsufficientFunds, InvalidState, SelfTransfer
from coins.models import CoinPackage, Wallet
from coins.payments import PaymentConfirmation

from .helpers import assert_ledger_consistent, check_deferred_constraints, make_user, operator

pytestmark = pytest.mark.django_db
N_USERS = 4
user_idx = st.integers(0, N_USERS - 1)

operations = st.lists(st.one_of(
    st.tuples(st.just("buy"), user_idx, st.sampled_from([100, 250])),
    st.tuples(st.just("transfer"), user_idx, user_idx, st.integers(1, 300)),
    st.tuples(st.just("reward"), user_idx, st.sampled_from(["signup_bonus", "daily_login"]),
              st.integers(0, 2)),
    st.tuples(st.just("adjust"), user_idx, st.integers(-150, 150).filter(bool)),
    st.tuples(st.just("withdraw"), user_idx, st.integers(1, 200)),
    st.tuples(st.just("decide"), st.integers(0, 5), st.booleans()),
), max_size=30)


@pytest.fixture
def world(db, settings):
    settings.COINS_WITHDRAWAL_REQUIRE_KYC = False
    settings.COINS_WITHDRAWAL_MIN_AMOUNT = 1
    settings.COINS_WITHDRAWAL_FEE_BPS = 100
    settings.COINS_TRANSFER_MAX_AMOUNT = 1_000
    packages = {c: CoinPackage.objects.create(name=str(c), coins=c, price_minor=c,
                                              currency="USD") for c in (100, 250)}
    return [make_user() for _ in range(N_USERS)], operator(), packages


@settings(max_examples=40, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(ops=operations)
def test_any_sequence_of_operations_keeps_the_ledger_consistent(world, ops):
    users, op, packages = world
    with transaction.atomic():  # each example rolls back, leaving the next one a clean ledger
        model = dict.fromkeys(range(N_USERS), 0)
        rewarded: set[tuple[int, str, int]] = set()
        pending: list[tuple[int, int, int]] = []  # (withdrawal id, user, amount)
        for operation in ops:
            kind, *args = operation
            if kind == "buy":
                who, coins = args
                order, _ = services.purchase_order_create(user=users[who],
                                                          package=packages[coins])
                services.purchase_confirm(confirmation=PaymentConfirmation(
                    provider="test", event_id=uuid.uuid4().hex, order_id=order.pk,
                    outcome="succeeded", amount_minor=coins, currency="USD",
                    reference=order.provider_reference))
                model[who] += coins
            elif kind == "transfer":
                a, b, amount = args
                if a == b:
                    with pytest.raises(SelfTransfer):
                        services.coins_transfer(sender=users[a], recipient=users[b],
                                                amount=amount)
                elif model[a] < amount:
                    with pytest.raises(InsufficientFunds):
                        services.coins_transfer(sender=users[a], recipient=users[b],
                                                amount=amount)
                else:
                    services.coins_transfer(sender=users[a], recipient=users[b], amount=amount)
                    model[a] -= amount
                    model[b] += amount
            elif kind == "reward":
                who, rule, day = args
                period = 0 if rule == "signup_bonus" else day
                _, created = services.reward_grant(
                    user_id=users[who].pk, rule_code=rule,
                    on=dt.date(2025, 1, 1) + dt.timedelta(days=day))
                assert created == ((who, rule, period) not in rewarded)
                if created:
                    rewarded.add((who, rule, period))
                    model[who] += 100 if rule == "signup_bonus" else 10
            elif kind == "adjust":
                who, amount = args
                if model[who] + amount < 0:
                    with pytest.raises(InsufficientFunds):
                        services.wallet_adjust(user=users[who], amount=amount, reason="p",
                                               operator=op)
                else:
                    services.wallet_adjust(user=users[who], amount=amount, reason="p",
                                           operator=op)
                    model[who] += amount
            elif kind == "withdraw":
                who, amount = args
                if model[who] < amount:
                    with pytest.raises(InsufficientFunds):
                        services.withdrawal_request(user=users[who], amount=amount,
                                                    destination="d")
                else:
                    w = services.withdrawal_request(user=users[who], amount=amount,
                                                    destination="d")
                    model[who] -= amount
                    pending.append((w.pk, who, amount))
            elif kind == "decide":
                index, approve = args
                if not pending:
                    continue
                wid, who, amount = pending.pop(index % len(pending))
                if approve:
                    services.withdrawal_approve(withdrawal_id=wid, operator=op)
                else:
                    services.withdrawal_reject(withdrawal_id=wid, operator=op, reason="p")
                    model[who] += amount
                with pytest.raises(InvalidState):
                    services.withdrawal_approve(withdrawal_id=wid, operator=op)

        # then: the ledger's invariants hold and the services agree with the model
        check_deferred_constraints()
        assert_ledger_consistent()
        balances = dict(Wallet.objects.filter(user__in=users).values_list("user_id", "balance"))
        assert {i: balances.get(u.pk, 0) for i, u in enumerate(users)} == model
        transaction.set_rollback(True)
