"""The peer protocol, BullMQ and dialgate alternately, same seeds, same machine.

BullMQ: the peer in ``../shared/peers/bullmq`` (copied to ``~/.cache/dialgate/peer-bullmq``
and installed with ``npm ci`` once), its strongest pause (``--variant global+local``:
``queue.pause()`` and ``worker.pause()`` in every worker process).

dialgate: started as the README tells users, ``dialgate up --workers 3 --threads 4``
(SQLite, the embedded default; ``--db postgres`` for PostgreSQL), the simulated provider at
5 ms per call; one campaign of ``--jobs`` contacts, max_concurrency 12; the same schedule
(the peer's seeded mulberry32: per cycle, run U(0.05, 0.4) s, pause, hold U(0.05, 0.3) s,
resume). Late calls are calls started after a pause answered and before the resume was
requested; the safety audit is ``dialgate check-calls``.

Both: CPU per call by component from /proc over the cycles (dialgate: workers, API,
loops, PostgreSQL, RabbitMQ, Redis; BullMQ: its node processes and Redis).

    .venv/bin/python -m bench.peer --seeds 1 2 3
"""

from __future__ import annotations

import argparse
import bisect
import json
import resource
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.processes import Dialgate, cpu_seconds, pct
from tests.support.stack import ROOT, phones, wait_for

PEER = ROOT.parent / "shared" / "peers" / "bullmq"
CACHE = Path.home() / ".cache" / "dialgate" / "peer-bullmq"


def mulberry32(seed: int) -> Callable[[], float]:
    """The peer's seeded PRNG (run.mjs), so both follow the same pause schedule."""
    state = seed & 0xFFFFFFFF

    def imul(a: int, b: int) -> int:
        return (a * b) & 0xFFFFFFFF

    def rand() -> float:
        nonlocal state
        state = (state + 0x6D2B79F5) & 0xFFFFFFFF
        t = state
        t = imul(t ^ (t >> 15), t | 1)
        t ^= (t + imul(t ^ (t >> 7), t | 61)) & 0xFFFFFFFF
        return ((t ^ (t >> 14)) & 0xFFFFFFFF) / 4294967296

    return rand


def peer_installed() -> Path:
    if not (CACHE / "node_modules" / "bullmq").exists():
        print(f"  installing the BullMQ peer in {CACHE} (npm ci)", flush=True)
        shutil.rmtree(CACHE, ignore_errors=True)
        shutil.copytree(PEER, CACHE, ignore=shutil.ignore_patterns("runs", "node_modules"))
        subprocess.run(["npm", "ci", "--silent"], cwd=CACHE, check=True)
    return CACHE


def bullmq(seed: int, jobs: int) -> dict[str, Any]:
    cwd = peer_installed()
    cpu0, kids0 = cpu_seconds(), resource.getrusage(resource.RUSAGE_CHILDREN)
    cmd = ["node", "run.mjs", "--variant", "global+local", "--seed", str(seed)]
    cmd += ["--jobs", str(jobs), "--no-keep-log"]
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=900, check=True)
    cpu1, kids1 = cpu_seconds(), resource.getrusage(resource.RUSAGE_CHILDREN)
    # The node processes have exited: their CPU is in this process's children's usage (the
    # controller waits for its workers).
    cpu1["bullmq (node)"] = cpu0["bullmq (node)"] + (
        kids1.ru_utime + kids1.ru_stime - kids0.ru_utime - kids0.ru_stime
    )
    r = json.loads(out.stdout[out.stdout.index("{") :])
    res = r["results"]
    calls = int(r.get("calls_total") or res.get("calls_total") or jobs)
    cpu = {k: (cpu1[k] - cpu0[k]) * 1000 / calls for k in ("bullmq (node)", "redis")}
    # (over the whole run, add of 30,000 jobs included; dialgate's is over its cycles)
    return {
        "late_calls": res["calls_after_pause_answer"],
        "calls_per_s": res["calls_per_second_while_running"],
        "pause_p50_ms": res["pause_latency_ms"]["median"],
        "pause_max_ms": res["pause_latency_ms"]["max"],
        "double_dials": res["contacts_processed_more_than_once"],
        "cpu_ms_per_call": {k: round(v, 3) for k, v in cpu.items()},
        "cpu_ms_per_call_total": round(sum(cpu.values()), 3),
    }


def dialgate(
    seed: int,
    jobs: int,
    db: str,
    cycles: int = 40,
    profile: bool = False,
    settings: dict[str, str] | None = None,
    before: Callable[[Dialgate], None] | None = None,
) -> dict[str, Any]:
    """One dialgate run of the protocol; ``before`` prepares the stack first (after it is
    up, before the measured campaign is made)."""
    tmp = Path(tempfile.mkdtemp(prefix="dialgate-bench-peer-"))
    log = tmp / "calls.jsonl"
    env = {"DIALGATE_SIM_LATENCY_MS": "5", "DIALGATE_SIM_CALL_LOG": str(log), **(settings or {})}
    dg = Dialgate(tmp, workers=3, threads=4, env=env, db=db, up=True)
    try:
        if before is not None:
            before(dg)
        cid = dg.api("POST", "/campaigns", json={"name": "peer", "max_concurrency": 12})["id"]
        numbers = phones(jobs)
        for i in range(0, jobs, 20_000):
            rows = [{"phone": p} for p in numbers[i : i + 20_000]]
            dg.api("POST", f"/campaigns/{cid}/contacts", json={"contacts": rows})
        dg.api("POST", f"/campaigns/{cid}/start", json={})

        def calls() -> list[dict[str, Any]]:
            text = log.read_text() if log.exists() else ""
            return [json.loads(x) for x in text.split("\n")[:-1] if x.strip()]

        wait_for(lambda: len(calls()) >= 50, 60, "50 calls")
        rand = mulberry32(seed)
        windows: list[tuple[float, float]] = []
        running: list[tuple[float, float]] = []
        pause_ms: list[float] = []
        drain_ms: list[float] = []  # the server's own wait for the leases, in each answer
        profiles = dg.profile(9.0) if profile else []  # the first ~40 % of the cycles
        cpu0, n0 = cpu_seconds(), len(calls())
        start = time.time()
        for i in range(cycles):
            run_s, hold_s = 0.05 + 0.35 * rand(), 0.05 + 0.25 * rand()
            time.sleep(run_s)
            a = time.time()
            running.append((start, a))
            p = dg.api("POST", f"/campaigns/{cid}/pause", json={})
            b = time.time()
            assert p["gate"]["drained"], p["gate"]
            pause_ms.append((b - a) * 1000)
            drain_ms.append(p["gate"]["drain_ms"])
            time.sleep(hold_s)
            windows.append((b, time.time()))
            dg.api("POST", f"/campaigns/{cid}/resume", json={})
            start = time.time()
            print(f"  cycle {i + 1}/{cycles}: pause {pause_ms[-1]:.1f} ms", end="\r", flush=True)
        print()
        cpu1, n1 = cpu_seconds(), len(calls())
        for proc, out in profiles:
            proc.wait(60)
            print(f"  profile: {out}")
        time.sleep(1.0)
        dg.api("POST", f"/campaigns/{cid}/pause", json={})
        made = [c for c in calls() if c["campaign_id"] == cid]
        late = [c for c in made for a, b in windows if a < c["t"] < b]
        in_running = sum(1 for c in made for a, b in running if a <= c["t"] <= b)
        running_s = sum(b - a for a, b in running)
        times = sorted(c["t"] for c in made)
        # How long each running period waited for its first call (the queue refilling).
        first = [
            (times[i] - a) * 1000
            for a, b in running[1:]
            if (i := bisect.bisect_left(times, a)) < len(times) and times[i] <= b
        ]
        doubled = sum(1 for n in Counter(c["contact_id"] for c in made).values() if n > 1)
        audit = dg.cli("check-calls", "--call-log", str(log), "--campaign", str(cid))
        keys = [k for k in cpu0 if not k.startswith(("sipp", "bullmq"))]
        cpu = {k: (cpu1[k] - cpu0[k]) * 1000 / max(1, n1 - n0) for k in keys}
        return {
            "late_calls": len(late),
            "calls_per_s": round(in_running / running_s, 1),
            "pause_p50_ms": round(pct(pause_ms, 50), 1),
            "pause_max_ms": round(max(pause_ms), 1),
            "pause_p99_ms": round(pct(pause_ms, 99), 1),
            "drain_p50_ms": round(pct(drain_ms, 50), 1),
            "resume_to_first_call_p50_ms": round(pct(first, 50), 1),
            "double_dials": doubled,
            "audit_ok": audit.returncode == 0,
            "cpu_ms_per_call": {k: round(v, 3) for k, v in cpu.items()},
            "cpu_ms_per_call_total": round(sum(cpu.values()), 3),
        }
    finally:
        dg.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--jobs", type=int, default=30_000)
    ap.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    ap.add_argument(
        "--profile", action="store_true", help="py-spy a worker, the API and the control loops"
    )
    ap.add_argument("--only", choices=("bullmq", "dialgate"), help="run one side only")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="DIALGATE_NAME=VALUE",
        help="a setting for every dialgate process (repeat); the defaults otherwise",
    )
    args = ap.parse_args()
    bad = [kv for kv in args.set if not kv.startswith("DIALGATE_") or "=" not in kv]
    if bad:
        ap.error(f"--set takes DIALGATE_NAME=VALUE, got {bad[0]!r}")
    settings = dict(kv.split("=", 1) for kv in args.set)
    rows = []
    for seed in args.seeds:
        if args.only == "dialgate":
            print(
                json.dumps(
                    dialgate(seed, args.jobs, args.db, profile=args.profile, settings=settings),
                    indent=2,
                )
            )
            continue
        print(f"seed {seed}: BullMQ", flush=True)
        b = bullmq(seed, args.jobs)
        if args.only == "bullmq":
            print(json.dumps(b, indent=2))
            continue
        print(f"seed {seed}: dialgate", flush=True)
        d = dialgate(seed, args.jobs, args.db, profile=args.profile, settings=settings)
        ratio = {
            "calls_per_s": round(d["calls_per_s"] / b["calls_per_s"], 3),
            "pause_p50": round(d["pause_p50_ms"] / b["pause_p50_ms"], 2),
            "pause_max": round(d["pause_max_ms"] / b["pause_max_ms"], 2),
        }
        row = {"seed": seed, "bullmq": b, "dialgate": d, "dialgate / bullmq": ratio}
        rows.append(row)
        print(json.dumps(row, indent=2), flush=True)
    if rows:
        print(
            "\n| seed | BullMQ calls/s | dialgate calls/s | ratio | pause p50 BullMQ / dialgate "
            "| slowest BullMQ / dialgate | late | double | audit | CPU ms/call BullMQ / dialgate |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            b, d = r["bullmq"], r["dialgate"]
            print(
                f"| {r['seed']} | {b['calls_per_s']:,.1f} | {d['calls_per_s']:,.1f} "
                f"| {r['dialgate / bullmq']['calls_per_s']} "
                f"| {b['pause_p50_ms']:.1f} / {d['pause_p50_ms']:.1f} ms "
                f"| {b['pause_max_ms']:.1f} / {d['pause_max_ms']:.1f} ms "
                f"| {b['late_calls']} / {d['late_calls']} | {b['double_dials']} / "
                f"{d['double_dials']} | {'ok' if d['audit_ok'] else 'FAILED'} "
                f"| {b['cpu_ms_per_call_total']:.2f} / {d['cpu_ms_per_call_total']:.2f} |"
            )


if __name__ == "__main__":
    main()
