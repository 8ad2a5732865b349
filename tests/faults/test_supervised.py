"""``dialgate up`` under load while its processes are killed with SIGKILL, one kind after
another (a worker process, the control loops, the API): each is started again, the rest
keep running, the campaign completes with every contact accounted for once and no call
while paused, the restarts show in ``/readyz`` and ``/metrics``; then Ctrl-C stops it all
gracefully, dials in flight finishing."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
from sqlalchemy import func, select

from shared.models import Attempt
from tests.faults.conftest import Run
from tests.support.stack import TestStack, wait_for


def _children(pid: int) -> dict[int, str]:
    """The live child processes of ``pid`` and their command lines."""
    found = {}
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            fields = (p / "stat").read_text().rsplit(")", 1)[1].split()
            cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found[int(p.name)] = cmd
    return found


def _one(pid: int, mark: str) -> int:
    """The pid of the child of ``pid`` whose command line holds ``mark``."""
    pids = [child for child, cmd in _children(pid).items() if mark in cmd]
    assert len(pids) == 1, f"{mark!r} among {_children(pid)}"
    return pids[0]


def _whole(up: int) -> bool:
    """``dialgate up --workers 2``'s whole tree runs: API, loops, the workers' supervisor
    and its two worker processes."""
    children = _children(up)
    workers = [pid for pid, cmd in children.items() if "-m worker --processes" in cmd]
    return len(children) == 3 and len(workers) == 1 and len(_children(workers[0])) == 2


def _healthy(stack: TestStack) -> bool:
    try:
        return stack.http.get("/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def test_dialgate_up_restarts_each_kind_of_process_killed_under_load(fresh) -> None:
    # A loops process killed between its commit and its publish loses a dial message; the
    # feeder enqueues it again after feeder_requeue_after (60 s by default, 5 s here).
    stack = fresh(db="sqlite", sim_latency_ms=100, worker_ttl=3.0, feeder_requeue_after=5)
    up = stack.start_up(workers=2, threads=2)
    run = Run(stack, stack.make_campaign(300, max_concurrency=4), 300)
    stack.wait_calls(20)

    for name, mark in (
        ("workers", "-m worker --processes"),  # the workers' supervisor: its children too
        ("worker-1", "-m worker.process"),  # one worker process, beside another
        ("loops", "--role loops"),
        ("api", "--role api"),
    ):
        parent = up.pid if name != "worker-1" else _one(up.pid, "-m worker --processes")
        victim = _one(parent, mark) if name != "worker-1" else min(_children(parent))
        calls_before = len(stack.calls())
        signal_sent = time.time()
        os.kill(victim, signal.SIGKILL)
        run.faults += 1
        wait_for(lambda: victim not in _children(parent), 20, f"{name} gone")  # noqa: B023
        wait_for(lambda: _whole(up.pid), 30, f"{name} started again")
        wait_for(lambda: _healthy(stack), 30, "the API")
        assert len(stack.calls()) >= calls_before
        run.recovered(signal_sent)
        paused = run.act("pause")
        answered = time.time()
        assert paused["gate"]["drained"], paused["gate"]
        time.sleep(0.5)
        assert run.calls_after(answered) == [], f"calls while paused after {name} was killed"
        run.act("resume")
    result = run.finish(
        "dialgate up: the workers supervisor, a worker, the loops, the API SIGKILLed"
    )
    assert result["doubled"] == result["late"] == result["lost"] == 0

    ready = stack.http.get("/readyz").json()
    assert ready["ready"] and ready["status"] == "degraded", ready
    degraded = " | ".join(ready["degraded"])
    for name in ("workers", "loops", "api"):
        assert f"{name} of dialgate up" in degraded, degraded
    assert "worker-1 of dialgate worker" in degraded, degraded
    restarts = {(p["supervisor"], p["name"]): p["restarts"] for p in ready["processes"]}
    assert len(restarts) == len(ready["processes"]), "a killed supervisor is still reported"
    assert restarts[("dialgate worker", "worker-1")] == 1, ready["processes"]
    assert all(restarts[("dialgate up", name)] == 1 for name in ("workers", "loops", "api"))
    counted = {k: v for k, v in stack.control_metrics().items() if "process_restarts_total" in k}
    host = ready["processes"][0]["host"]
    api = f'dialgate_process_restarts_total{{host="{host}",process="api",supervisor="dialgate up"}}'
    assert counted[api] == 1 and sum(counted.values()) == 4, counted

    # Ctrl-C with dials in flight: they finish; nothing is left dialing or unknown.
    second = stack.make_campaign(200, max_concurrency=4)
    wait_for(lambda: stack.campaign(second)["counts"]["dialing"] > 0, 30, "dials in flight")
    up.send_signal(signal.SIGINT)
    assert up.wait(60) == 0, (stack.tmp / "up.log").read_text()[-2000:]
    assert _children(up.pid) == {}
    assert stack.stack is not None
    with stack.stack.control.sessions() as s:
        states = dict(
            s.execute(
                select(Attempt.state, func.count())
                .where(Attempt.campaign_id == second)
                .group_by(Attempt.state)
            ).all()
        )
    assert not {"dialing", "ringing", "answered", "unknown"} & set(states), states
