"""End to end on the real broker: API requests → outbox → relay → Kafka, read back with
read_committed. The record key is the aggregate id, the headers are CloudEvents, and no code
or secret is readable on the topics."""

from __future__ import annotations

import json

import pytest

from accounts.tests.fixtures import PASSWORD, client_for
from outbox.events.sms_events import unseal
from relay.engine import Relay
from relay.kafka import topic_name
from relay.testing import delete_topics, read_all
from relay.tests.relay_helpers import create_relay_topics, drain

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def topics(kafka_prefix):
    names = create_relay_topics(partitions=1)
    yield names
    delete_topics(names)


def test_api_events_reach_kafka_keyed_by_aggregate_with_cloudevent_headers(topics):
    # given: a user registers, logs in, asks for a phone code, posts, and another user likes
    anon = client_for(None)
    assert anon.post("/api/auth/register/", {"username": "ana", "password": PASSWORD}
                     ).status_code == 201
    login = anon.post("/api/auth/login/", {"login": "ana", "password": PASSWORD}).json()
    ana_id = login["user"]["id"]
    ana = client_for(None)
    ana.credentials(HTTP_AUTHORIZATION=f"Bearer {login['access']}")
    assert ana.post("/api/me/phone/code/", {"phone": "+14155550142"}).status_code == 202
    post_id = ana.post("/api/posts/", {"text": "to kafka"}).json()["id"]
    anon.post("/api/auth/register/", {"username": "ben", "password": PASSWORD})
    ben = anon.post("/api/auth/login/", {"login": "ben", "password": PASSWORD}).json()
    liker = client_for(None)
    liker.credentials(HTTP_AUTHORIZATION=f"Bearer {ben['access']}")
    assert liker.post(f"/api/posts/{post_id}/like/").status_code == 200
    # when
    relay = Relay(use_lock=False)
    relay.start()
    try:
        drain(relay)
    finally:
        relay.close()
    # then
    users = read_all([topic_name("user-events")])
    posts = read_all([topic_name("post-events")])
    sms = read_all([topic_name("sms-events")])
    assert [(r.key.decode(), r.header("ce_type")) for r in users if
            r.key.decode() == str(ana_id)] == [
        (str(ana_id), "user.registered"), (str(ana_id), "user.logged_in")]
    assert [(r.key.decode(), r.header("ce_type")) for r in posts] == [
        (str(post_id), "post.created"), (str(post_id), "post.liked")]
    liked = json.loads(posts[1].value)
    assert (liked["post_id"], liked["author_id"], liked["actor_id"]) == (
        post_id, ana_id, ben["user"]["id"])
    assert posts[1].header("ce_specversion") == "1.0"
    assert posts[1].header("content-type") == "application/json"
    [otp] = sms
    assert otp.key.decode() == "+14155550142"
    code = unseal(json.loads(otp.value)["secret"])
    assert code not in otp.value.decode()
    everything = b"".join((r.value or b"") + b"".join(r.headers.values())
                          for r in users + posts + sms)
    assert PASSWORD.encode() not in everything
    assert login["access"].encode() not in everything
    assert login["refresh"].encode() not in everything
