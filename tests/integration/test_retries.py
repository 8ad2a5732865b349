"""Retries: a failed call is tried again per the campaign's policy, as a new attempt that
passes the gate, so nothing is retried while the campaign is paused."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime

from sqlalchemy import select

from shared.models import Contact
from tests.support.stack import TestStack, phones, wait_for

# These tests fail calls on purpose: the monitors (which would pause the campaign for its
# failure rate, as they should) are held back so the retries themselves are what is seen.
MONITORS_OFF = {"monitor_failure_min_samples": 10**9, "monitor_consecutive_errors": 10**9}


def _campaign(stack: TestStack, contacts: int, max_attempts: int, backoff: float) -> int:
    # A call the provider refuses ends failed: retried after ``backoff``.
    retry = {"failed": backoff}
    c = stack.api(
        "POST",
        "/campaigns",
        expect=201,
        json={
            "name": "retries",
            "max_concurrency": 4,
            "max_attempts": max_attempts,
            "retry": retry,
        },
    )
    assert c["max_attempts"] == max_attempts and c["retry"] == retry
    rows = [{"phone": p} for p in phones(contacts)]
    stack.api("POST", f"/campaigns/{c['id']}/contacts", json={"contacts": rows})
    stack.act(c["id"], "start")
    return int(c["id"])


def test_failed_calls_are_retried_up_to_the_policy_and_never_after_a_success(make_stack, db):
    stack = make_stack(db, sim_failure_rate=0.5, **MONITORS_OFF).start()
    stack.start_worker()
    stack.start_worker()
    stack.wait_workers(2)
    cid = _campaign(stack, contacts=100, max_attempts=3, backoff=0.05)
    done = stack.wait_status(cid, "completed", timeout=120)
    counts = done["counts"]
    assert counts["done"] + counts["failed"] == 100 and counts["retry_wait"] == 0, counts
    calls = Counter(c["contact_id"] for c in stack.calls())
    assert max(calls.values()) == 3 and min(calls.values()) == 1, calls
    assert stack.stack is not None
    with stack.stack.control.sessions() as s:
        states = {k: state for k, state in s.execute(select(Contact.id, Contact.state))}
    # a contact is failed only after its third failed call
    assert all(calls[k] == 3 for k, state in states.items() if state == "failed")
    report = stack.check_calls({cid})
    assert report.ok, report.as_dict()


def test_no_retry_goes_out_while_the_campaign_is_paused(make_stack):
    stack = make_stack(sim_failure_rate=1.0, **MONITORS_OFF).start()  # every call fails
    stack.start_worker()
    stack.start_worker()
    stack.wait_workers(2)
    cid = _campaign(stack, contacts=60, max_attempts=3, backoff=0.3)
    wait_for(lambda: stack.campaign(cid)["counts"]["retry_wait"] >= 8, 60, "retries waiting")
    paused = stack.act(cid, "pause")
    answered = time.time()
    assert paused["gate"]["drained"] is True
    assert stack.stack is not None

    def due() -> bool:  # every waiting retry's time has come while paused
        with stack.stack.control.sessions() as s:  # type: ignore[union-attr]
            times = list(s.scalars(select(Contact.retry_at).where(Contact.state == "retry_wait")))
        return bool(times) and all(t <= datetime.now(UTC) for t in times)

    wait_for(due, 30, "the waiting retries to be due")
    stack.wait_calls(1)  # (the log exists)
    late = [c for c in stack.calls() if c["t"] > answered]
    assert late == [], f"{len(late)} calls after the drained pause"
    assert stack.campaign(cid)["counts"]["retry_wait"] >= 1

    stack.act(cid, "resume", override=["provider_failing"])  # every call fails here
    done = stack.wait_status(cid, "completed", timeout=120)
    assert done["counts"]["failed"] == 60, done["counts"]
    calls = Counter(c["contact_id"] for c in stack.calls())
    assert set(calls.values()) == {3}, calls
    report = stack.check_calls({cid})
    assert report.ok, report.as_dict()


def test_a_cancel_leaves_no_contact_waiting_for_a_retry(make_stack):
    stack = make_stack(sim_failure_rate=1.0, sim_latency_ms=50, **MONITORS_OFF).start()
    stack.start_worker()
    stack.start_worker()
    stack.wait_workers(2)
    cid = _campaign(stack, contacts=60, max_attempts=3, backoff=0.3)
    wait_for(lambda: stack.campaign(cid)["counts"]["retry_wait"] >= 8, 60, "retries waiting")
    stack.act(cid, "cancel", confirm=True)
    counts = wait_for(
        lambda: (c := stack.campaign(cid)["counts"])["dialing"] == 0 and c, 30, "dials to end"
    )
    assert counts["retry_wait"] == counts["pending"] == counts["queued"] == 0, counts
    assert counts["cancelled"] >= 8, counts
    report = stack.check_calls({cid})
    assert report.ok, report.as_dict()
