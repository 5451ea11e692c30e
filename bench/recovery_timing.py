"""Does asking for a password reset take longer when an account uses the address?

    .venv/bin/python bench/recovery_timing.py [--requests 300] [--rounds 7]

`POST /api/auth/password/reset/` must not tell, by its answer or by its time, whether an account
uses the address. The API writes one `email.password_reset_requested` event either way and
the `accounts` consumer looks the address up later, so both paths run the same statements
(accounts/tests/test_recovery_api.py proves that); this measures the time.

In process (Django's test client through the whole middleware and DRF stack, the real
PostgreSQL and the real Redis throttles), in interleaved rounds (the order alternates, so drift
of the machine's load falls on both alike), requests alternate between:

- `registered`: the address of an active account;
- `unknown`: an address no account uses (the baseline).

Figures: median and p90 per path (ms), the ratio registered / unknown of the medians (target:
within 0.95-1.05), and the per-round ratios. For scale, the same rounds time the design this
avoids: a request that looks the account up and issues the link in the request
(`naive_*`, run at the service level, no HTTP), whose ratio shows what a measurable
difference looks like on this machine. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

from _setup import percentile, setup_django

KNOWN = "bench-recovery-known@example.com"
UNKNOWN = "bench-recovery-nobody@example.com"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=300, help="per path and round")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    # Real throttles on Redis, with a one-second window so their histories stay short and
    # never refuse a request of this run.
    for name in ("ANON", "USER", "RECOVERY", "RECOVERY_EMAIL"):
        os.environ[f"API_THROTTLE_{name}"] = "1000000/s"
    os.environ["DEBUG"] = "false"  # no query log growing through the run
    setup_django(db=os.environ.get("BENCH_RECOVERY_DATABASE_NAME", "showoff_bench_recovery"))

    from django.db import transaction
    from django.utils import timezone
    from rest_framework.test import APIClient

    from accounts import services
    from accounts.models import AccountToken, User
    from outbox.models import OutboxEvent

    user, _ = User.objects.get_or_create(username="bench-recovery", defaults={"email": KNOWN})
    User.objects.filter(pk=user.pk).update(email=KNOWN, is_active=True)
    User.objects.filter(email=UNKNOWN).delete()
    client = APIClient(REMOTE_ADDR="203.0.113.50")
    events_before = OutboxEvent.objects.filter(type="email.password_reset_requested").count()
    tokens_before = AccountToken.objects.count()

    def api(email: str) -> float:
        start = time.perf_counter()
        resp = client.post("/api/auth/password/reset/", {"email": email}, format="json")
        took = time.perf_counter() - start
        assert resp.status_code == 202, resp.content
        return took

    def naive(email: str) -> float:
        # What the endpoint would cost if it looked the account up and issued the link itself.
        start = time.perf_counter()
        with transaction.atomic():
            found = User.objects.filter(email__iexact=email, is_active=True).first()
            if found is not None:
                services._account_token_issue(user=found, purpose="password_reset", ip=None,
                                              now=timezone.now())
        return time.perf_counter() - start

    for _ in range(30):  # warm-up: connections, caches, imports
        api(KNOWN), api(UNKNOWN)

    times: dict[str, list[float]] = {k: [] for k in ("registered", "unknown", "naive_registered",
                                                     "naive_unknown")}
    per_round: list[dict[str, float]] = []
    for r in range(args.rounds):
        pair = (KNOWN, UNKNOWN) if r % 2 == 0 else (UNKNOWN, KNOWN)
        got: dict[str, list[float]] = {k: [] for k in times}
        # The API block, then the naive one: a naive link's commit never sits just before a
        # timed API request of one path only.
        for fn, prefix in ((api, ""), (naive, "naive_")):
            for _ in range(args.requests):
                for email in pair:
                    label = "registered" if email == KNOWN else "unknown"
                    got[prefix + label].append(fn(email))
        for k, v in got.items():
            times[k].extend(v)
        per_round.append({
            "ratio": round(statistics.median(got["registered"])
                           / statistics.median(got["unknown"]), 3),
            "naive_ratio": round(statistics.median(got["naive_registered"])
                                 / statistics.median(got["naive_unknown"]), 3),
        })

    def summary(values: list[float]) -> dict[str, float]:
        ms = [v * 1000 for v in values]
        return {"requests": len(ms), "median_ms": round(statistics.median(ms), 3),
                "p90_ms": round(percentile(ms, 90), 3)}

    # Sanity: every API request wrote its one event and issued no token itself.
    events = (OutboxEvent.objects.filter(type="email.password_reset_requested").count()
              - events_before)
    api_requests = len(times["registered"]) + len(times["unknown"]) + 60
    assert events == api_requests, (events, api_requests)
    naive_tokens = AccountToken.objects.count() - tokens_before
    assert naive_tokens == len(times["naive_registered"]), naive_tokens
    # Leave nothing behind for the relay of this database.
    OutboxEvent.objects.filter(type__in=["email.password_reset_requested",
                                         "email.requested"]).delete()
    AccountToken.objects.filter(user=user).delete()

    figures = {k: summary(v) for k, v in times.items()}
    result = {
        "benchmark": "recovery_timing",
        "rounds": args.rounds,
        "requests_per_path_and_round": args.requests,
        **figures,
        "ratio_registered_to_unknown": round(
            figures["registered"]["median_ms"] / figures["unknown"]["median_ms"], 3),
        "naive_ratio_registered_to_unknown": round(
            figures["naive_registered"]["median_ms"] / figures["naive_unknown"]["median_ms"],
            3),
        "per_round": per_round,
        "events_written": events,
        "target": "ratio within 0.95-1.05",
    }
    ratio = result["ratio_registered_to_unknown"]
    result["target_met"] = 0.95 <= ratio <= 1.05
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
