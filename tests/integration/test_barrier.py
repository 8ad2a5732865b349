"""Pause is a barrier across every worker (invariant 4), proved against real services."""

from __future__ import annotations

import json
import os
import random
import signal
import time

from tests.support.stack import TestStack, wait_for


def settle(stack: TestStack, cid: int) -> dict:
    """Wait until no contact of the paused campaign is queued or dialing any more."""
    return wait_for(
        lambda: (
            (c := stack.campaign(cid))["counts"]["queued"] == 0
            and c["counts"]["dialing"] == 0
            and c
        ),
        60,
        "queued dials to be parked",
        every=0.2,
    )


def test_a_dial_held_after_the_gate_makes_pause_answer_undrained_and_is_the_last_call(
    make_stack, redis_engine
):
    stack = make_stack(sim_latency_ms=1, **redis_engine).start()
    hold = stack.tmp / "hold"
    stack.start_worker(threads=1)
    stack.wait_workers(1)
    cid = stack.make_campaign(contacts=50, max_concurrency=1)
    stack.wait_calls(3)
    hold.touch()  # the next dial passes the gate, then waits just before the provider call
    wait_for(
        lambda: stack.campaign(cid)["inflight"] == 1 and len(stack.calls()) >= 3,
        10,
        "a dial held with its lease",
    )
    time.sleep(0.3)
    held_at = len(stack.calls())

    resp = stack.http.post(f"/api/v1/campaigns/{cid}/pause?drain_timeout=0.3")
    paused = resp.json()
    assert paused["status"] == "paused"
    assert paused["gate"] == {**paused["gate"], "closed": True, "drained": False, "inflight": 1}
    assert 300 <= paused["gate"]["drain_ms"] < 1500

    hold.unlink()  # the held dial is placed now, after the answer said it was in flight
    wait_for(lambda: len(stack.calls()) == held_at + 1, 10, "the held call")
    settle(stack, cid)
    time.sleep(0.5)
    assert len(stack.calls()) == held_at + 1, "a call other than the held one went out"

    stack.act(cid, "resume")
    stack.wait_calls(held_at + 5)
    again = stack.act(cid, "pause")
    assert again["gate"]["drained"] is True
    report = stack.check_calls({cid})
    # The undrained pause is not a closing the checker holds against the held call; the
    # drained one is, and nothing went out after it.
    assert report.late == [] and report.doubled == []
    calls = stack.calls()
    first_pause_version = paused["version"]
    after_first = [c for c in calls if c["gate_version"] >= first_pause_version]
    assert all(c["gate_version"] == first_pause_version + 1 for c in after_first)


def test_hundreds_of_random_pauses_under_load_let_no_call_through_and_lose_nothing(
    make_stack, redis_engine
):
    # Dial messages of 4 attempts each, claimed together (a message meeting the closed
    # gate is parked whole).
    stack = make_stack(
        sim_latency_ms=3, drain_timeout=5, feeder_queue_factor=8, dial_batch=4, **redis_engine
    )
    stack.start()
    for _ in range(3):
        stack.start_worker(threads=4)
    stack.wait_workers(3)
    cid = stack.make_campaign(contacts=20_000, max_concurrency=12)  # never runs out
    stack.wait_calls(50)
    rng = random.Random(42)
    undrained = 0
    cycles = 60 if redis_engine else 200  # the cluster's run is shorter (the suite's time)
    for _ in range(cycles):
        time.sleep(rng.uniform(0.01, 0.08))
        p = stack.act(cid, "pause")
        undrained += not p["gate"]["drained"]
        time.sleep(rng.uniform(0.005, 0.04))
        stack.act(cid, "resume")
    stack.act(cid, "pause")
    settle(stack, cid)
    report = stack.check_calls({cid})
    assert undrained == 0, f"{undrained} pauses did not drain within 5 s"
    assert report.closings == cycles + 1
    assert report.late == [], report.late[:5]
    assert report.doubled == [] and report.lost == []
    assert report.calls > 300, "too few calls to prove anything"


def test_a_worker_killed_while_holding_leases_lets_pause_drain_once_they_expire(make_stack):
    stack = make_stack(sim_latency_ms=3000, lease_ttl_ms=2000).start()
    victim = stack.start_worker(threads=4)
    stack.wait_workers(1)
    # Lines for twice the dials: the dead worker's 4 calls hold theirs until they expire.
    cid = stack.make_campaign(contacts=20, max_concurrency=4, max_lines=8)
    wait_for(lambda: stack.campaign(cid)["inflight"] == 4, 20, "4 leases held")
    os.killpg(victim.pid, signal.SIGKILL)  # the dramatiq parent and its worker process
    victim.wait(10)
    killed_at = time.time()

    paused = stack.act(cid, "pause")
    gate = paused["gate"]
    assert gate["drained"] is True and gate["inflight"] == 0
    waited = gate["drain_ms"] / 1000
    assert 0.3 < waited <= 2.5, f"drain should have waited for the leases to expire: {gate}"
    assert time.time() - killed_at < 5

    # A new worker takes over; the four attempts that were mid-dial are never dialed again.
    dialing = {c["contact_id"] for c in stack.calls()}
    stack.workers.remove(victim)
    stack.start_worker(threads=4)
    stack.wait_workers(1)
    stack.act(cid, "resume")
    wait_for(
        lambda: (
            stack.campaign(cid)["counts"]["pending"] == 0
            and stack.campaign(cid)["counts"]["queued"] == 0
        ),
        120,
        "the rest to be dialed",
        every=0.3,
    )
    stack.act(cid, "pause")
    settle_unknown(stack, cid)  # the dead worker's four: marked unknown, never re-dialed
    report = stack.check_calls({cid})
    assert report.doubled == [] and report.late == []
    assert dialing <= {c["contact_id"] for c in stack.calls()}


def settle_unknown(stack: TestStack, cid: int) -> dict:
    def done() -> dict | None:
        c = stack.campaign(cid)["counts"]
        print("COUNTS", c)
        settled = c["queued"] == c["dialing"] == c["pending"] == 0 and c["unknown"] == 4
        return c if settled else None

    return wait_for(done, 60, "every live dial to finish, the dead worker's four unknown", 0.3)


def test_an_emergency_stop_closes_every_campaign_at_once_outlives_redis_and_its_lift_reopens_them(
    make_stack,
):
    stack = make_stack(sim_latency_ms=5).start()
    stack.start_worker(threads=4)
    stack.wait_workers(1)
    a = stack.make_campaign(contacts=400, max_concurrency=2)
    b = stack.make_campaign(contacts=400, max_concurrency=2)
    wait_for(lambda: {c["campaign_id"] for c in stack.calls()} == {a, b}, 20, "both dialing")

    stopped = stack.http.post(
        "/api/v1/emergency-stop", json={"actor": "sre:kim", "reason": "carrier incident"}
    ).json()
    answered = time.time()
    assert stopped["active"] is True and stopped["by"] == "admin-token (sre:kim)"
    assert stopped["gate"]["drained"] is True and stopped["recorded"] is True
    time.sleep(1.0)
    assert [c for c in stack.calls() if c["t"] > answered] == []
    view = stack.campaign(a)
    assert view["emergency_stop"] is True and view["status"] == "running"
    assert stack.http.get("/api/v1/emergency-stop").json()["reason"] == "carrier incident"
    # Redis restarts empty: the reconciler sets the stop again from its record, before any
    # gate it rebuilds could let a worker dial.
    stack.redis.delete(*list(stack.redis.scan_iter(f"{stack.namespace}*")))  # at once
    wait_for(lambda: stack.campaign(a)["gate"] is not None, 10, "the gates rebuilt")
    restored = stack.http.get("/api/v1/emergency-stop").json()
    assert restored["active"] is True and restored["restored"] is True
    assert restored["reason"] == "carrier incident"
    time.sleep(1.0)
    assert [c for c in stack.calls() if c["t"] > answered] == []

    out = stack.cli("status")
    assert "EMERGENCY STOP in force" in out.stdout and "carrier incident" in out.stdout
    out = stack.cli("estop", "--lift")
    assert out.returncode == 0 and "lifted" in out.stdout
    lifted = time.time()
    wait_for(lambda: any(c["t"] > lifted for c in stack.calls()), 20, "dialing to resume")
    assert stack.campaign(a)["emergency_stop"] is False
    report = stack.check_calls()
    assert report.late == [] and report.closings == 1


def test_workers_and_propagation_are_visible_and_the_call_check_flags_a_late_call(make_stack):
    stack = make_stack().start()
    stack.start_worker(threads=2)
    stack.start_worker(threads=3)
    stack.wait_workers(2)
    cid = stack.make_campaign(contacts=100, max_concurrency=2)
    stack.wait_calls(5)
    paused = stack.act(cid, "pause")
    wait_for(
        lambda: (
            stack.campaign(cid)["propagation"]
            == {"version": paused["version"], "workers_live": 2, "workers_acked": 2}
        ),
        10,
        "acks",
    )
    # A heartbeat can still report a dial that ended after it was written: wait for the next.
    workers = wait_for(
        lambda: (
            (ws := stack.api("GET", "/workers")["workers"])
            and all(w["inflight"] == 0 for w in ws)
            and ws
        ),
        10,
        "heartbeats with nothing in flight",
    )
    assert sorted(w["threads"] for w in workers) == [2, 3]
    for w in workers:
        assert w["host"] and w["pid"] and w["started"] and w["last_heartbeat"]
        wait_for(
            lambda w=w: (
                next(x for x in stack.api("GET", "/workers")["workers"] if x["id"] == w["id"])[
                    "applied"
                ].get(str(cid))
                == 2
            ),
            10,
            "the applied version in the heartbeat",
        )

    settle(stack, cid)
    clean = stack.cli("check-calls", "--call-log", str(stack.call_log_path), "--campaign", str(cid))
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "late calls: 0, double dials: 0, lost contacts: 0 -> OK" in clean.stdout

    # Forge a call half a second after the drained pause answered, and a second call to
    # an already dialed contact: the checker lists both and fails.
    first = stack.calls()[0]
    forged = {**first, "t": time.time() + 0.5}
    with stack.call_log_path.open("a") as f:
        f.write(json.dumps(forged) + "\n")
    time.sleep(0.6)
    bad = stack.cli("check-calls", "--call-log", str(stack.call_log_path), "--campaign", str(cid))
    assert bad.returncode == 1
    assert f"LATE   campaign {cid} contact {first['contact_id']}" in bad.stdout
    assert f"DOUBLE campaign {cid} contact {first['contact_id']}: 2 calls" in bad.stdout
