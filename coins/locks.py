"""Row locks of the coins app, in one place so their order is easy to check.

Lock order, everywhere:
1. the domain row being decided, if any (a `PurchaseOrder` or a `Withdrawal`), then
2. wallets, in primary-key order.
Nothing locks a domain row after a wallet, so no two transactions can wait on each other in a
cycle (see `wallets_lock`). A service that must read a wallet before moving coins (the KYC check
of a withdrawal) locks every wallet of the movement in that first call: locking one wallet, then
later a set that includes a lower key, would break the order (a deadlock the mixed-operations
stress test finds).
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db import connection
from django.db.models import Q

from .models import PurchaseOrder, Wallet, Withdrawal


def wallets_lock(*, user_ids: Iterable[int] = (), system_codes: Iterable[str] = ()
                 ) -> list[Wallet]:
    """Lock the wallets of these users and system accounts for the current transaction.

    Wallets are locked in primary-key order: two transfers A->B and B->A both lock min(A, B)
    first, so one waits for the other instead of each holding one wallet and waiting for the
    other's (a deadlock, which PostgreSQL would break by failing one of them). FOR NO KEY
    UPDATE is the lock an UPDATE of the balance takes anyway, and it leaves foreign-key checks
    of new entries (FOR KEY SHARE) unblocked.

    Missing user and system wallets are created first (see `_wallets_create`), BEFORE any
    wallet is locked: creating one can wait for another transaction creating the same wallet,
    and that transaction may want any wallet next, so a wallet lock held across that wait is a
    deadlock (the stress test found it: lock the existing system account, wait for a user's
    uncommitted wallet whose creator then asks for the system account). Returns the wallets in
    primary-key order.
    """
    user_ids = sorted(set(user_ids))
    system_codes = sorted(set(system_codes))
    if _existing(user_ids, system_codes) < len(user_ids) + len(system_codes):
        _wallets_create(user_ids, system_codes)
    return _select_for_update(user_ids, system_codes)


def _existing(user_ids: list[int], system_codes: list[str]) -> int:
    # A plain read: no lock, so nothing is held while `_wallets_create` may wait.
    return Wallet.objects.filter(Q(user_id__in=user_ids) | Q(system_code__in=system_codes)
                                 ).count()


def _select_for_update(user_ids: list[int], system_codes: list[str]) -> list[Wallet]:
    return list(
        Wallet.objects.filter(Q(user_id__in=user_ids) | Q(system_code__in=system_codes))
        .order_by("pk")
        .select_for_update(no_key=True)
    )


def _wallets_create(user_ids: list[int], system_codes: list[str]) -> None:
    """INSERT ... ON CONFLICT DO NOTHING, in one statement and in a fixed (sorted) order.

    Two transactions creating the same two wallets insert them in the same order, so they
    cannot wait on each other's uncommitted inserts in a cycle either.
    """
    rows = [(uid, None) for uid in user_ids] + [(None, code) for code in system_codes]
    values = ", ".join(["(%s::bigint, %s::varchar, 0, now(), now())"] * len(rows))
    params = [p for row in rows for p in row]
    with connection.cursor() as cur:
        cur.execute(
            f"INSERT INTO {Wallet._meta.db_table} "  # noqa: S608 (placeholders only)
            f"(user_id, system_code, balance, created_at, updated_at) VALUES {values} "
            "ON CONFLICT DO NOTHING",
            params,
        )


def purchase_order_lock(order_id) -> PurchaseOrder | None:
    return PurchaseOrder.objects.select_for_update().filter(pk=order_id).first()


def withdrawal_lock(withdrawal_id: int) -> Withdrawal | None:
    return Withdrawal.objects.select_for_update().filter(pk=withdrawal_id).first()
