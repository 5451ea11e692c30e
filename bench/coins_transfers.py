"""Coin transfers per second: 2 hot wallets (worst contention) against 1,000 wallets.

    .venv/bin/python bench/coins_transfers.py [--workers 4] [--seconds 4] [--rounds 3]
                                              [--wallets 1000]

Each transfer is the real service (`coins.services.coins_transfer`): lock both wallets in
primary-key order, one ledger transaction with two entries, the cached balances, the transfer
row and its `coins.transferred` outbox row, in one committed PostgreSQL transaction.

`--workers` processes (one connection each, no GIL between them) send 1-coin transfers for
`--seconds`, in `--rounds` rounds of spread then hot (interleaved, so a change in the machine's
load during the run hits both scenarios alike):
- hot: every transfer between the same 2 wallets, in random directions, so every transaction
  waits for the one before it on the two wallet rows;
- spread: between random pairs of `--wallets` wallets, where waits are rare.
The result is transfers/s of each, latency percentiles, and `hot / spread` (the cost of
contention). After each scenario the ledger is verified (balances sum to zero, each equals its
entries) and every transfer is checked to have exactly one outbox event.

Runs on its own database (`showoff_bench_coins`, created and migrated if missing; its coins and
outbox tables are emptied at the start) against the local PostgreSQL; prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import time

from _setup import percentile, setup_django

DB = os.environ.get("BENCH_COINS_DATABASE_NAME", "showoff_bench_coins")
FUNDING = 10**12


def prepare(n_wallets: int) -> list[int]:
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction

    from coins.ledger import Leg, ledger_move
    from coins.models import EntryKind, SystemAccount

    with connection.cursor() as cur:
        # TRUNCATE, not DELETE: ledger rows are immutable (a trigger refuses DELETE).
        cur.execute("TRUNCATE coins_transfer, coins_reward_grant, coins_purchase_order, "
                    "coins_adjustment, coins_withdrawal, coins_idempotency_key, coins_entry, "
                    "coins_transaction, coins_wallet, outbox_event")
    user_model = get_user_model()
    existing = list(user_model.objects.filter(username__startswith="bench-coins-")
                    .order_by("pk").values_list("pk", flat=True))
    missing = n_wallets - len(existing)
    if missing > 0:
        user_model.objects.bulk_create([
            user_model(username=f"bench-coins-{len(existing) + i}",
                       email=f"bench-coins-{len(existing) + i}@example.com")
            for i in range(missing)])
    users = list(user_model.objects.filter(username__startswith="bench-coins-")
                 .order_by("pk")[:n_wallets])
    # One balanced movement funds every wallet (1,000 credits against the adjustments
    # account), rather than 1,000 separate adjustments.
    with transaction.atomic():
        ledger_move(kind=EntryKind.ADJUSTMENT, description="benchmark funding", legs=[
            Leg(system=SystemAccount.ADJUSTMENTS, amount=-FUNDING * len(users)),
            *[Leg(user_id=u.pk, amount=FUNDING) for u in users]])
    return [u.pk for u in users]


def worker(scenario: str, user_ids: list[int], seconds: float, start_at: float, seed: int,
           out: mp.Queue) -> None:
    from django.contrib.auth import get_user_model
    from django.db import connections

    from coins import services

    users = list(get_user_model().objects.filter(pk__in=user_ids))
    rng = random.Random(seed)
    latencies: list[float] = []
    errors: list[str] = []
    time.sleep(max(0.0, start_at - time.time()))
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        sender, recipient = rng.sample(users, 2)
        t0 = time.perf_counter()
        try:
            services.coins_transfer(sender=sender, recipient=recipient, amount=1)
        except Exception as exc:  # noqa: BLE001 - reported, never expected
            errors.append(repr(exc)[:200])
            continue
        latencies.append(time.perf_counter() - t0)
    connections.close_all()
    out.put({"transfers": len(latencies), "latencies": latencies, "errors": errors})


def run(scenario: str, user_ids: list[int], workers: int, seconds: float) -> dict:
    from django.db import connections

    from coins.models import Transfer
    from coins.selectors import ledger_verify
    from outbox.models import OutboxEvent

    transfers_before = Transfer.objects.count()
    connections.close_all()  # children must not share the parent's socket
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    start_at = time.time() + 1.0
    procs = [ctx.Process(target=worker, args=(scenario, user_ids, seconds, start_at, i, out))
             for i in range(workers)]
    for p in procs:
        p.start()
    results = [out.get(timeout=seconds + 120) for _ in procs]
    for p in procs:
        p.join()
    latencies = [x for r in results for x in r["latencies"]]
    errors = [e for r in results for e in r["errors"]]
    done = sum(r["transfers"] for r in results)
    report = ledger_verify()
    transfers = Transfer.objects.count() - transfers_before
    events = OutboxEvent.objects.filter(type="coins.transferred").count()
    return {
        "wallets": len(user_ids),
        "transfers": done,
        "transfers_per_s": round(done / seconds, 1),
        "_latencies": latencies,
        "errors": len(errors),
        "error_samples": errors[:3],
        "ledger_ok": report.ok,
        "one_event_per_transfer": transfers == done and events == Transfer.objects.count(),
    }


def merge(rounds: list[dict], seconds: float) -> dict:
    latencies = [x for r in rounds for x in r.pop("_latencies")]
    done = sum(r["transfers"] for r in rounds)
    return {
        "wallets": rounds[0]["wallets"],
        "transfers": done,
        "transfers_per_s": round(done / (seconds * len(rounds)), 1),
        "per_round_transfers_per_s": [r["transfers_per_s"] for r in rounds],
        "latency_ms": {p: round(percentile(latencies, q) * 1000, 2)
                       for p, q in (("p50", 50), ("p95", 95), ("p99", 99))},
        "errors": sum(r["errors"] for r in rounds),
        "error_samples": [e for r in rounds for e in r["error_samples"]][:3],
        "ledger_ok": all(r["ledger_ok"] for r in rounds),
        "one_event_per_transfer": all(r["one_event_per_transfer"] for r in rounds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=4.0,
                        help="Seconds of each scenario in each round.")
    parser.add_argument("--rounds", type=int, default=3,
                        help="Rounds of spread then hot, so load drifts hit both alike.")
    parser.add_argument("--wallets", type=int, default=1000)
    args = parser.parse_args()

    os.environ.setdefault("LOG_LEVEL", "WARNING")
    setup_django(db=DB)
    t0 = time.perf_counter()
    user_ids = prepare(args.wallets)
    setup_s = time.perf_counter() - t0
    spread_rounds, hot_rounds = [], []
    for _ in range(args.rounds):
        spread_rounds.append(run("spread", user_ids, args.workers, args.seconds))
        hot_rounds.append(run("hot", user_ids[:2], args.workers, args.seconds))
    round_ratios = [round(h["transfers_per_s"] / s["transfers_per_s"], 3)
                    for h, s in zip(hot_rounds, spread_rounds, strict=True)
                    if s["transfers_per_s"]]
    hot, spread = merge(hot_rounds, args.seconds), merge(spread_rounds, args.seconds)
    print(json.dumps({
        "benchmark": "coins_transfers",
        "workers": args.workers,
        "rounds": args.rounds,
        "seconds_per_scenario_per_round": args.seconds,
        "setup_seconds": round(setup_s, 1),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "hot_2_wallets": hot,
        "spread_wallets": spread,
        "ratio_hot_over_spread": round(hot["transfers_per_s"] / spread["transfers_per_s"], 3)
        if spread["transfers_per_s"] else None,
        "ratio_per_round": round_ratios,
    }, indent=2))


if __name__ == "__main__":
    main()
