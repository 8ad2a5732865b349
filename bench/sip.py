"""Real SIP calls at load: dialgate's ``sip`` back end against SIPp on this machine.

dialgate runs as users run it: ``dialgate control`` (API and loops) and ``dialgate worker
--processes 3`` as separate processes, on PostgreSQL, Redis and RabbitMQ; SIPp
(``tests/sipp/uas.xml``) answers every call after ~50 ms of ringing, talks ``--talk-ms``
(1 s) and hangs up. One campaign, ``max_lines`` 200.

Measured, from the far end's own log where it can be:

- calls started per second while the lines are full (INVITEs SIPp received per second),
  and live calls held (the far end's most calls up at once, and dialgate's ``live``);
- CPU per call by component (``/proc``: workers, control API, control loops, PostgreSQL,
  RabbitMQ, Redis; SIPp shown apart, it is the far end) and cores busy;
- pause latency with the lines full (200 calls up): ``--pauses`` pauses, each answered
  drained, then no INVITE after its answer (checked in SIPp's log), then a resume.

    .venv/bin/python -m bench.sip                 # 3 workers × 8 threads, 200 lines, 20 s
    .venv/bin/python -m bench.sip --seconds 30 --pauses 10
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.processes import Dialgate, cpu_seconds, pct
from tests.support import sipp
from tests.support.stack import wait_for


def run(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="dialgate-bench-sip-"))
    timeout_s = int(args.seconds + 60 * (1 + args.pauses) + 120)
    with sipp.running_sipp(
        tmp / "sipp", talk_ms=args.talk_ms, ring_ms=50, timeout_s=timeout_s
    ) as far:
        sip = {"DIALGATE_PROVIDER": "sip", "DIALGATE_SIP_TARGET": far.target}
        dg = Dialgate(tmp, args.workers, args.threads, {**sip, "DIALGATE_SIP_BIND": "127.0.0.1:0"})
        try:
            contacts = int(args.seconds * args.lines * 2.5 + 2000 * (1 + args.pauses))
            c = dg.api(
                "POST",
                "/campaigns",
                json={
                    "name": "sip bench",
                    "max_concurrency": args.workers * args.threads,
                    "max_lines": args.lines,
                },
            )
            cid = c["id"]
            numbers = [sipp.number("answer", i) for i in range(contacts)]
            for i in range(0, contacts, 20_000):
                rows = [{"phone": n} for n in numbers[i : i + 20_000]]
                dg.api("POST", f"/campaigns/{cid}/contacts", json={"contacts": rows})
            dg.api("POST", f"/campaigns/{cid}/start", json={})

            def live() -> int:
                return int(sum(dg.api("GET", f"/campaigns/{cid}")["live"].values()))

            print("  warming up until the lines are full", flush=True)
            wait_for(lambda: live() >= args.lines * 0.9, 60, "the lines to fill", every=0.5)
            # Steady state: calls started and CPU over the window.
            profiles = dg.profile(args.seconds) if args.profile else []
            cpu0, t0 = cpu_seconds(), time.time()
            samples: list[int] = []
            while time.time() - t0 < args.seconds:
                time.sleep(1.0)
                samples.append(live())
                print(f"  {time.time() - t0:4.0f} s: {samples[-1]} calls up", end="\r", flush=True)
            cpu1, t1 = cpu_seconds(), time.time()
            print()
            for proc, out in profiles:
                proc.wait(30)
                print(f"  profile: {out}")
            # Pauses with the lines full.
            pause_ms: list[float] = []
            up_at_pause: list[int] = []
            late = 0
            for n in range(args.pauses):
                wait_for(lambda: live() >= args.lines * 0.95, 60, "the lines full", every=0.2)
                a = time.time()
                p = dg.api("POST", f"/campaigns/{cid}/pause", json={"reason": "bench"})
                b = time.time()
                assert p["gate"]["drained"], p["gate"]
                pause_ms.append((b - a) * 1000)
                up_at_pause.append(int(p["gate"]["live_calls"]))
                time.sleep(1.5)  # the calls up end; no call may start
                late += len(far.log.invites_after(b))
                dg.api("POST", f"/campaigns/{cid}/resume", json={})
                print(f"  pause {n + 1}/{args.pauses}: {pause_ms[-1]:.1f} ms", flush=True)
            dg.api("POST", f"/campaigns/{cid}/pause", json={})
            invites = [i.time for i in far.log.invites()]
            window = [t for t in invites if t0 <= t <= t1]
            calls = len(window)
            cpu_ms = {k: round((cpu1[k] - cpu0[k]) * 1000 / max(1, calls), 3) for k in cpu0}
            dialgate_ms = sum(v for k, v in cpu_ms.items() if not k.startswith("sipp"))
            return {
                "workers": f"{args.workers} processes x {args.threads} threads",
                "max_lines": args.lines,
                "talk_ms": args.talk_ms,
                "calls_started_per_s": round(calls / (t1 - t0), 1),
                "lines_bound_per_s": round(args.lines / (args.talk_ms / 1000 + 0.05), 1),
                "live_calls_median": statistics.median(samples),
                "live_calls_min": min(samples),
                "far_end_max_concurrent": far.log.max_concurrent_calls(),
                "pause_p50_ms": round(pct(pause_ms, 50), 1) if pause_ms else None,
                "pause_max_ms": round(max(pause_ms), 1) if pause_ms else None,
                "calls_up_at_pause_median": statistics.median(up_at_pause) if up_at_pause else None,
                "invites_after_a_drained_pause": late,
                "cpu_ms_per_call": cpu_ms,
                "dialgate_cpu_ms_per_call": round(dialgate_ms, 3),
                "cores_busy": round(sum(cpu1[k] - cpu0[k] for k in cpu0) / (t1 - t0), 2),
            }
        finally:
            dg.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--lines", type=int, default=200)
    ap.add_argument("--talk-ms", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--pauses", type=int, default=5)
    ap.add_argument("--profile", action="store_true", help="py-spy a worker and the API")
    args = ap.parse_args()
    if not sipp.available():
        sys.exit(f"bench.sip: {sipp.SIPP} is missing: apt-get install -y sip-tester")
    print(json.dumps(run(args), indent=2))


if __name__ == "__main__":
    main()
