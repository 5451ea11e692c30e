"""Helpers for the coins tests: users, funding, ledger invariants, outbox events."""

from __future__ import annotations

import itertools
import uuid

from django.contrib.auth import get_user_model
from django.db import connection

from coins import services
from coins.models import Entry, LedgerTransaction, Wallet
from coins.selectors import ledger_verify
from outbox.models import OutboxEvent

_seq = itertools.count(1)


def make_user(**fields):
    n = f"{next(_seq)}{uuid.uuid4().hex[:6]}"
    fields.setdefault("username", f"coins{n}")
    fields.setdefault("email", f"coins{n}@example.com")
    return get_user_model().objects.create_user(password="x-Pass-12345", **fields)


def operator():
    n = f"{next(_seq)}{uuid.uuid4().hex[:6]}"
    return get_user_model().objects.create_superuser(
        username=f"op{n}", email=f"op{n}@example.com", password="x-Pass-12345")


def fund(user, amount: int, *, by=None) -> None:
    """Give `user` coins through the audited adjustment path (balanced against a system
    account, like every movement)."""
    services.wallet_adjust(user=user, amount=amount, reason="test funding", operator=by or
                           operator())


def balance(user) -> int:
    return Wallet.objects.filter(user=user).values_list("balance", flat=True).first() or 0


def system_balance(code: str) -> int:
    return Wallet.objects.filter(system_code=code).values_list("balance", flat=True).first() or 0


def events(event_type: str | None = None) -> list[OutboxEvent]:
    qs = OutboxEvent.objects.order_by("id")
    if event_type:
        qs = qs.filter(type=event_type)
    return list(qs)


def check_deferred_constraints() -> None:
    """Fire the deferred balance trigger now (tests inside one transaction never commit)."""
    with connection.cursor() as cur:
        cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cur.execute("SET CONSTRAINTS ALL DEFERRED")


def assert_ledger_consistent() -> None:
    report = ledger_verify()
    assert report.total == 0, f"balances sum to {report.total}"
    assert report.wallets_off == [], report.wallets_off
    assert report.unbalanced == [], report.unbalanced
    assert report.negative_users == [], report.negative_users
    # Running balances: each wallet's entries, in order, end at the cached balance and each
    # balance_after is the previous one plus the amount.
    for wallet in Wallet.objects.all():
        running = 0
        for amount, after in (Entry.objects.filter(wallet=wallet).order_by("id")
                              .values_list("amount", "balance_after")):
            running += amount
            assert after == running, (wallet.pk, after, running)
        assert running == wallet.balance
    assert not LedgerTransaction.objects.filter(entries__isnull=True).exists()
