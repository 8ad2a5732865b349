"""Scale in campaigns: pause latency with 10,000 campaigns ÷ with 10, same load, one run.

For each number of campaigns (``--campaigns``, default 10 and 10,000), a fresh stack (own
namespace and PostgreSQL database, control loops in a child process, the reconciler at
its production interval): the campaigns beyond the measured one are written straight into
the database, paused, with ``--contacts-each`` pending contacts each (a large
organisation's idle campaigns: rows in every table the pause path reads, a gate each in
Redis, all rebuilt by the reconciler); the measured campaign dials under the peer
protocol's load (3 worker processes × 4 threads, 5 ms provider) while ``--cycles``
pause/resume cycles time the pause (HTTP round trip: commit, gate, drain, answer).

    .venv/bin/python -m bench.campaigns                 # 10 and 10,000 campaigns
    .venv/bin/python -m bench.campaigns --campaigns 10 1000 --cycles 20   # smoke
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select

from bench.protocol import pct
from shared.models import Campaign, Contact, utcnow
from tests.conftest import _missing
from tests.support.stack import TestStack, wait_for

BATCH = 5000


def add_idle_campaigns(stack: TestStack, n: int, contacts_each: int) -> None:
    """``n`` paused campaigns with ``contacts_each`` pending contacts, written directly."""
    assert stack.stack is not None
    now = utcnow()
    with stack.stack.control.sessions.begin() as s:
        for start in range(0, n, BATCH):
            rows = [
                {
                    "org": "default",
                    "name": f"idle {i}",
                    "status": "paused",
                    "version": 2,
                    "max_concurrency": 4,
                    "paused_at": now,
                    "pause_source": "operator",
                    "created_at": now,
                    "updated_at": now,
                }
                for i in range(start, min(n, start + BATCH))
            ]
            ids = list(s.scalars(insert(Campaign).returning(Campaign.id), rows))
            contacts = [
                {"campaign_id": cid, "phone": f"+3361{cid:05d}{k:03d}", "state": "pending"}
                for cid in ids
                for k in range(contacts_each)
            ]
            for i in range(0, len(contacts), BATCH):
                s.execute(insert(Contact), contacts[i : i + BATCH])
            print(f"  {min(n, start + BATCH)}/{n} idle campaigns written", end="\r", flush=True)
    print()


def one_point(args: argparse.Namespace, campaigns: int) -> dict[str, Any]:
    stack = TestStack(
        Path(tempfile.mkdtemp(prefix="dialgate-bench-")),
        "postgres",
        sim_latency_ms=5,
        feeder_queue_factor=16,
        feeder_interval=0.05,
        reconcile_interval=5.0,  # the production default (the test stacks use 1 s)
        log_level="WARNING",
    )
    try:
        stack.start()
        assert stack.stack is not None
        add_idle_campaigns(stack, campaigns - 1, args.contacts_each)
        stack.stack.reconciler.reconcile()  # every gate written before the clock starts
        for _ in range(3):
            stack.start_worker(threads=4)
        stack.wait_workers(3)
        cid = stack.make_campaign(contacts=20_000, max_concurrency=12)
        stack.wait_calls(50)
        with stack.stack.control.sessions() as s:
            total = len(list(s.scalars(select(Campaign.id))))
        wait_for(lambda: stack.redis.scard(stack.keys.gates_index) >= total, 60, "every gate")
        rng = random.Random(7)
        pause_ms: list[float] = []
        for i in range(args.cycles):
            time.sleep(rng.uniform(0.05, 0.4))
            t0 = time.perf_counter()
            answer = stack.act(cid, "pause")
            pause_ms.append((time.perf_counter() - t0) * 1000)
            assert answer["gate"]["drained"], answer["gate"]
            time.sleep(rng.uniform(0.05, 0.3))
            stack.act(cid, "resume")
            print(f"  cycle {i + 1}/{args.cycles}: {pause_ms[-1]:.1f} ms", end="\r", flush=True)
        print()
        return {
            "campaigns": total,
            "gates": stack.redis.scard(stack.keys.gates_index),
            "pause_p50_ms": round(pct(pause_ms, 50), 2),
            "pause_p99_ms": round(pct(pause_ms, 99), 2),
        }
    finally:
        stack.close()


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--campaigns", type=int, nargs="+", default=[10, 10_000])
    ap.add_argument("--contacts-each", type=int, default=10)
    ap.add_argument("--cycles", type=int, default=40)
    args = ap.parse_args()
    if missing := _missing():
        raise SystemExit(f"services not reachable: {', '.join(missing)}")
    points = []
    for n in args.campaigns:
        print(f"{n} campaigns")
        points.append(one_point(args, n))
        print("  " + json.dumps(points[-1]))
    base = points[0]
    for p in points[1:]:
        print(
            f"{p['campaigns']} ÷ {base['campaigns']} campaigns: pause p50 "
            f"{p['pause_p50_ms'] / base['pause_p50_ms']:.2f}×, "
            f"p99 {p['pause_p99_ms'] / base['pause_p99_ms']:.2f}×"
        )
    print("points:", json.dumps(points))


if __name__ == "__main__":
    main()
