"""Coins reads."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db import connection
from django.db.models import QuerySet, Sum

from .models import Entry, PurchaseOrder, Wallet, Withdrawal


def wallet_get(*, user) -> Wallet | None:
    return Wallet.objects.filter(user=user).first()


def wallet_balance(*, user) -> int:
    return Wallet.objects.filter(user=user).values_list("balance", flat=True).first() or 0


def wallet_history(*, user, kinds: Iterable[str] = ()) -> QuerySet[Entry]:
    """The user's entries, newest first (`(wallet, id)` and `(wallet, kind, id)` indexes)."""
    qs = Entry.objects.filter(wallet__user=user).select_related("transaction")
    kinds = list(kinds)
    if kinds:
        qs = qs.filter(kind__in=kinds)
    return qs.order_by("-id")


def purchase_order_get(*, user, order_id) -> PurchaseOrder | None:
    return PurchaseOrder.objects.filter(user=user, pk=order_id).first()


def withdrawal_list(*, user) -> QuerySet[Withdrawal]:
    return Withdrawal.objects.filter(user=user).order_by("-id")


@dataclass
class LedgerReport:
    total: int
    wallets_off: list[tuple[int, int, int]] = field(default_factory=list)  # (wallet, cached, sum)
    unbalanced: list[tuple[int, int]] = field(default_factory=list)  # (transaction, sum)
    negative_users: list[tuple[int, int]] = field(default_factory=list)  # (wallet, balance)

    @property
    def ok(self) -> bool:
        return self.total == 0 and not (self.wallets_off or self.unbalanced
                                         or self.negative_users)


def ledger_verify() -> LedgerReport:
    """Check the ledger's invariants over all rows (operators: `manage.py coins_verify`)."""
    total = Wallet.objects.aggregate(s=Sum("balance"))["s"] or 0
    with connection.cursor() as cur:
        cur.execute("""
            SELECT w.id, w.balance, coalesce(sum(e.amount), 0)
            FROM coins_wallet w LEFT JOIN coins_entry e ON e.wallet_id = w.id
            GROUP BY w.id HAVING w.balance <> coalesce(sum(e.amount), 0) ORDER BY w.id
        """)
        wallets_off = [tuple(r) for r in cur.fetchall()]
        cur.execute("""
            SELECT transaction_id, sum(amount) FROM coins_entry
            GROUP BY transaction_id HAVING sum(amount) <> 0 ORDER BY transaction_id
        """)
        unbalanced = [tuple(r) for r in cur.fetchall()]
    negative = list(Wallet.objects.filter(user__isnull=False, balance__lt=0)
                    .values_list("id", "balance"))
    return LedgerReport(total=total, wallets_off=wallets_off, unbalanced=unbalanced,
                        negative_users=negative)
