"""The gate's Lua scripts against a real Redis."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from shared.clients import make_redis
from shared.gate import Gate
from shared.keys import Keys
from shared.settings import Settings
from tests.conftest import REDIS_URL


@pytest.fixture
def client(services: None) -> Iterator[redis.Redis]:
    yield make_redis(Settings(redis_url=REDIS_URL))


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
    old.write(9, "completed", 7, 2)
    new = Gate(client, gate.keys, epoch="new-database")
    assert new.write(9, "running", 1, 2) == 1  # a recreated database starts again at 1
    state = new.read(9)
    assert state is not None and (state.status, state.version) == ("running", 1)
    assert old.write(9, "paused", 5, 2) == 5  # and back: epochs differ, the writer wins
    assert new.write(9, "running", 2, 2) == 2
    assert new.write(9, "paused", 1, 2) == 2  # same database: the CAS holds
