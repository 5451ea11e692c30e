"""The consumer runtime as a real process: kill -9 at random moments, SIGTERM, and partitions
moving between two members of one group. Each effect must be applied exactly once.

The consumer subprocesses run `manage.py consume` against this test's database and topics, with
the probe handler of `consumer_support` registered under a test-only consumer name.
"""

from __future__ import annotations

import contextlib
import random
import re
import threading
import time
import uuid
from collections import Counter

import pytest
from django.db import connections

from relay import testing as kt
from relay.cli import groups_describe
from relay.models import InboxEntry

from . import consumer_support as cs
from .consumer_support import TOPIC, effects, group_of, probes

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

effects_table, topics = cs.effects_table, cs.topics


def _consumer(name: str, log_dir, *extra: str, **env: str) -> kt.ManageProcess:
    env = {"RELAY_TEST_CONSUMER": name, "CONSUMER_SUMMARY_INTERVAL": "0.2",
           "CONSUMER_SESSION_TIMEOUT_MS": "6000", **env}
    return kt.ManageProcess(["consume", TOPIC, "--consumer", name, "--poll-timeout", "0.2",
                             *extra], imports=[cs.__name__], log_dir=log_dir, **env)


def _wait_for_effects(n: int, name: str, timeout: float = 90, procs=()) -> None:
    deadline = time.monotonic() + timeout
    while len(effects(name)) < n:
        for p in procs:
            if p.proc.poll() is not None:
                raise AssertionError(f"consumer exited ({p.proc.returncode}):\n{p.output()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(effects(name))} of {n} effects after {timeout}s")
        time.sleep(0.05)


def _duplicates_seen(*procs: kt.ManageProcess) -> int:
    """Records each process found already applied (its last summary line)."""
    total = 0
    for p in procs:
        found = re.findall(r"duplicates (\d+)", p.output())
        total += int(found[-1]) if found else 0
    return total


def _assert_exactly_once(name: str, ids: list[uuid.UUID]) -> None:
    counts = Counter(event_id for event_id, _ in effects(name))
    twice = {e: c for e, c in counts.items() if c > 1}
    assert not twice, f"applied more than once: {twice}"
    missing = {str(i) for i in ids} - set(counts)
    assert not missing, f"{len(missing)} events never applied, e.g. {sorted(missing)[:3]}"
    assert len(counts) == len(ids)
    assert InboxEntry.objects.filter(consumer=name).count() == len(ids)


def _applied_by(pid: int) -> int:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {cs.EFFECTS} WHERE pid = %s", [pid])  # noqa: S608
        return cur.fetchone()[0]


def test_every_effect_is_applied_exactly_once_across_20_kill_9s_during_a_20000_event_stream(
        topics, effects_table, tmp_path):
    # given: a stream of 20,000 events produced while two consumer processes of one group
    # apply them with a batch handler (a short pause after each DB commit, as a handler that
    # enqueues work on commit has, widens the window between the DB and the Kafka commit)
    name = f"test-kill-{uuid.uuid4().hex[:6]}"
    total, kills = 20_000, 20
    ids: list[uuid.UUID] = []
    streamed = threading.Event()

    def stream() -> None:
        try:
            for start in range(0, total, 1000):
                ids.extend(kt.produce_events(probes(1000, keys=24, start=start),
                                             per_transaction=250))
                time.sleep(0.5)
        finally:
            streamed.set()
            connections.close_all()

    def start_member(member: str) -> kt.ManageProcess:
        # Static membership: a restarted member takes its partitions back at once.
        return _consumer(name, tmp_path, "--instance-id", f"kill-{member}",
                         RELAY_TEST_BATCH="1", RELAY_TEST_AFTER_COMMIT_PAUSE="0.02")

    producer = threading.Thread(target=stream)
    producer.start()
    members = {"a": start_member("a"), "b": start_member("b")}
    procs = list(members.values())
    rng = random.Random()
    landed = []
    try:
        # when: the k-th time k/22 of the stream is applied, a member that has applied
        # events since it started is killed -9 at a random moment, and restarted
        for k in range(1, kills + 1):
            _wait_for_effects(k * total // (kills + 2), name, procs=members.values())
            deadline = time.monotonic() + 60
            while not (working := [m for m in sorted(members)
                                   if _applied_by(members[m].proc.pid) > 0]):
                assert time.monotonic() < deadline, "no member applies anything"
                time.sleep(0.05)
            member = rng.choice(working)
            victim = members[member]
            time.sleep(rng.uniform(0, 0.1))
            victim.kill9()
            progress = _applied_by(victim.proc.pid)
            backlog = total - len(effects(name))
            landed.append((progress, backlog))
            members[member] = start_member(member)
            procs.append(members[member])
        producer.join(120)
        assert streamed.is_set() and len(ids) == total
        _wait_for_effects(total, name, timeout=180, procs=members.values())
    finally:
        producer.join(120)
        for p in members.values():
            if p.proc.poll() is None:
                # A member restarted after the last kill may still be starting: a SIGTERM
                # before its handler is installed ends it with -15, which says nothing about
                # the stream. (On a failure above, the wait gives up and the assertion below
                # reports the member's output.)
                with contextlib.suppress(AssertionError):
                    p.wait_for("assigned", timeout=60)
                assert p.terminate() == 0, p.output()
    # then: each kill landed mid-stream (the victim had applied events, others remained)
    assert len(landed) == kills
    assert all(progress > 0 and backlog > 0 for progress, backlog in landed), landed
    _assert_exactly_once(name, ids)
    # and kills landed between a database commit and the Kafka commit: records came again
    # and the inbox skipped them
    assert _duplicates_seen(*procs) > 0


def test_sigterm_finishes_the_batch_commits_and_leaves_the_group(topics, effects_table,
                                                                 tmp_path):
    # given: a consumer busy with 2000 records (no transaction markers: offsets count records)
    name = f"test-term-{uuid.uuid4().hex[:6]}"
    kt.produce_events(probes(2000), transactional=False)
    p = _consumer(name, tmp_path, "--batch-size", "20")
    _wait_for_effects(200, name, procs=[p])
    # when
    rc = p.terminate()
    # then: exit 0, every applied record committed, nothing half-done, the group left
    assert rc == 0, p.output()
    assert "Traceback" not in p.output()
    applied = len(effects(name))
    assert applied < 2000
    group = groups_describe(group_of(name))
    assert sum(part.committed or 0 for part in group.partitions) == applied
    assert group.members == 0
    assert InboxEntry.objects.filter(consumer=name).count() == applied


def test_partitions_moving_between_two_consumers_never_double_apply_or_miss(
        topics, effects_table, tmp_path):
    # given: one consumer name, two processes in its group, events arriving meanwhile
    name = f"test-group-{uuid.uuid4().hex[:6]}"
    ids = kt.produce_events(probes(600, keys=12), per_transaction=50)
    a = _consumer(name, tmp_path, "--batch-size", "20")
    _wait_for_effects(100, name, procs=[a])
    # when: b joins (partitions move from a to b)
    b = _consumer(name, tmp_path, "--batch-size", "20")
    ids += kt.produce_events(probes(600, keys=12, start=600), per_transaction=50)
    b.wait_for("assigned")
    _wait_for_effects(700, name, procs=[a, b])
    # a leaves on SIGTERM (its partitions move to b), comes back (they move again)
    assert a.terminate() == 0, a.output()
    ids += kt.produce_events(probes(400, keys=12, start=1200), per_transaction=50)
    a2 = _consumer(name, tmp_path, "--batch-size", "20")
    a2.wait_for("assigned")
    # and b is killed -9 mid-stream (its partitions move to a2 after the session timeout)
    _wait_for_effects(min(1600, len(effects(name)) + 100), name, procs=[a2, b])
    b.kill9()
    _wait_for_effects(1600, name, timeout=120, procs=[a2])
    assert a2.terminate() == 0, a2.output()
    # then
    _assert_exactly_once(name, ids)
    assert "revoked" in a.output() and "assigned" in b.output()
