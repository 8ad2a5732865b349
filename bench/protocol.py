"""The peer protocol, run against dialgate on this machine.

One campaign of 20,000 contacts; 3 worker processes × 4 concurrent dials; the simulated
provider at 5 ms per call; 40 cycles of: wait uniform(0.05, 0.4) s, pause, wait
uniform(0.05, 0.3) s, resume. A call is *late* when it started after the pause answered
and before the resume was requested (wall clock, sub-millisecond, same machine).

Reports late calls, max lateness, calls/s while running, pause answer latency
(p50/p95/p99, drain included) and double dials; the median of ``--runs`` runs.

    .venv/bin/python -m bench.protocol --runs 3

Beside each pause it also times the bare minimum a durable pause needs on the same
database and Redis, under the same load: one SQL commit (a version-checked update of a
campaign row) and one Redis write. ``--variant naive`` runs the same protocol against
workers that read the campaign status from the database before each dial instead of
passing the gate (see ``bench/variants.py``).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import text

from bench.processes import cpu_seconds, pct
from tests.conftest import _missing
from tests.support.stack import TestStack


def bare_pause(engine: Any, stack: TestStack, campaign_id: int) -> float:
    """One SQL commit (version-checked row update) + one Redis write, in ms."""
    t0 = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE campaigns SET version = version + 1 WHERE id = :id AND version >= 0"),
            {"id": campaign_id},
        )
    stack.redis.hset(stack.keys.gate(campaign_id), "status", "draft")
    return (time.perf_counter() - t0) * 1000


def one_run(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="dialgate-bench-"))
    stack = TestStack(
        tmp,
        args.db,
        sim_latency_ms=args.latency_ms,
        feeder_queue_factor=args.queue_factor,
        feeder_interval=0.05,
        log_level="WARNING",
    )
    try:
        stack.start()
        for _ in range(args.workers):
            stack.start_worker(threads=args.threads, variant=args.variant)
        stack.wait_workers(args.workers)
        cid = stack.make_campaign(
            contacts=args.contacts, max_concurrency=args.workers * args.threads
        )
        stack.wait_calls(50)
        rng = random.Random(seed)
        windows: list[tuple[float, float]] = []  # (pause answered, resume requested)
        running: list[tuple[float, float]] = []  # (resume answered, pause requested)
        pause_ms: list[float] = []
        bare_ms: list[float] = []
        drain_ms: list[float] = []  # the server's own drain wait, from each pause's answer
        assert stack.stack is not None
        engine = stack.stack.control.sessions.kw["bind"]
        spare = stack.api("POST", "/campaigns", expect=201, json={"name": "bare"})["id"]
        undrained = 0
        cpu0, calls0, wall0 = cpu_seconds("api + client"), len(stack.calls()), time.time()
        run_start = time.time()
        for i in range(args.cycles):
            time.sleep(rng.uniform(0.05, 0.4))
            t0 = time.time()
            running.append((run_start, t0))
            p = stack.act(cid, "pause")
            t1 = time.time()
            pause_ms.append((t1 - t0) * 1000)
            undrained += not p["gate"]["drained"]
            drain_ms.append(float(p["gate"]["drain_ms"]))
            bare_ms.append(bare_pause(engine, stack, spare))
            time.sleep(rng.uniform(0.05, 0.3))
            t2 = time.time()
            windows.append((t1, t2))
            stack.act(cid, "resume")
            run_start = time.time()
            print(
                f"  cycle {i + 1}/{args.cycles}: pause {pause_ms[-1]:.1f} ms", end="\r", flush=True
            )
        cpu1, calls1, wall1 = cpu_seconds("api + client"), len(stack.calls()), time.time()
        stack.act(cid, "pause")
        time.sleep(1.0)
        calls = [c for c in stack.calls() if c["campaign_id"] == cid]
        cpu_ms = {k: (cpu1[k] - cpu0[k]) * 1000 / max(1, calls1 - calls0) for k in cpu0}
        late = [(c["t"] - a) * 1000 for c in calls for a, b in windows if a < c["t"] < b]
        in_running = sum(1 for c in calls for a, b in running if a <= c["t"] <= b)
        running_s = sum(b - a for a, b in running)
        doubled = sum(1 for n in Counter(c["contact_id"] for c in calls).values() if n > 1)
        report = stack.check_calls({cid})
        return {
            "late_calls": len(late),
            "max_lateness_ms": round(max(late), 3) if late else None,
            "calls_per_s_running": round(in_running / running_s, 1),
            "pause_p50_ms": round(pct(pause_ms, 50), 2),
            "pause_p95_ms": round(pct(pause_ms, 95), 2),
            "pause_p99_ms": round(pct(pause_ms, 99), 2),
            "drain_p50_ms": round(pct(drain_ms, 50), 2),
            "drain_p99_ms": round(pct(drain_ms, 99), 2),
            "bare_p50_ms": round(pct(bare_ms, 50), 2),
            "bare_p99_ms": round(pct(bare_ms, 99), 2),
            "pause_ratio_p50": round(pct(pause_ms, 50) / pct(bare_ms, 50), 2),
            "pause_ratio_p99": round(pct(pause_ms, 99) / pct(bare_ms, 99), 2),
            "undrained_pauses": undrained,
            "double_dials": doubled,
            "audit_ok": report.ok,
            "calls": len(calls),
            # CPU per call placed during the cycles, by component, and cores busy
            "cpu_ms_per_call": {k: round(v, 3) for k, v in cpu_ms.items()},
            "cores_busy": round(sum(cpu1[k] - cpu0[k] for k in cpu0) / (wall1 - wall0), 2),
        }
    finally:
        stack.close()


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--cycles", type=int, default=40)
    ap.add_argument("--contacts", type=int, default=20_000)
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--latency-ms", type=float, default=5)
    ap.add_argument("--queue-factor", type=int, default=16)
    ap.add_argument("--db", choices=["postgres", "sqlite"], default="postgres")
    ap.add_argument(
        "--variant",
        choices=["gate", "naive"],
        default=None,
        help="naive: read the status from the database before each dial",
    )
    args = ap.parse_args()
    if missing := _missing():
        raise SystemExit(f"services not reachable: {', '.join(missing)}")
    results = []
    for r in range(args.runs):
        print(f"run {r + 1}/{args.runs}")
        res = one_run(args, seed=r)
        print("\n  " + json.dumps(res))
        results.append(res)
    keys = [k for k in results[0] if k not in ("audit_ok", "cpu_ms_per_call")]
    print("audit ok in every run:", all(x["audit_ok"] for x in results))
    median = {
        k: statistics.median([x[k] for x in results if x[k] is not None] or [0]) for k in keys
    }
    print("median of", args.runs, "runs:", json.dumps(median))
    cpu = {
        k: round(statistics.median(x["cpu_ms_per_call"][k] for x in results), 3)
        for k in results[0]["cpu_ms_per_call"]
    }
    print("CPU ms per call (median):", json.dumps(cpu), "total", round(sum(cpu.values()), 2))
    print("per run:", json.dumps(results))


if __name__ == "__main__":
    main()
