"""Gate overhead: dials per second with the gate ÷ the same pipeline with it switched off
(``--against nochecks``: with the calling-window and do-not-call checks ÷ without them).

Dial messages of one attempt (the test stacks' ``dial_batch``), so both variants are
bounded by the same ``workers × threads`` calls at once: without the gate, a message of
many attempts would place them all at once, past the campaign's concurrency.

Alternates gate / no-gate runs of the same campaign size (so drift on this shared
machine hits both), each a fresh stack: ``--workers`` processes × ``--threads``, the
simulated provider at ``--latency-ms``. Reports every run and the ratio of the medians.

    .venv/bin/python -m bench.overhead --rounds 3
    .venv/bin/python -m bench.overhead --rounds 3 --against nochecks
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from tests.conftest import _missing
from tests.support.stack import TestStack


def rate(args: argparse.Namespace, variant: str) -> float:
    stack = TestStack(
        Path(tempfile.mkdtemp(prefix="dialgate-bench-")),
        "postgres",
        sim_latency_ms=args.latency_ms,
        feeder_queue_factor=16,
        feeder_interval=0.05,
        log_level="WARNING",
    )
    try:
        stack.start()
        for _ in range(args.workers):
            stack.start_worker(threads=args.threads, variant=variant)
        stack.wait_workers(args.workers)
        stack.make_campaign(contacts=args.contacts, max_concurrency=args.workers * args.threads)
        stack.wait_calls(100)
        n0, t0 = len(stack.calls()), time.time()
        time.sleep(args.seconds)
        return (len(stack.calls()) - n0) / (time.time() - t0)
    finally:
        stack.close()


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--contacts", type=int, default=20_000)
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--latency-ms", type=float, default=5)
    ap.add_argument("--against", choices=["nogate", "nochecks"], default="nogate")
    args = ap.parse_args()
    if missing := _missing():
        raise SystemExit(f"services not reachable: {', '.join(missing)}")
    base = args.against
    runs: dict[str, list[float]] = {"gate": [], base: []}
    for r in range(args.rounds):
        for variant in ("gate", base):
            runs[variant].append(round(rate(args, variant), 1))
            print(f"round {r + 1}: {variant} {runs[variant][-1]} dials/s", flush=True)
    ratio = statistics.median(runs["gate"]) / statistics.median(runs[base])
    print(json.dumps({"dials_per_s": runs, f"ratio_gate_over_{base}": round(ratio, 3)}))


if __name__ == "__main__":
    main()
