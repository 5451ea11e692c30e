"""Shared test fixtures: the real PostgreSQL (pytest-django), the real Kafka broker and the
real Redis cache.

Each test that touches Kafka gets its own topic prefix, so tests sharing the one local broker
never see each other's records.
"""

from __future__ import annotations

import uuid

import pytest
from django.core.cache import cache
from django.core.signals import request_finished, request_started
from django.db import close_old_connections

from relay import testing as kt
from showoff.tests.redis_cache import redis_cache  # noqa: F401 - fixture for every app's tests


@pytest.fixture(autouse=True)
def _fresh_cache():
    """The real Redis cache, scoped to this run's key prefix (showoff/settings/test.py): each
    test starts without the throttle counters and revoked tokens of the one before."""
    yield
    cache.clear()


@pytest.fixture
def kafka_prefix(settings):
    """A unique KAFKA_TOPIC_PREFIX for this test; topics created through `kafka_topic` are
    deleted afterwards."""
    prefix = f"t{uuid.uuid4().hex[:10]}."
    settings.KAFKA_TOPIC_PREFIX = prefix
    return prefix


@pytest.fixture
def kafka_topic(kafka_prefix):
    """Factory: `kafka_topic("post-events", partitions=3)` creates `<prefix>post-events`."""
    created: list[str] = []

    def make(logical: str, partitions: int = 1, config: dict | None = None) -> str:
        name = f"{kafka_prefix}{logical}"
        kt.create_topic(name, partitions, config)
        created.append(name)
        return name

    yield make
    kt.delete_topics(created)


@pytest.fixture
def read_committed():
    """`read_committed([topic, ...])` returns every committed record, aborted ones excluded."""
    return kt.read_all


@pytest.fixture
def wsgi_keeps_connection():
    """For tests calling the WSGI app directly (schemathesis): the handler closes the DB
    connection after each request, as in production; the test's transaction lives on that
    connection, so do what Django's test client does."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


@pytest.fixture
def browser():
    """Headless Chromium driven by Selenium (Debian's `chromium` and `chromium-driver`, installed
    by scripts/install-test-deps), for tests that look at rendered admin pages."""
    import shutil

    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not shutil.which(p)]
    if missing:
        pytest.fail(f"{', '.join(missing)} not installed: run `scripts/install-test-deps` "
                    "(apt-get install -y chromium chromium-driver, as root) first.")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--window-size=1600,2400"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def admin_sign_in(browser, live_server, user, next_path: str, password: str) -> None:
    """Sign `user` in through the admin's own login form, landing on `next_path`."""
    from urllib.parse import quote

    browser.get(f"{live_server.url}/admin/login/?next={quote(next_path)}")
    browser.find_element("name", "username").send_keys(user.username)
    browser.find_element("name", "password").send_keys(password)
    submit = browser.find_element("css selector", "input[type=submit]")
    submit.click()
    # The click returns before the next page has loaded: wait for the form to go, or a test
    # reads the login page's title (seen in CI).
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.wait import WebDriverWait

    WebDriverWait(browser, 30).until(expected_conditions.staleness_of(submit))


def save_screenshot(browser, name: str) -> str:
    """A full-page screenshot in SHOWOFF_SCREENSHOT_DIR (default: .local/screenshots of this
    checkout) for a person to look at; the tests check the page's elements themselves.
    Returns its path."""
    import os
    from pathlib import Path

    folder = Path(os.environ.get("SHOWOFF_SCREENSHOT_DIR",
                                 Path(__file__).parent / ".local" / "screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1600, max(900, min(int(height) + 50, 8000)))
    path = folder / f"{name}.png"
    browser.save_screenshot(str(path))
    return str(path)
