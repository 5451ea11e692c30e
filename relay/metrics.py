"""Kafka-side metrics (relay and consumers), on the official `prometheus_client`.

Every metric here is a `prometheus_client` metric in its default registry, wrapped so that the
call sites stay short and label-checked (`metrics.consumer_processed.inc(consumer=..., topic=...)`)
and so that tests, benchmarks and the consumer's summary line can read a process's own figures
back (`.value(...)`, `.total(...)`, `snapshot()`, `render_prometheus()`).

Where the figures go:

- `run_relay --metrics-port P` / `consume --metrics-port P` serve this process's metrics on
  `http://ADDR:P/metrics` (prometheus_client's own HTTP server);
- with `PROMETHEUS_MULTIPROC_DIR` set (before the process starts), prometheus_client writes every
  value into a per-process file of that folder, and the API's `/metrics` (showoff/metrics.py)
  adds up the files of every process on the host: web workers, relays, consumers and Celery
  workers. Scrape either the API or each process's port, not both (the figures would count twice).

Gauges say how the files of several processes combine (`multiprocess_mode`): a relay position
is the most recent one written (a standby that takes over writes newer values); a consumer lag
is the most recent one written by a live process (the partition's new owner after a rebalance).
prometheus_client cannot remove a label set in multiprocess mode, so a consumer that loses a
partition sets its lag to 0 there instead.

Consumer metrics (DESIGN.md §4), labelled by consumer name and logical topic:

- `showoff_consumer_processed_total`: records whose handlers ran and committed.
- `showoff_consumer_duplicates_total`: records skipped because the inbox already had the event.
- `showoff_consumer_skipped_total{reason}`: records not for this consumer (`no_handler` for a
  type it has no handler for, `replay_for_other` for a replay addressed to another consumer).
- `showoff_consumer_retries_total`: failed handler attempts that were scheduled for a retry.
- `showoff_consumer_dead_lettered_total{reason}`: records sent to `<topic>.dlq`
  (`undecodable`, `invalid`, `permanent`, `retries_exhausted`).
- `showoff_consumer_batch_seconds`: time of one batch's DB transaction (inbox rows, handlers,
  follow-up events, commit), histogram, labelled by consumer only (a batch spans topics);
  `showoff_consumer_batch_records`: records in that transaction, histogram.
- `showoff_consumer_batch_splits_total`: batches rolled back because a handler raised and re-run
  in halves to isolate the failing record (a steady rate means a steady stream of bad records).
- `showoff_consumer_lag{partition}`: high watermark minus the consumer's position, per assigned
  partition (offsets; a transaction's commit marker takes one offset). The consumer name is the
  group's last part (`{KAFKA_CONSUMER_GROUP}.<name>`).

Relay metrics (DESIGN.md §3), labelled by shard (`I/N`):

- `showoff_relay_batches_total`, `showoff_relay_events_total`: committed Kafka transactions and
  the events in them.
- `showoff_relay_aborts_total`, `showoff_relay_rebuilds_total`: aborted transactions (the batch
  is retried) and producer rebuilds after an indefinite outcome.
- `showoff_relay_transaction_seconds`: begin, produce and commit of one batch, histogram.
- `showoff_relay_position_txid`, `showoff_relay_position_id`: transaction id and id of the last
  delivered outbox row.
- `showoff_relay_tick_xmax`: `xmax` of the snapshot ending the tick being delivered (the
  relay's position, relay/position.py, as one growing number: compare with the database's
  next transaction id).
- `showoff_relay_last_commit_timestamp_seconds`: Unix time of the last commit.
- `showoff_relay_set_aside_total{reason}`: events Kafka would never accept (too large), set
  aside instead of delivered (admin: Relay > Set-aside events).
- `showoff_relay_active`: 1 while the process delivers the shard (it holds the shard's lease and
  has started), 0 while it waits as a hot standby, for PostgreSQL or Kafka, or after it stopped
  (fenced included); summed over live processes, exactly 1 per shard is healthy.

The outbox backlog and the age of the oldest undelivered event are read from the database when
the API's `/metrics` is scraped (showoff/metrics.py), not counted here.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable, Sequence
from typing import Any

import prometheus_client
from prometheus_client import Counter as _PromCounter
from prometheus_client import Gauge as _PromGauge
from prometheus_client import Histogram as _PromHistogram

# `_created` series (one timestamp per label set) double the output for nothing we use.
prometheus_client.disable_created_metrics()

_MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
if _MULTIPROCESS:
    os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)

events_log = logging.getLogger("relay.events")
log = logging.getLogger("relay.metrics")
_last_write_warning = float("-inf")


def _write_failed(name: str, exc: OSError) -> None:
    """A metric that cannot be written (a full disk under PROMETHEUS_MULTIPROC_DIR) must never
    stop the relay or a consumer: warn, at most once a minute, and go on."""
    global _last_write_warning
    now = time.monotonic()
    if now - _last_write_warning >= 60:
        _last_write_warning = now
        log.warning("metrics: could not record %s: %s", name, exc)


def _labels_match(sample_labels: dict[str, str], wanted: dict[str, str]) -> bool:
    return all(sample_labels.get(k) == v for k, v in wanted.items())


class _Metric:
    kind = ""

    def __init__(self, name: str, help_text: str, labels: Iterable[str] = ()):
        self.name = name
        self.help = help_text
        self.labels = tuple(labels)
        self._prom = self._make()
        REGISTRY[name] = self

    def _make(self):
        raise NotImplementedError

    def _check(self, labels: dict[str, Any], *, partial: bool = False) -> dict[str, str]:
        if set(labels) - set(self.labels) or (not partial and len(labels) != len(self.labels)):
            raise ValueError(f"{self.name} takes labels {self.labels}, got {tuple(labels)}")
        return {k: str(v) for k, v in labels.items()}

    def _child(self, labels: dict[str, Any]):
        self._check(labels)
        return self._prom.labels(**labels)

    def _samples(self, series: str | None = None) -> list[tuple[dict[str, str], float]]:
        """This process's samples `(labels, value)` of one series (default: the metric's)."""
        wanted = series or self.name
        return [(s.labels, s.value) for family in self._prom.collect()
                for s in family.samples if s.name == wanted]

    def _series(self) -> dict[tuple[str, ...], Any]:
        return {tuple(lbls[n] for n in self.labels): v for lbls, v in self._samples()}

    def _get(self, labels: dict[str, Any], series: str | None = None) -> float | None:
        wanted = self._check(labels)
        return next((v for lbls, v in self._samples(series) if lbls == wanted), None)


class Counter(_Metric):
    """`name` ends in `_total` (prometheus_client adds it to the series if missing)."""

    kind = "counter"

    def __init__(self, name: str, help_text: str, labels: Iterable[str] = ()):
        super().__init__(name if name.endswith("_total") else name + "_total", help_text, labels)

    def _make(self):
        return _PromCounter(self.name, self.help, self.labels)

    def inc(self, amount: float = 1, **labels: Any) -> None:
        try:
            self._child(labels).inc(amount)
        except OSError as exc:
            _write_failed(self.name, exc)

    def value(self, **labels: Any) -> float:
        return self._get(labels) or 0

    def total(self, **match: Any) -> float:
        """Sum over every label set whose labels include `match` (for example one consumer)."""
        wanted = self._check(match, partial=True)
        return sum(v for lbls, v in self._samples() if _labels_match(lbls, wanted))


class Gauge(_Metric):
    kind = "gauge"

    def __init__(self, name: str, help_text: str, labels: Iterable[str] = (), *,
                 multiprocess_mode: str = "livemostrecent"):
        self.multiprocess_mode = multiprocess_mode
        super().__init__(name, help_text, labels)

    def _make(self):
        return _PromGauge(self.name, self.help, self.labels,
                          multiprocess_mode=self.multiprocess_mode)

    def set(self, value: float, **labels: Any) -> None:
        try:
            self._child(labels).set(value)
        except OSError as exc:
            _write_failed(self.name, exc)

    def remove(self, **labels: Any) -> None:
        checked = self._check(labels)
        values = [checked[n] for n in self.labels]
        if _MULTIPROCESS:
            # Removal is not implemented for the per-process files: report 0 instead, which
            # the partition's new owner overwrites with a newer value.
            if tuple(values) in self._series():
                self._prom.labels(*values).set(0)
            return
        try:
            self._prom.remove(*values)
        except KeyError:
            pass

    def value(self, **labels: Any) -> float | None:
        return self._get(labels)


class Histogram(_Metric):
    kind = "histogram"

    def __init__(self, name: str, help_text: str, labels: Iterable[str] = (),
                 buckets: Iterable[float] = ()):
        self.buckets = tuple(sorted(buckets))
        super().__init__(name, help_text, labels)

    def _make(self):
        return _PromHistogram(self.name, self.help, self.labels, buckets=self.buckets)

    def observe(self, value: float, **labels: Any) -> None:
        try:
            self._child(labels).observe(value)
        except OSError as exc:
            _write_failed(self.name, exc)

    def count(self, **labels: Any) -> int:
        return int(self._get(labels, self.name + "_count") or 0)

    def _series(self) -> dict[tuple[str, ...], Any]:
        """Per label set: `{"counts": [per bucket, +Inf last], "sum": s, "count": n}`."""
        out: dict[tuple[str, ...], Any] = {}
        bounds = [*self.buckets, float("inf")]
        for family in self._prom.collect():
            for s in family.samples:
                key = tuple(s.labels[n] for n in self.labels)
                state = out.setdefault(key, {"cumulative": [0.0] * len(bounds), "sum": 0.0,
                                             "count": 0})
                if s.name.endswith("_bucket"):
                    le = float(s.labels["le"])
                    state["cumulative"][bounds.index(le)] = s.value
                elif s.name.endswith("_sum"):
                    state["sum"] = s.value
                elif s.name.endswith("_count"):
                    state["count"] = int(s.value)
        for state in out.values():
            cumulative = state.pop("cumulative")
            state["counts"] = [int(c - (cumulative[i - 1] if i else 0))
                               for i, c in enumerate(cumulative)]
        return out


REGISTRY: dict[str, _Metric] = {}

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

consumer_processed = Counter(
    "showoff_consumer_processed_total",
    "Records whose handlers ran and committed.", ["consumer", "topic"])
consumer_duplicates = Counter(
    "showoff_consumer_duplicates_total",
    "Records skipped because the inbox already held their event id.", ["consumer", "topic"])
consumer_skipped = Counter(
    "showoff_consumer_skipped_total",
    "Records not for this consumer (no handler for the type, replay for another consumer).",
    ["consumer", "topic", "reason"])
consumer_retries = Counter(
    "showoff_consumer_retries_total",
    "Failed handler attempts scheduled for a retry with backoff.", ["consumer", "topic"])
consumer_dead_lettered = Counter(
    "showoff_consumer_dead_lettered_total",
    "Records sent to the topic's dead-letter topic.", ["consumer", "topic", "reason"])
consumer_batch_seconds = Histogram(
    "showoff_consumer_batch_seconds",
    "Seconds per batch transaction: inbox rows, handlers, follow-up events, commit.",
    ["consumer"], buckets=_LATENCY_BUCKETS)
consumer_batch_records = Histogram(
    "showoff_consumer_batch_records",
    "Records per batch transaction.",
    ["consumer"], buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000))
consumer_batch_splits = Counter(
    "showoff_consumer_batch_splits_total",
    "Batches rolled back on a handler error and re-run in halves to isolate the record.",
    ["consumer"])
consumer_lag = Gauge(
    "showoff_consumer_lag",
    "High watermark minus the consumer's position, per assigned partition.",
    ["consumer", "topic", "partition"], multiprocess_mode="livemostrecent")

relay_batches = Counter(
    "showoff_relay_batches_total", "Kafka transactions committed by the relay.", ["shard"])
relay_events = Counter(
    "showoff_relay_events_total", "Outbox events committed to Kafka by the relay.", ["shard"])
relay_aborts = Counter(
    "showoff_relay_aborts_total",
    "Relay transactions aborted on an abortable error (the batch is retried).", ["shard"])
relay_rebuilds = Counter(
    "showoff_relay_rebuilds_total",
    "Producer rebuilds after an indefinite commit or abort outcome.", ["shard"])
relay_transaction_seconds = Histogram(
    "showoff_relay_transaction_seconds",
    "Seconds per relay batch: begin, produce the events and the checkpoint, commit.",
    ["shard"], buckets=_LATENCY_BUCKETS)
relay_position_txid = Gauge(
    "showoff_relay_position_txid", "Transaction id of the last delivered outbox row.",
    ["shard"], multiprocess_mode="mostrecent")
relay_position_id = Gauge(
    "showoff_relay_position_id", "Id of the last delivered outbox row.",
    ["shard"], multiprocess_mode="mostrecent")
relay_tick_xmax = Gauge(
    "showoff_relay_tick_xmax",
    "xmax of the snapshot ending the tick the relay delivers (its position).",
    ["shard"], multiprocess_mode="mostrecent")
relay_set_aside = Counter(
    "showoff_relay_set_aside_total",
    "Outbox events set aside instead of delivered (Kafka would never accept them).",
    ["shard", "reason"])

relay_last_commit = Gauge(
    "showoff_relay_last_commit_timestamp_seconds", "Unix time of the relay's last commit.",
    ["shard"], multiprocess_mode="mostrecent")
# 1 while this process delivers the shard, 0 while it waits as a hot standby (or has stopped):
# summed over live processes, the shard's number of delivering relays (alert when it is 0).
relay_active = Gauge(
    "showoff_relay_active",
    "1 while this relay process delivers the shard, 0 while it waits as a hot standby.",
    ["shard"], multiprocess_mode="livesum")


def relay_starting(shard: str) -> None:
    """A relay process of `shard` starts (a standby until it holds the lock): its counters
    exist at 0 from the first scrape, so the first batch counts in rate() (a series that
    appears already at 12 shows no increase to Prometheus)."""
    relay_active.set(0, shard=shard)
    for counter in (relay_batches, relay_events, relay_aborts, relay_rebuilds):
        counter.inc(0, shard=shard)
    relay_set_aside.inc(0, shard=shard, reason="too_large")


def relay_committed(shard: str, rows: Sequence[tuple], *, seconds: float,
                    position: tuple[int, int], at: float) -> None:
    """One committed relay batch: its metrics, and at DEBUG (logger `relay.events`) one line
    per delivered event carrying its id, type and traceparent, so a single event can be
    followed from the request that wrote it to the consumer that applies it.

    `rows` are the relay's outbox rows `(id, txid, topic, key, headers json, payload json)`;
    `position` is the last one's `(txid, id)`.
    """
    relay_batches.inc(shard=shard)
    relay_events.inc(len(rows), shard=shard)
    relay_transaction_seconds.observe(seconds, shard=shard)
    relay_position_txid.set(position[0], shard=shard)
    relay_position_id.set(position[1], shard=shard)
    relay_last_commit.set(at, shard=shard)
    if events_log.isEnabledFor(logging.DEBUG):
        for row_id, txid, topic, _key, headers, _payload in rows:
            h = json.loads(headers)
            events_log.debug(
                "relay %s: delivered %s %s to %s at (%s, %s)", shard, h.get("ce_type"),
                h.get("ce_id"), topic, txid, row_id,
                extra={"event_id": h.get("ce_id"), "event_type": h.get("ce_type"),
                       "traceparent": h.get("traceparent")},
            )


def consumer_summary(consumer: str) -> dict[str, float]:
    """One consumer's totals over its topics (for its log line, tests and benchmarks)."""
    return {
        "processed": consumer_processed.total(consumer=consumer),
        "duplicates": consumer_duplicates.total(consumer=consumer),
        "skipped": consumer_skipped.total(consumer=consumer),
        "retries": consumer_retries.total(consumer=consumer),
        "dead_lettered": consumer_dead_lettered.total(consumer=consumer),
        "lag": sum(v for lbls, v in consumer_lag._samples() if lbls["consumer"] == consumer),
    }


def snapshot() -> dict[str, dict[str, Any]]:
    """This process's values of every metric here: `{name: {"label=value,...": value}}`."""
    out: dict[str, dict[str, Any]] = {}
    for name, metric in REGISTRY.items():
        out[name] = {
            ",".join(f"{n}={v}" for n, v in zip(metric.labels, key, strict=True)): val
            for key, val in metric._series().items()
        }
    return out


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: Iterable[str], values: Iterable[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def render_prometheus() -> str:
    """This process's metrics of this module as Prometheus text (exposition format 0.0.4),
    whole numbers without a decimal point. Scrapes go through prometheus_client itself."""
    lines: list[str] = []
    for name, metric in REGISTRY.items():
        lines.append(f"# HELP {name} {metric.help}")
        lines.append(f"# TYPE {name} {metric.kind}")
        for key, val in sorted(metric._series().items()):
            if isinstance(metric, Histogram):
                cumulative = 0
                for bound, count in zip((*metric.buckets, float("inf")), val["counts"],
                                        strict=True):
                    cumulative += count
                    le = "+Inf" if bound == float("inf") else repr(float(bound))
                    bucket_labels = _labels(metric.labels, key, 'le="' + le + '"')
                    lines.append(f"{name}_bucket{bucket_labels} {cumulative}")
                lines.append(f"{name}_sum{_labels(metric.labels, key)} {_number(val['sum'])}")
                lines.append(f"{name}_count{_labels(metric.labels, key)} {val['count']}")
            else:
                lines.append(f"{name}{_labels(metric.labels, key)} {_number(val)}")
    return "\n".join(lines) + "\n"


def port_number(value: str) -> int:
    """argparse type of `--metrics-port`."""
    import argparse

    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a port number") from None
    if not 0 < n < 65536:
        raise argparse.ArgumentTypeError(f"{value} is not a port number (1-65535)")
    return n


def serve(port: int, addr: str = "127.0.0.1") -> None:
    """Serve this process's metrics on `http://addr:port/metrics` (a daemon thread).

    Raises OSError with a sentence naming the option when the port cannot be bound."""
    try:
        prometheus_client.start_http_server(port, addr=addr)
    except OSError as exc:
        raise OSError(f"cannot serve metrics on {addr}:{port} ({exc.strerror or exc}); choose "
                      "another --metrics-port or stop what holds it") from None


def mark_process_dead() -> None:
    """In multiprocess mode, drop this process's live gauges (its consumer lags) on exit."""
    if _MULTIPROCESS:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(os.getpid())
