"""Event validation: fastjsonschema and jsonschema-rs against jsonschema, over the catalogue.

    .venv/bin/python bench/validators.py [--samples 20] [--rounds 5]

For every event type: valid data drawn from its schema (outbox/tests/samples.py: Hypothesis,
edge cases included) and each sample broken one way at a time. Each validator is timed over the
valid samples (microseconds per event; rounds alternate the order of the validators; medians),
and its verdicts are compared with jsonschema's (the validator publish() used, and still the one
that words the errors): how many it accepts that jsonschema refuses (it would let invalid
events through) and how many it refuses that jsonschema accepts (publish() then asks
jsonschema, so these cost time, not correctness). Formats are annotations in draft 2020-12 for
all three (not asserted). jsonschema-rs is measured only when installed (a dev dependency),
and only on the types whose schemas it can compile (the others are listed).

Prints one JSON object: totals, and per type the medians.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time

from _setup import setup_django


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    setup_django(db="showoff_bench_writepath")
    import fastjsonschema
    from jsonschema import Draft202012Validator

    from outbox import catalogue
    from outbox.tests.samples import invalid_variants, valid_samples

    try:
        import jsonschema_rs
    except ImportError:
        jsonschema_rs = None

    def fj_ok(fn, data) -> bool:
        try:
            fn(data)
        except fastjsonschema.JsonSchemaException:
            return False
        return True

    per_type = {}
    rs_cannot_compile: dict[str, str] = {}
    totals = {"candidates": 0, "jsonschema_refuses": 0}
    for name in ("fastjsonschema", "jsonschema_rs"):
        totals[f"{name}_accepts_what_jsonschema_refuses"] = 0
        totals[f"{name}_refuses_what_jsonschema_accepts"] = 0
    times: dict[str, list[float]] = {"jsonschema": [], "fastjsonschema": [], "jsonschema_rs": []}
    for type_name, et in sorted(catalogue.all_types().items()):
        reference = Draft202012Validator(et.schema)
        validators = {
            "jsonschema": lambda d, r=reference: not any(True for _ in r.iter_errors(d)),
            "fastjsonschema": lambda d, f=et._compiled: fj_ok(f, d),
        }
        if jsonschema_rs is not None:
            try:
                validators["jsonschema_rs"] = jsonschema_rs.Draft202012Validator(
                    et.schema).is_valid
            except jsonschema_rs.ValidationError as exc:  # a pattern its regex engine refuses
                rs_cannot_compile[type_name] = str(exc).splitlines()[0]
        rng = random.Random(type_name)
        valid = valid_samples(et, args.samples)
        candidates = list(valid)
        for sample in valid:
            candidates += invalid_variants(sample, et.schema, rng)
        verdicts = {name: [fn(d) for d in candidates] for name, fn in validators.items()}
        truth = verdicts["jsonschema"]
        totals["candidates"] += len(candidates)
        totals["jsonschema_refuses"] += truth.count(False)
        for name in ("fastjsonschema", "jsonschema_rs"):
            if name in verdicts:
                got = verdicts[name]
                totals[f"{name}_accepts_what_jsonschema_refuses"] += sum(
                    g and not t for g, t in zip(got, truth, strict=True))
                totals[f"{name}_refuses_what_jsonschema_accepts"] += sum(
                    t and not g for g, t in zip(got, truth, strict=True))
        rounds: dict[str, list[float]] = {name: [] for name in validators}
        names = list(validators)
        for r in range(args.rounds):
            for name in (names if r % 2 == 0 else names[::-1]):
                fn = validators[name]
                repeat = 20
                started = time.perf_counter()
                for _ in range(repeat):
                    for d in valid:
                        assert fn(d), (type_name, name, d)  # sanity: every sample is valid
                rounds[name].append((time.perf_counter() - started) / (repeat * len(valid)) * 1e6)
        per_type[type_name] = {name: round(statistics.median(v), 2) for name, v in rounds.items()}
        for name, v in rounds.items():
            times[name].append(statistics.median(v))
    summary = {name: round(statistics.median(v), 2) for name, v in times.items() if v}
    print(json.dumps({
        "benchmark": "validators",
        "load_average_at_end": os.getloadavg()[0],
        "event_types": len(per_type),
        "valid_samples_per_type": args.samples,
        "rounds": args.rounds,
        "median_over_types_us_per_event": summary,
        "speedup_vs_jsonschema": {name: round(summary["jsonschema"] / us, 1)
                                  for name, us in summary.items() if name != "jsonschema"},
        "verdicts": totals,
        "jsonschema_rs_cannot_compile": rs_cannot_compile,
        "per_type_us_per_event": per_type,
    }, indent=2))


if __name__ == "__main__":
    main()
