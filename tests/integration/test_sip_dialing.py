"""Worker processes dialing a real far end: SIPp (``tests/sipp/uas.xml``) answers, is busy,
rings, declines, fails, as the number says, and its own message log is the witness.

What SIPp logged, not what dialgate's database says, proves the promises: no INVITE after
a drained pause; no number got more INVITEs than ``max_attempts``; calls up at once never
exceeded ``max_lines``; INVITEs in any second never exceeded ``max_cps``; a hang-up ends
the calls it targets. And a worker killed with its calls up: its lines expire, its
attempts end ``unknown`` (never dialed again) and the rest of the campaign completes.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import sipp
from tests.support.stack import TestStack, wait_for

pytestmark = pytest.mark.skipif(not sipp.available(), reason=f"{sipp.SIPP} missing (sip-tester)")

FINAL = ("done", "failed", "cancelled", "unknown", "blocked_dnc")


@pytest.fixture
def far_end(tmp_path: Path) -> Iterator[sipp.Sipp]:
    with sipp.running_sipp(tmp_path / "sipp", talk_ms=500, ring_ms=100) as s:
        yield s


def sip_stack(make_stack: Any, far_end: sipp.Sipp, **overrides: Any) -> TestStack:
    settings = {
        "provider": "sip",
        "sip_target": far_end.target,
        "sip_bind": "127.0.0.1:0",
        "sip_ring_timeout": 0.4,
        **overrides,
    }
    return make_stack(**settings).start()


def settled(stack: TestStack, cid: int, timeout: float = 60) -> dict[str, Any]:
    """The campaign once every contact is final and no call is up."""

    def done() -> dict[str, Any] | None:
        c = stack.campaign(cid)
        counts, live = c["counts"], c["live"]
        left = sum(n for s, n in counts.items() if s not in FINAL)
        return c if left == 0 and not any(live.values()) else None

    return wait_for(done, timeout, "every contact final and no call up", every=0.2)


def test_worker_processes_dial_the_far_end_within_lines_and_rate_and_a_drained_pause_is_a_wall(
    make_stack, far_end
):
    plan = {"answer": 6, "busy": 3, "ring": 3, "decline": 2, "error": 2}
    numbers = [sipp.number(o, i) for o, n in plan.items() for i in range(n)]
    stack = sip_stack(make_stack, far_end)
    stack.start_worker(processes=2, threads=4)
    stack.wait_workers(2)
    cid = stack.make_campaign(
        len(numbers),
        numbers=numbers,
        max_concurrency=4,
        max_lines=5,
        max_cps=8,
        max_attempts=2,
        retry={"busy": 0.5, "no_answer": 0.5},
    )
    wait_for(lambda: len(far_end.log.invites()) >= 5, 20, "the first calls at the far end")
    paused = stack.act(cid, "pause")
    answered = time.time()
    assert paused["gate"]["drained"] is True, paused["gate"]
    assert paused["gate"]["live_calls"] >= 0
    time.sleep(1.0)  # calls up go on; none may start
    assert far_end.log.invites_after(answered) == []
    stack.act(cid, "resume")
    c = settled(stack, cid)

    invites = far_end.log.invites()
    by_number = Counter(i.number for i in invites)
    # Retried dispositions got their second call, the others exactly one; none more.
    for number in numbers:
        again = number.startswith(("+4930486", "+4930180"))
        assert by_number[number] == (2 if again else 1), (number, by_number[number])
    assert set(by_number) == set(numbers)
    assert far_end.log.max_concurrent_calls() <= 5
    assert far_end.log.max_invites_per_second() <= 8
    # Every INVITE names its attempt and campaign, and the database agrees on each call.
    attempts = stack.api("GET", f"/campaigns/{cid}/attempts?limit=500")["attempts"]
    assert sorted(i.attempt for i in invites) == sorted(a["id"] for a in attempts)
    assert {i.campaign for i in invites} == {cid}
    assert c["dispositions"] == {
        "answered": 6,
        "busy": 6,
        "no_answer": 6,
        "declined": 2,
        "failed": 2,
        "canceled": 0,
        "machine": 0,
    }
    assert {a["sip_code"] for a in attempts if a["disposition"] == "failed"} == {500}
    assert {a["sip_code"] for a in attempts if a["disposition"] == "busy"} == {486}
    talked = [a for a in attempts if a["disposition"] == "answered"]
    assert all(a["answered_at"] and a["talk_ms"] >= 300 for a in talked), talked[:2]
    assert c["counts"]["done"] == 6 and c["counts"]["failed"] == 10


def test_a_pause_hangs_up_ringing_calls_and_a_cancel_then_ends_the_answered_ones(
    make_stack, far_end
):
    ringing = [sipp.number("ring", i) for i in range(3)]
    talking = [sipp.number("answer_wait", i) for i in range(3)]
    stack = sip_stack(make_stack, far_end, sip_ring_timeout=30)
    stack.start_worker(processes=1, threads=4)
    stack.wait_workers(1)
    cid = stack.make_campaign(6, numbers=ringing + talking, max_concurrency=6, max_lines=6)
    wait_for(lambda: stack.campaign(cid)["live"] == {"ringing": 3, "answered": 3}, 20, "6 calls up")

    paused = stack.api("POST", f"/campaigns/{cid}/pause?hangup=ringing", json={})
    gate = paused["gate"]
    assert gate["drained"] and gate["hung_up"] == 3 and gate["hangup_complete"], gate
    assert gate["live_calls"] == 3  # the answered calls go on
    assert stack.campaign(cid)["live"] == {"ringing": 0, "answered": 3}

    cancelled = stack.api("POST", f"/campaigns/{cid}/cancel?hangup=all", json={"confirm": True})
    assert cancelled["gate"]["hung_up"] == 3 and cancelled["gate"]["hangup_complete"]
    c = settled(stack, cid)
    assert c["dispositions"]["canceled"] == 3 and c["dispositions"]["answered"] == 3
    calls = far_end.log.settled([i.call_id for i in far_end.log.invites()])
    by_number = {i.number: calls[i.call_id] for i in far_end.log.invites()}
    assert all(
        by_number[n].starts("CANCEL") and by_number[n].starts("SIP/2.0 487") for n in ringing
    )
    assert all(by_number[n].starts("BYE") and not by_number[n].starts("CANCEL") for n in talking)


def test_a_worker_killed_with_calls_up_frees_its_lines_by_expiry_and_the_rest_completes(
    make_stack, far_end
):
    held = [sipp.number("answer_wait", i) for i in range(3)]  # the far end never hangs up
    rest = [sipp.number("answer", i) for i in range(3)]
    stack = sip_stack(make_stack, far_end, max_call_seconds=1, worker_ttl=2, lease_ttl_ms=3000)
    victim = stack.start_worker(processes=1, threads=3)
    stack.wait_workers(1)
    cid = stack.make_campaign(3, numbers=held, max_concurrency=3, max_lines=3)
    wait_for(lambda: stack.campaign(cid)["live"]["answered"] == 3, 20, "3 calls answered")
    os.killpg(victim.pid, signal.SIGKILL)  # the dramatiq parent and its worker process
    victim.wait(10)
    stack.workers.remove(victim)
    # Contacts added once the worker is dead: only its three calls are in doubt.
    added = stack.api(
        "POST", f"/campaigns/{cid}/contacts", json={"contacts": [{"phone": p} for p in rest]}
    )
    assert added["accepted"] == 3
    heir = stack.start_worker(processes=1, threads=3)
    c = settled(stack, cid, timeout=40)

    # The dead worker's lines were held until they expired (placement + 1 s + 5 s margin).
    invites = far_end.log.invites()
    firsts = {i.number: i.time for i in invites}
    assert min(firsts[n] for n in rest) - max(firsts[n] for n in held) >= 5.5
    assert stack.worker_metrics(heir).get("dialgate_lines_expired_total") == 3
    # Its three calls end unknown and are never dialed again; the rest were answered.
    assert c["counts"]["unknown"] == 3 and c["counts"]["done"] == 3
    assert Counter(i.number for i in invites) == Counter(held + rest)
