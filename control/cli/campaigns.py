"""Campaign commands: list, show, watch, why, history, calls, create, limits, start, pause,
resume, cancel, window."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from control.cli.args import Commands, add_call_limits, add_hangup, call_limits, command, positive
from control.cli.client import make_client
from control.cli.output import (
    STATES,
    attempts,
    preflight,
    print_json,
    show,
    show_overview,
    status_cell,
    table,
    transitions,
    why,
)


def list_campaigns(args: argparse.Namespace) -> int:
    rows = make_client().campaigns()
    if args.json:
        print_json(rows)
        return 0
    table(
        [
            [
                str(c["id"]),
                c["name"],
                status_cell(c["status"]),
                str(c["concurrency"]) + ("*" if c.get("cap") else ""),
                *(str(c["counts"].get(s, 0)) for s in STATES),
            ]
            for c in rows
        ],
        ["ID", "NAME", "STATUS", "CONC", *(s.upper() for s in STATES)],
    )
    return 0


def show_one(args: argparse.Namespace) -> int:
    o = make_client().overview(args.id)
    print_json(o) if args.json else show_overview(o)
    return 0


def watch(args: argparse.Namespace) -> int:
    client = make_client()
    shown = 0
    try:
        while True:
            o = client.overview(args.id)
            if args.json:
                print(json.dumps(o, default=str), flush=True)
            else:
                if sys.stdout.isatty():
                    print("\033[H\033[2J", end="")
                elif shown:
                    print()
                print(f"every {args.interval:g} s, Ctrl-C to stop · {time.strftime('%H:%M:%S')}")
                show_overview(o)
                sys.stdout.flush()
            shown += 1
            if args.count and shown >= args.count:
                return 0
            time.sleep(args.interval)
    except KeyboardInterrupt:
        return 0


def diagnose(args: argparse.Namespace) -> int:
    d = make_client().diagnosis(args.id)
    print_json(d) if args.json else why(d)
    return 0


def history(args: argparse.Namespace) -> int:
    rows = make_client().transitions(args.id)
    print_json(rows) if args.json else transitions(rows)
    return 0


def create(args: argparse.Namespace) -> int:
    c = make_client().create(
        name=args.name,
        max_concurrency=args.max_concurrency,
        max_attempts=args.max_attempts,
        timezone=args.timezone,
        **call_limits(args),
    )
    print_json(c) if args.json else show(c)
    return 0


def limits(args: argparse.Namespace) -> int:
    change = call_limits(args)
    if args.no_max_cps:
        change["max_cps"] = None
    if args.no_retry:
        change["retry"] = None
    if not change:
        print("nothing to change: give --max-lines, --max-cps, --retry, ...", file=sys.stderr)
        return 2
    c = make_client().update(args.id, change)
    print_json(c) if args.json else show(c)
    return 0


def calls(args: argparse.Namespace) -> int:
    rows = make_client().attempts(args.id, args.limit, args.disposition)
    print_json(rows) if args.json else attempts(rows)
    return 0


def act(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {}
    if getattr(args, "reason", None):
        body["reason"] = args.reason
    if getattr(args, "max_concurrency", None) is not None:
        body["max_concurrency"] = args.max_concurrency
    if getattr(args, "for_minutes", None) is not None:
        body["for_minutes"] = args.for_minutes
    if getattr(args, "hold", None):
        body["hold"] = args.hold
    for flag, key in (("ack", "acknowledge"), ("override", "override")):
        if getattr(args, flag, None):
            body[key] = args.__dict__[flag]
    if getattr(args, "canary", None) is not None:
        body["canary"] = {"calls": args.canary, "max_failure_ratio": args.canary_max_failure_ratio}
    if getattr(args, "dry_run", False):
        p = make_client().preflight(args.id)
        print_json(p) if args.json else preflight(p)
        return 0
    if args.cmd == "cancel":
        if not args.yes:
            print("cancel is irreversible: add --yes to confirm", file=sys.stderr)
            return 1
        body["confirm"] = True
    c = make_client().act(args.id, args.cmd, getattr(args, "hangup", None), **body)
    print_json(c) if args.json else show(c)
    return 0


def window(args: argparse.Namespace) -> int:
    change: dict[str, Any] = {}
    if args.timezone:
        change["timezone"] = args.timezone
    if args.clear:
        change["calling_window"] = None
    elif args.start or args.end or args.days:
        w = {
            "days": args.days.split(",") if args.days else None,
            "start": args.start,
            "end": args.end,
            "contact_local_time": args.contact_local_time,
        }
        change["calling_window"] = {k: v for k, v in w.items() if v is not None}
    c = make_client().update(args.id, change)
    print_json(c) if args.json else show(c)
    return 0


def add(sub: Commands) -> None:
    command(sub, "campaigns", "list campaigns", list_campaigns, with_id=False)
    command(
        sub, "show", "one campaign: the campaign page's facts, transitions and diagnosis", show_one
    )
    wa = command(sub, "watch", "show one campaign, refreshed until Ctrl-C", watch)
    wa.add_argument("--interval", type=positive, default=2.0, help="seconds between refreshes")
    wa.add_argument("--count", type=int, default=0, help="stop after N refreshes (0: never)")
    command(sub, "why", "why isn't it dialing? every reason, with evidence and the fix", diagnose)
    command(sub, "history", "a campaign's transitions, newest first", history)
    cr = command(sub, "create", "create a campaign (draft)", create, with_id=False)
    cr.add_argument("name")
    cr.add_argument("--max-concurrency", type=int, default=1)
    cr.add_argument("--max-attempts", type=int, default=1, help="calls per contact at most")
    cr.add_argument("--timezone", default="UTC")
    add_call_limits(cr)
    li = command(sub, "limits", "change lines, calls per second, retries", limits)
    add_call_limits(li)
    li.add_argument("--no-max-cps", action="store_true", help="remove the rate limit")
    li.add_argument("--no-retry", action="store_true", help="no retries: every end is final")
    ca = command(sub, "calls", "a campaign's calls, newest first: disposition, SIP code", calls)
    ca.add_argument("--limit", type=int, default=50)
    ca.add_argument("--disposition", help="only calls that ended so: answered, busy, ...")
    command(sub, "start", "start a draft campaign", act)
    pa = command(sub, "pause", "pause a running campaign (waits for in-flight dials)", act)
    pa.add_argument("--reason")
    pa.add_argument(
        "--hold",
        choices=["operator", "compliance"],
        help="the hold it places (compliance: released by two people)",
    )
    add_hangup(pa, "none")
    rs = command(
        sub, "resume", "resume a paused campaign, optionally with a temporary concurrency cap", act
    )
    rs.add_argument("--reason")
    rs.add_argument(
        "--max-concurrency", type=int, help="temporary cap (with --for-minutes), lifts by itself"
    )
    rs.add_argument("--for-minutes", type=float, help="how long the temporary cap lasts")
    rs.add_argument(
        "--ack",
        action="append",
        metavar="RULE",
        help="acknowledge a monitor, alert or canary hold's rule (repeatable)",
    )
    rs.add_argument(
        "--override",
        action="append",
        choices=["emergency_stop", "provider_failing"],
        help="resume past this blocking preflight finding (recorded; repeatable)",
    )
    rs.add_argument("--canary", type=int, metavar="N", help="watch the first N calls")
    rs.add_argument(
        "--canary-max-failure-ratio",
        type=float,
        default=0.3,
        metavar="R",
        help="the canary pauses again if more than this share fails (default 0.3)",
    )
    rs.add_argument(
        "--dry-run", action="store_true", help="only say what a resume now would do (preflight)"
    )
    cn = command(sub, "cancel", "cancel a campaign (irreversible)", act)
    cn.add_argument("--yes", action="store_true", help="confirm")
    add_hangup(cn, "ringing")
    wi = command(sub, "window", "set (or --clear) a campaign's calling window and timezone", window)
    wi.add_argument("--days", help="comma-separated: mon,tue,wed,thu,fri,sat,sun (default all)")
    wi.add_argument("--start", help="HH:MM local time (default 09:00)")
    wi.add_argument("--end", help="HH:MM; before --start spans midnight (default 21:00)")
    wi.add_argument(
        "--contact-local-time",
        action="store_true",
        help="also hold the window in each contact's local time (from its number)",
    )
    wi.add_argument("--timezone", help="the campaign's IANA timezone")
    wi.add_argument("--clear", action="store_true", help="remove the window (always open)")
