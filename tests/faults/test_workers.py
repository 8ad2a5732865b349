"""A worker killed with SIGKILL mid-dial, another stopped with SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import time

from shared import fleet
from tests.faults.conftest import Run
from tests.support.stack import wait_for


def test_a_worker_killed_mid_dial_and_one_stopped_with_sigterm_lose_and_double_nothing(fresh):
    stack = fresh(lease_ttl_ms=2000)
    # Still dialing after the SIGTERM. Held calls keep their lines (until they end) but not
    # their leases (2 s): lines for every thread, so the held dials spread over the workers.
    run = Run.start(stack, contacts=1500, workers=3, max_lines=12)
    hold = stack.tmp / "hold"
    hold.touch()  # every call is held after its claim, before the provider places it
    wait_for(lambda: stack.campaign(run.cid)["counts"]["dialing"] >= 4, 30, "dials in flight")

    def dialing() -> list[subprocess.Popen[bytes]]:  # the workers holding leased dials
        records = fleet.records(stack.redis, stack.keys, stack.live_workers())
        leases = stack.redis.zrange(stack.keys.leases(run.cid), 0, -1)
        holders = {w for w in records for lease in leases if f":{w}:" in lease}
        groups = {_group(records[w].pid) for w in holders}
        return [w for w in stack.workers if w.pid in groups]

    killed = wait_for(dialing, 30, "a worker holding dials in flight")[0]
    leaving = next(w for w in stack.workers if w is not killed)
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait(10)
    stack.workers.remove(killed)
    run.faults += 1
    hold.unlink()
    os.kill(leaving.pid, signal.SIGTERM)  # graceful: in-flight finishes, the rest goes back
    assert leaving.wait(30) == 0, "the worker did not stop cleanly within its grace period"
    stack.workers.remove(leaving)
    run.faults += 1
    stopped = time.time()
    stack.start_worker(threads=4)  # the fleet is two again
    run.recovered(stopped)

    done = stack.wait_status(run.cid, "completed", timeout=120)
    # the killed worker's dials became unknown after their lease: never dialed again
    assert done["counts"]["unknown"] >= 1, done["counts"]
    run.finish("worker SIGKILL mid-dial + worker SIGTERM", recoveries=done["counts"]["unknown"])


def _group(pid: int | None) -> int | None:
    """The process group of a worker process (``None``: gone)."""
    try:
        return None if pid is None else os.getpgid(pid)
    except ProcessLookupError:
        return None
