"""Scaling: dials per second and pause latency with N worker processes, and the memory
of one worker process at rest and under load.

For each provider latency (``--latency-ms``) and each number of worker processes
(``--processes``), a fresh stack (own namespace and PostgreSQL database, control loops in
a child process): N ``dialgate worker`` processes × ``--threads`` threads, one campaign
with ``max_concurrency = N × threads``. It measures the worker processes' resident memory
before the campaign starts (at rest), the dial rate over ``--seconds`` of steady dialing,
the memory again (under load), then ``--pauses`` pause/resume cycles (pause latency: the
HTTP round trip of ``POST …/pause``, commit + gate + drain). Prints one table.

    .venv/bin/python -m bench.scale                # full: 1, 2, 4, 8 processes × 0 and 200 ms
    .venv/bin/python -m bench.scale --quick        # smoke: 1 and 2 processes, 0 ms, short
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.conftest import _missing
from tests.support.stack import TestStack, wait_for


def rss_mib(pid: int) -> float:
    """Resident memory of a process (Linux ``/proc``), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def worker_pids(stack: TestStack) -> list[int]:
    """The dramatiq processes that dial (their heartbeats carry their pids)."""
    return [int(w["pid"]) for w in stack.api("GET", "/workers")["workers"]]


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))]


def one_point(args: argparse.Namespace, processes: int, latency_ms: float) -> dict[str, Any]:
    stack = TestStack(
        Path(tempfile.mkdtemp(prefix="dialgate-bench-")),
        "postgres",
        sim_latency_ms=latency_ms,
        feeder_queue_factor=16,
        feeder_interval=0.05,
        log_level="WARNING",
    )
    try:
        stack.start()
        for _ in range(processes):
            stack.start_worker(threads=args.threads)
        stack.wait_workers(processes, timeout=60)
        pids = worker_pids(stack)
        rest = [rss_mib(p) for p in pids]
        concurrency = processes * args.threads
        # Enough contacts for the measured window at the best rate this concurrency allows.
        per_s = concurrency * 1000 / max(latency_ms, 5)
        contacts = min(args.max_contacts, int(per_s * (args.seconds + 10)) + 200)
        cid = stack.make_campaign(contacts=contacts, max_concurrency=concurrency)
        stack.wait_calls(min(50, contacts // 4), timeout=120)
        n0, t0 = len(stack.calls()), time.time()
        time.sleep(args.seconds)
        rate = (len(stack.calls()) - n0) / (time.time() - t0)
        load = [rss_mib(p) for p in pids]
        pause_ms: list[float] = []
        for _ in range(args.pauses):
            t = time.perf_counter()
            stack.act(cid, "pause")
            pause_ms.append((time.perf_counter() - t) * 1000)
            n = len(stack.calls())
            stack.act(cid, "resume")
            wait_for(lambda n=n: len(stack.calls()) > n, 30, "dialing again", every=0.02)
        return {
            "processes": processes,
            "threads": args.threads,
            "latency_ms": latency_ms,
            "dials_per_s": round(rate, 1),
            "per_process": round(rate / processes, 1),
            "pause_p50_ms": round(statistics.median(pause_ms), 1),
            "pause_max_ms": round(max(pause_ms), 1),
            "rss_rest_mib": round(statistics.mean(rest), 1),
            "rss_load_mib": round(max(load), 1),
        }
    finally:
        stack.close()


COLUMNS = [
    ("latency_ms", "provider ms"),
    ("processes", "processes"),
    ("threads", "threads"),
    ("dials_per_s", "dials/s"),
    ("per_process", "dials/s per process"),
    ("pause_p50_ms", "pause p50 ms"),
    ("pause_max_ms", "pause max ms"),
    ("rss_rest_mib", "worker RSS at rest MiB"),
    ("rss_load_mib", "worker RSS under load MiB (max)"),
]


def table(rows: list[dict[str, Any]]) -> str:
    head = "| " + " | ".join(h for _, h in COLUMNS) + " |"
    rule = "|" + "---|" * len(COLUMNS)
    body = ["| " + " | ".join(str(r[k]) for k, _ in COLUMNS) + " |" for r in rows]
    return "\n".join([head, rule, *body])


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--processes", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--latency-ms", type=float, nargs="+", default=[0, 200])
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=15, help="measured window per point")
    ap.add_argument("--pauses", type=int, default=10, help="pause/resume cycles per point")
    ap.add_argument("--max-contacts", type=int, default=30_000)
    ap.add_argument(
        "--quick", action="store_true", help="smoke: 1, 2 processes; 0 ms; 3 s; 3 pauses"
    )
    args = ap.parse_args()
    if args.quick:
        args.processes, args.latency_ms, args.seconds, args.pauses = [1, 2], [0], 3, 3
        args.max_contacts = 3000
    if missing := _missing():
        raise SystemExit(f"services not reachable: {', '.join(missing)}")
    rows = []
    for latency in args.latency_ms:
        for n in args.processes:
            rows.append(one_point(args, n, latency))
            print(f"  {rows[-1]}", flush=True)
    print(table(rows))


if __name__ == "__main__":
    main()
