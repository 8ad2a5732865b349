"""Scaling in: a worker stopped with SIGTERM finishes its dials, takes nothing new,
leaves the live set, and the campaign loses and doubles nothing."""

from __future__ import annotations

import os
import signal
import time

from tests.integration.test_pause_path import assert_each_contact_dialed_once
from tests.support.stack import wait_for


def test_a_worker_stopped_with_sigterm_mid_run_loses_and_doubles_nothing(make_stack):
    stack = make_stack(sim_latency_ms=50).start()
    leaving = stack.start_worker(threads=4)
    stack.start_worker(threads=4)
    stack.wait_workers(2)
    cid = stack.make_campaign(contacts=300, max_concurrency=6)
    stack.wait_calls(40)

    os.kill(leaving.pid, signal.SIGTERM)  # as Kubernetes does: to the main process
    assert leaving.wait(30) == 0, "the worker did not stop cleanly within its grace period"
    stopped = time.time()
    stack.workers.remove(leaving)
    wait_for(lambda: len(stack.live_workers()) == 1, 5, "the stopped worker to leave")
    gone = {c["worker_id"] for c in stack.calls() if c["t"] <= stopped}
    done = stack.wait_status(cid, "completed", timeout=120)
    assert done["counts"]["done"] == 300 and done["counts"]["unknown"] == 0
    assert_each_contact_dialed_once(stack, cid, 300)
    late = [
        c
        for c in stack.calls()
        if c["t"] > stopped and c["worker_id"] not in {w for w in stack.live_workers()}
    ]
    assert late == [], "the stopped worker placed calls after it exited"
    assert len(gone) == 2
