"""What metrics and structured logging cost the relay.

    .venv/bin/python bench/metrics_overhead.py [--events 20000] [--rounds 9] [--batch 500]

The relay (in-process, the code of `run_relay`) delivers backlogs of N events in three modes,
interleaved round by round in the same run (the order alternates, so drift of the machine's
load falls on every mode alike):

- `off`: metrics calls stubbed out, logging as before this feature (the plain one-line format,
  no context filter), at INFO;
- `on`: prometheus_client metrics in multiprocess mode (values written to the files of a
  PROMETHEUS_MULTIPROC_DIR, as in production with several processes) and the production
  logging (JSON formatter, context filter) at INFO: what a deployment runs;
- `on_with_event_lines`: as `on`, plus one DEBUG line per delivered event
  (LOG_LEVEL_EVENTS=DEBUG, used to follow single events): informative, not the target.

Logs go to a file, as a process's stderr would. Each backlog is written by SQL (not timed) with
CloudEvents headers and a traceparent. Target: `on` ≥ 0.9 × `off`. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time

# prometheus_client picks its value store when imported: set the folder first.
_PROM_DIR = tempfile.mkdtemp(prefix="showoff-bench-prom-")
os.environ["PROMETHEUS_MULTIPROC_DIR"] = _PROM_DIR

from _setup import setup_django  # noqa: E402

MODES = ("off", "on", "on_with_event_lines")


def write_backlog(n: int, size: int) -> None:
    from django.db import connection, transaction

    padding = "x" * max(0, size - 120)
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(
            """
            INSERT INTO outbox_event (event_id, type, topic, key, shard_hash, headers, payload)
            SELECT s.id, 'pipeline.probe', 'analytics-events', 'user-' || (i %% 1000), i %% 1000,
                   jsonb_build_object(
                       'ce_specversion', '1.0', 'ce_id', s.id::text,
                       'ce_type', 'pipeline.probe', 'ce_source', 'bench',
                       'ce_time', now()::text, 'content-type', 'application/json',
                       'traceparent', '00-' || md5(s.id::text) || '-'
                                      || substr(md5(i::text), 1, 16) || '-01'),
                   jsonb_build_object('probe_id', 'overhead', 'key', 'user-' || (i %% 1000),
                                      'seq', i, 'padding', %s::text)
            FROM (SELECT i, gen_random_uuid() AS id FROM generate_series(1, %s) AS i) s
            """,
            [padding, n],
        )


def configure_logging(mode: str, path: str) -> logging.Handler:
    from pythonjsonlogger.json import JsonFormatter

    from showoff.log import PipelineContextFilter

    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    handler = logging.FileHandler(path)
    if mode == "off":
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    else:
        from django.conf import settings

        config = {k: v for k, v in settings.LOGGING["formatters"]["json"].items() if k != "()"}
        handler.setFormatter(JsonFormatter(**config))
        handler.addFilter(PipelineContextFilter())
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.getLogger("relay").setLevel(logging.INFO)
    logging.getLogger("relay.events").setLevel(
        logging.DEBUG if mode == "on_with_event_lines" else logging.INFO)
    return handler


def deliver(n: int, batch: int, mode: str, log_path: str) -> float:
    """Seconds the relay takes to deliver the n-event backlog in `mode`."""
    from relay import metrics
    from relay.engine import Relay

    real = metrics.relay_committed
    if mode == "off":
        metrics.relay_committed = lambda *args, **kwargs: None
    handler = configure_logging(mode, log_path)
    relay = Relay(use_lock=False, batch_size=batch)
    relay.start()
    try:
        delivered = 0
        started = time.perf_counter()
        while delivered < n:
            got = relay.step()
            delivered += got
            if not got:
                time.sleep(0.005)  # rows behind a transaction open elsewhere in the cluster
        elapsed = time.perf_counter() - started
    finally:
        relay.close()
        metrics.relay_committed = real
        handler.close()
    if delivered != n:
        raise RuntimeError(f"{mode}: delivered {delivered}, expected {n}")
    return elapsed


def commit_call_cost(batch: int, repeat: int = 2000) -> dict[str, float]:
    """Microseconds of the one call the relay makes per committed batch (`relay_committed`),
    with the per-event lines off and on: the deterministic part of the overhead."""
    from relay import metrics

    headers = json.dumps({"ce_id": "8f0c2a4e-1b7d-4c1e-9f7a-3d2b1c0e9a8f", "ce_type": "probe",
                          "traceparent": "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"})
    rows = [(i, "123456", "analytics-events", f"user-{i}", headers, "{}") for i in range(batch)]
    out = {}
    events_log = logging.getLogger("relay.events")
    for label, level in (("metrics_only", logging.INFO), ("with_event_lines", logging.DEBUG)):
        events_log.setLevel(level)
        started = time.perf_counter()
        for _ in range(repeat if level == logging.INFO else max(1, repeat // 50)):
            metrics.relay_committed("bench/1", rows, seconds=0.01, position=(1, 1), at=1.0)
        calls = repeat if level == logging.INFO else max(1, repeat // 50)
        out[label] = round((time.perf_counter() - started) / calls * 1e6, 1)
    events_log.setLevel(logging.INFO)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()

    prefix = setup_django(db="showoff_bench_metrics")
    import shutil

    from _setup import reset_outbox

    from relay.testing import delete_topics
    from relay.topics import create_topics, desired_topics

    specs = [s for s in desired_topics() if not s.logical.endswith(".dlq")]
    create_topics(specs)
    log_dir = tempfile.mkdtemp(prefix="showoff-bench-logs-")
    seconds: dict[str, list[float]] = {m: [] for m in MODES}
    log_bytes: dict[str, int] = {m: 0 for m in MODES}
    try:
        reset_outbox()
        # warm-up: connections, producer buffers, code paths
        write_backlog(args.events // 4, args.size)
        deliver(args.events // 4, args.batch, "on", os.path.join(log_dir, "warmup.log"))
        for r in range(args.rounds):
            order = MODES if r % 2 == 0 else MODES[::-1]
            for mode in order:
                write_backlog(args.events, args.size)
                path = os.path.join(log_dir, f"{mode}-{r}.log")
                seconds[mode].append(deliver(args.events, args.batch, mode, path))
                log_bytes[mode] += os.path.getsize(path)
        rate = {m: args.events / statistics.median(v) for m, v in seconds.items()}
        configure_logging("on", os.path.join(log_dir, "calls.log"))
        per_batch_call = commit_call_cost(args.batch)
        per_round = [off / on for off, on in zip(seconds["off"], seconds["on"], strict=True)]
        result = {
            "benchmark": "metrics_overhead",
            "events_per_run": args.events,
            "event_bytes": args.size,
            "batch_size": args.batch,
            "rounds": args.rounds,
            "relay_events_per_s": {m: round(v) for m, v in rate.items()},
            "on_vs_off_ratio": round(rate["on"] / rate["off"], 3),
            "on_vs_off_ratio_per_round": [round(x, 3) for x in per_round],
            "on_with_event_lines_vs_off_ratio": round(rate["on_with_event_lines"] / rate["off"],
                                                      3),
            "relay_committed_call_us_per_batch": per_batch_call,
            "median_batch_ms": {m: round(statistics.median(v) / (args.events / args.batch) * 1000,
                                         2) for m, v in seconds.items()},
            "log_bytes_per_event": {m: round(b / (args.events * args.rounds), 1)
                                    for m, b in log_bytes.items()},
            "target_ratio": 0.9,
            "load_average_1m": round(os.getloadavg()[0], 2),
        }
        print(json.dumps(result, indent=2))
    finally:
        reset_outbox()
        delete_topics([s.name for s in specs])
        shutil.rmtree(log_dir, ignore_errors=True)
        shutil.rmtree(_PROM_DIR, ignore_errors=True)
        print(f"(topic prefix {prefix} deleted)", file=sys.stderr)


if __name__ == "__main__":
    main()
