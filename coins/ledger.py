"""The double-entry core: every coin movement goes through `ledger_move` (or its two halves).

Callers are services, inside their own `transaction.atomic()`; the legs are validated, the
wallets locked (pk order, `coins/locks.py`), overdrafts refused, and the transaction, its
entries and the cached balances written together.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.models import Case, IntegerField, Value, When
from django.utils import timezone

from .errors import InsufficientFunds, InvalidAmount
from .locks import wallets_lock
from .models import Entry, LedgerTransaction, Wallet


@dataclass(frozen=True)
class Leg:
    """One side of a movement: a user's wallet or a system account, and a signed amount."""

    amount: int
    user_id: int | None = None
    system: str | None = None

    def __post_init__(self) -> None:
        if (self.user_id is None) == (self.system is None):
            raise ValueError("a leg names exactly one of user_id and system")


def is_coin_amount(value: Any) -> bool:
    # bool is an int in Python; True coins is a bug, not an amount.
    return isinstance(value, int) and not isinstance(value, bool)


def _validate(legs: Sequence[Leg]) -> None:
    if len(legs) < 2:
        raise ValueError("a ledger transaction needs at least two legs")
    seen = set()
    for leg in legs:
        if not is_coin_amount(leg.amount) or leg.amount == 0:
            raise InvalidAmount(f"every leg moves a non-zero whole number of coins, not "
                                f"{leg.amount!r}")
        who = (leg.user_id, leg.system)
        if who in seen:
            raise ValueError(f"wallet {who} appears twice in one movement")
        seen.add(who)
    if sum(leg.amount for leg in legs) != 0:
        raise ValueError(f"unbalanced movement: legs sum to {sum(leg.amount for leg in legs)}")


def ledger_transaction_create(
    *, kind: str, description: str = "", metadata: Mapping[str, Any] | None = None,
    created_by_id: int | None = None,
) -> LedgerTransaction:
    """The transaction row alone, for services that must insert something referencing it
    before any coins move (a reward grant's unique row); follow with `ledger_post`."""
    if not connection.in_atomic_block:
        raise RuntimeError("ledger writes must run inside transaction.atomic()")
    return LedgerTransaction.objects.create(
        kind=kind, description=description, metadata=dict(metadata or {}),
        created_by_id=created_by_id,
    )


def ledger_post(*, txn: LedgerTransaction, legs: Sequence[Leg]) -> dict[tuple, int]:
    """Write the entries of `txn` and update the cached balances; returns the new balances
    keyed by ("user", id) / ("system", code).

    Raises `InsufficientFunds` (nothing written) if a user wallet would go below zero.
    """
    if not connection.in_atomic_block:
        raise RuntimeError("ledger writes must run inside transaction.atomic()")
    _validate(legs)
    wallets = wallets_lock(
        user_ids=[leg.user_id for leg in legs if leg.user_id is not None],
        system_codes=[leg.system for leg in legs if leg.system is not None],
    )
    by_owner: dict[tuple, Wallet] = {
        (("system", w.system_code) if w.system_code else ("user", w.user_id)): w
        for w in wallets
    }
    new_balance: dict[int, int] = {}
    entries = []
    for leg in legs:
        owner = ("system", leg.system) if leg.system else ("user", leg.user_id)
        wallet = by_owner[owner]
        balance = wallet.balance + leg.amount
        if not wallet.is_system and balance < 0:
            raise InsufficientFunds(
                f"Not enough coins: the balance is {wallet.balance} and this needs "
                f"{-leg.amount}.", balance=wallet.balance, needed=-leg.amount,
            )
        new_balance[wallet.pk] = balance
        entries.append(Entry(transaction=txn, wallet=wallet, amount=leg.amount,
                             balance_after=balance, kind=txn.kind))
    Entry.objects.bulk_create(entries)
    # One UPDATE for every wallet of the movement; the rows are locked, so the balances
    # computed from them above are exact.
    Wallet.objects.filter(pk__in=new_balance).update(
        balance=Case(*[When(pk=pk, then=Value(b)) for pk, b in new_balance.items()],
                     output_field=IntegerField()),
        updated_at=timezone.now(),
    )
    for wallet in wallets:
        if wallet.pk in new_balance:
            wallet.balance = new_balance[wallet.pk]
    return {owner: new_balance[w.pk] for owner, w in by_owner.items()}


def ledger_move(
    *, kind: str, legs: Sequence[Leg], description: str = "",
    metadata: Mapping[str, Any] | None = None, created_by_id: int | None = None,
) -> LedgerTransaction:
    """One balanced movement: the transaction row, its entries and the new balances."""
    _validate(legs)
    txn = ledger_transaction_create(kind=kind, description=description, metadata=metadata,
                                    created_by_id=created_by_id)
    ledger_post(txn=txn, legs=legs)
    return txn
