"""The dashboard in a real browser: headless Chromium (Debian's `chromium` and
`chromium-driver` packages) driven by Selenium signs in through the admin login form, opens
the dashboard and checks that every chart is drawn: laid out at its size, with its lines, and
painted (the line's colour is in a screenshot of the chart)."""

from __future__ import annotations

import io
import shutil
from datetime import timedelta

import pytest
from django.utils import timezone
from PIL import Image

from analytics import services
from analytics.models import HourlyMetric

from .support import make_user

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--window-size=1600,2400"]
LIKES_RED = (0xDC, 0x26, 0x26)  # analytics.charts.COLORS[1]: likes is the second series


@pytest.fixture
def browser():
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not shutil.which(p)]
    if missing:
        pytest.fail(f"{', '.join(missing)} not installed: run "
                    "`apt-get install -y chromium chromium-driver` (as root) first.")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def test_the_dashboard_draws_its_charts_in_chromium(live_server, browser):
    # given: a staff member and a week of likes and signups, rolled up
    staff = make_user(username="operator", is_staff=True)
    today = services.utc_day(timezone.now())
    for day in range(7):
        start = services.day_start(today - timedelta(days=day))
        HourlyMetric.objects.create(hour=start, metric="likes", value=10 + day * 3)
        HourlyMetric.objects.create(hour=start, metric="signups", value=day)
    services.rollup_run()
    # when: signing in through the admin's own form, then opening the dashboard
    browser.get(f"{live_server.url}/admin/login/?next=/admin/analytics/dashboard/%3Fdays%3D7")
    browser.find_element("name", "username").send_keys(staff.username)
    browser.find_element("name", "password").send_keys("correct-Horse-battery-9")
    browser.find_element("css selector", "input[type=submit]").click()
    # then
    assert "Analytics dashboard" in browser.title, browser.page_source[:2000]
    charts = browser.execute_script("""
        return Array.from(document.querySelectorAll('svg.analytics-chart')).map(svg => {
          const box = svg.getBoundingClientRect();
          const lines = Array.from(svg.querySelectorAll('polyline.series')).map(l => ({
            series: l.dataset.series, length: l.getTotalLength(),
            width: l.getBBox().width, points: l.points.numberOfItems}));
          return {chart: svg.dataset.chart, width: box.width, height: box.height, lines};
        });""")
    assert [c["chart"] for c in charts] == [
        "active-users", "growth", "engagement", "engagement-rate", "revenue", "coins",
        "app-start", "api-latency"]
    for chart in charts:
        assert chart["width"] >= 700 and chart["height"] >= 250, chart
    engagement = next(c for c in charts if c["chart"] == "engagement")
    likes = next(line for line in engagement["lines"] if line["series"] == "likes")
    assert likes["points"] == 7 and likes["length"] > 600 and likes["width"] > 600
    growth = next(c for c in charts if c["chart"] == "growth")
    assert [line["series"] for line in growth["lines"]] == ["signups", "posts"]
    # painted: the likes line's colour is on screen
    svg = browser.find_element("css selector", 'svg[data-chart="engagement"]')
    browser.execute_script("arguments[0].scrollIntoView();", svg)
    image = Image.open(io.BytesIO(svg.screenshot_as_png)).convert("RGB")
    red = sum(1 for px in image.getdata()
               if all(abs(a - b) < 40 for a, b in zip(px, LIKES_RED, strict=True)))
    assert red > 300, f"only {red} pixels of the likes line's colour"
    # and each chart's CSV link is there
    links = [a.get_attribute("href") for a in browser.find_elements(
        "css selector", "a.csv-link")]
    assert len(links) == 8 and all("/admin/analytics/dashboard/csv/" in h for h in links)
