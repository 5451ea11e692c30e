"""Analytics reads: metric series, performance percentiles, post stats, dashboard data.

Day series come from the rollup's tables (fresh to within ANALYTICS_ROLLUP_INTERVAL_SECONDS);
hour series are read live from the consumer's hourly counters and raw samples. Every bucket in
the range is present (zero when nothing happened, null for a percentile without samples).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from django.db import connection
from django.db.models import Max

from showoff.charts import Chart

from .metrics import METRICS, PERF_METRICS
from .models import DailyMetric, DailyPerf, HourlyMetric, PostStats, RollupRun
from .services import iso, utc_hour

ALL = DailyPerf.ALL


def buckets(period: str, start: datetime | date, end: datetime | date) -> list:
    """Bucket starts from `start` to `end`, both included (days as dates, hours as UTC)."""
    out = []
    step = timedelta(days=1) if period == "day" else timedelta(hours=1)
    cur = start
    while cur <= end:
        out.append(cur)
        cur += step
    return out


def _label(bucket) -> str:
    return bucket.isoformat() if isinstance(bucket, date) and not isinstance(
        bucket, datetime) else iso(bucket)


@dataclass
class Series:
    dimension: str
    points: list[dict[str, Any]]


def metric_series(*, metric: str, period: str, start, end,
                  dimension: str | None = None) -> list[Series]:
    """One series per dimension value (one series, dimension "", for most metrics)."""
    spec = METRICS[metric]
    slots = buckets(period, start, end)
    values: dict[str, dict[Any, int]] = defaultdict(dict)
    if period == "hour":
        rows = HourlyMetric.objects.filter(metric=metric, hour__gte=start, hour__lte=end)
        if dimension is not None:
            rows = rows.filter(dimension=dimension)
        for hour, dim, value in rows.values_list("hour", "dimension", "value"):
            values[dim][utc_hour(hour)] = value
    else:
        name = "dau" if metric == "active_users" else metric
        rows = DailyMetric.objects.filter(metric=name, day__gte=start, day__lte=end)
        if dimension is not None:
            rows = rows.filter(dimension=dimension)
        for day, dim, value in rows.values_list("day", "dimension", "value"):
            values[dim][day] = value
    dims = sorted(values) or [dimension if dimension is not None else ""]
    if spec.dimension == "" and "" not in dims:
        dims = [""]
    return [Series(dim, [{"t": _label(b), "value": values[dim].get(b, 0)} for b in slots])
            for dim in dims]


def perf_series(*, metric: str, period: str, start, end, platform: str = ALL,
                app_version: str = ALL) -> list[dict[str, Any]]:
    """Exact p50/p95 per bucket: days from the rollup, hours computed from the raw samples."""
    assert metric in PERF_METRICS
    slots = buckets(period, start, end)
    found: dict[Any, dict[str, Any]] = {}
    if period == "day":
        rows = DailyPerf.objects.filter(metric=metric, platform=platform,
                                        app_version=app_version, day__gte=start, day__lte=end)
        for r in rows:
            found[r.day] = {"samples": r.samples, "p50_ms": r.p50_ms, "p95_ms": r.p95_ms,
                            "mean_ms": r.mean_ms}
    else:
        where, params = ["metric = %s", "occurred_at >= %s", "occurred_at < %s"], [
            metric, start, end + timedelta(hours=1)]
        if platform != ALL:
            where.append("platform = %s")
            params.append(platform)
        if app_version != ALL:
            where.append("app_version = %s")
            params.append(app_version)
        with connection.cursor() as cur:
            cur.execute(
                "SELECT date_trunc('hour', occurred_at), count(*), "  # noqa: S608 - fixed conditions
                "percentile_cont(0.5) WITHIN GROUP (ORDER BY value_ms), "
                "percentile_cont(0.95) WITHIN GROUP (ORDER BY value_ms), avg(value_ms) "
                f"FROM analytics_perfsample WHERE {' AND '.join(where)} GROUP BY 1", params)
            for hour, n, p50, p95, mean in cur.fetchall():
                found[utc_hour(hour)] = {
                    "samples": n, "p50_ms": p50, "p95_ms": p95, "mean_ms": float(mean)}
    empty = {"samples": 0, "p50_ms": None, "p95_ms": None, "mean_ms": None}
    return [{"t": _label(b), **found.get(b, empty)} for b in slots]


def perf_breakdown(*, metric: str, day: date) -> list[dict[str, Any]]:
    """One day's percentiles for every platform and version (the dashboard's table)."""
    return [
        {"platform": r.platform, "app_version": r.app_version, "samples": r.samples,
         "p50_ms": r.p50_ms, "p95_ms": r.p95_ms}
        for r in DailyPerf.objects.filter(metric=metric, day=day).order_by(
            "platform", "app_version")
    ]


def post_stats_get(*, post_id: int) -> PostStats:
    """The post's totals (all zero when no event about it was aggregated yet)."""
    try:
        return PostStats.objects.get(post_id=post_id)
    except PostStats.DoesNotExist:
        return PostStats(post_id=post_id, updated_at=None)


def last_rollup() -> RollupRun | None:
    return RollupRun.objects.order_by("-started_at").first()


def daily_as_of() -> datetime | None:
    return DailyMetric.objects.aggregate(at=Max("computed_at"))["at"]


# --- the admin dashboard ---------------------------------------------------------------------


def _daily(metric: str, start: date, end: date, dimension: str | None = None) -> dict[str, list]:
    return {s.dimension: [p["value"] for p in s.points]
            for s in metric_series(metric=metric, period="day", start=start, end=end,
                                   dimension=dimension)}


def dashboard_charts(*, start: date, end: date) -> list[Chart]:
    labels = [d.isoformat() for d in buckets("day", start, end)]

    def one(metric: str) -> list:
        return _daily(metric, start, end)[""]

    views, likes, unlikes = one("views"), one("likes"), one("unlikes")
    comments, tips = one("comments"), one("tips")
    rate = [round((lk - ul + c + t) / v, 4) if v else None
            for v, lk, ul, c, t in zip(views, likes, unlikes, comments, tips, strict=True)]
    revenue = {f"revenue {cur or '-'}": values
               for cur, values in _daily("revenue_minor", start, end).items()}
    # Series of one chart that would hide each other (DAU under WAU under MAU; likes flat
    # beside views) get a panel each; p50 and p95 share one plot in distinct line styles.
    charts = [
        Chart("active-users", "Active users", "users", labels,
              {"DAU": one("dau"), "WAU": one("wau"), "MAU": one("mau")},
              integer=True, layout="multiples"),
        Chart("growth", "Signups and posts", "count per day", labels,
              {"signups": one("signups"), "posts": one("posts")},
              integer=True, layout="multiples"),
        Chart("engagement", "Engagement", "count per day", labels,
              {"views": views, "likes": likes, "comments": comments, "tips": tips},
              integer=True, layout="multiples"),
        Chart("engagement-rate", "Engagement rate ((likes - unlikes + comments + tips) / views)",
              "ratio", labels, {"engagement rate": rate}),
        Chart("revenue", "Revenue", "minor units per day", labels, revenue, integer=True,
              layout="multiples"),
        Chart("coins", "Coins", "coins per day", labels,
              {"purchased": one("coins_purchased"),
               "withdrawn": one("withdrawal_coins_completed"),
               "tipped": one("tip_coins")},
              integer=True, layout="multiples"),
    ]
    for metric, title in (("app_start", "App start time"), ("api_latency", "API latency")):
        points = perf_series(metric=metric, period="day", start=start, end=end)
        charts.append(Chart(metric.replace("_", "-"), f"{title} (all platforms)", "ms", labels,
                            {"p50": [p["p50_ms"] for p in points],
                             "p95": [p["p95_ms"] for p in points]}))
    return charts


def dashboard_start(end: date, days: int) -> date:
    return end - timedelta(days=days - 1)
