"""The whole path from an operator's pause to workers that stop dialing, for real."""

from __future__ import annotations

import time
from collections import Counter
from datetime import datetime

import pytest
from sqlalchemy import func, select

from control.loops import reconciler as reconciler_module
from shared.models import Attempt, Contact
from tests.support.stack import TestStack, wait_for


def _ts(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def assert_each_contact_dialed_once(stack: TestStack, cid: int, contacts: int) -> None:
    calls = [c for c in stack.calls() if c["campaign_id"] == cid]
    per_contact = Counter(c["contact_id"] for c in calls)
    doubled = {k: v for k, v in per_contact.items() if v > 1}
    assert not doubled, f"contacts dialed more than once: {doubled}"
    assert len(per_contact) == contacts, f"{contacts - len(per_contact)} contacts never dialed"


def test_pause_while_two_workers_dial_stops_every_call_then_resume_dials_everyone_once(
    make_stack, db
):
    stack = make_stack(db).start()
    stack.start_worker()
    stack.start_worker()
    stack.wait_workers(2)
    cid = stack.make_campaign(contacts=300, max_concurrency=4)
    stack.wait_calls(40)

    requested = time.time()
    paused = stack.act(cid, "pause", source="operator", actor="test")
    answered = time.time()
    assert paused["status"] == "paused"
    gate = paused["gate"]
    assert gate["closed"] is True and gate["drained"] is True, gate
    pause_version = paused["version"]

    time.sleep(1.0)  # anything still going would have started by now
    calls = stack.calls()
    after_answer = [c for c in calls if c["t"] > answered]
    assert after_answer == [], f"{len(after_answer)} calls started after the drained pause"
    # Calls that started while the pause was being answered had passed the gate before it.
    during = [c for c in calls if c["t"] > requested]
    assert all(c["gate_version"] < pause_version for c in during), during
    view = stack.campaign(cid)
    assert view["counts"]["dialing"] == 0 and view["inflight"] == 0
    frozen = len(calls)
    assert frozen < 300, "the pause came too late to prove anything"

    resumed = stack.act(cid, "resume", source="operator", actor="test")
    assert resumed["status"] == "running"
    done = stack.wait_status(cid, "completed", timeout=120)
    assert done["counts"]["done"] == 300
    assert_each_contact_dialed_once(stack, cid, 300)
    history = stack.api("GET", f"/campaigns/{cid}/transitions")["transitions"]
    assert [t["action"] for t in history] == ["complete", "resume", "pause", "start"]
    assert history[2]["drained"] is True


def test_a_pause_parks_the_rest_of_each_message_and_resume_dials_every_contact_once(make_stack, db):
    # Dial messages of 4 attempts (the campaign's concurrency), claimed together.
    stack = make_stack(db, feeder_queue_factor=8, dial_batch=25).start()
    stack.start_worker()
    stack.start_worker()
    stack.wait_workers(2)
    cid = stack.make_campaign(contacts=300, max_concurrency=4)
    for _ in range(3):
        stack.wait_calls(len(stack.calls()) + 20)
        paused = stack.act(cid, "pause")
        answered = time.time()
        assert paused["gate"]["drained"] is True
        wait_for(lambda: stack.campaign(cid)["counts"]["queued"] == 0, 15, "queued parked")
        assert [c for c in stack.calls() if c["t"] > answered] == []
        stack.act(cid, "resume")

    done = stack.wait_status(cid, "completed", timeout=120)
    assert done["counts"]["done"] == 300
    assert_each_contact_dialed_once(stack, cid, 300)
    with stack.stack.control.sessions() as s:
        parked = dict(
            s.execute(
                select(Attempt.started_at.is_(None), func.count())
                .where(
                    Attempt.campaign_id == cid,
                    Attempt.state == "parked",
                    Attempt.deny_reason == "paused",
                )
                .group_by(Attempt.started_at.is_(None))
            ).all()
        )
    # Messages taken during the pauses were parked whole, their contacts dialed after the
    # resume; a worker that found the gate closed before starting a message parked it
    # where it was (never started) instead of starting it to meet the closed gate.
    assert parked.get(True), f"no message was parked without being started: {parked}"


def test_cancel_stops_dialing_and_marks_every_contact_not_dialed_cancelled(make_stack, db):
    stack = make_stack(db).start()
    stack.start_worker()
    stack.start_worker()
    stack.wait_workers(2)
    cid = stack.make_campaign(contacts=300, max_concurrency=4)
    stack.wait_calls(30)

    refused = stack.act(cid, "cancel", expect=422)
    assert refused["error"]["code"] == "confirmation_required"
    cancelled = stack.act(cid, "cancel", confirm=True)
    answered = time.time()
    assert cancelled["status"] == "cancelled"
    assert cancelled["gate"]["drained"] is True
    time.sleep(1.0)
    calls = [c for c in stack.calls() if c["campaign_id"] == cid]
    assert [c for c in calls if c["t"] > answered] == []
    counts = stack.campaign(cid)["counts"]
    assert counts["pending"] == counts["queued"] == counts["dialing"] == 0
    assert counts["done"] == len(calls)
    assert counts["cancelled"] == 300 - len(calls)
    again = stack.act(cid, "resume", expect=409)
    assert "cancelled" in again["error"]["message"]


def test_a_worker_that_never_hears_the_broadcast_still_does_not_dial_a_paused_campaign(
    make_stack,
):
    # No relay: the pause is committed and the gate closed, but never broadcast.
    stack = make_stack().start(loops=False)
    stack.stack.reconciler.start()
    stack.stack.feeder.start()
    stack.start_worker()
    stack.wait_workers(1)
    cid = stack.make_campaign(contacts=200, max_concurrency=4)
    stack.wait_calls(20)

    paused = stack.act(cid, "pause")
    answered = time.time()
    assert paused["gate"]["drained"] is True
    time.sleep(1.5)
    assert [c for c in stack.calls() if c["t"] > answered] == []
    # The worker never heard of the pause version: only the gate stopped it.
    assert paused["propagation"]["workers_acked"] == 0
    assert stack.outbox_unsent() == 2  # start and pause, never published
    assert stack.campaign(cid)["counts"]["dialing"] == 0


def test_after_redis_loses_every_gate_nothing_dials_until_the_reconciler_rebuilt_them(
    make_stack,
):
    stack = make_stack(sim_latency_ms=20).start(loops=False)
    reconciler = stack.stack.reconciler  # run by hand here, to choose when it rebuilds
    reconciler.reconcile()
    stack.stack.relay.start()
    stack.stack.feeder.start()
    stack.start_worker()
    stack.start_worker()
    stack.wait_workers(2)
    cid = stack.make_campaign(contacts=400, max_concurrency=4)
    stack.wait_calls(30)

    # Redis loses this stack's data (the FLUSHALL of a Redis that keeps nothing on disk).
    lost = list(stack.redis.scan_iter(f"{stack.namespace}:*"))  # (a scan of all Redis)
    flushed = time.time()
    stack.redis.delete(*lost)  # at once, as a restart
    time.sleep(2.0)
    # Claims that passed the gate before the flush may still be placing their call.
    grace = 0.2
    blind = [c for c in stack.calls() if c["t"] > flushed + grace]
    assert blind == [], f"{len(blind)} calls while the gate was missing"
    before = stack.campaign(cid)
    assert before["status"] == "running" and before["counts"]["done"] < 400

    assert reconciler.reconcile() >= 1
    rebuilt = time.time()
    done = stack.wait_status(cid, "completed", timeout=120)
    assert done["counts"]["done"] == 400
    assert any(c["t"] > rebuilt for c in stack.calls()), "dialing did not continue"
    assert_each_contact_dialed_once(stack, cid, 400)


def test_transitions_made_while_rabbitmq_is_down_are_published_after_it_returns(
    make_stack, private_rabbitmq
):
    stack = make_stack(amqp_url=private_rabbitmq.url).start()
    stack.start_worker()
    stack.wait_workers(1)
    cid = stack.make_campaign(contacts=100, max_concurrency=2)
    stack.wait_calls(5)

    with private_rabbitmq.stopped():
        for action in ("pause", "resume", "pause"):
            assert stack.act(cid, action)["status"] in ("paused", "running")
        assert stack.outbox_unsent() >= 3
    latest = stack.campaign(cid)["version"]
    wait_for(lambda: stack.outbox_unsent() == 0, 60, "the relay to publish the backlog")
    # Every live worker applied the latest version once it reconnected.
    wait_for(
        lambda: (
            (p := stack.campaign(cid)["propagation"])["workers_acked"] == p["workers_live"] >= 1
        ),
        60,
        "workers to acknowledge the latest version",
    )
    assert stack.campaign(cid)["version"] == latest

    stack.act(cid, "resume")
    done = stack.wait_status(cid, "completed", timeout=120)
    assert done["counts"]["done"] == 100
    assert_each_contact_dialed_once(stack, cid, 100)


def test_the_reconciler_spreads_its_sweep_over_the_interval_a_batch_per_step(
    make_stack, monkeypatch
):
    monkeypatch.setattr(reconciler_module, "BATCH", 2)
    stack = make_stack().start(loops=False)
    reconciler = stack.stack.reconciler
    ids = [
        stack.api("POST", "/campaigns", expect=201, json={"name": f"c{i}"})["id"] for i in range(5)
    ]
    assert reconciler.reconcile() == 0  # every gate was written by its creation
    for cid in ids:
        stack.redis.delete(stack.keys.gate(cid))
    rebuilt = []
    for _ in range(3):  # a sweep of 5 campaigns, 2 per step
        reconciler.step()
        rebuilt.append(sorted(c for c in ids if stack.redis.exists(stack.keys.gate(c))))
    assert rebuilt == [ids[:2], ids[:4], ids]
    assert reconciler.wait_s() == pytest.approx(reconciler.interval / 3)


def test_the_reconciler_gives_back_what_the_database_says_is_over_and_keeps_the_rest(
    make_stack,
):
    """Releases and call ends recorded while Redis was away leave leases and lines behind:
    the reconciler gives back the leases of attempts placed or over and the lines of calls
    over (not a claim still in progress, not a call up or of unknown fate)."""
    stack = make_stack(db="sqlite").start(loops=False)
    assert stack.stack is not None
    cid = stack.make_campaign(contacts=5, max_concurrency=5, start=False)
    states = ["ended", "parked", "answered", "queued", "unknown"]
    with stack.stack.control.sessions.begin() as s:
        contacts = s.scalars(select(Contact.id).where(Contact.campaign_id == cid)).all()
        pairs = zip(contacts, states, strict=True)
        rows = [Attempt(campaign_id=cid, contact_id=c, state=st) for c, st in pairs]
        s.add_all(rows)
        s.flush()
        ids = [a.id for a in rows]
    gate = stack.stack.control.gate
    gate.write(cid, "running", 1, 5)
    assert len(gate.claim_many(cid, ids, "w", 1, 30_000).leases) == 5

    stack.stack.reconciler.reconcile()
    leases, lines = gate.holders([cid])[cid]
    assert sorted(int(x.split(":")[0]) for x in leases) == ids[3:]  # queued, unknown
    assert sorted(lines) == ids[2:]  # answered (up), queued, unknown
