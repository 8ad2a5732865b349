"""The gate's Lua scripts against a real Redis, one node and a cluster."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from shared.clients import make_redis
from shared.gate import Drain, Gate
from shared.keys import Keys
from shared.settings import Settings
from tests.conftest import REDIS_CLUSTER_NODES, REDIS_URL


@pytest.fixture
def client(services: None, redis_engine: dict[str, str]) -> Iterator[redis.Redis]:
    """Each test runs on one Redis node and on a Redis Cluster."""
    nodes = redis_engine.get("redis_cluster_nodes", REDIS_CLUSTER_NODES)
    yield make_redis(Settings(redis_url=REDIS_URL, redis_cluster_nodes=nodes))


@pytest.fixture
def gate(client: redis.Redis) -> Iterator[Gate]:
    keys = Keys("t" + uuid.uuid4().hex[:10])
    yield Gate(client, keys)
    for key in client.scan_iter(f"{keys.namespace}:*"):
        client.delete(key)


def test_a_lower_version_never_overwrites_a_higher_one(gate):
    assert gate.write(7, "paused", 5, 4) == 5
    assert gate.write(7, "running", 4, 4) == 5  # a late, older write: ignored
    state = gate.read(7)
    assert state is not None and (state.status, state.version) == ("paused", 5)
    assert gate.write(7, "running", 6, 2) == 6
    state = gate.read(7)
    assert state is not None and (state.status, state.version, state.max_concurrency) == (
        "running",
        6,
        2,
    )
    assert 7 in gate.campaign_ids()


def test_every_key_of_a_campaign_shares_one_hash_tag():
    keys = Keys("dg")
    tags = {
        k[k.index("{") : k.index("}") + 1] for k in (keys.gate(42), keys.leases(42), keys.acks(42))
    }
    assert tags == {"{c:42}"}


def test_a_claim_is_denied_when_the_gate_is_missing_closed_behind_or_full(gate):
    assert gate.claim(1, 10, "w", 0, 30_000).reason == "gate_missing"
    gate.write(1, "paused", 3, 1)
    assert gate.claim(1, 10, "w", 0, 30_000).reason == "paused"
    gate.write(1, "running", 4, 1)
    # This worker heard of version 5 (a broadcast): a gate at 4 is behind, so no dial.
    assert gate.claim(1, 10, "w", 5, 30_000).reason == "gate_behind"
    first = gate.claim(1, 10, "w", 4, 30_000)
    assert first.ok and first.version == 4 and first.lease_id
    assert gate.claim(1, 11, "w", 4, 30_000).reason == "concurrency"
    assert gate.inflight(1) == 1
    gate.release(1, first.lease_id)
    assert gate.inflight(1) == 0
    # The placement is over, the call is not: its line is still taken.
    assert gate.claim(1, 11, "w", 4, 30_000).reason == "lines"
    gate.end_lines(1, [10])
    assert gate.claim(1, 11, "w", 4, 30_000).ok


def test_an_emergency_stop_denies_every_claim_and_gives_the_lease_back(gate):
    gate.write(2, "running", 1, 5)
    gate.set_estop("test")
    assert gate.claim(2, 1, "w", 0, 30_000).reason == "estop"
    assert gate.inflight(2) == 0
    assert gate.lift_estop()
    assert gate.claim(2, 1, "w", 0, 30_000).ok


def test_a_crashed_workers_lease_expires_and_a_drain_waits_for_live_leases(gate):
    gate.write(3, "running", 1, 2)
    held = gate.claim(3, 1, "w", 0, 300)
    assert held.ok
    d = gate.drain(3, timeout=0.05)
    assert (d.drained, d.inflight) == (False, 1) and d.drain_ms >= 50
    time.sleep(0.35)  # the lease's 300 ms are over: its worker is presumed dead
    d = gate.drain(3, timeout=1)
    assert d.drained and d.inflight == 0


def test_one_claim_grants_leases_to_as_many_attempts_as_there_is_room_for(client, gate):
    gate.write(4, "running", 1, 4, max_lines=100)
    first = gate.claim_many(4, [1, 2, 3], "w", 0, 30_000)
    assert (first.reason, [lease.split(":")[0] for lease in first.leases]) == (
        "ok",
        ["1", "2", "3"],
    )
    # One slot left of four: the first attempt in order gets it, the other waits for room.
    second = gate.claim_many(4, [4, 5], "w", 0, 30_000)
    assert (second.reason, [lease.split(":")[0] for lease in second.leases]) == (
        "concurrency",
        ["4"],
    )
    # Release and claim in one round trip (fetch-next): the freed slot is claimed at once.
    third = gate.claim_many(4, [5], "w", 0, 30_000, release=first.leases[:1])
    assert third.reason == "ok" and gate.inflight(4) == 4
    # The trunk's calls per second cut a claim too, and what it refused is given back.
    trunk = Gate(client, gate.keys, provider_cps=2)
    trunk.write(11, "running", 1, 100, max_lines=100)
    cut = trunk.claim_many(11, [6, 7, 8], "w", 0, 30_000)
    assert (cut.reason, len(cut.leases), trunk.inflight(11), trunk.lines(11)) == ("cps", 2, 2, 2)


def test_room_says_whether_a_claim_could_be_granted_without_taking_anything(gate):
    assert gate.room(12, 0) == "gate_missing"
    gate.write(12, "running", 2, 1, max_lines=100)
    assert gate.room(12, 3) == "gate_behind"
    assert gate.room(12, 2) == "ok"
    assert gate.room(12, 2) == "ok"  # nothing was taken
    held = gate.claim_many(12, [1], "w", 2, 30_000)
    assert gate.room(12, 2) == "concurrency"
    gate.write(12, "paused", 3, 1, max_lines=100)
    assert gate.room(12, 0) == "paused"
    gate.release(12, *held.leases)


def test_the_last_lease_of_a_closed_gate_wakes_the_drain_and_a_freed_slot_wakes_a_waiter(
    client, gate
):
    gate.write(10, "running", 1, 1, max_lines=100)
    held = gate.claim_many(10, [1], "w", 0, 30_000)
    gate.write(10, "paused", 2, 1, max_lines=100)
    results: list[object] = []
    waiter = threading.Thread(target=lambda: results.append(gate.drain(10, timeout=5)))
    waiter.start()
    time.sleep(0.02)
    gate.release(10, *held.leases)
    waiter.join(5)
    d = results[0]
    assert isinstance(d, Drain) and d.drained and d.drain_ms < 1000
    gate.write(10, "running", 3, 1, max_lines=100)
    held = gate.claim_many(10, [2], "w", 0, 30_000)
    assert gate.claim_many(10, [3], "w", 0, 30_000).reason == "concurrency"
    client.delete(gate.keys.freed(10))  # wake only on what this test gives back
    threading.Timer(0.05, lambda: gate.release(10, *held.leases)).start()
    started = time.perf_counter()
    gate.wait_freed(10, timeout=5)
    assert time.perf_counter() - started < 1
    assert gate.claim_many(10, [3], "w", 0, 30_000).leases


def test_lines_count_live_calls_beyond_placement_and_expire_when_their_end_never_comes(gate):
    gate.write(5, "running", 1, 10, max_lines=2)
    first = gate.claim(5, 1, "w", 0, 30_000, line_ttl_ms=200)
    second = gate.claim(5, 2, "w", 0, 30_000, line_ttl_ms=60_000)
    gate.release(5, first.lease_id)
    gate.release(5, second.lease_id)
    assert (gate.inflight(5), gate.lines(5)) == (0, 2)
    assert gate.claim(5, 3, "w", 0, 30_000).reason == "lines"
    time.sleep(0.25)  # the first call's end never came: its line expires, and says so
    third = gate.claim(5, 3, "w", 0, 30_000)
    assert third.ok and third.lines_expired == 1
    assert gate.lines(5) == 2


def test_a_claim_denied_after_it_was_granted_gives_back_lease_line_and_token(gate):
    gate.write(6, "running", 1, 10, max_lines=1, max_cps=1)
    c = gate.claim(6, 1, "w", 0, 30_000)
    assert c.ok
    gate.give_back(6, [1], [str(c.lease_id)])
    assert (gate.inflight(6), gate.lines(6)) == (0, 0)
    assert gate.claim(6, 2, "w", 0, 30_000).ok  # the token came back too


def test_calls_per_second_are_limited_per_campaign_with_the_wait_until_the_next_token(gate):
    gate.write(7, "running", 1, 100, max_lines=100, max_cps=3)
    granted = [gate.claim(7, n, "w", 0, 30_000) for n in range(1, 5)]
    assert [c.ok for c in granted] == [True, True, True, False]
    assert granted[3].reason == "cps" and 0 < granted[3].retry_after_ms <= 1050 + 1
    time.sleep(granted[3].retry_after_ms / 1000)
    assert gate.claim(7, 5, "w", 0, 30_000).ok


def test_the_trunks_calls_per_second_hold_across_campaigns(client, gate):
    trunk = Gate(client, gate.keys, provider_cps=2)
    for cid in (8, 9):
        trunk.write(cid, "running", 1, 100, max_lines=100)
    results = [trunk.claim(cid, n, "w", 0, 30_000) for n, cid in enumerate((8, 9, 8, 9), 1)]
    assert [c.reason for c in results] == ["ok", "ok", "cps", "cps"]
    # a refusal by the trunk gave the campaign's claim back
    assert (trunk.inflight(8), trunk.lines(8), trunk.inflight(9), trunk.lines(9)) == (1, 1, 1, 1)


def test_a_redis_that_cannot_be_reached_denies_the_claim(services):
    keys = Keys("tunreach")
    g = Gate(make_redis(Settings(redis_url="redis://127.0.0.1:1/0", redis_timeout=0.2)), keys)
    assert g.claim(1, 1, "w", 0, 1000).reason == "redis_error"


def test_acknowledged_versions_only_go_up(gate):
    gate.ack(4, "w1", 3)
    gate.ack(4, "w1", 2)
    gate.ack(4, "w2", 1)
    assert gate.propagation([4]) == {4: (None, {"w1": 3, "w2": 1})}


def test_a_gate_left_by_another_database_is_overwritten_whatever_its_version(gate, client):
    old = Gate(client, gate.keys, epoch="old-database")
    old.write(9, "running", 7, 2)
    assert old.claim(9, 1, "w", 7, 30_000).ok  # a call of the old database, never ended
    new = Gate(client, gate.keys, epoch="new-database")
    assert new.write(9, "running", 1, 2) == 1  # a recreated database starts again at 1
    state = new.read(9)
    assert state is not None and (state.status, state.version) == ("running", 1)
    # The old database's leases and lines are not the new one's campaign 9's.
    assert (new.inflight(9), new.lines(9), new.room(9, 1)) == (0, 0, "ok")
    assert old.write(9, "paused", 5, 2) == 5  # and back: epochs differ, the writer wins
    assert new.write(9, "running", 2, 2) == 2
    assert new.write(9, "paused", 1, 2) == 2  # same database: the CAS holds
