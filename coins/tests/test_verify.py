"""The ledger checker (`coins.selectors.ledger_verify`, `manage.py coins_verify`) catches a
broken ledger: a cached balance off its entries, an unbalanced transaction, a negative user
balance. The database's own guards are bypassed inside the test's transaction (rolled back)."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from coins import services
from coins.models import Entry, EntryKind, LedgerTransaction, Wallet
from coins.selectors import ledger_verify

from .helpers import fund, make_user

pytestmark = pytest.mark.django_db


def _verify() -> tuple[str, str | None]:
    out = StringIO()
    try:
        call_command("coins_verify", stdout=out)
    except CommandError as exc:
        return out.getvalue(), str(exc)
    return out.getvalue(), None


def _unguard(ddl: str) -> None:
    """Drop one of the database's guards for the rest of this test's transaction (rolled back
    with it). The deferred checks of the rows written so far run first: PostgreSQL alters no
    table with trigger events pending."""
    with connection.cursor() as cur:
        cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cur.execute(ddl)


@pytest.fixture
def ledger():
    """Two users who bought and moved coins: a healthy ledger."""
    alice, bob = make_user(), make_user()
    fund(alice, 100)
    services.coins_transfer(sender=alice, recipient=bob, amount=30)
    return alice, bob


def test_a_healthy_ledger_passes(ledger):
    out, error = _verify()
    assert error is None
    assert out == "sum of all balances: 0\nledger OK\n"
    assert ledger_verify().ok


def test_a_cached_balance_off_its_entries_is_caught(ledger):
    # given: alice's cached balance moved without an entry
    alice, _ = ledger
    wallet = Wallet.objects.get(user=alice)
    with connection.cursor() as cur:
        cur.execute("UPDATE coins_wallet SET balance = balance + 5 WHERE id = %s", [wallet.pk])
    # when
    report = ledger_verify()
    out, error = _verify()
    # then
    assert report.wallets_off == [(wallet.pk, 75, 70)]
    assert report.total == 5
    assert error == "the coins ledger is inconsistent (details above)"
    assert out == ("sum of all balances: 5\n"
                   f"wallet {wallet.pk}: cached balance 75, entries sum 70\n")


def test_an_unbalanced_transaction_is_caught(ledger):
    # given: one entry with no other side, its balance trigger disabled
    alice, _ = ledger
    wallet = Wallet.objects.get(user=alice)
    _unguard("ALTER TABLE coins_entry DISABLE TRIGGER coins_entry_balanced")
    txn = LedgerTransaction.objects.create(kind=EntryKind.ADJUSTMENT, description="forged")
    Entry.objects.create(transaction=txn, wallet=wallet, amount=7, balance_after=77,
                         kind=EntryKind.ADJUSTMENT)
    # when
    report = ledger_verify()
    out, error = _verify()
    # then
    assert report.unbalanced == [(txn.pk, 7)]
    assert report.wallets_off == [(wallet.pk, 70, 77)]
    assert f"transaction {txn.pk}: entries sum to 7\n" in out
    assert error is not None


def test_a_negative_user_balance_is_caught(ledger):
    # given: the CHECK constraint dropped (inside this transaction) and a balance below zero
    _, bob = ledger
    wallet = Wallet.objects.get(user=bob)
    _unguard("ALTER TABLE coins_wallet DROP CONSTRAINT coins_wallet_user_balance_non_negative")
    with connection.cursor() as cur:
        cur.execute("UPDATE coins_wallet SET balance = -3 WHERE id = %s", [wallet.pk])
    # when
    report = ledger_verify()
    out, error = _verify()
    # then
    assert report.negative_users == [(wallet.pk, -3)]
    assert f"wallet {wallet.pk}: negative user balance -3\n" in out
    assert error == "the coins ledger is inconsistent (details above)"
