"""The dashboard in a real browser: headless Chromium (Debian's `chromium` and
`chromium-driver`) driven by Selenium signs in through the admin login form, opens the dashboard
and checks what an operator sees: every chart laid out at its size; series that would hide each
other in panels of their own, or in distinct line styles; whole-number axes for counts; a unit
on every axis; a tooltip and a table value for every point; and the lines painted (their colour
is in a screenshot). A full-page screenshot is saved for a person to look at (conftest.py)."""

from __future__ import annotations

import io
import re
from datetime import timedelta

import pytest
from django.utils import timezone
from PIL import Image

from analytics import services
from analytics.models import HourlyMetric
from conftest import admin_sign_in, save_screenshot
from showoff.charts import COLORS

from .support import make_user

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

LIKES_RED = tuple(int(COLORS[1][i:i + 2], 16) for i in (1, 3, 5))  # likes: the second series

CHARTS_JS = """
return Array.from(document.querySelectorAll('figure.chart')).map(fig => ({
  chart: fig.dataset.chart, unit: fig.dataset.unit, integer: fig.dataset.integer === 'true',
  layout: fig.classList.contains('chart-multiples') ? 'multiples' : 'overlay',
  legend: Array.from(fig.querySelectorAll('.legend-item')).map(i => ({
    series: i.dataset.series, dash: i.querySelector('line').getAttribute('stroke-dasharray'),
    marker: i.querySelector('line').nextElementSibling.tagName,
    color: i.querySelector('line').getAttribute('stroke')})),
  tableRows: fig.querySelectorAll('details.chart-values tbody tr').length,
  tableHead: Array.from(fig.querySelectorAll('details.chart-values th')).map(t => t.textContent),
  panels: Array.from(fig.querySelectorAll('svg.chart-panel')).map(svg => {
    const box = svg.getBoundingClientRect();
    return {
      heading: svg.dataset.panel, width: box.width, height: box.height,
      yTicks: Array.from(svg.querySelectorAll('.y-axis text.tick')).map(t => t.textContent),
      yTitle: svg.querySelector('.y-axis text.axis-title').textContent,
      xTitle: svg.querySelector('.x-axis text.axis-title').textContent,
      series: Array.from(svg.querySelectorAll('g.series')).map(g => {
        const line = g.querySelector('polyline.line');
        return {
          name: g.dataset.series,
          dash: line ? (line.getAttribute('stroke-dasharray') || '') : null,
          length: line ? line.getTotalLength() : 0,
          marker: (g.querySelector('.point') || {}).tagName,
          points: Array.from(g.querySelectorAll('.point')).map(p => ({
            value: Number(p.dataset.value), title: p.querySelector('title').textContent})),
        };
      }),
    };
  }),
}));"""


def test_the_dashboard_draws_readable_charts_in_chromium(live_server, browser):
    # given: a staff member and a week of likes and signups, rolled up
    staff = make_user(username="operator", is_staff=True)
    today = services.utc_day(timezone.now())
    for day in range(7):
        start = services.day_start(today - timedelta(days=day))
        HourlyMetric.objects.create(hour=start, metric="likes", value=10 + day * 3)
        HourlyMetric.objects.create(hour=start, metric="signups", value=day % 4)
    services.rollup_run()
    # when: signing in through the admin's own form, then opening the dashboard
    admin_sign_in(browser, live_server, staff, "/admin/analytics/dashboard/?days=7",
                  "correct-Horse-battery-9")
    # then
    assert "Analytics dashboard" in browser.title, browser.page_source[:2000]
    charts = {c["chart"]: c for c in browser.execute_script(CHARTS_JS)}
    assert list(charts) == ["active-users", "growth", "engagement", "engagement-rate",
                            "revenue", "coins", "app-start", "api-latency"]
    # lines that would overlap get a panel each, on the same days
    assert [p["heading"] for p in charts["active-users"]["panels"]] == ["DAU", "WAU", "MAU"]
    assert [p["heading"] for p in charts["engagement"]["panels"]] == [
        "views", "likes", "comments", "tips"]
    assert [p["heading"] for p in charts["coins"]["panels"]] == [
        "purchased", "withdrawn", "tipped"]
    # ... or distinct styles in one plot: p50 and p95 differ in dash and marker, with a legend
    latency = charts["api-latency"]
    assert latency["layout"] == "overlay"
    assert [(i["series"], i["dash"], i["marker"], i["color"]) for i in latency["legend"]] == [
        ("p50", None, "circle", COLORS[0]), ("p95", "7 4", "rect", COLORS[1])]
    assert [s["name"] for s in latency["panels"][0]["series"]] == ["p50", "p95"]
    for chart in charts.values():
        for panel in chart["panels"]:
            assert panel["width"] >= 700 and panel["height"] >= 120, (chart["chart"], panel)
            # a unit on every axis
            assert panel["yTitle"] == chart["unit"] != ""
            assert panel["xTitle"] == "day (UTC)"
            # counts on whole-number axes: never "2.50"
            if chart["integer"]:
                assert all(re.fullmatch(r"\d[\d,]*", t) for t in panel["yTicks"]), panel["yTicks"]
        # and every point in the values table
        assert chart["tableRows"] == 7, chart["chart"]
    growth = charts["growth"]["panels"]
    assert growth[0]["heading"] == "signups" and growth[0]["yTicks"] == ["0", "1", "2", "3"]
    # a hover value for each point: the tooltip names day, series, value and unit
    likes = next(p for p in charts["engagement"]["panels"] if p["heading"] == "likes")
    line = likes["series"][0]
    assert [p["value"] for p in line["points"]] == [10 + d * 3 for d in range(6, -1, -1)]
    assert line["points"][-1]["title"] == f"{today.isoformat()}: likes 10 count per day"
    assert line["length"] > 600
    assert likes["yTicks"] == ["0", "10", "20", "30"]
    assert charts["engagement"]["tableHead"] == [
        "day (UTC)", "views (count per day)", "likes (count per day)",
        "comments (count per day)", "tips (count per day)"]
    # the ratio chart is not a count: its axis may show fractions
    assert charts["engagement-rate"]["integer"] is False
    # painted: the likes line's colour is on screen
    svg = browser.find_element("css selector", 'svg[data-chart="engagement"][data-panel="likes"]')
    browser.execute_script("arguments[0].scrollIntoView();", svg)
    image = Image.open(io.BytesIO(svg.screenshot_as_png)).convert("RGB")
    red = sum(1 for px in image.getdata()
              if all(abs(a - b) < 40 for a, b in zip(px, LIKES_RED, strict=True)))
    assert red > 300, f"only {red} pixels of the likes line's colour"
    # each chart's CSV link is there
    links = [a.get_attribute("href") for a in browser.find_elements(
        "css selector", "a.csv-link")]
    assert len(links) == 8 and all("/admin/analytics/dashboard/csv/" in h for h in links)
    save_screenshot(browser, "analytics-dashboard")
