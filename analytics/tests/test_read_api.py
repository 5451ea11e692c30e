"""Post stats for the author, staff metrics endpoints, and the admin dashboard (server side)."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from analytics import services
from analytics.models import HourlyMetric, PerfSample, PostStats
from posts.models import Post

from .support import client_for, make_user, percentile

pytestmark = pytest.mark.django_db


@pytest.fixture
def post():
    return Post.objects.create(author=make_user(), text="hello")


def test_the_author_sees_the_post_stats(post):
    # given
    PostStats.objects.create(post_id=post.pk, views=8, unique_viewers=5, impressions=20,
                             likes=5, unlikes=1, comments=2, tips=1, tip_coins=30,
                             watch_time_ms=9000, watches=3)
    # when
    response = client_for(post.author).get(f"/api/analytics/posts/{post.pk}/stats/")
    # then
    assert response.status_code == 200
    body = response.json()
    body.pop("updated_at")
    assert body == {"post_id": post.pk, "views": 8, "unique_viewers": 5, "impressions": 20,
                    "likes": 4, "comments": 2, "tips": 1, "tip_coins": 30,
                    "watch_time_ms": 9000, "watches": 3, "engagement_rate": 0.875}


def test_a_post_without_events_has_zero_stats(post):
    body = client_for(post.author).get(f"/api/analytics/posts/{post.pk}/stats/").json()
    assert (body["views"], body["likes"], body["engagement_rate"]) == (0, 0, None)


def test_others_cannot_see_a_posts_stats(post):
    assert client_for(make_user()).get(
        f"/api/analytics/posts/{post.pk}/stats/").status_code == 403
    assert client_for(None).get(f"/api/analytics/posts/{post.pk}/stats/").status_code == 401
    assert client_for(make_user(is_staff=True)).get(
        f"/api/analytics/posts/{post.pk}/stats/").status_code == 200
    post.deleted_at = timezone.now()
    post.save()
    assert client_for(post.author).get(
        f"/api/analytics/posts/{post.pk}/stats/").status_code == 404
    assert client_for(post.author).get(
        "/api/analytics/posts/99999999999/stats/").status_code == 404


@pytest.mark.parametrize("path", ["/api/analytics/metrics/", "/api/analytics/metrics/dau/",
                                  "/api/analytics/performance/app_start/"])
def test_metrics_endpoints_are_staff_only(path):
    assert client_for(None).get(path).status_code == 401
    assert client_for(make_user()).get(path).status_code == 403
    assert client_for(make_user(is_staff=True)).get(path).status_code == 200


def test_hourly_series_fill_missing_hours_with_zero_and_split_by_dimension():
    # given
    hour = services.utc_hour(timezone.now()) - timedelta(hours=3)
    HourlyMetric.objects.create(hour=hour, metric="revenue_minor", dimension="USD", value=500)
    HourlyMetric.objects.create(hour=hour + timedelta(hours=2), metric="revenue_minor",
                                dimension="EUR", value=70)
    staff = client_for(make_user(is_staff=True))
    # when
    body = staff.get("/api/analytics/metrics/revenue_minor/", {
        "period": "hour", "start": services.iso(hour),
        "end": services.iso(hour + timedelta(hours=2))}).json()
    usd = staff.get("/api/analytics/metrics/revenue_minor/", {
        "period": "hour", "start": services.iso(hour), "end": services.iso(hour),
        "dimension": "USD"}).json()
    # then
    assert [(s["dimension"], [p["value"] for p in s["points"]]) for s in body["series"]] == [
        ("EUR", [0, 0, 70]), ("USD", [500, 0, 0])]
    assert body["series"][0]["points"][0]["t"] == services.iso(hour)
    assert usd["series"] == [{"dimension": "USD",
                              "points": [{"t": services.iso(hour), "value": 500}]}]


def test_daily_series_come_from_the_rollup():
    # given: likes in two hours of yesterday, rolled up
    yesterday = services.utc_day(timezone.now()) - timedelta(days=1)
    start = services.day_start(yesterday)
    HourlyMetric.objects.create(hour=start + timedelta(hours=1), metric="likes", value=3)
    HourlyMetric.objects.create(hour=start + timedelta(hours=23), metric="likes", value=4)
    services.rollup_run()
    # when
    body = client_for(make_user(is_staff=True)).get("/api/analytics/metrics/likes/", {
        "start": yesterday.isoformat(), "end": (yesterday + timedelta(days=1)).isoformat(),
    }).json()
    # then
    assert body["series"][0]["points"] == [{"t": yesterday.isoformat(), "value": 7},
                                           {"t": (yesterday + timedelta(days=1)).isoformat(),
                                            "value": 0}]
    assert body["as_of"] is not None


def test_performance_percentiles_are_exact_per_hour_and_day():
    # given: app start samples on two platforms in one hour
    hour = services.utc_hour(timezone.now()) - timedelta(hours=1)
    values = {"ios": [120, 340, 560, 900, 1500], "android": [200, 220, 5000]}
    for platform, samples in values.items():
        for v in samples:
            PerfSample.objects.create(event_id=uuid.uuid4(), metric="app_start",
                                      platform=platform, app_version="2.0",
                                      occurred_at=hour + timedelta(minutes=5), value_ms=v)
    services.rollup_run()
    staff = client_for(make_user(is_staff=True))
    # when
    hourly = staff.get("/api/analytics/performance/app_start/", {
        "period": "hour", "start": services.iso(hour), "end": services.iso(hour),
        "platform": "ios"}).json()
    daily = staff.get("/api/analytics/performance/app_start/", {
        "start": services.utc_day(hour).isoformat(),
        "end": services.utc_day(hour).isoformat()}).json()
    # then
    [point] = hourly["points"]
    assert point["samples"] == 5
    assert point["p50_ms"] == percentile(values["ios"], 0.5) == 560
    assert point["p95_ms"] == pytest.approx(percentile(values["ios"], 0.95))
    everything = values["ios"] + values["android"]
    [day] = daily["points"]
    assert day["samples"] == 8
    assert day["p50_ms"] == pytest.approx(percentile(everything, 0.5))
    assert day["p95_ms"] == pytest.approx(percentile(everything, 0.95))


@pytest.mark.parametrize("params, field", [
    ({"period": "week"}, "period"),
    ({"start": "yesterday"}, "start"),
    ({"start": "2025-02-01", "end": "2025-01-01"}, "start"),
    ({"start": "2000-01-01", "end": "2025-01-01"}, "start"),
    ({"period": "hour", "end": "nope"}, "end"),
])
def test_bad_ranges_are_400s_naming_the_field(params, field):
    response = client_for(make_user(is_staff=True)).get("/api/analytics/metrics/likes/", params)
    assert response.status_code == 400
    assert list(response.json()["errors"]) == [field]


def test_unknown_metrics_are_404_and_day_only_metrics_refuse_hours():
    staff = client_for(make_user(is_staff=True))
    assert staff.get("/api/analytics/metrics/nope/").status_code == 404
    assert staff.get("/api/analytics/performance/nope/").status_code == 404
    response = staff.get("/api/analytics/metrics/wau/", {"period": "hour"})
    assert response.status_code == 400
    assert response.json()["errors"] == {"period": ["wau has periods: day."]}


# --- the admin dashboard ---------------------------------------------------------------------

DASHBOARD = "/admin/analytics/dashboard/"


def _browser(user) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def test_the_dashboard_renders_its_charts_for_staff():
    # given: two days of data, rolled up
    today = services.utc_day(timezone.now())
    start = services.day_start(today - timedelta(days=1))
    for offset, likes in ((1, 4), (25, 9)):
        HourlyMetric.objects.create(hour=start + timedelta(hours=offset), metric="likes",
                                    value=likes)
    PerfSample.objects.create(event_id=uuid.uuid4(), metric="app_start", platform="web",
                              app_version="1.0", occurred_at=start + timedelta(hours=25),
                              value_ms=640)
    services.rollup_run()
    # when
    response = _browser(make_user(is_staff=True)).get(DASHBOARD, {"days": 7})
    # then
    assert response.status_code == 200
    html = response.content.decode()
    slugs = [c["chart"].slug for c in response.context["charts"]]
    assert slugs == ["active-users", "growth", "engagement", "engagement-rate", "revenue",
                     "coins", "app-start", "api-latency"]
    for slug in slugs:
        assert f'data-chart="{slug}"' in html
        assert f"/admin/analytics/dashboard/csv/{slug}/?days=7" in html
    engagement = response.context["charts"][2]["chart"]
    assert engagement.series["likes"][-2:] == [4, 9]
    assert len(engagement.labels) == 7
    assert 'data-series="likes"' in html
    app_start = response.context["charts"][6]["chart"]
    assert app_start.series["p50"][-1] == 640.0
    assert "<td>web</td><td>1.0</td><td>1</td>" in html


def test_each_chart_downloads_as_csv():
    today = services.utc_day(timezone.now())
    HourlyMetric.objects.create(hour=services.day_start(today), metric="signups", value=3)
    HourlyMetric.objects.create(hour=services.day_start(today), metric="posts", value=2)
    services.rollup_run()
    response = _browser(make_user(is_staff=True)).get(DASHBOARD + "csv/growth/", {"days": 3})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows == [["date", "signups", "posts"],
                    [(today - timedelta(days=2)).isoformat(), "0", "0"],
                    [(today - timedelta(days=1)).isoformat(), "0", "0"],
                    [today.isoformat(), "3", "2"]]
    assert _browser(make_user(is_staff=True)).get(DASHBOARD + "csv/nope/").status_code == 404


def test_the_dashboard_is_refused_to_everyone_but_staff():
    for path in (DASHBOARD, DASHBOARD + "csv/growth/"):
        anonymous = _browser(None).get(path)
        assert anonymous.status_code == 302 and "/admin/login/" in anonymous["Location"]
        member = _browser(make_user()).get(path)
        assert member.status_code == 302 and "/admin/login/" in member["Location"]
        inactive_staff = make_user(is_staff=True)
        inactive_staff.is_active = False
        inactive_staff.save()
        assert _browser(inactive_staff).get(path).status_code == 302
