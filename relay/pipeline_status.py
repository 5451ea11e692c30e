"""The state at a glance on top of the Event pipeline page: one light per relay shard, consumer
group and dependency, green / amber / red, with the reason in words ("lag growing for 12 min",
"oldest open transaction 6 min") and the runbook section that says what to do.

Current figures come from the same reads as the page's tables (PostgreSQL, the brokers);
"since when" and "growing" come from Prometheus' last hour or day (relay/history.py) when it is
configured. The thresholds are the alerts' (monitoring/prometheus/alerts.yml; a test keeps them
equal), so a red light here is an alert firing there.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from .history import History
from .monitoring import KafkaState

BACKLOG_WARN_SECONDS = 60  # ShowoffOutboxBacklogOld
BACKLOG_BAD_SECONDS = 300  # ShowoffOutboxBacklogCritical
LAG_RECORDS = 100  # ShowoffConsumerLagGrowing: below this, a busy group's in-flight batch
LAG_GROWING_SECONDS = 600  # ShowoffConsumerLagGrowing: behind and growing for 10 minutes
TRANSACTION_WARN_SECONDS = 300  # ShowoffLongOpenTransaction

OK, WARN, BAD = "ok", "warn", "bad"


@dataclass
class Light:
    kind: str  # "kafka", "database", "shard", "group", "dead-letters"
    name: str
    level: str  # OK, WARN or BAD
    reason: str
    anchor: str  # runbook section
    since: float | None = None  # Unix time the current state began, when known

    @property
    def since_text(self) -> str:
        if self.since is None:
            return ""
        return datetime.fromtimestamp(self.since, UTC).strftime("%H:%M UTC")


def duration(seconds: float) -> str:
    """'45 s', '5 min', '1 h 12 min', '2 d 3 h'."""
    s = int(max(0, seconds))
    if s < 120:
        return f"{s} s"
    if s < 3600:
        return f"{round(s / 60)} min"
    if s < 86400:
        h, m = divmod(round(s / 60), 60)
        return f"{h} h {m} min" if m else f"{h} h"
    d, h = divmod(round(s / 3600), 24)
    return f"{d} d {h} h" if h else f"{d} d"


def _run_start(points: list[tuple[float, float]], condition) -> float | None:
    """Start of the run of samples, ending with the last one, that all meet `condition`."""
    start = None
    for t, v in reversed(points):
        if not condition(v):
            break
        start = t
    return start


def shard_lights(shards, history: History, now: float) -> list[Light]:
    ages = history.series.get("backlog-age", {})
    active = history.relay_active
    out = []
    for s in shards:
        name = f"{s.shard}/{s.shards}"
        age = s.lag_seconds
        since = _run_start(ages.get(name, []), lambda v: v >= BACKLOG_WARN_SECONDS)
        if active is not None and active and active.get(name, 0) < 1:
            reason = "no relay delivers this shard (down, fenced, or only standbys)"
            if s.backlog:
                reason += f"; {s.backlog} events wait, the oldest {duration(age)}"
            out.append(Light("shard", name, BAD, reason, "8-relay-down-or-fenced"))
        elif age >= BACKLOG_BAD_SECONDS:
            out.append(Light("shard", name, BAD,
                             f"oldest undelivered event {duration(age)} old ({s.backlog} wait)",
                             "2-messages-not-consumed", since))
        elif age >= BACKLOG_WARN_SECONDS:
            out.append(Light("shard", name, WARN,
                             f"oldest undelivered event {duration(age)} old ({s.backlog} wait)",
                             "3-high-latency", since))
        elif s.backlog:
            out.append(Light("shard", name, OK,
                             f"delivering: {s.backlog} waiting, oldest {duration(age)}",
                             "3-high-latency"))
        else:
            out.append(Light("shard", name, OK, "all delivered", "3-high-latency"))
    return out


def group_lights(kafka: KafkaState | None, history: History, now: float) -> list[Light]:
    if kafka is None:
        return []
    lags = history.series.get("consumer-lag", {})
    totals: dict[str, int] = {}
    for (consumer, _topic), lag in kafka.group_lag.items():
        totals[consumer] = totals.get(consumer, 0) + lag
    out = []
    for consumer in sorted(kafka.group_members):
        lag = totals.get(consumer, 0)
        members = kafka.group_members[consumer]
        points = lags.get(consumer, [])
        behind_since = _run_start(points, lambda v: v > 0)
        if lag > 0 and members == 0:
            out.append(Light("group", consumer, BAD,
                             f"no consumer running; {lag} records wait",
                             "2-messages-not-consumed", behind_since))
            continue
        # Growing: higher now than where the last 10 minutes of this run of lag began.
        run = [(t, v) for t, v in points if behind_since is not None and t >= behind_since]
        recent = [(t, v) for t, v in run if t >= now - LAG_GROWING_SECONDS]
        growing_for = None
        if lag >= LAG_RECORDS and len(recent) > 1 and recent[-1][1] > recent[0][1]:
            growing_for = now - behind_since
        if growing_for is not None and growing_for >= LAG_GROWING_SECONDS:
            out.append(Light("group", consumer, BAD,
                             f"lag growing for {duration(growing_for)} ({lag} records)",
                             "4-consumer-lag", behind_since))
        elif growing_for is not None:
            out.append(Light("group", consumer, WARN,
                             f"lag growing for {duration(growing_for)} ({lag} records)",
                             "4-consumer-lag", behind_since))
        elif lag >= LAG_RECORDS:
            trend = " and shrinking" if len(recent) > 1 and recent[-1][1] < recent[0][1] else ""
            when = f" for {duration(now - behind_since)}" if behind_since else ""
            out.append(Light("group", consumer, WARN,
                             f"{lag} records behind{when}{trend}", "4-consumer-lag",
                             behind_since))
        elif lag:
            out.append(Light("group", consumer, OK, f"{lag} records in flight",
                             "4-consumer-lag"))
        else:
            state = f"{members} member{'s' if members != 1 else ''}" if members else \
                "no members, nothing waits"
            out.append(Light("group", consumer, OK, f"caught up ({state})", "4-consumer-lag"))
    return out


def dependency_lights(checks, kafka: KafkaState | None, holder: dict | None) -> list[Light]:
    by_name = {c.name: c for c in checks}
    out = []
    kafka_check = by_name.get("kafka")
    if kafka_check is not None and not kafka_check.up:
        out.append(Light("kafka", "Kafka", BAD, f"down: {kafka_check.detail}",
                         "1-kafka-not-connecting"))
    elif kafka is not None:
        offline = sum(kafka.offline.values())
        under = sum(kafka.under_replicated.values())
        brokers = f"{kafka.brokers} broker{'s' if kafka.brokers != 1 else ''}"
        if offline:
            out.append(Light("kafka", "Kafka", BAD,
                             f"{offline} partitions without a leader ({brokers})",
                             "7-a-broker-down-three-broker-cluster"))
        elif under:
            out.append(Light("kafka", "Kafka", WARN,
                             f"{under} partitions under-replicated ({brokers})",
                             "7-a-broker-down-three-broker-cluster"))
        else:
            out.append(Light("kafka", "Kafka", OK, f"{brokers}, every partition in sync",
                             "7-a-broker-down-three-broker-cluster"))
    database = by_name.get("database")
    if database is not None and not database.up:
        out.append(Light("database", "PostgreSQL", BAD, f"down: {database.detail}",
                         "first-look-whatever-the-symptom"))
    elif holder and float(holder["age_seconds"] or 0) >= TRANSACTION_WARN_SECONDS:
        age = float(holder["age_seconds"])
        out.append(Light("database", "PostgreSQL", WARN,
                         f"oldest open transaction {duration(age)} (pid {holder['pid']}, "
                         f"{holder['state']})", "6-a-long-open-transaction"))
    else:
        out.append(Light("database", "PostgreSQL", OK, "no long transaction",
                         "6-a-long-open-transaction"))
    return out


def dead_letter_light(kafka: KafkaState | None, history: History) -> Light | None:
    """Amber while any dead letter is kept: each one is an event some consumer has not applied,
    waiting for a fix and a replay (runbook section 5)."""
    if kafka is None:
        return None
    kept = {topic: n for topic, n in sorted(kafka.dead_letters.items()) if n}
    if not kept:
        return Light("dead-letters", "Dead letters", OK, "none", "5-dead-letter-topic-growing")
    series = history.series.get("dead-letters", {})
    grew = {topic: points[-1][1] - points[0][1] for topic, points in series.items()
            if len(points) > 1 and points[-1][1] > points[0][1]}
    reason = "kept: " + ", ".join(f"{n} in {topic}" for topic, n in kept.items())
    if grew:
        reason += f"; new in the {history.window.title}: " + ", ".join(
            f"{round(n)} in {topic}" for topic, n in sorted(grew.items()))
    return Light("dead-letters", "Dead letters", WARN, reason, "5-dead-letter-topic-growing")


def lights(*, checks, shards, holder, kafka: KafkaState | None, history: History,
           now: float, set_aside: int = 0) -> list[Light]:
    out = dependency_lights(checks, kafka, holder)
    out += shard_lights(shards, history, now)
    if set_aside:
        # Events Kafka would never accept, kept aside by the relay: consumers never saw them.
        out.append(Light("set-aside", "Set-aside events", WARN,
                         f"{set_aside} event{'s' if set_aside != 1 else ''} too large for Kafka, "
                         "not delivered (admin: Relay > Set-aside events)",
                         "9-events-set-aside-too-large-for-kafka"))
    out += group_lights(kafka, history, now)
    dead = dead_letter_light(kafka, history)
    if dead is not None:
        out.append(dead)
    return out
