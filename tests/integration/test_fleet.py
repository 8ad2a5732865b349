"""The fleet view: live workers with what they report, and a worker that stops
heartbeating (SIGSTOP) leaves it within ``worker_ttl`` of its last heartbeat."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

from tests.support.stack import ROOT, wait_for

TTL = 2.0
BEAT = 0.5


def test_a_worker_that_stops_heartbeating_leaves_the_fleet_within_its_ttl(make_stack):
    stack = make_stack(worker_ttl=TTL, heartbeat_interval=BEAT).start(loops=False)
    stack.start_worker(threads=3)
    stack.wait_workers(1)

    def alive() -> int:
        return subprocess.run(
            [sys.executable, "-m", "worker.alive", "--processes", "1"],
            env=stack.worker_env(),
            cwd=ROOT,
            capture_output=True,
            timeout=30,
        ).returncode

    [w] = stack.api("GET", "/workers")["workers"]
    assert w["host"] == socket.gethostname() and w["threads"] == 3 and w["inflight"] == 0
    assert isinstance(w["applied"], dict) and time.time() - w["last_heartbeat"] < TTL
    table = stack.cli("workers")
    assert table.returncode == 0 and str(w["pid"]) in table.stdout and "ago" in table.stdout
    assert alive() == 0

    os.kill(w["pid"], signal.SIGSTOP)  # the dramatiq process that heartbeats, frozen
    try:
        wait_for(lambda: stack.api("GET", "/workers")["workers"] == [], TTL + BEAT + 2, "leaving")
        assert stack.live_workers() == []
        assert alive() == 1  # its pod's liveness check fails: Kubernetes restarts it
    finally:
        os.kill(w["pid"], signal.SIGCONT)
    wait_for(lambda: len(stack.api("GET", "/workers")["workers"]) == 1, 10, "it to come back")
    assert alive() == 0
