"""Analytics tables.

Written exactly once per event by the `analytics` consumer (inside the record's transaction,
behind the inbox): `HourlyMetric` counters, `PostStats` totals, the membership rows behind
exact unique counts (`ActiveUserHour`, `ActiveUserDay`, `PostViewer`) and the raw performance
samples (`PerfSample`). Written by the ingestion API: `IngestReceipt`. Written only by the
rollup (recomputed, never incremented, so running it twice changes nothing): `DailyMetric`,
`DailyPerf`, `RollupRun`.

Times are UTC; an hour or a day is the bucket of the event's own time (`occurred_at`), never of
when it was processed, so late and out-of-order events land where they belong.

Post ids are plain integers, not foreign keys: events may reach analytics before or after the
post row exists in this database (and tests feed synthetic streams).
"""

from __future__ import annotations

from django.db import models


class HourlyMetric(models.Model):
    """An additive counter for one UTC hour (`metric` names what, see analytics/metrics.py).

    `dimension` splits a metric where one number would mix units (revenue by currency); it is
    "" otherwise. `updated_at` lets the rollup find days touched since its last run.
    """

    hour = models.DateTimeField()
    metric = models.CharField(max_length=50)
    dimension = models.CharField(max_length=20, default="", blank=True)
    value = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(db_default=models.functions.Now())

    class Meta:
        constraints = [models.UniqueConstraint(fields=["hour", "metric", "dimension"],
                                               name="analytics_hourly_once")]
        indexes = [models.Index(fields=["metric", "hour"], name="analytics_hourly_metric"),
                   models.Index(fields=["updated_at"], name="analytics_hourly_updated")]

    def __str__(self) -> str:
        return f"{self.metric}[{self.dimension}] {self.hour:%Y-%m-%d %H}h = {self.value}"


class DailyMetric(models.Model):
    """One day's value of a metric, recomputed by the rollup from hourly counters (sums) or
    from membership rows (dau, wau, mau: distinct users)."""

    day = models.DateField()
    metric = models.CharField(max_length=50)
    dimension = models.CharField(max_length=20, default="", blank=True)
    value = models.BigIntegerField(default=0)
    computed_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["day", "metric", "dimension"],
                                               name="analytics_daily_once")]
        indexes = [models.Index(fields=["metric", "day"], name="analytics_daily_metric")]

    def __str__(self) -> str:
        return f"{self.metric}[{self.dimension}] {self.day} = {self.value}"


class Dashboard(DailyMetric):
    """The admin's analytics dashboard page (a proxy: it has no table of its own)."""

    class Meta:
        proxy = True
        verbose_name = "dashboard"
        verbose_name_plural = "dashboard"


class ActiveUserHour(models.Model):
    """A user did something in this hour: exact hourly active users (kept for the lateness
    horizon, after which the hour's count is final)."""

    hour = models.DateTimeField()
    user_id = models.BigIntegerField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["hour", "user_id"],
                                               name="analytics_active_hour_once")]


    def __str__(self) -> str:
        return f"user {self.user_id} active at {self.hour:%Y-%m-%d %H}h"

class ActiveUserDay(models.Model):
    """A user did something on this day: exact DAU, and WAU/MAU as distinct users over the
    7 or 30 days ending on a day (kept for the lateness horizon plus 30 days)."""

    day = models.DateField()
    user_id = models.BigIntegerField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["day", "user_id"],
                                               name="analytics_active_day_once")]


    def __str__(self) -> str:
        return f"user {self.user_id} active on {self.day}"

class PostStats(models.Model):
    """Running totals of one post (all time)."""

    post_id = models.BigIntegerField(primary_key=True)
    views = models.BigIntegerField(default=0)  # counted views (post.viewed)
    impressions = models.BigIntegerField(default=0)  # shown on a client screen
    unique_viewers = models.BigIntegerField(default=0)
    likes = models.BigIntegerField(default=0)
    unlikes = models.BigIntegerField(default=0)
    comments = models.BigIntegerField(default=0)
    tips = models.BigIntegerField(default=0)
    tip_coins = models.BigIntegerField(default=0)
    watch_time_ms = models.BigIntegerField(default=0)
    watches = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(db_default=models.functions.Now())

    class Meta:
        verbose_name_plural = "post stats"

    def __str__(self) -> str:
        return f"stats of post {self.post_id}"

    @property
    def net_likes(self) -> int:
        return self.likes - self.unlikes

    @property
    def engagement_rate(self) -> float | None:
        """(net likes + comments + tips) / counted views; None before the first view."""
        if self.views <= 0:
            return None
        return round((self.net_likes + self.comments + self.tips) / self.views, 4)


class PostViewer(models.Model):
    """Someone saw a post: `u:<user id>` when signed in, `d:<device id>` for an anonymous
    client. Exact unique viewers; kept as long as the post's stats."""

    post_id = models.BigIntegerField()
    viewer_key = models.CharField(max_length=80)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["post_id", "viewer_key"],
                                               name="analytics_post_viewer_once")]


    def __str__(self) -> str:
        return f"{self.viewer_key} saw post {self.post_id}"

class PerfSample(models.Model):
    """One client measurement (app start or API latency): the exact percentiles come from
    these rows. Kept ANALYTICS_PERF_RETENTION_DAYS; the daily percentiles outlive them."""

    class Metric(models.TextChoices):
        APP_START = "app_start"
        API_LATENCY = "api_latency"

    event_id = models.UUIDField(unique=True)
    metric = models.CharField(max_length=20, choices=Metric.choices)
    platform = models.CharField(max_length=10)
    app_version = models.CharField(max_length=32)
    occurred_at = models.DateTimeField()
    value_ms = models.IntegerField()

    class Meta:
        indexes = [models.Index(fields=["metric", "occurred_at"], name="analytics_perf_time")]


    def __str__(self) -> str:
        return f"{self.metric} {self.value_ms} ms ({self.platform} {self.app_version})"

class DailyPerf(models.Model):
    """Exact percentiles of one day's samples per platform and app version; "*" stands for
    every platform (and every version)."""

    ALL = "*"

    day = models.DateField()
    metric = models.CharField(max_length=20, choices=PerfSample.Metric.choices)
    platform = models.CharField(max_length=10)
    app_version = models.CharField(max_length=32)
    samples = models.BigIntegerField()
    p50_ms = models.FloatField()
    p95_ms = models.FloatField()
    mean_ms = models.FloatField()
    computed_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(
            fields=["day", "metric", "platform", "app_version"], name="analytics_daily_perf_once")]


    def __str__(self) -> str:
        return f"{self.metric} {self.day} {self.platform}/{self.app_version}"

class IngestReceipt(models.Model):
    """An accepted client event id: exact duplicate detection at ingestion for as long as an
    item can still be accepted (the lateness horizon plus the allowed clock skew)."""

    event_id = models.UUIDField(primary_key=True)
    received_at = models.DateTimeField(db_default=models.functions.Now())

    class Meta:
        indexes = [models.Index(fields=["received_at"], name="analytics_receipt_time")]


    def __str__(self) -> str:
        return f"receipt {self.event_id}"

class RollupRun(models.Model):
    """One rollup: which days it recomputed. The next run also recomputes any older day whose
    hourly counters changed since this one started."""

    started_at = models.DateTimeField()
    finished_at = models.DateTimeField()
    days = models.JSONField(default=list)

    def __str__(self) -> str:
        return f"rollup {self.started_at:%Y-%m-%d %H:%M} ({len(self.days)} days)"
