"""Analytics writes: client event ingestion, batch aggregation (the consumer), the rollup
and retention.

Exactly once, end to end:
- a client item's event id is `client_event_uuid(user, device, client id)`: a retried item is
  the same event. Ingestion records an `IngestReceipt` per id (`INSERT ... ON CONFLICT DO
  NOTHING RETURNING`, so concurrent retries race safely) and publishes only the new ones, in the
  same transaction;
- the `analytics` consumer applies each batch of events inside the batch's transaction behind
  the inbox (`relay_inbox`, unique per consumer and event id): a redelivered record is skipped,
  so every increment below happens once;
- the rollup only recomputes (delete and insert from the sources), never increments.
"""

from __future__ import annotations

import logging
import math
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, NamedTuple

from django.conf import settings
from django.db import connection, transaction
from django.db.models.functions import TruncDate
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from outbox import catalogue
from outbox.services import Event, EventBatch
from showoff.sqlrows import rows_param, rows_table

from . import metrics
from .metrics import CLIENT_TYPES, RESERVED, full_type
from .models import HourlyMetric, RollupRun

log = logging.getLogger("analytics")

# uuid5 namespace of client event ids (a fixed, random UUID: never change it, or every retry
# after the change becomes a new event).
CLIENT_EVENT_NAMESPACE = uuid.UUID("6f1d3c2e-5a7b-4c8d-9e0f-a1b2c3d4e5f6")
# pg_advisory_xact_lock key serializing rollups ("analytic" in ASCII).
ROLLUP_LOCK_KEY = 0x616E616C79746963
# The rollup re-reads hourly rows updated this long before the previous run started: a consumer
# transaction that began earlier (its `now()`) but committed after that start is not missed.
DIRTY_MARGIN = timedelta(minutes=10)


def lateness_horizon() -> timedelta:
    return timedelta(hours=settings.ANALYTICS_MAX_LATENESS_HOURS)


def horizon_days() -> int:
    return math.ceil(settings.ANALYTICS_MAX_LATENESS_HOURS / 24)


def utc_hour(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def utc_day(moment: datetime) -> date:
    return moment.astimezone(UTC).date()


def day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- ingestion ------------------------------------------------------------------------------


def client_event_uuid(*, user_id: int | None, device_id: str, client_event_id: str) -> uuid.UUID:
    """The event id of a client item: the same user (or anonymous), device and client id give
    the same event, so a retried batch is counted once. The user is part of it so that nobody
    can suppress another user's events by reusing their device and client ids."""
    user = str(user_id) if user_id is not None else "-"
    return uuid.uuid5(CLIENT_EVENT_NAMESPACE, f"{user}|{device_id}|{client_event_id}")


@dataclass
class ItemResult:
    index: int
    id: Any
    status: str  # accepted | duplicate | rejected
    event_id: uuid.UUID | None = None
    errors: dict[str, list[str]] = field(default_factory=dict)


def _schema_errors(exc: catalogue.EventValidationError) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    for message in exc.errors:
        where, _, text = message.partition(": ")
        top = where.split("/")[0]
        if top == "(root)":
            name = "properties"  # a missing or unexpected property
        elif top in RESERVED:
            name = top
        else:
            name = f"properties.{top}"
        errors.setdefault(name, []).append(text)
    return errors


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _unstorable_text(value: Any) -> bool:
    """PostgreSQL text and jsonb cannot hold U+0000 or a lone surrogate: such an item would
    fail its outbox INSERT (and every other item of the batch with it)."""
    if isinstance(value, str):
        return _UNSTORABLE.search(value) is not None
    if isinstance(value, dict):
        return any(_unstorable_text(k) or _unstorable_text(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_unstorable_text(v) for v in value)
    return False


def _integer_property(short: Any, name: str) -> bool:
    """Whether the client type's schema declares `name` an integer (JSON Schema would take
    1.0 as one; the API takes whole numbers as JSON integers only)."""
    if short not in CLIENT_TYPES:
        return False
    kind = CLIENT_TYPES[short][0].get(name, {}).get("type")
    return kind == "integer" or (isinstance(kind, list) and "integer" in kind)


def _client_item(item: Any, *, index: int, user_id: int | None, envelope: dict[str, Any],
                 skew: timedelta, now: datetime) -> tuple[ItemResult, Event | None]:
    """Check one item; returns its result and, if it passes, its event (which the caller
    checks against its schema, see client_events_ingest)."""
    if not isinstance(item, dict):
        return ItemResult(index, None, "rejected",
                          errors={"non_field_errors": ["Each event must be a JSON object."]}), None
    client_id = item.get("id")
    errors: dict[str, list[str]] = {}
    if not isinstance(client_id, str) or not 1 <= len(client_id) <= 64:
        errors["id"] = ["A string of 1 to 64 characters, unique per device, is required."]
    short = item.get("type")
    if isinstance(short, str) and short.startswith("analytics."):
        short = short.removeprefix("analytics.")
    if short not in CLIENT_TYPES:
        errors["type"] = [f"Unknown event type {item.get('type')!r}; one of: "
                          f"{', '.join(CLIENT_TYPES)}."]
    occurred = item.get("occurred_at")
    try:
        # Well-formed but impossible (February 30, an offset of 25 hours) raises ValueError.
        parsed = parse_datetime(occurred) if isinstance(occurred, str) else None
    except ValueError:
        parsed = None
    if parsed is None:
        errors["occurred_at"] = ["An ISO 8601 date and time with a time zone is required, "
                                 "e.g. 2025-01-31T12:00:00.000Z."]
    elif parsed.tzinfo is None:
        errors["occurred_at"] = ["The time has no time zone; add Z or an offset."]
    else:
        try:
            parsed = (parsed + skew).astimezone(UTC)
        except OverflowError:
            parsed = None
        if parsed is None:
            errors["occurred_at"] = ["Out of range after clock correction: check the device "
                                     "clock, sent_at and occurred_at."]
        elif parsed > now + timedelta(seconds=settings.ANALYTICS_MAX_CLOCK_SKEW_SECONDS):
            errors["occurred_at"] = ["This time is in the future (after clock correction); "
                                     "check the device clock or send sent_at."]
        elif parsed < now - lateness_horizon():
            errors["occurred_at"] = [f"Too old: events older than "
                                     f"{settings.ANALYTICS_MAX_LATENESS_HOURS} hours are not "
                                     "accepted."]
    session_id = item.get("session_id")
    if session_id is not None and (not isinstance(session_id, str) or len(session_id) > 64):
        errors["session_id"] = ["A string of at most 64 characters, or null."]
    props = item.get("properties", {})
    if props is None:
        props = {}
    if not isinstance(props, dict):
        errors["properties"] = ["Must be a JSON object."]
        props = {}
    clash = sorted(RESERVED & set(props))
    if clash:
        errors["properties"] = [f"{', '.join(clash)} cannot be set here (set by the batch or "
                                "the server)."]
    for name, value in (("id", client_id), ("session_id", session_id),
                        *((f"properties.{k}", v) for k, v in props.items())):
        if _unstorable_text(value) or (name.startswith("properties.")
                                       and _unstorable_text(name)):
            errors.setdefault(name, []).append(
                "Text cannot contain the NUL character (U+0000) or unpaired surrogates.")
        elif name.startswith("properties.") and isinstance(value, float) \
                and _integer_property(short, name.removeprefix("properties.")):
            errors.setdefault(name, []).append("A whole number is required (no decimal point).")
    if errors:
        return ItemResult(index, client_id, "rejected", errors=errors), None
    event_id = client_event_uuid(user_id=user_id, device_id=envelope["device_id"],
                                 client_event_id=client_id)
    # `envelope` also holds the batch's received_at.
    data = {**props, **envelope, "user_id": user_id, "client_event_id": client_id,
            "session_id": session_id, "occurred_at": iso(parsed)}
    return (ItemResult(index, client_id, "accepted", event_id=event_id),
            Event(full_type(short), data, event_id=event_id))


def client_events_ingest(*, user_id: int | None, device_id: str, platform: str,
                         app_version: str, sent_at: datetime | None, items: list[Any],
                         now: datetime | None = None) -> list[ItemResult]:
    """Validate every item on its own, publish the valid new ones to `analytics-events`.

    An invalid item is rejected with its reasons and never blocks the others. An item whose
    event id was accepted before (a retry, or the same id twice in the batch) is answered
    `duplicate` and not published again. `sent_at`, the client's clock when it sent the batch,
    corrects every `occurred_at` of the batch by the client clock's offset.
    """
    now = now or timezone.now()
    skew = (now - sent_at) if sent_at is not None else timedelta(0)
    envelope = {"device_id": device_id, "platform": platform, "app_version": app_version,
                "received_at": iso(now)}
    results: list[ItemResult] = []
    # Each event is checked against its schema (and everything else publish checks) once, by
    # the batch that writes it below; an item that fails is rejected with the schema's reasons.
    batch = EventBatch()
    events: set[uuid.UUID] = set()
    for index, item in enumerate(items):
        result, event = _client_item(item, index=index, user_id=user_id, envelope=envelope,
                                     skew=skew, now=now)
        if event is not None and event.event_id in events:
            result.status = "duplicate"
        elif event is not None:
            try:
                batch.add(event)
            except catalogue.EventValidationError as exc:
                result = ItemResult(index, result.id, "rejected", errors=_schema_errors(exc))
            else:
                events.add(event.event_id)
        results.append(result)
    if not events:
        return results
    with transaction.atomic():
        with connection.cursor() as cur:
            # Sorted, so two batches sharing ids take their row locks in the same order.
            cur.execute(
                "INSERT INTO analytics_ingestreceipt (event_id, received_at) "
                "SELECT id, %s FROM unnest(%s::uuid[]) AS t(id) ORDER BY id "
                "ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
                [now, sorted(events)],
            )
            new = {row[0] for row in cur.fetchall()}
        batch.publish(event_ids=new)
    for result in results:
        if result.status == "accepted" and result.event_id not in new:
            result.status = "duplicate"
    return results


# --- aggregation (the `analytics` consumer) -------------------------------------------------


class AggregatedEvent(NamedTuple):
    """What aggregation needs of one consumed event."""

    type: str
    data: dict[str, Any]
    event_id: uuid.UUID
    time: datetime | None  # the CloudEvents time (when it was written)


_POST_COLUMNS = ("views", "impressions", "unique_viewers", "likes", "unlikes", "comments",
                 "tips", "tip_coins", "watch_time_ms", "watches")


def events_aggregate(*, events: list[AggregatedEvent]) -> None:
    """Apply a batch of events' increments: summed in memory, then written in one statement
    for the whole batch (`_aggregate_sql`: one round trip, each table written once). Runs
    inside the consumer's batch transaction, behind the inbox, so it runs once per event id;
    every write is an upsert or an insert-if-absent, so concurrent consumers and late or
    out-of-order events need no coordination, and any split of a batch gives the same totals
    as the whole.
    """
    now = timezone.now()
    horizon_start = now - lateness_horizon()
    perf_start = now - timedelta(days=settings.ANALYTICS_PERF_RETENTION_DAYS)
    counters: dict[tuple[datetime, str, str], int] = {}
    active: set[tuple[datetime, int]] = set()
    viewers: set[tuple[int, str]] = set()
    posts: dict[int, dict[str, int]] = {}
    perf: list[tuple[uuid.UUID, str, str, str, datetime, int]] = []
    late = 0

    def count(key: tuple[datetime, str, str], n: int) -> None:
        counters[key] = counters.get(key, 0) + n

    for ev in events:
        fx = metrics.effects_of(ev.type, ev.data, event_time=ev.time or now)
        hour = utc_hour(fx.time)
        for (metric, dim), n in fx.counters.items():
            count((hour, metric, dim), int(n))
        if fx.active_user and fx.time >= horizon_start:
            active.add((hour, int(fx.active_user)))
        elif fx.active_user:
            # Its hour's membership rows may be pruned already: counting the user again could
            # count them twice. Counted as late instead, in the hour it was processed.
            count((utc_hour(now), "late_beyond_horizon", ""), 1)
            late += 1
        if fx.post_id is not None:
            sums = posts.setdefault(int(fx.post_id), {})
            for column, n in fx.post.items():
                sums[column] = sums.get(column, 0) + int(n)
            if fx.viewer_key is not None:
                viewers.add((int(fx.post_id), fx.viewer_key))
        if fx.perf is not None and fx.time >= perf_start:
            metric, platform, version, value = fx.perf
            perf.append((ev.event_id, metric, platform, version, fx.time, int(value)))
    if late:
        log.warning("analytics: %d event(s) older than the lateness horizon; not counted in "
                    "active users", late)
    with connection.cursor() as cur:
        cur.execute(_AGGREGATE_SQL, [
            rows_param(sorted(active)),
            rows_param(sorted(viewers)),
            rows_param((h, m, d, n) for (h, m, d), n in sorted(counters.items())),
            rows_param((p, *(sums.get(c, 0) for c in _POST_COLUMNS))
                       for p, sums in sorted(posts.items())),
            rows_param(perf),
        ])


def _aggregate_sql() -> str:
    """The one statement that writes a batch's aggregates (`events_aggregate`): data-modifying
    CTEs, each table written once, new membership rows counted where they were inserted.

    - new (hour, user) rows → their day rows, and +1 `active_users` per new row in its hour
      (a day row only for a new hour row: an existing one was written together with its day
      row, and day rows outlive hour rows, see analytics_prune);
    - new (post, viewer) rows → +1 `unique_viewers` of the post;
    - the hourly counters and the post totals upserted (added to), performance samples
      inserted once per event id.
    Rows are sorted by the caller and inserted in that order: concurrent consumers lock rows
    of each table in one order (no deadlocks)."""
    columns = ", ".join(_POST_COLUMNS)
    totals = ", ".join(f"r.c{i + 1} + coalesce(v.n, 0)" if c == "unique_viewers"
                       else f"r.c{i + 1}" for i, c in enumerate(_POST_COLUMNS))
    sets = ", ".join(f"{c} = analytics_poststats.{c} + EXCLUDED.{c}" for c in _POST_COLUMNS)
    return f"""
    WITH hours AS (
        INSERT INTO analytics_activeuserhour (hour, user_id)
        SELECT c0, c1 FROM {rows_table(["timestamptz", "bigint"])} ORDER BY n
        ON CONFLICT DO NOTHING RETURNING hour, user_id
    ), days AS (
        INSERT INTO analytics_activeuserday (day, user_id)
        SELECT DISTINCT (hour AT TIME ZONE 'UTC')::date, user_id FROM hours ORDER BY 1, 2
        ON CONFLICT DO NOTHING
    ), viewers AS (
        INSERT INTO analytics_postviewer (post_id, viewer_key)
        SELECT c0, c1 FROM {rows_table(["bigint", "text"])} ORDER BY n
        ON CONFLICT DO NOTHING RETURNING post_id
    ), counters AS (
        SELECT c0 AS hour, c1 AS metric, c2 AS dimension, c3 AS value
          FROM {rows_table(["timestamptz", "text", "text", "bigint"])}
        UNION ALL
        SELECT hour, 'active_users', '', count(*) FROM hours GROUP BY hour
    ), hourly AS (
        INSERT INTO analytics_hourlymetric (hour, metric, dimension, value, updated_at)
        SELECT hour, metric, dimension, sum(value), now() FROM counters
         GROUP BY hour, metric, dimension ORDER BY hour, metric, dimension
        ON CONFLICT (hour, metric, dimension) DO UPDATE SET
            value = analytics_hourlymetric.value + EXCLUDED.value, updated_at = now()
    ), new_viewers AS (
        SELECT post_id, count(*) AS n FROM viewers GROUP BY post_id
    ), posts AS (
        INSERT INTO analytics_poststats (post_id, {columns}, updated_at)
        SELECT r.c0, {totals}, now()
          FROM {rows_table(["bigint"] * (len(_POST_COLUMNS) + 1))}
          LEFT JOIN new_viewers v ON v.post_id = r.c0
         ORDER BY r.n
        ON CONFLICT (post_id) DO UPDATE SET {sets}, updated_at = now()
    ), perf AS (
        INSERT INTO analytics_perfsample (event_id, metric, platform, app_version, occurred_at,
                                          value_ms)
        SELECT c0, c1, c2, c3, c4, c5
          FROM {rows_table(["uuid", "text", "text", "text", "timestamptz", "integer"])}
         ORDER BY n
        ON CONFLICT (event_id) DO NOTHING
    )
    SELECT 1
    """  # noqa: S608 - fixed names


_AGGREGATE_SQL = _aggregate_sql()


# --- rollup and retention (Celery beat) ------------------------------------------------------


def _days_to_recompute(today: date, last: RollupRun | None) -> set[date]:
    days = {today - timedelta(days=d) for d in range(horizon_days() + 1)}
    touched = HourlyMetric.objects.all()
    if last is not None:
        touched = touched.filter(updated_at__gte=last.started_at - DIRTY_MARGIN)
    days |= set(touched.annotate(day=TruncDate("hour", tzinfo=UTC))
                .values_list("day", flat=True).distinct())
    oldest = today - timedelta(days=settings.ANALYTICS_HOURLY_RETENTION_DAYS - 1)
    return {d for d in days if d >= oldest}


def rollup_run() -> RollupRun:
    """Recompute the daily tables of every day that can still change: the lateness horizon's
    days, plus any older day whose hourly counters changed since the previous run (events
    consumed very late). Recomputed, never added to: running it twice gives the same rows.
    Concurrent runs wait for each other (advisory lock)."""
    with transaction.atomic():
        with connection.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", [ROLLUP_LOCK_KEY])
        started = timezone.now()
        today = utc_day(started)
        last = RollupRun.objects.order_by("-started_at").first()
        days = sorted(_days_to_recompute(today, last))
        uniques_from = today - timedelta(days=horizon_days() + 1)
        perf_from = utc_day(started - timedelta(days=settings.ANALYTICS_PERF_RETENTION_DAYS)) \
            + timedelta(days=1)
        with connection.cursor() as cur:
            for day in days:
                _rollup_sums(cur, day, started)
                if day >= uniques_from:
                    _rollup_uniques(cur, day, started)
                if day >= perf_from:
                    _rollup_perf(cur, day, started)
        return RollupRun.objects.create(started_at=started, finished_at=timezone.now(),
                                        days=[d.isoformat() for d in days])


def _rollup_sums(cur, day: date, computed_at: datetime) -> None:
    start = day_start(day)
    cur.execute("DELETE FROM analytics_dailymetric WHERE day = %s AND metric = ANY(%s)",
                [day, list(metrics.SUM_METRICS)])
    cur.execute(
        "INSERT INTO analytics_dailymetric (day, metric, dimension, value, computed_at) "
        "SELECT %s, metric, dimension, SUM(value), %s FROM analytics_hourlymetric "
        "WHERE hour >= %s AND hour < %s AND metric = ANY(%s) GROUP BY metric, dimension",
        [day, computed_at, start, start + timedelta(days=1), list(metrics.SUM_METRICS)],
    )


def _rollup_uniques(cur, day: date, computed_at: datetime) -> None:
    cur.execute(
        "INSERT INTO analytics_dailymetric (day, metric, dimension, value, computed_at) "
        "SELECT %(day)s, m.metric, '', m.value, %(at)s FROM (VALUES "
        " ('dau', (SELECT count(*) FROM analytics_activeuserday WHERE day = %(day)s)),"
        " ('wau', (SELECT count(DISTINCT user_id) FROM analytics_activeuserday "
        "          WHERE day BETWEEN %(day)s::date - 6 AND %(day)s)),"
        " ('mau', (SELECT count(DISTINCT user_id) FROM analytics_activeuserday "
        "          WHERE day BETWEEN %(day)s::date - 29 AND %(day)s))"
        ") AS m(metric, value) "
        "ON CONFLICT (day, metric, dimension) DO UPDATE SET value = EXCLUDED.value, "
        "computed_at = EXCLUDED.computed_at",
        {"day": day, "at": computed_at},
    )


def _rollup_perf(cur, day: date, computed_at: datetime) -> None:
    start = day_start(day)
    cur.execute("DELETE FROM analytics_dailyperf WHERE day = %s", [day])
    # Exact percentiles (linear interpolation between the closest ranks) of the day's samples,
    # per platform and version, per platform, per version and overall ("*").
    cur.execute(
        "INSERT INTO analytics_dailyperf (day, metric, platform, app_version, samples, p50_ms, "
        "p95_ms, mean_ms, computed_at) "
        "SELECT %s, metric, COALESCE(platform, '*'), COALESCE(app_version, '*'), count(*), "
        "percentile_cont(0.5) WITHIN GROUP (ORDER BY value_ms), "
        "percentile_cont(0.95) WITHIN GROUP (ORDER BY value_ms), avg(value_ms), %s "
        "FROM analytics_perfsample WHERE occurred_at >= %s AND occurred_at < %s "
        "GROUP BY GROUPING SETS ((metric, platform, app_version), (metric, platform), "
        "(metric, app_version), (metric))",
        [day, computed_at, start, start + timedelta(days=1)],
    )


@dataclass
class PruneResult:
    receipts: int
    active_hours: int
    active_days: int
    perf_samples: int
    hourly: int
    rollup_runs: int


def analytics_prune(*, now: datetime | None = None) -> PruneResult:
    """Delete raw rows nothing can need any more. Each cutoff keeps a margin past the lateness
    horizon, so an event that can still arrive always finds the rows it must be counted with."""
    now = now or timezone.now()
    horizon = lateness_horizon()
    skew = timedelta(seconds=settings.ANALYTICS_MAX_CLOCK_SKEW_SECONDS)
    cutoffs = [
        ("analytics_ingestreceipt", "received_at", now - horizon - skew - timedelta(days=1)),
        ("analytics_activeuserhour", "hour", now - horizon - timedelta(days=1)),
        ("analytics_activeuserday", "day", utc_day(now - horizon - timedelta(days=31))),
        ("analytics_perfsample", "occurred_at",
         now - timedelta(days=settings.ANALYTICS_PERF_RETENTION_DAYS)),
        ("analytics_hourlymetric", "hour",
         now - timedelta(days=settings.ANALYTICS_HOURLY_RETENTION_DAYS)),
        ("analytics_rolluprun", "started_at", now - timedelta(days=30)),
    ]
    counts = []
    for table, column, cutoff in cutoffs:
        deleted = 0
        while True:  # in chunks: no long transaction, no huge lock set
            with transaction.atomic(), connection.cursor() as cur:
                cur.execute(
                    f"DELETE FROM {table} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {table} "  # noqa: S608 - fixed names
                    f"WHERE {column} < %s LIMIT 10000))", [cutoff])
                n = cur.rowcount
            deleted += n
            if n < 10000:
                break
        counts.append(deleted)
    result = PruneResult(*counts)
    log.info("analytics prune: %s", result)
    return result
