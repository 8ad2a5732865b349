"""Fleet-wide commands: the emergency stop, live workers, the stack's status."""

from __future__ import annotations

import argparse
import sys
import time

from control.cli.args import Commands, add_hangup, command
from control.cli.client import make_client
from control.cli.output import esc, hangups, print_json, table


def estop(args: argparse.Namespace) -> int:
    res = make_client().estop(args.lift, args.reason, args.hangup)
    if args.json:
        print_json(res)
        return 0
    if res.get("scope") == "org":  # an organisation admin's stop pauses each campaign
        ids = esc(", ".join(str(c["id"]) for c in res["paused"])) or "none was running"
        print(f"emergency stop of {esc(res['org'])}: paused campaigns {ids}; resume each one")
        return 0
    if args.lift:
        print("emergency stop lifted" if res["lifted"] else "no emergency stop was in force")
    else:
        g = res["gate"]
        drained = "drained" if g["drained"] else f"NOT drained ({esc(g['inflight'])} in flight)"
        print(
            f"EMERGENCY STOP in force since {esc(res['since'])}: no campaign dials "
            f"({drained} in {esc(g['drain_ms'])} ms)"
        )
        if g.get("hung_up") is not None:
            print(hangups(g))
        if not res.get("recorded"):
            print("warning: the database did not record it (see the control log)", file=sys.stderr)
    return 0


def workers(args: argparse.Namespace) -> int:
    rows = make_client().workers()
    if args.json:
        print_json(rows)
        return 0
    now = time.time()
    table(
        [
            [
                w["id"],
                w["host"] or "",
                str(w["pid"]),
                str(w["threads"]),
                str(w["inflight"]),
                f"{now - (w['last_heartbeat'] or now):.1f}s ago",
                ",".join(f"{k}@{v}" for k, v in sorted(w["applied"].items())) or "-",
            ]
            for w in rows
        ],
        ["ID", "HOST", "PID", "THREADS", "IN-FLIGHT", "HEARTBEAT", "APPLIED"],
    )
    return 0


def status(args: argparse.Namespace) -> int:
    client = make_client()
    ready = client.ready()
    stop = client.estop_state()
    rows = client.campaigns()
    live = client.workers()
    by_status: dict[str, int] = {}
    for c in rows:
        by_status[c["status"]] = by_status.get(c["status"], 0) + 1
    if args.json:
        print_json(
            {
                "ready": ready,
                "emergency_stop": stop,
                "workers_live": len(live),
                "campaigns": by_status,
            }
        )
        return 0
    for name, check in ready.get("checks", {}).items():
        state = "ok" if check["ok"] else f"DOWN: {esc(check.get('error'))}"
        print(f"{esc(name):<10} {state}")
    if stop.get("active"):
        who = ""  # who set it and why: shown to a platform admin only
        if "by" in stop:
            who = f" by {esc(stop['by'])}: {esc(stop.get('reason') or 'no reason given')}"
        print(f"EMERGENCY STOP in force since {esc(stop.get('since'))}{who}")
    else:
        print("emergency stop: not in force")
    print(f"live workers: {len(live)}")
    processes = ready.get("processes")
    if processes is not None:
        restarts = sum(p["restarts"] for p in processes)
        print(f"supervised processes: {len(processes)}, restarts {restarts}")
        for trouble in ready.get("degraded", []):
            print(f"DEGRADED: {esc(trouble)}")
    counts = ", ".join(f"{n} {esc(s)}" for s, n in sorted(by_status.items()))
    print("campaigns: " + (counts or "none"))
    return 0


def add(sub: Commands) -> None:
    es = command(
        sub, "estop", "emergency stop: close every campaign's gate at once", estop, with_id=False
    )
    es.add_argument("--lift", action="store_true", help="lift the emergency stop")
    es.add_argument("--reason")
    add_hangup(es, "ringing")
    command(sub, "workers", "live workers", workers, with_id=False)
    command(sub, "status", "services, emergency stop, workers, campaigns", status, with_id=False)
