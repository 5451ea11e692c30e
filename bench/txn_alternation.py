"""Back-to-back Kafka transactions: one transactional.id against two used in turn.

    .venv/bin/python bench/txn_alternation.py [--transactions 300] [--rounds 3]

Why the relay alternates two producers per shard (relay/engine.py): when
`commit_transaction()` returns, the coordinator may still be writing the commit's markers, and
the next transaction of the same id is answered CONCURRENT_TRANSACTIONS, which librdkafka
retries after 20 ms. Each transaction here is what a relay batch is at low rates: one 1 KiB
record to a 3-partition topic and one checkpoint record to a 1-partition topic, begun as soon
as the previous commit returned. `one` runs them all on one producer (the baseline), `two`
alternates two producers (never two transactions open at once). Interleaved rounds (the order
alternates), medians. Figures: commit time (begin → commit returned) p50/p99 and how many
transactions took over 15 ms. Sanity, asserted: every record is in Kafka once
(read_committed).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import uuid

from _setup import setup_django


def run(producers: list, n: int, topic: str, checkpoints: str, tag: str) -> dict:
    times = []
    for i in range(n):
        p = producers[i % len(producers)]
        started = time.perf_counter()
        p.begin_transaction()
        p.produce(topic, key=f"{tag}-{i % 50}".encode(), value=b"x" * 1024,
                  headers={"ce_id": f"{tag}-{i}"})
        p.produce(checkpoints, key=b"checkpoint", value=json.dumps({"n": i}).encode(),
                  partition=0)
        p.commit_transaction(30)
        times.append((time.perf_counter() - started) * 1000)
    times = sorted(times[10:])  # the first ones pay for connections and partition metadata
    return {"p50_ms": round(statistics.median(times), 2),
            "p99_ms": round(times[int(len(times) * 0.99)], 2),
            "over_15_ms": sum(t > 15 for t in times), "measured": len(times)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--transactions", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    prefix = setup_django()
    from relay.kafka import make_producer
    from relay.testing import create_topic, delete_topics, read_all

    topic, checkpoints = f"{prefix}txn-data", f"{prefix}txn-checkpoints"
    create_topic(topic, 3)
    create_topic(checkpoints, 1)
    try:
        def producer():
            p = make_producer("bench-txn", **{"transactional.id": f"bench-txn-{uuid.uuid4()}",
                                              "linger.ms": 2})
            p.init_transactions(30)
            return p

        setups = {"one": [producer()], "two": [producer(), producer()]}
        runs: dict[str, list[dict]] = {"one": [], "two": []}
        for r in range(args.rounds):
            for mode in (("one", "two") if r % 2 == 0 else ("two", "one")):
                runs[mode].append(run(setups[mode], args.transactions, topic, checkpoints,
                                      f"{mode}{r}"))
        ids = [rec.header("ce_id") for rec in read_all([topic])]
        assert len(ids) == len(set(ids)) == 2 * args.rounds * args.transactions, len(ids)
        summary = {m: {k: statistics.median(x[k] for x in v)
                       for k in ("p50_ms", "p99_ms", "over_15_ms")} for m, v in runs.items()}
        print(json.dumps({
            "benchmark": "txn_alternation", "transactions_per_round": args.transactions,
            "rounds": args.rounds, "load_average_at_end": os.getloadavg(),
            "one_producer": summary["one"], "two_producers_alternating": summary["two"],
            "p99_ratio_two_vs_one": round(summary["two"]["p99_ms"]
                                          / summary["one"]["p99_ms"], 3),
            "checked_exactly_once_in_kafka": len(ids),
            "rounds_detail": runs,
        }, indent=2))
    finally:
        delete_topics([topic, checkpoints])


if __name__ == "__main__":
    main()
