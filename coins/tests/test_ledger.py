"""The double-entry core: balanced, immutable, never negative for users, integers only."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, InternalError, connection, transaction
from django.test.utils import CaptureQueriesContext

from coins.errors import InsufficientFunds, InvalidAmount
from coins.ledger import Leg, ledger_move
from coins.models import Entry, EntryKind, LedgerTransaction, SystemAccount, Wallet

from .helpers import assert_ledger_consistent, balance, check_deferred_constraints, system_balance

pytestmark = pytest.mark.django_db


def test_a_movement_writes_balanced_entries_and_caches_the_balances(alice, bob):
    # given
    with transaction.atomic():
        ledger_move(kind=EntryKind.ADJUSTMENT, legs=[
            Leg(system=SystemAccount.ADJUSTMENTS, amount=-50), Leg(user_id=alice.pk, amount=50)])
    # when
    with transaction.atomic():
        txn = ledger_move(kind=EntryKind.TRANSFER, legs=[
            Leg(user_id=alice.pk, amount=-20), Leg(user_id=bob.pk, amount=20)])
    # then
    entries = list(txn.entries.order_by("id").values_list("wallet__user_id", "amount",
                                                          "balance_after", "kind"))
    assert entries == [(alice.pk, -20, 30, "transfer"), (bob.pk, 20, 20, "transfer")]
    assert (balance(alice), balance(bob)) == (30, 20)
    assert system_balance("adjustments") == -50
    check_deferred_constraints()
    assert_ledger_consistent()


def test_overdraft_raises_and_writes_nothing(alice, bob):
    # given: alice has 5 coins
    with transaction.atomic():
        ledger_move(kind=EntryKind.ADJUSTMENT, legs=[
            Leg(system=SystemAccount.ADJUSTMENTS, amount=-5), Leg(user_id=alice.pk, amount=5)])
    entries_before = Entry.objects.count()
    # when
    with pytest.raises(InsufficientFunds, match="balance is 5 and this needs 6"):
        with transaction.atomic():
            ledger_move(kind=EntryKind.TRANSFER, legs=[
                Leg(user_id=alice.pk, amount=-6), Leg(user_id=bob.pk, amount=6)])
    # then
    assert Entry.objects.count() == entries_before
    assert (balance(alice), balance(bob)) == (5, 0)


@pytest.mark.parametrize("amount", [1.0, 2.5, True, "3", 0, None])
def test_amounts_are_non_zero_integers(alice, amount):
    with pytest.raises((InvalidAmount, ValueError, TypeError)):
        with transaction.atomic():
            ledger_move(kind=EntryKind.ADJUSTMENT, legs=[
                Leg(system=SystemAccount.ADJUSTMENTS, amount=-1),
                Leg(user_id=alice.pk, amount=amount)])
    assert Entry.objects.count() == 0


def test_unbalanced_legs_are_refused_before_writing(alice, bob):
    with pytest.raises(ValueError, match="unbalanced movement: legs sum to 1"):
        with transaction.atomic():
            ledger_move(kind=EntryKind.TRANSFER, legs=[
                Leg(user_id=alice.pk, amount=-1), Leg(user_id=bob.pk, amount=2)])
    assert LedgerTransaction.objects.count() == 0


def test_the_database_refuses_an_unbalanced_transaction_at_commit(alice):
    wallet = Wallet.objects.create(user=alice)
    with pytest.raises(IntegrityError, match="ledger transaction [0-9]+ is unbalanced: its "
                                             "entries sum to 7"):
        with transaction.atomic():
            # given: a raw entry that bypasses the service
            txn = LedgerTransaction.objects.create(kind=EntryKind.ADJUSTMENT)
            Entry.objects.create(transaction=txn, wallet=wallet, amount=7, balance_after=7,
                                 kind=EntryKind.ADJUSTMENT)
            # when: the deferred constraint trigger fires (at commit, or now)
            check_deferred_constraints()
    # then
    assert Entry.objects.count() == 0


@pytest.mark.parametrize("statement", [
    "UPDATE coins_entry SET amount = amount + 1",
    "DELETE FROM coins_entry",
    "UPDATE coins_transaction SET description = 'edited'",
    "DELETE FROM coins_transaction",
])
def test_ledger_rows_are_immutable(alice, bob, statement):
    # given
    with transaction.atomic():
        ledger_move(kind=EntryKind.ADJUSTMENT, legs=[
            Leg(system=SystemAccount.ADJUSTMENTS, amount=-3), Leg(user_id=alice.pk, amount=3)])
    # when / then
    with pytest.raises((IntegrityError, InternalError), match="immutable"):
        with transaction.atomic(), connection.cursor() as cur:
            cur.execute(statement)
    assert list(Entry.objects.values_list("amount", flat=True).order_by("id")) == [-3, 3]


def test_a_check_constraint_keeps_user_balances_non_negative(alice):
    Wallet.objects.create(user=alice)
    with pytest.raises(IntegrityError, match="coins_wallet_user_balance_non_negative"):
        with transaction.atomic():
            Wallet.objects.filter(user=alice).update(balance=-1)


def test_system_accounts_may_go_negative(alice):
    with transaction.atomic():
        ledger_move(kind=EntryKind.REWARD, legs=[
            Leg(system=SystemAccount.REWARDS, amount=-100), Leg(user_id=alice.pk, amount=100)])
    assert system_balance("rewards") == -100


def test_wallets_are_locked_in_primary_key_order(alice, bob):
    # given: both wallets exist, bob's created first so his has the lower key
    Wallet.objects.create(user=bob)
    Wallet.objects.create(user=alice, balance=0)
    with transaction.atomic():
        ledger_move(kind=EntryKind.ADJUSTMENT, legs=[
            Leg(system=SystemAccount.ADJUSTMENTS, amount=-9), Leg(user_id=alice.pk, amount=9)])
    # when
    with CaptureQueriesContext(connection) as ctx, transaction.atomic():
        ledger_move(kind=EntryKind.TRANSFER, legs=[
            Leg(user_id=alice.pk, amount=-4), Leg(user_id=bob.pk, amount=4)])
    # then: one locking read, ordered by id, FOR NO KEY UPDATE
    locks = [q["sql"] for q in ctx.captured_queries if "FOR NO KEY UPDATE" in q["sql"]]
    assert len(locks) == 1
    assert 'ORDER BY "coins_wallet"."id" ASC' in locks[0]


def test_missing_wallets_are_created_on_first_movement(alice):
    assert not Wallet.objects.filter(user=alice).exists()
    with transaction.atomic():
        ledger_move(kind=EntryKind.REWARD, legs=[
            Leg(system=SystemAccount.REWARDS, amount=-1), Leg(user_id=alice.pk, amount=1)])
    assert Wallet.objects.get(user=alice).balance == 1
    assert Wallet.objects.get(system_code="rewards").balance == -1
