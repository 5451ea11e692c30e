"""Races on the real PostgreSQL: many connections at once, committed transactions.

Every test here runs with `transaction=True` (real commits, one connection per thread), so the
locks, unique indexes and deferred triggers behave as in production.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable

import psycopg
import pytest
from django.db import OperationalError, connection, connections, transaction
from django.db.models import Sum

from coins import ledger, locks, services
from coins.errors import InsufficientFunds, InvalidState
from coins.models import (
    Adjustment,
    CoinPackage,
    PurchaseOrder,
    RewardGrant,
    SystemAccount,
    Transfer,
    Wallet,
    Withdrawal,
)
from coins.payments import test_signature
from outbox.models import OutboxEvent

from .conftest import client_for
from .helpers import assert_ledger_consistent, balance, fund, make_user, operator

pytestmark = pytest.mark.django_db(transaction=True)


def run_concurrently(fns: list[Callable[[], object]], timeout: float = 60) -> list[object]:
    """Start every fn at the same instant, each on its own thread and connection; returns each
    one's result or the exception it raised."""
    barrier = threading.Barrier(len(fns))
    results: list[object] = [None] * len(fns)

    def worker(i: int, fn: Callable[[], object]) -> None:
        try:
            barrier.wait()
            results[i] = fn()
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            results[i] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(i, fn)) for i, fn in enumerate(fns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    assert not any(t.is_alive() for t in threads), "a worker hung (a lock never released?)"
    return results


def test_random_concurrent_transfers_keep_every_invariant():
    # given: 5 users with 200 coins each, 8 workers doing 40 random transfers each
    users = [make_user() for _ in range(5)]
    op = operator()
    for u in users:
        fund(u, 200, by=op)
    events_before = OutboxEvent.objects.filter(type="coins.transferred").count()
    rng = random.Random(20250301)
    plans = [[(rng.sample(users, 2), rng.randint(1, 80)) for _ in range(40)] for _ in range(8)]

    def worker(plan):
        def run():
            done, refused, errors = [], 0, []
            for (sender, recipient), amount in plan:
                try:
                    done.append(services.coins_transfer(sender=sender, recipient=recipient,
                                                        amount=amount).pk)
                except InsufficientFunds:
                    refused += 1
                except Exception as exc:  # noqa: BLE001 - a deadlock would land here
                    errors.append(repr(exc))
            return done, refused, errors
        return run

    # when
    results = run_concurrently([worker(p) for p in plans])
    # then: no deadlock or other error surfaced to any caller
    assert [r for r in results if isinstance(r, Exception)] == []
    assert [e for _, _, errors in results for e in errors] == []
    done = [pk for ok, _, _ in results for pk in ok]
    refused = sum(r for _, r, _ in results)
    assert len(done) + refused == 8 * 40
    assert len(done) > 100  # the run really moved coins
    # no balance is negative and the money supply is unchanged
    assert Wallet.objects.filter(user__isnull=False, balance__lt=0).count() == 0
    assert Wallet.objects.filter(user__in=users).aggregate(s=Sum("balance"))["s"] == 1000
    assert_ledger_consistent()
    # every transfer has exactly one event, and every event one transfer
    assert Transfer.objects.count() == len(done)
    transferred = OutboxEvent.objects.filter(type="coins.transferred")
    assert transferred.count() - events_before == len(done)
    ids = Counter(e.payload["transfer_id"] for e in transferred)
    assert sorted(ids) == sorted(done)
    assert set(ids.values()) == {1}


def test_random_concurrent_mixed_operations_never_deadlock(settings):
    """Transfers, withdrawals (requested, approved, rejected), rewards and adjustments at once:
    every path that locks wallets keeps the primary-key order."""
    settings.COINS_WITHDRAWAL_REQUIRE_KYC = True
    settings.COINS_WITHDRAWAL_MIN_AMOUNT = 1
    settings.COINS_WITHDRAWAL_FEE_BPS = 500
    # As in production, the system accounts exist first: lower keys than every user wallet.
    with transaction.atomic():
        locks.wallets_lock(system_codes=list(SystemAccount))
    users = [make_user() for _ in range(4)]
    op = operator()
    for u in users:
        fund(u, 300, by=op)
        services.wallet_kyc_verify(user=u, operator=op)
    services.reward_rule_get(code="daily_login")
    rng = random.Random(7)
    expected = (InsufficientFunds, InvalidState)

    def worker(seed):
        def run():
            r = random.Random(seed)
            errors, mine, done = [], [], Counter()
            for _ in range(40):
                a, b = r.sample(users, 2)
                choice = r.random()
                try:
                    if choice < 0.4:
                        services.coins_transfer(sender=a, recipient=b, amount=r.randint(1, 40))
                        done["transfer"] += 1
                    elif choice < 0.6:
                        mine.append(services.withdrawal_request(
                            user=a, amount=r.randint(1, 40), destination="d").pk)
                        done["withdrawal"] += 1
                    elif choice < 0.8 and mine:
                        wid = mine.pop(r.randrange(len(mine)))
                        if r.random() < 0.5:
                            services.withdrawal_approve(withdrawal_id=wid, operator=op)
                            done["approved"] += 1
                        else:
                            services.withdrawal_reject(withdrawal_id=wid, operator=op,
                                                       reason="r")
                            done["rejected"] += 1
                    elif choice < 0.9:
                        _, created = services.reward_grant(user_id=a.pk, rule_code="daily_login")
                        done["grant"] += created
                    else:
                        services.wallet_adjust(user=a, amount=r.randint(-20, 20) or 1,
                                               reason="r", operator=op)
                        done["adjustment"] += 1
                except expected:
                    done["refused"] += 1
                except Exception as exc:  # noqa: BLE001 - a deadlock would land here
                    errors.append(repr(exc))
            return errors, done
        return run

    results = run_concurrently([worker(rng.random()) for _ in range(6)])
    assert [r for r in results if isinstance(r, Exception)] == []
    assert [e for errors, _ in results for e in errors] == []
    done = sum((d for _, d in results), Counter())
    # Every kind of operation really ran, concurrently, and most attempts went through: a run
    # where everything is refused (or nothing runs) proves nothing about deadlocks.
    assert {"transfer", "withdrawal", "approved", "rejected", "grant", "adjustment"} <= {
        k for k, v in done.items() if v > 0}, done
    attempts = 6 * 40
    assert done.total() - done["refused"] >= attempts // 2, done
    # and what each worker counted is what the database holds
    assert Transfer.objects.count() == done["transfer"]
    assert Withdrawal.objects.count() == done["withdrawal"]
    assert Withdrawal.objects.filter(status="completed").count() == done["approved"]
    assert Withdrawal.objects.filter(status="rejected").count() == done["rejected"]
    assert RewardGrant.objects.count() == done["grant"]
    assert Adjustment.objects.count() == done["adjustment"] + len(users)  # + the funding
    assert_ledger_consistent()
    assert Wallet.objects.filter(user__isnull=False, balance__lt=0).count() == 0


def test_the_harness_sees_deadlocks_when_wallets_are_locked_unordered(monkeypatch):
    """Negative control: with locks taken one by one in sender-then-recipient order, the same
    kind of run deadlocks, so the test above would notice an ordering bug."""
    alice, bob = make_user(), make_user()
    op = operator()
    fund(alice, 100, by=op)
    fund(bob, 100, by=op)

    def unordered(*, user_ids=(), system_codes=()):
        wallets = []
        for uid in user_ids:  # the caller's order: the sender first
            wallets += list(Wallet.objects.filter(user_id=uid).select_for_update(no_key=True))
            time.sleep(0.2)
        for code in system_codes:
            wallets += list(Wallet.objects.filter(system_code=code).select_for_update())
        return wallets

    monkeypatch.setattr(ledger, "wallets_lock", unordered)

    results = run_concurrently([
        lambda: services.coins_transfer(sender=alice, recipient=bob, amount=1),
        lambda: services.coins_transfer(sender=bob, recipient=alice, amount=1),
    ])
    assert any(isinstance(r, OperationalError) and "deadlock" in str(r) for r in results), (
        results)


def test_concurrent_overdraft_attempts_never_double_spend():
    # given: alice has 50 coins; 10 connections each try to send 10
    alice, bob = make_user(), make_user()
    fund(alice, 50)
    # when
    results = run_concurrently(
        [lambda: services.coins_transfer(sender=alice, recipient=bob, amount=10)] * 10)
    # then: exactly five succeed
    assert sum(isinstance(r, Transfer) for r in results) == 5
    assert sum(isinstance(r, InsufficientFunds) for r in results) == 5
    assert (balance(alice), balance(bob)) == (0, 50)


def test_same_idempotency_key_on_concurrent_connections_moves_coins_once(monkeypatch):
    # given: the transfer is slowed down so every duplicate arrives while the first is open
    alice, bob = make_user(), make_user()
    fund(alice, 100)
    real = services.coins_transfer

    def slow_transfer(**kwargs):
        transfer = real(**kwargs)
        time.sleep(0.3)
        return transfer

    monkeypatch.setattr(services, "coins_transfer", slow_transfer)
    key = str(uuid.uuid4())

    def send():
        response = client_for(alice).post(
            "/api/coins/transfers/", {"recipient_id": bob.pk, "amount": 7}, format="json",
            headers={"Idempotency-Key": key})
        return response.status_code, response.json(), response.headers.get(
            "Idempotent-Replayed")

    # when
    results = run_concurrently([send] * 4)
    # then: one original, three replays of the same body, seven coins moved once
    assert [r for r in results if isinstance(r, Exception)] == []
    assert {status for status, _, _ in results} == {201}
    assert len({json.dumps(body, sort_keys=True) for _, body, _ in results}) == 1
    assert sorted(str(replayed) for _, _, replayed in results) == [
        "None", "true", "true", "true"]
    assert (balance(alice), balance(bob)) == (93, 7)
    assert Transfer.objects.count() == 1
    assert OutboxEvent.objects.filter(type="coins.transferred").count() == 1


def test_same_key_different_bodies_concurrently_one_wins_the_other_is_422(monkeypatch):
    alice, bob = make_user(), make_user()
    fund(alice, 100)
    real = services.coins_transfer
    monkeypatch.setattr(services, "coins_transfer",
                        lambda **kw: (real(**kw), time.sleep(0.3))[0])

    def send(amount):
        return lambda: client_for(alice).post(
            "/api/coins/transfers/", {"recipient_id": bob.pk, "amount": amount},
            format="json", headers={"Idempotency-Key": "contested"}).status_code

    results = run_concurrently([send(5), send(6)])
    assert sorted(results) == [201, 422]
    assert balance(bob) in (5, 6)
    assert Transfer.objects.count() == 1


def test_concurrent_grants_of_one_reward_period_grant_once():
    alice = make_user()
    services.reward_rule_get(code="daily_login")  # the rule row exists before the race
    results = run_concurrently(
        [lambda: services.reward_grant(user_id=alice.pk, rule_code="daily_login")] * 6)
    assert [r for r in results if isinstance(r, Exception)] == []
    assert sorted(created for _, created in results) == [False] * 5 + [True]
    assert len({grant.pk for grant, _ in results}) == 1
    assert RewardGrant.objects.count() == 1
    assert balance(alice) == 10
    assert OutboxEvent.objects.filter(type="coins.rewarded").count() == 1


def test_concurrent_claims_of_a_missing_rule_row_still_grant_once():
    # the rule row itself is created on first use, by whichever request comes first
    alice = make_user()
    results = run_concurrently(
        [lambda: services.reward_grant(user_id=alice.pk, rule_code="signup_bonus")] * 4)
    assert [r for r in results if isinstance(r, Exception)] == []
    assert RewardGrant.objects.count() == 1
    assert balance(alice) == 100


def test_concurrent_webhook_deliveries_credit_once(settings):
    settings.COINS_PAYMENT_WEBHOOK_SECRET = "whsec-race"
    alice = make_user()
    package = CoinPackage.objects.create(name="P", coins=300, price_minor=299, currency="EUR")
    order, _ = services.purchase_order_create(user=alice, package=package)
    body = json.dumps({"id": "evt_1", "type": "payment.succeeded", "data": {
        "order_id": str(order.pk), "reference": order.provider_reference,
        "amount_minor": 299, "currency": "EUR"}}).encode()
    header = test_signature(body)

    def deliver():
        response = client_for(None).generic(
            "POST", "/api/coins/purchases/webhook/test/", body,
            content_type="application/json", headers={"Showoff-Signature": header})
        return response.status_code, response.json()["result"]

    results = run_concurrently([deliver] * 4)
    assert sorted(results) == [(200, "already_credited")] * 3 + [(200, "credited")]
    assert balance(alice) == 300
    assert PurchaseOrder.objects.get().status == "completed"
    assert OutboxEvent.objects.filter(type="coins.purchased").count() == 1


def test_racing_approve_and_reject_decide_a_withdrawal_once(settings):
    settings.COINS_WITHDRAWAL_REQUIRE_KYC = False
    settings.COINS_WITHDRAWAL_MIN_AMOUNT = 1
    alice, op = make_user(), operator()
    fund(alice, 100, by=op)
    w = services.withdrawal_request(user=alice, amount=60, destination="x")
    results = run_concurrently([
        lambda: services.withdrawal_approve(withdrawal_id=w.pk, operator=op),
        lambda: services.withdrawal_reject(withdrawal_id=w.pk, operator=op, reason="no"),
        lambda: services.withdrawal_approve(withdrawal_id=w.pk, operator=op),
    ])
    assert sum(isinstance(r, InvalidState) for r in results) == 2
    w.refresh_from_db()
    assert balance(alice) == (40 if w.status == "completed" else 100)
    decided = OutboxEvent.objects.filter(
        type__in=["coins.withdrawal_completed", "coins.withdrawal_rejected"]).count()
    assert decided == 1
    with transaction.atomic():
        assert_ledger_consistent()


def test_first_movement_of_many_new_wallets_at_once():
    # wallets are created on first use: many first movements at once create each one once
    users = [make_user() for _ in range(6)]
    op = operator()
    results = run_concurrently(
        [lambda u=u: services.wallet_adjust(user=u, amount=5, reason="r", operator=op)
         for u in users] + [lambda u=u: services.wallet_adjust(user=u, amount=5, reason="r",
                                                               operator=op) for u in users])
    assert [r for r in results if isinstance(r, Exception)] == []
    assert sorted(Wallet.objects.filter(user__in=users).values_list("balance", flat=True)) == [
        10] * 6
    assert Wallet.objects.filter(system_code="adjustments").count() == 1
    assert connection.vendor == "postgresql"


def test_wallets_lock_holds_no_wallet_while_waiting_to_create_one():
    """A transaction creating a missing wallet may wait for another transaction that is creating
    the same wallet. While it waits it must hold no wallet lock: the other one may want any
    wallet next (here the system account), and a lock held across that wait is a deadlock
    (seen in the first-movements stress test: PostgreSQL aborted three of twelve)."""
    # given: a system account that exists, and a user whose wallet another transaction (other)
    # has inserted but not committed
    code = f"test-{uuid.uuid4().hex[:8]}"
    with transaction.atomic():
        locks.wallets_lock(system_codes=[code])  # created and committed
    user = make_user()
    params = connection.get_connection_params()
    other = psycopg.connect(**{k: v for k, v in params.items()
                               if k not in ("cursor_factory", "context")})
    other.execute("SET lock_timeout = '10s'")
    other.execute("INSERT INTO coins_wallet (user_id, system_code, balance, created_at, "
                  "updated_at) VALUES (%s, NULL, 0, now(), now())", [user.pk])
    pid: list[int] = []
    result: list[object] = []

    def lock_both() -> None:
        try:
            with transaction.atomic():
                pid.append(connection.cursor().connection.info.backend_pid)
                result.append([w.user_id or w.system_code
                               for w in locks.wallets_lock(user_ids=[user.pk],
                                                           system_codes=[code])])
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            result.append(exc)
        finally:
            connections.close_all()

    # when: our transaction asks for both wallets and waits for the other's insert, then the
    # other transaction asks for the system account
    worker = threading.Thread(target=lock_both)
    worker.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        waiting = pid and other.execute(
            "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s",
            [pid[0]]).fetchone()
        if waiting and waiting[0]:
            break
        time.sleep(0.02)
    else:
        pytest.fail("wallets_lock never waited for the uncommitted wallet")
    try:
        other.execute("SELECT id FROM coins_wallet WHERE system_code = %s FOR NO KEY UPDATE",
                      [code])
        other.commit()
    finally:
        other.close()
    worker.join(30)

    # then: neither transaction failed, and ours got both wallets (in primary-key order: the
    # system account was created first)
    assert not worker.is_alive()
    assert result == [[code, user.pk]]
