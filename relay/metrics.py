"""Kafka-side metrics, kept in one module (the monitoring issue exposes them).

Dependency-free on purpose: counters, gauges and histograms with labels, safe to update from the
consumer's worker threads, readable as a dict (`snapshot()`, used by tests, benchmarks and the
consumer's periodic summary log line) or as Prometheus text (`render_prometheus()`).
The figures are per process; a multi-process exporter has to aggregate them (DESIGN.md §8 says
the same of django-prometheus).

Consumer metrics (DESIGN.md §4), all labelled by consumer name and logical topic:

- `showoff_consumer_processed_total`: records whose handlers ran and committed.
- `showoff_consumer_duplicates_total`: records skipped because the inbox already had the event.
- `showoff_consumer_skipped_total{reason}`: records not for this consumer (`no_handler` for a
  type it has no handler for, `replay_for_other` for a replay addressed to another consumer).
- `showoff_consumer_retries_total`: failed handler attempts that were scheduled for a retry.
- `showoff_consumer_dead_lettered_total{reason}`: records sent to `<topic>.dlq`
  (`undecodable`, `invalid`, `permanent`, `retries_exhausted`).
- `showoff_consumer_handler_seconds`: time of the record's whole DB transaction (inbox row,
  handlers, follow-up events, commit), histogram.
- `showoff_consumer_lag{partition}`: high watermark minus the consumer's position, per assigned
  partition (offsets; a transaction's commit marker takes one offset).
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable
from typing import Any

_LOCK = threading.Lock()


class _Metric:
    kind = ""

    def __init__(self, name: str, help_text: str, labels: Iterable[str] = ()):
        self.name = name
        self.help = help_text
        self.labels = tuple(labels)
        self._values: dict[tuple[str, ...], Any] = {}
        REGISTRY[name] = self

    def _key(self, labels: dict[str, Any]) -> tuple[str, ...]:
        if set(labels) != set(self.labels):
            raise ValueError(f"{self.name} takes labels {self.labels}, got {tuple(labels)}")
        return tuple(str(labels[name]) for name in self.labels)

    def clear(self) -> None:
        with _LOCK:
            self._values.clear()


class Counter(_Metric):
    kind = "counter"

    def inc(self, amount: float = 1, **labels: Any) -> None:
        key = self._key(labels)
        with _LOCK:
            self._values[key] = self._values.get(key, 0) + amount

    def value(self, **labels: Any) -> float:
        return self._values.get(self._key(labels), 0)

    def total(self, **match: Any) -> float:
        """Sum over every label set whose labels include `match` (for example one consumer)."""
        idx = {name: self.labels.index(name) for name in match}
        with _LOCK:
            return sum(v for k, v in self._values.items()
                       if all(k[i] == str(match[n]) for n, i in idx.items()))


class Gauge(_Metric):
    kind = "gauge"

    def set(self, value: float, **labels: Any) -> None:
        key = self._key(labels)
        with _LOCK:
            self._values[key] = value

    def remove(self, **labels: Any) -> None:
        with _LOCK:
            self._values.pop(self._key(labels), None)

    def value(self, **labels: Any) -> float | None:
        return self._values.get(self._key(labels))


class Histogram(_Metric):
    kind = "histogram"

    def __init__(self, name: str, help_text: str, labels: Iterable[str] = (),
                 buckets: Iterable[float] = ()):
        super().__init__(name, help_text, labels)
        self.buckets = tuple(sorted(buckets))

    def observe(self, value: float, **labels: Any) -> None:
        key = self._key(labels)
        with _LOCK:
            state = self._values.get(key)
            if state is None:
                state = self._values[key] = {"counts": [0] * (len(self.buckets) + 1),
                                             "sum": 0.0, "count": 0}
            state["counts"][bisect.bisect_left(self.buckets, value)] += 1
            state["sum"] += value
            state["count"] += 1

    def count(self, **labels: Any) -> int:
        state = self._values.get(self._key(labels))
        return state["count"] if state else 0


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
consumer_handler_seconds = Histogram(
    "showoff_consumer_handler_seconds",
    "Seconds per record transaction: inbox row, handlers, follow-up events, commit.",
    ["consumer", "topic"], buckets=_LATENCY_BUCKETS)
consumer_lag = Gauge(
    "showoff_consumer_lag",
    "High watermark minus the consumer's position, per assigned partition.",
    ["consumer", "topic", "partition"])


def consumer_summary(consumer: str) -> dict[str, float]:
    """One consumer's totals over its topics (for its log line, tests and benchmarks)."""
    with _LOCK:
        lag = sum(v for k, v in consumer_lag._values.items() if k[0] == consumer)
    return {
        "processed": consumer_processed.total(consumer=consumer),
        "duplicates": consumer_duplicates.total(consumer=consumer),
        "skipped": consumer_skipped.total(consumer=consumer),
        "retries": consumer_retries.total(consumer=consumer),
        "dead_lettered": consumer_dead_lettered.total(consumer=consumer),
        "lag": lag,
    }


def snapshot() -> dict[str, dict[str, Any]]:
    """Every metric's current values: `{name: {"label=value,...": value}}`."""
    out: dict[str, dict[str, Any]] = {}
    with _LOCK:
        for name, metric in REGISTRY.items():
            out[name] = {
                ",".join(f"{n}={v}" for n, v in zip(metric.labels, key, strict=True)):
                    (dict(val, counts=list(val["counts"])) if isinstance(val, dict) else val)
                for key, val in metric._values.items()
            }
    return out


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: Iterable[str], values: Iterable[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def render_prometheus() -> str:
    """The Prometheus text exposition format (version 0.0.4)."""
    lines: list[str] = []
    with _LOCK:
        for name, metric in REGISTRY.items():
            lines.append(f"# HELP {name} {metric.help}")
            lines.append(f"# TYPE {name} {metric.kind}")
            for key, val in sorted(metric._values.items()):
                if isinstance(metric, Histogram):
                    cumulative = 0
                    for bound, count in zip((*metric.buckets, float("inf")), val["counts"],
                                            strict=True):
                        cumulative += count
                        le = "+Inf" if bound == float("inf") else repr(bound)
                        bucket_labels = _labels(metric.labels, key, 'le="' + le + '"')
                        lines.append(f"{name}_bucket{bucket_labels} {cumulative}")
                    lines.append(f"{name}_sum{_labels(metric.labels, key)} {val['sum']}")
                    lines.append(f"{name}_count{_labels(metric.labels, key)} {val['count']}")
                else:
                    lines.append(f"{name}{_labels(metric.labels, key)} {val}")
    return "\n".join(lines) + "\n"
