"""The fault suite: a campaign under load, a fault injected and removed, then the audit.

Every scenario runs two or more real worker processes against a stack whose Redis and/or
RabbitMQ are the session's private instances (``tests/support/services.py``), so breaking
them never disturbs anyone else's tests. :class:`Run` counts what happened (dials, pauses,
faults, recoveries, time to recover) and appends it to ``test-output/faults.jsonl``;
``docs/reliability.md`` reports those figures.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.support.stack import ROOT, TestStack, wait_for

RESULTS = ROOT / "test-output" / "faults.jsonl"


@dataclass
class Run:
    """One campaign of ``contacts`` numbers dialed by ``workers`` worker processes."""

    stack: TestStack
    cid: int
    contacts: int
    pauses: int = 0
    faults: int = 0
    recover_s: list[float] = field(default_factory=list)

    @classmethod
    def start(
        cls,
        stack: TestStack,
        contacts: int = 300,
        workers: int = 2,
        concurrency: int = 4,
        **fields: Any,
    ) -> Run:
        stack.start()
        for _ in range(workers):
            stack.start_worker(threads=4)
        stack.wait_workers(workers)
        run = cls(
            stack, stack.make_campaign(contacts, max_concurrency=concurrency, **fields), contacts
        )
        stack.wait_calls(20)
        return run

    def act(self, action: str) -> dict[str, Any]:
        view = self.stack.act(self.cid, action, source="operator", actor="faults")
        self.pauses += action == "pause"
        return view

    def calls_after(self, t: float) -> list[dict[str, Any]]:
        return [c for c in self.stack.calls() if c["t"] > t]

    def recovered(self, since: float, timeout: float = 60) -> float:
        """Wait for the first call placed after ``since``; record and return the delay."""
        wait_for(lambda: self.calls_after(since), timeout, "dialing to start again", every=0.1)
        delay = min(c["t"] for c in self.calls_after(since)) - since
        self.recover_s.append(round(delay, 2))
        return delay

    def ready(self) -> dict[str, bool]:
        """``/readyz``, each dependency's ``ok`` (the answer is 200 only when all are)."""
        resp = self.stack.http.get("/readyz")
        checks = {name: bool(c["ok"]) for name, c in resp.json()["checks"].items()}
        assert (resp.status_code == 200) == all(checks.values()), resp.text
        return checks

    def wait_ready(self, timeout: float = 60) -> None:
        """Every dependency reported ready again, without restarting anything."""
        wait_for(lambda: all(self.ready().values()), timeout, "/readyz to be ready", every=0.2)

    def wait_acked(self, timeout: float = 60) -> None:
        """Every live worker acknowledged the campaign's latest version."""
        wait_for(
            lambda: (
                (p := self.stack.campaign(self.cid)["propagation"]) is not None
                and p["workers_acked"] == p["workers_live"] >= 2
            ),
            timeout,
            "every live worker to acknowledge the latest version",
            every=0.2,
        )

    def finish(self, name: str, recoveries: int | None = None) -> dict[str, Any]:
        """Let the campaign complete, then check it with the safety checker."""
        done = self.stack.wait_status(self.cid, "completed", timeout=180)
        counts = done["counts"]
        report = self.stack.check_calls({self.cid})
        assert report.ok, report.as_dict()
        calls = [c for c in self.stack.calls() if c["campaign_id"] == self.cid]
        # nothing lost: every contact ended dialed, or accounted for as unknown
        assert counts["done"] + counts["failed"] + counts["unknown"] == self.contacts, counts
        self.wait_acked()
        result = {
            "scenario": name,
            "contacts": self.contacts,
            "dials": len(calls),
            "pauses": self.pauses,
            "faults": self.faults,
            "recoveries": len(self.recover_s) if recoveries is None else recoveries,
            "recover_s": self.recover_s,
            "unknown": counts["unknown"],
            "late": len(report.late),
            "doubled": len(report.doubled),
            "lost": len(report.lost),
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        RESULTS.parent.mkdir(exist_ok=True)
        with RESULTS.open("a", encoding="utf-8") as f:
            f.write(json.dumps(result) + "\n")
        return result


@pytest.fixture
def fresh(make_stack: Any) -> Iterator[Any]:
    """``make_stack`` with the fault suite's defaults (fast heartbeats, short leases)."""

    def factory(**overrides: Any) -> TestStack:
        # Dial messages of 4 attempts, so every fault meets messages partly dialed (a
        # killed worker's message comes back with some attempts done).
        values: dict[str, Any] = {
            "amqp_heartbeat": 2,
            "sim_latency_ms": 20,
            "feeder_queue_factor": 8,
            "dial_batch": 4,
        }
        values.update(overrides)
        return make_stack(**values)  # type: ignore[no-any-return]

    yield factory
