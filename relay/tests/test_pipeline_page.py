"""The admin's "Event pipeline" page and its dead-letter listing, against the real broker."""

from __future__ import annotations

import re
import time
import uuid

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import transaction

from outbox.services import Event, publish_bulk
from relay.cli import groups_describe
from relay.consumer import group_for
from relay.engine import Relay
from relay.kafka import topic_name
from relay.testing import delete_topics
from relay.topics import create_topics, desired_topics

from . import consumer_support as cs
from .consumer_support import EVENT_TYPE, TOPIC
from .relay_helpers import drain

pytestmark = pytest.mark.django_db(transaction=True)

effects_table, probe_consumer, workers = cs.effects_table, cs.probe_consumer, cs.workers


@pytest.fixture
def all_topics(kafka_prefix, settings):
    """The eight topics, their dead-letter twins and the checkpoint topic, as create-topics
    makes them; this test's consumer groups are its own."""
    settings.KAFKA_CONSUMER_GROUP = f"test-{uuid.uuid4().hex[:8]}"
    specs = desired_topics()
    create_topics(specs)
    yield [s.name for s in specs]
    delete_topics([s.name for s in specs])


def _staff(*, permission: bool = True):
    tag = uuid.uuid4().hex[:6]
    user = get_user_model().objects.create_user(username=f"op-{tag}", email=f"op-{tag}@x.test",
                                                password="x-Secret-9", is_staff=True)
    if permission:
        user.user_permissions.add(Permission.objects.get(codename="view_relayposition"))
    return user


def _write(events: list[Event]) -> None:
    with transaction.atomic():
        publish_bulk(events)


def _probe(seq: int, key: str = "k0", **extra) -> Event:
    return Event(EVENT_TYPE, {"probe_id": "page", "key": key, "seq": seq, **extra},
                 event_id=uuid.uuid4())


def _deliver() -> int:
    relay = Relay(use_lock=False)
    relay.start()
    try:
        return drain(relay)
    finally:
        relay.close()


def _caught_up(worker, group: str, timeout: float = 60) -> None:
    """Step the consumer until its committed offsets reach the end of every partition."""
    deadline = time.monotonic() + timeout
    while True:
        worker.step()
        parts = groups_describe(group).partitions
        # a partition nobody wrote to has no committed offset and nothing to read
        if parts and all(p.lag == 0 or (p.committed is None and p.end == 0) for p in parts):
            return
        assert time.monotonic() < deadline, f"group {group} never caught up: {parts}"


def test_staff_see_topics_groups_shards_dead_letters_and_health(
        all_topics, probe_consumer, workers, client):
    # given: 6 probes delivered by the relay and applied by a consumer (one of them dead-
    # lettered), then 2 more written but not delivered
    name = probe_consumer()
    _write([_probe(i, key=f"k{i % 3}") for i in range(5)] + [_probe(5, fail="permanent")])
    assert _deliver() == 6
    worker = workers(name)
    _caught_up(worker, group_for(name))
    _write([_probe(6), _probe(7)])
    client.force_login(_staff())

    # when
    response = client.get("/admin/pipeline/")

    # then: the real state, read from Kafka and the database
    assert response.status_code == 200
    ctx = response.context
    assert {c.name: c.up for c in ctx["checks"]} == {"database": True, "kafka": True,
                                                     "redis": True}
    assert ctx["errors"] == {}
    topics = {t.name: t for t in ctx["topics"]}
    assert set(topics) == set(all_topics)
    analytics = topics[topic_name(TOPIC)]
    assert [p["id"] for p in analytics.partitions] == [0, 1, 2]
    assert all(p["leader"] >= 0 and p["isr"] == p["replicas"] for p in analytics.partitions)
    # 6 events plus one commit marker per partition the relay's transaction wrote to
    assert 7 <= analytics.end_total <= 9
    assert topics[topic_name("user-events")].end_total == 0

    groups = {g.group: g for g in ctx["groups"]}
    mine = groups[group_for(name)]
    assert (mine.consumer, mine.state, mine.members) == (name, "Stable", 1)
    assert mine.lag == 0
    assert {(p.topic, p.partition): p.committed for p in mine.partitions if p.end} == {
        (analytics.name, p["id"]): p["end"] for p in analytics.partitions if p["end"]}

    dead = {d.logical: d.count for d in ctx["dead_letters"]}
    assert dead[TOPIC] == 1
    assert sum(dead.values()) == 1

    (shard,) = ctx["shards"]
    assert (shard.shard, shard.shards, shard.events_total, shard.backlog) == (0, 1, 6, 2)

    html = response.content.decode()
    assert group_for(name) in html
    assert f"{analytics.name}[0]" in html
    assert '<a href="/admin/pipeline/dlq/analytics-events/">1</a>' in html


def test_the_dead_letter_listing_shows_each_letter_with_its_reason_and_status(
        all_topics, probe_consumer, workers, client):
    # given: one permanent failure dead-lettered by a consumer
    name = probe_consumer()
    bad = _probe(1, fail="permanent")
    _write([_probe(0), bad])
    assert _deliver() == 2
    worker = workers(name)
    _caught_up(worker, group_for(name))
    client.force_login(_staff())

    # when
    listing = client.get(f"/admin/pipeline/dlq/{TOPIC}/")
    filtered = client.get(f"/admin/pipeline/dlq/{TOPIC}/", {"consumer": "someone-else"})
    unknown = client.get("/admin/pipeline/dlq/no-such-topic/")

    # then
    assert listing.status_code == 200
    (row,) = listing.context["rows"]
    letter = row["letter"]
    assert (letter.consumer, letter.original_event_id, letter.event_type, letter.attempts,
            row["status"]) == (name, str(bad.event_id), EVENT_TYPE, 1, "pending")
    assert "probe 1 can never succeed" in letter.reason
    assert str(bad.event_id) in listing.content.decode()
    assert filtered.context["rows"] == []
    assert unknown.status_code == 404


def test_the_page_is_refused_to_anonymous_and_non_staff_users(client):
    # given
    plain = get_user_model().objects.create_user(username="plain", email="plain@x.test",
                                                 password="x-Secret-9")
    unprivileged = _staff(permission=False)
    # when / then: anonymous and non-staff go to the admin login
    for user in (None, plain):
        if user is not None:
            client.force_login(user)
        for url in ("/admin/pipeline/", f"/admin/pipeline/dlq/{TOPIC}/"):
            response = client.get(url)
            assert response.status_code == 302, url
            assert response["Location"].startswith("/admin/login/?next=/admin/pipeline/")
    # staff without the relay permission are refused outright
    client.force_login(unprivileged)
    assert client.get("/admin/pipeline/").status_code == 403
    assert client.get(f"/admin/pipeline/dlq/{TOPIC}/").status_code == 403
    assert b'href="/admin/pipeline/"' not in client.get("/admin/").content


def test_the_admin_index_links_to_the_page(client):
    client.force_login(_staff())
    index = client.get("/admin/")
    assert index.status_code == 200
    assert b'<a href="/admin/pipeline/" class="section"' in index.content


def test_a_broker_that_is_down_shows_as_down_without_asking_it_more(client, settings):
    # given: a broker address where nothing listens
    settings.KAFKA_BROKERS = "127.0.0.1:1"
    settings.HEALTH_CHECK_TIMEOUT = 1.0
    client.force_login(_staff())
    # when
    response = client.get("/admin/pipeline/")
    # then: the health check's answer, and no topic or group request behind it
    assert response.status_code == 200
    checks = {c.name: c for c in response.context["checks"]}
    assert (checks["database"].up, checks["kafka"].up) == (True, False)
    assert response.context["errors"]["kafka"].startswith("Kafka is down: ")
    assert (response.context["topics"], response.context["groups"],
            response.context["dead_letters"]) == ([], [], [])
    assert b"Kafka is down: " in response.content


# --- the state at a glance, without Prometheus, and the runbook ----------------------------


def test_a_group_with_records_waiting_and_no_consumer_is_red_with_its_runbook_link(
        all_topics, client, settings):
    # given: 4 probes delivered to analytics-events, whose `analytics` consumer never ran
    settings.PROMETHEUS_URL = ""
    _write([_probe(i, key=f"k{i}") for i in range(4)])
    assert _deliver() == 4
    client.force_login(_staff())
    # when
    response = client.get("/admin/pipeline/")
    # then: the light names the group, the records waiting and the runbook section
    lights = {(light.kind, light.name): light for light in response.context["lights"]}
    analytics = lights[("group", "analytics")]
    waiting = re.fullmatch(r"no consumer running; (\d+) records wait", analytics.reason)
    assert analytics.level == "bad" and waiting, analytics
    # the 4 records plus the relay's commit markers (one per partition written, per Kafka
    # transaction; markers land a moment after the commit returns, so not compared exactly)
    assert 4 <= int(waiting.group(1)) <= 4 + 3 * 4
    assert lights[("shard", "0/1")].reason == "all delivered"
    assert response.context["worst"] == "bad"
    html = response.content.decode()
    assert ('<a class="runbook" href="/admin/pipeline/runbook/#2-messages-not-consumed">'
            in html)
    # and the link lands on that section of the runbook
    runbook = client.get("/admin/pipeline/runbook/")
    assert runbook.status_code == 200
    assert '<h2 id="2-messages-not-consumed">2. Messages not consumed</h2>' in \
        runbook.content.decode()


def test_without_prometheus_the_page_says_so_and_keeps_its_lights_and_tables(client, settings):
    settings.PROMETHEUS_URL = ""
    client.force_login(_staff())
    response = client.get("/admin/pipeline/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "No Prometheus is configured (PROMETHEUS_URL is empty), so there are no charts" in html
    assert response.context["history_charts"] == []
    kinds = {light.kind for light in response.context["lights"]}
    assert {"kafka", "database", "shard", "group"} <= kinds
    assert 'id="relay-shards"' in html and 'id="groups"' in html


def test_a_prometheus_that_does_not_answer_is_named_on_the_page(client, settings):
    # given: a PROMETHEUS_URL where nothing listens
    from .prometheus_support import free_port

    url = f"http://127.0.0.1:{free_port()}"
    settings.PROMETHEUS_URL = url
    client.force_login(_staff())
    # when
    html = client.get("/admin/pipeline/?range=1d").content.decode()
    # then
    assert (f"No charts: Prometheus at {url} did not answer (ConnectionError); start it "
            "(`scripts/services up prometheus` locally) or correct PROMETHEUS_URL.") in html
    assert 'id="relay-shards"' in html


def test_the_runbook_page_is_for_signed_in_staff(client):
    response = client.get("/admin/pipeline/runbook/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/?next=/admin/pipeline/runbook/")
    client.force_login(_staff(permission=False))
    html = client.get("/admin/pipeline/runbook/").content.decode()
    assert '<h2 id="8-relay-down-or-fenced">8. Relay down or fenced</h2>' in html
    assert "<table>" in html  # the alerts' table is rendered, not left as Markdown
