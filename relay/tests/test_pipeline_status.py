"""The lights of the Event pipeline page from given figures: which group is behind and since
when, a shard nobody delivers, a long transaction, a broker down. (The page itself, with real
PostgreSQL, Kafka and Prometheus, is tested in test_pipeline_history.py.)"""

from __future__ import annotations

from dataclasses import dataclass

from relay import pipeline_status as ps
from relay.history import WINDOWS, History
from relay.monitoring import KafkaState
from relay.selectors import ShardState

NOW = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC


@dataclass
class Check:
    name: str
    up: bool
    detail: str = "ok"


CHECKS = [Check("database", True), Check("kafka", True), Check("redis", True)]


def _history(series=None, active=None) -> History:
    return History(window=WINDOWS["1h"], configured=True, url="http://prometheus:9090",
                   series=series or {}, relay_active=active, end=NOW)


def _shard(*, backlog=0, age=0.0, shard=0, shards=1) -> ShardState:
    return ShardState(shards=shards, shard=shard, txid=1, last_id=1, last_commit_at=None,
                      events_total=10, backlog=backlog, lag_seconds=age)


def _kafka(lag: dict[str, int], members: dict[str, int], **kw) -> KafkaState:
    return KafkaState(brokers=3, partitions={"post-events": 6},
                      under_replicated=kw.get("under", {"post-events": 0}),
                      offline=kw.get("offline", {"post-events": 0}),
                      group_lag={(c, "post-events"): n for c, n in lag.items()},
                      group_members=members, dead_letters=kw.get("dead", {}))


def _by_name(lights):
    return {(light.kind, light.name): light for light in lights}


def _minutes(*values, end=NOW, step=60):
    """Samples one minute apart, the last one at `end`."""
    return [(end - step * (len(values) - 1 - i), float(v)) for i, v in enumerate(values)]


def test_a_group_behind_and_growing_for_twelve_minutes_is_red_and_says_since_when():
    # given: analytics 0 until 12 minutes ago, then 40 more records behind every minute
    lag = _minutes(0, *(40 * i for i in range(1, 14)))
    kafka = _kafka({"analytics": 520, "coins": 0}, {"analytics": 2, "coins": 1})
    # when
    lights = _by_name(ps.lights(checks=CHECKS, shards=[_shard()], holder=None, kafka=kafka,
                                history=_history({"consumer-lag": {"analytics": lag}}),
                                now=NOW))
    # then
    light = lights[("group", "analytics")]
    assert (light.level, light.reason, light.anchor) == (
        ps.BAD, "lag growing for 12 min (520 records)", "4-consumer-lag")
    assert light.since_text == "07:48 UTC"
    assert lights[("group", "coins")].level == ps.OK


def test_a_group_growing_for_three_minutes_is_amber():
    lag = _minutes(*([0] * 10), 150, 300, 450, 600)
    kafka = _kafka({"analytics": 600}, {"analytics": 1})
    light = _by_name(ps.group_lights(kafka, _history({"consumer-lag": {"analytics": lag}}),
                                     NOW))[("group", "analytics")]
    assert (light.level, light.reason) == (ps.WARN, "lag growing for 3 min (600 records)")


def test_a_burst_being_worked_off_is_amber_and_says_so():
    lag = _minutes(0, 5000, 4000, 3000, 2000)
    kafka = _kafka({"media": 2000}, {"media": 1})
    light = _by_name(ps.group_lights(kafka, _history({"consumer-lag": {"media": lag}}),
                                     NOW))[("group", "media")]
    assert (light.level, light.reason) == (ps.WARN,
                                           "2000 records behind for 3 min and shrinking")


def test_records_waiting_for_a_group_without_members_are_red_even_without_prometheus():
    kafka = _kafka({"coins": 7}, {"coins": 0})
    history = History(window=WINDOWS["1h"], configured=False, url="")
    light = _by_name(ps.group_lights(kafka, history, NOW))[("group", "coins")]
    assert (light.level, light.reason, light.anchor, light.since) == (
        ps.BAD, "no consumer running; 7 records wait", "2-messages-not-consumed", None)


def test_a_small_lag_is_in_flight_and_no_lag_is_caught_up():
    kafka = _kafka({"a": 12, "b": 0}, {"a": 1, "b": 2})
    lights = _by_name(ps.group_lights(kafka, _history(), NOW))
    assert (lights[("group", "a")].level, lights[("group", "a")].reason) == (
        ps.OK, "12 records in flight")
    assert lights[("group", "b")].reason == "caught up (2 members)"


def test_a_shard_nobody_delivers_is_red_whatever_its_backlog():
    # given: Prometheus sees a delivering relay for shard 1/2 and only a standby for 0/2
    shards = [_shard(shard=0, shards=2, backlog=4, age=20), _shard(shard=1, shards=2)]
    lights = _by_name(ps.shard_lights(shards, _history(active={"0/2": 0.0, "1/2": 1.0}), NOW))
    assert lights[("shard", "0/2")].level == ps.BAD
    assert lights[("shard", "0/2")].reason == (
        "no relay delivers this shard (down, fenced, or only standbys); 4 events wait, the "
        "oldest 20 s")
    assert lights[("shard", "0/2")].anchor == "8-relay-down-or-fenced"
    assert (lights[("shard", "1/2")].level, lights[("shard", "1/2")].reason) == (
        ps.OK, "all delivered")


def test_a_shard_whose_oldest_event_ages_is_amber_then_red_with_since_when():
    ages = _minutes(0, 30, 90, 150, 210, 270, 330, 390)
    warn = _by_name(ps.shard_lights([_shard(backlog=9, age=90)],
                                    _history({"backlog-age": {"0/1": ages[:3]}},
                                             active={"0/1": 1.0}), NOW))[("shard", "0/1")]
    assert (warn.level, warn.reason, warn.anchor) == (
        ps.WARN, "oldest undelivered event 90 s old (9 wait)", "3-high-latency")
    bad = _by_name(ps.shard_lights([_shard(backlog=9, age=390)],
                                   _history({"backlog-age": {"0/1": ages}},
                                            active={"0/1": 1.0}), NOW))[("shard", "0/1")]
    assert (bad.level, bad.reason) == (ps.BAD, "oldest undelivered event 6 min old (9 wait)")
    assert bad.since == NOW - 5 * 60  # from the first minute over a minute old


def test_a_transaction_open_for_six_minutes_is_amber_with_its_pid():
    holder = {"pid": 4242, "age_seconds": 361.0, "state": "idle in transaction"}
    light = _by_name(ps.dependency_lights(CHECKS, None, holder))[("database", "PostgreSQL")]
    assert (light.level, light.reason, light.anchor) == (
        ps.WARN, "oldest open transaction 6 min (pid 4242, idle in transaction)",
        "6-a-long-open-transaction")


def test_kafka_down_under_replicated_or_without_leaders():
    down = [Check("database", True), Check("kafka", False, "no broker answered")]
    assert _by_name(ps.dependency_lights(down, None, None))[("kafka", "Kafka")].reason == \
        "down: no broker answered"
    under = _kafka({}, {}, under={"post-events": 2})
    light = _by_name(ps.dependency_lights(CHECKS, under, None))[("kafka", "Kafka")]
    assert (light.level, light.reason) == (ps.WARN, "2 partitions under-replicated (3 brokers)")
    offline = _kafka({}, {}, offline={"post-events": 1}, under={"post-events": 1})
    assert _by_name(ps.dependency_lights(CHECKS, offline, None))[("kafka", "Kafka")].level == \
        ps.BAD


def test_dead_letters_kept_are_amber_and_new_ones_are_named():
    kafka = _kafka({}, {}, dead={"post-events": 3, "sms-events": 0})
    history = _history({"dead-letters": {"post-events": _minutes(1, 1, 3)}})
    light = ps.dead_letter_light(kafka, history)
    assert (light.level, light.reason) == (
        ps.WARN, "kept: 3 in post-events; new in the last hour: 2 in post-events")
    assert ps.dead_letter_light(_kafka({}, {}, dead={"post-events": 0}), history).level == ps.OK


def test_durations_read_like_a_person_would_say_them():
    assert [ps.duration(s) for s in (4, 119, 300, 3599, 4320, 86400 + 7200)] == [
        "4 s", "119 s", "5 min", "60 min", "1 h 12 min", "1 d 2 h"]


def test_events_set_aside_are_amber_and_link_to_their_section():
    lights = _by_name(ps.lights(checks=CHECKS, shards=[_shard()], holder=None, kafka=None,
                                history=_history(), now=NOW, set_aside=2))
    light = lights[("set-aside", "Set-aside events")]
    assert (light.level, light.reason, light.anchor) == (
        ps.WARN, "2 events too large for Kafka, not delivered (admin: Relay > Set-aside events)",
        "9-events-set-aside-too-large-for-kafka")
    quiet = ps.lights(checks=CHECKS, shards=[_shard()], holder=None, kafka=None,
                      history=_history(), now=NOW)
    assert "set-aside" not in {light.kind for light in quiet}
