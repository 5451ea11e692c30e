"""The event pipeline over time, read from Prometheus (PROMETHEUS_URL) for the admin's Event
pipeline page: the last hour or the last day of relay throughput and backlog age per shard,
consumer lag per group and dead letters per topic, as charts (showoff/charts.py).

The queries use the metrics the project exports (README "Monitoring"): the relay's own counter
(`showoff_relay_events_total`, from each run_relay's metrics port), the backlog age the API reads
from PostgreSQL, and the consumer-group lag and dead letters the API reads from the brokers
(relay/monitoring.py), so a group whose consumers are all down still shows, growing. Each range
is cut into fixed steps ending now (15 s for an hour, 5 min for a day); a step without a sample
is a gap, not a zero.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import requests
from django.conf import settings

from showoff.charts import Chart


class PrometheusError(RuntimeError):
    """Prometheus did not answer, or refused a query; the message says which and why."""


@dataclass(frozen=True)
class Window:
    key: str
    title: str
    seconds: int
    step: int
    rate: str  # the rate() window: at least two scrapes (15 s in production) per step
    label_format: str


WINDOWS = {
    "1h": Window("1h", "last hour", 3600, 15, "1m", "%H:%M"),
    "1d": Window("1d", "last day", 86400, 300, "5m", "%m-%d %H:%M"),
}


@dataclass(frozen=True)
class ChartSpec:
    slug: str
    title: str
    unit: str
    query: str  # `{rate}` is replaced by the window's rate() range
    by: str  # the label that names a series
    integer: bool
    description: str


CHARTS = (
    ChartSpec("relay-throughput", "Relay throughput per shard", "events/s",
              "sum by (shard) (rate(showoff_relay_events_total[{rate}]))", "shard", False,
              "Events committed to Kafka per second by each shard's relay (its metrics port)."),
    ChartSpec("backlog-age", "Backlog age per shard", "seconds",
              "max by (shard) (showoff_outbox_oldest_undelivered_age_seconds)", "shard", False,
              "Age of the oldest outbox event not yet delivered (0: nothing waits)."),
    ChartSpec("consumer-lag", "Consumer lag per group", "records",
              "sum by (consumer) (showoff_kafka_consumergroup_lag)", "consumer", True,
              "End offset minus committed offset over the group's topics, read from the "
              "brokers: a group whose consumers are down shows here too."),
    ChartSpec("dead-letters", "Dead letters per topic", "records",
              "sum by (topic) (showoff_kafka_dead_letters)", "topic", True,
              "Records kept in each <topic>.dlq (a step up is a new dead letter)."),
)
# Whether each shard has a delivering relay right now (relay/metrics.py `showoff_relay_active`).
RELAY_ACTIVE = "sum by (shard) (showoff_relay_active)"


def _get(path: str, params: dict[str, Any]) -> Any:
    base = settings.PROMETHEUS_URL.rstrip("/")
    try:
        response = requests.get(f"{base}{path}", params=params,
                                timeout=settings.PROMETHEUS_TIMEOUT)
    except requests.RequestException as exc:
        raise PrometheusError(f"Prometheus at {base} did not answer ({type(exc).__name__}); "
                              "start it (`scripts/services up prometheus` locally) or correct "
                              "PROMETHEUS_URL.") from None
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code != 200 or body.get("status") != "success":
        raise PrometheusError(f"Prometheus at {base} refused the query (HTTP "
                              f"{response.status_code}: {body.get('error') or response.reason})")
    return body["data"]


def query(expr: str) -> dict[str, float]:
    """An instant query whose result is named by one label: {label value: value}."""
    data = _get("/api/v1/query", {"query": expr})
    return {next(iter(r["metric"].values()), ""): float(r["value"][1]) for r in data["result"]}


def query_range(expr: str, *, by: str, start: float, end: float, step: int
                ) -> dict[str, list[tuple[float, float]]]:
    data = _get("/api/v1/query_range", {"query": expr, "start": start, "end": end, "step": step})
    return {r["metric"].get(by, ""): [(float(t), float(v)) for t, v in r["values"]]
            for r in data["result"]}


@dataclass
class History:
    window: Window
    configured: bool
    url: str
    error: str = ""
    charts: list[Chart] = field(default_factory=list)
    # slug -> series name -> [(unix time, value)], for the state at a glance
    series: dict[str, dict[str, list[tuple[float, float]]]] = field(default_factory=dict)
    relay_active: dict[str, float] | None = None
    end: float = 0.0


def _value(v: float, integer: bool) -> float | None:
    if math.isnan(v) or math.isinf(v):
        return None
    return float(round(v)) if integer else v


def pipeline_history(window: str | Window = "1h", *, now: float | None = None) -> History:
    """The charts of one window (a key of WINDOWS, unknown ones meaning the last hour), or a
    History whose `error` says why there are none."""
    if not isinstance(window, Window):
        window = WINDOWS.get(window, WINDOWS["1h"])
    url = settings.PROMETHEUS_URL
    history = History(window=window, configured=bool(url), url=url)
    if not url:
        return history
    # The last point is now (the latest scrapes), the others every step before it.
    end = math.floor(now if now is not None else time.time())
    start = end - window.seconds
    history.end = end
    times = [start + i * window.step for i in range(window.seconds // window.step + 1)]
    labels = [datetime.fromtimestamp(t, UTC).strftime(window.label_format) for t in times]
    try:
        for spec in CHARTS:
            found = query_range(spec.query.format(rate=window.rate), by=spec.by, start=start,
                                end=end, step=window.step)
            history.series[spec.slug] = found
            series = {}
            for name in sorted(found):
                at = {round(t): v for t, v in found[name]}
                series[name or "-"] = [
                    _value(at[t], spec.integer) if t in at else None for t in times]
            history.charts.append(Chart(
                spec.slug, spec.title, spec.unit, labels, series, x_title="time (UTC)",
                x_name="time", integer=spec.integer, layout="multiples", shared_scale=True,
                empty_text=f"Prometheus has no {spec.title.lower()} in the {window.title}: "
                           "are the processes scraped? (`scripts/services status`, Prometheus "
                           "targets page)",
                notes=[spec.description]))
        history.relay_active = query(RELAY_ACTIVE)
    except PrometheusError as exc:
        history.error = str(exc)
        history.charts = []
    return history
