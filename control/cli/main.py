"""``dialgate``: run the stack (up, control, worker, migrate) and operate campaigns.

Operator commands talk to the control API at ``DIALGATE_URL``. Exit codes: 0 done,
1 refused by the API (the message says why), 2 the control service is unreachable.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from control.cli.client import ApiError, Client
from shared.settings import Settings

STATES = [
    "pending",
    "queued",
    "dialing",
    "done",
    "failed",
    "cancelled",
    "unknown",
    "retry_wait",
    "blocked_dnc",
]
ANSI = re.compile(r"\033\[[0-9;]*m")
# ANSI colours of each status, used only when stdout is a terminal (and NO_COLOR is unset).
COLOURS = {"running": "1;32", "paused": "1;33", "draft": "1", "cancelled": "2", "completed": "2"}


def _paint(text: str, code: str | None) -> str:
    if not code or not sys.stdout.isatty() or os.environ.get("NO_COLOR"):
        return text
    return f"\033[{code}m{text}\033[0m"


def _status(status: str) -> str:
    return _paint(status, COLOURS.get(status))


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def _table(rows: list[list[str]], header: list[str]) -> None:
    """Columns padded by their visible width (colour codes take no room)."""

    def width(x: str) -> int:
        return len(ANSI.sub("", x))

    widths = [max(width(str(x)) for x in col) for col in zip(header, *rows, strict=False)]
    for row in [header, *rows]:
        cells = [str(x) + " " * (w - width(str(x))) for x, w in zip(row, widths, strict=False)]
        print("  ".join(cells).rstrip())


def _show(c: dict[str, Any]) -> None:
    print(f"campaign {c['id']}  {c['name']}")
    print(f"  status        {_status(c['status'])} (version {c['version']})")
    if c.get("paused_at"):
        src = f" by {c['pause_source']}" if c.get("pause_source") else ""
        why = f": {c['pause_reason']}" if c.get("pause_reason") else ""
        print(f"  paused        since {c['paused_at']}{src}{why}")
    print(f"  concurrency   {c['max_concurrency']}   timezone {c['timezone']}")
    if c.get("cap"):
        print(
            f"  temporary cap {c['cap']['max_concurrency']} until {c['cap']['until']} "
            "(lifts by itself)"
        )
    print(f"  retries       {c['max_attempts']} calls at most, backoff {c['retry_backoff_s']} s")
    w = c.get("calling_window")
    if w:
        local = ", and in each contact's local time" if w.get("contact_local_time") else ""
        print(f"  window        {','.join(w['days'])} {w['start']}-{w['end']}{local}")
    auto = c.get("automatic_pauses_24h")
    if auto:
        rules = ", ".join(f"{rule} {n}" for rule, n in sorted(auto.items()))
        print(f"  auto pauses   {rules} (last 24 h)")
    if (c.get("dialing") or {}).get("blocked_by") == "calling_window":
        print(f"  NOT DIALING   outside the calling window; opens at {c['dialing']['opens_at']}")
    counts = c.get("counts", {})
    print("  contacts      " + "  ".join(f"{s} {counts.get(s, 0)}" for s in STATES))
    if c.get("inflight") is not None:
        print(f"  in flight     {c['inflight']}")
    p = c.get("propagation")
    if p:
        print(
            f"  propagation   version {p['version']} acknowledged by "
            f"{p['workers_acked']} of {p['workers_live']} live workers"
        )
    if c.get("emergency_stop"):
        print("  EMERGENCY STOP in force: nothing dials")
    gate = c.get("gate")
    if gate and "drained" in gate:
        state = "drained" if gate["drained"] else f"NOT drained ({gate['inflight']} in flight)"
        print(f"  gate          closed, {state} in {gate['drain_ms']} ms")
    allowed = ", ".join(c.get("allowed_actions", [])) or "none"
    print(f"  actions       {allowed}")


def _show_overview(o: dict[str, Any]) -> None:
    """The campaign page's facts: the campaign, first dial after resume, transitions, why."""
    _show(o["campaign"])
    first = o.get("first_after_resume")
    if first:
        if first.get("started_at"):
            print(
                f"  after resume  first dial {first['started_at']} (attempt {first['attempt_id']}"
                f" on {first['worker_id']}, {first['after_s']} s after the resume)"
            )
        else:
            print(f"  after resume  no dial yet since {first['resumed_at']}")
    print("recent transitions")
    _transitions(o["transitions"])
    _why(o["diagnosis"])


def _transitions(rows: list[dict[str, Any]]) -> None:
    _table(
        [
            [
                str(t["version"]),
                str(t["at"])[:23],
                t["action"],
                f"{t['from']}→{t['to']}",
                t["actor"],
                t["source"],
                (t["reason"] or "")
                + (
                    f" (cap {t['cap']['max_concurrency']} until {t['cap']['until']})"
                    if t.get("cap")
                    else ""
                ),
            ]
            for t in rows
        ],
        ["V", "AT", "ACTION", "CHANGE", "ACTOR", "SOURCE", "REASON"],
    )


def _watch(client: Client, args: argparse.Namespace) -> int:
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
                _show_overview(o)
                sys.stdout.flush()
            shown += 1
            if args.count and shown >= args.count:
                return 0
            time.sleep(args.interval)
    except KeyboardInterrupt:
        return 0


def _why(d: dict[str, Any]) -> None:
    if not d["reasons"]:
        print(f"campaign {d['campaign_id']} ({d['status']}): nothing stops it from dialing")
        return
    print(f"campaign {d['campaign_id']} ({d['status']}): {len(d['reasons'])} reason(s)")
    for r in d["reasons"]:
        print(f"- {r['title']} [{r['code']}]")
        print(f"    evidence  {r['evidence']}")
        print(f"    fix       {r['fix']}")


def _phones_from_csv(path: str) -> list[str]:
    """The ``phone`` column of a CSV file (first line: a header naming it)."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or "phone" not in reader.fieldnames:
            raise SystemExit(f"{path}: the first line must be a header with a 'phone' column")
        return [r["phone"] for r in reader if r.get("phone")]


def _sent_with_progress(path: str, chunk: int = 256 * 1024) -> Iterator[bytes]:
    """The file's bytes, printing how much was sent (stderr) as the request streams it."""
    total = os.path.getsize(path)
    sent = 0
    with open(path, "rb") as f:
        while data := f.read(chunk):
            sent += len(data)
            print(f"  sent {sent * 100 // max(total, 1)}% ({sent}/{total} bytes)", file=sys.stderr)
            yield data
    print("  sent; the server is validating and inserting the rows", file=sys.stderr)


def _import(client: Client, campaign_id: int, path: str) -> None:
    """CSV: one streamed request (rejections by line). JSON: one request per 5,000 items."""
    if not path.endswith(".json"):
        res = client.import_csv(campaign_id, _sent_with_progress(path))
        accepted, rejected, where = res["accepted"], res["rejected"], "line"
        total = accepted + len(rejected)
    else:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        rows = list(data["contacts"] if isinstance(data, dict) else data)
        total, accepted, rejected, where = len(rows), 0, [], "index"
        step = 5000
        for i in range(0, total, step):
            res = client.add_contacts(campaign_id, rows[i : i + step])
            accepted += res["accepted"]
            rejected += [{**r, "index": r["index"] + i} for r in res["rejected"]]
            print(f"  {min(i + step, total)}/{total} items sent", file=sys.stderr)
    for r in rejected:
        place = f"line {r['line']}" if where == "line" else f"item {r['index']}"
        print(f"  rejected {place}: {r['phone']!r}: {r['error']}")
    print(f"accepted {accepted}, rejected {len(rejected)} of {total}")


def make_client() -> Client:
    """The API client, signed in with DIALGATE_TOKEN (or DIALGATE_ADMIN_TOKEN)."""
    settings = Settings()
    return Client(settings.url, token=settings.token or settings.admin_token)


def tokens(args: argparse.Namespace) -> int:
    client = make_client()
    try:
        if args.tokens_cmd == "create":
            body: dict[str, Any] = {"name": args.name, "role": args.role}
            if args.org:
                body["org"] = args.org
            if args.expires_in_days:
                body["expires_in_days"] = args.expires_in_days
            t = client.create_token(**body)
            if args.json:
                _print_json(t)
            else:
                print(f"token {t['id']} {t['name']!r}: {t['role']} of {t['org']}")
                print(t["token"])
                print("(shown once: store it now; only its hash is kept)", file=sys.stderr)
        elif args.tokens_cmd == "list":
            rows = client.tokens()
            if args.json:
                _print_json(rows)
            else:
                _table(
                    [
                        [
                            str(t["id"]),
                            t["name"],
                            t["org"],
                            t["role"],
                            t["prefix"] + "…",
                            str(t["expires_at"] or "never")[:19],
                            "revoked" if t["revoked_at"] else "active",
                        ]
                        for t in rows
                    ],
                    ["ID", "NAME", "ORG", "ROLE", "PREFIX", "EXPIRES", "STATE"],
                )
        else:
            t = client.revoke_token(args.token_id)
            _print_json(t) if args.json else print(f"token {t['id']} {t['name']!r} revoked")
    except ApiError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2 if exc.status == 0 else 1
    return 0


def operator(args: argparse.Namespace) -> int:
    client = make_client()
    try:
        if args.cmd == "campaigns":
            rows = client.campaigns()
            if args.json:
                _print_json(rows)
            else:
                _table(
                    [
                        [
                            str(c["id"]),
                            c["name"],
                            _status(c["status"]),
                            str(c["concurrency"]) + ("*" if c.get("cap") else ""),
                            *(str(c["counts"].get(s, 0)) for s in STATES),
                        ]
                        for c in rows
                    ],
                    ["ID", "NAME", "STATUS", "CONC", *(s.upper() for s in STATES)],
                )
        elif args.cmd == "show":
            o = client.overview(args.id)
            _print_json(o) if args.json else _show_overview(o)
        elif args.cmd == "watch":
            return _watch(client, args)
        elif args.cmd == "why":
            d = client.diagnosis(args.id)
            _print_json(d) if args.json else _why(d)
        elif args.cmd == "create":
            c = client.create(
                name=args.name,
                max_concurrency=args.max_concurrency,
                max_attempts=args.max_attempts,
                retry_backoff_s=args.retry_backoff,
                timezone=args.timezone,
            )
            _print_json(c) if args.json else _show(c)
        elif args.cmd in ("start", "pause", "resume", "cancel"):
            body: dict[str, Any] = {}
            if getattr(args, "reason", None):
                body["reason"] = args.reason
            if getattr(args, "max_concurrency", None) is not None:
                body["max_concurrency"] = args.max_concurrency
            if getattr(args, "for_minutes", None) is not None:
                body["for_minutes"] = args.for_minutes
            if args.cmd == "cancel":
                if not args.yes:
                    print("cancel is irreversible: add --yes to confirm", file=sys.stderr)
                    return 1
                body["confirm"] = True
            c = client.act(args.id, args.cmd, **body)
            _print_json(c) if args.json else _show(c)
        elif args.cmd == "contacts":
            _import(client, args.id, args.file)
        elif args.cmd == "window":
            change: dict[str, Any] = {}
            if args.timezone:
                change["timezone"] = args.timezone
            if args.clear:
                change["calling_window"] = None
            elif args.start or args.end or args.days:
                change["calling_window"] = {
                    "days": args.days.split(",") if args.days else None,
                    "start": args.start,
                    "end": args.end,
                    "contact_local_time": args.contact_local_time,
                }
                change["calling_window"] = {
                    k: v for k, v in change["calling_window"].items() if v is not None
                }
            c = client.update(args.id, change)
            _print_json(c) if args.json else _show(c)
        elif args.cmd == "dnc":
            if args.dnc_cmd == "list":
                entries = client.dnc()
                _table(
                    [[e["phone"], e["actor"], str(e["added_at"])] for e in entries],
                    ["PHONE", "BY", "ADDED"],
                )
            elif args.dnc_cmd == "remove":
                print(f"removed {client.dnc_remove(args.phone)['removed']}")
            else:
                phones = args.phones if args.dnc_cmd == "add" else _phones_from_csv(args.file)
                res = client.dnc_add(phones)
                print(f"added {res['added']}, already listed {res['already_listed']}")
        elif args.cmd == "estop":
            res = client.estop(args.lift, args.reason)
            if args.json:
                _print_json(res)
            elif args.lift:
                print(
                    "emergency stop lifted" if res["lifted"] else "no emergency stop was in force"
                )
            else:
                g = res["gate"]
                drained = "drained" if g["drained"] else f"NOT drained ({g['inflight']} in flight)"
                print(
                    f"EMERGENCY STOP in force since {res['since']}: no campaign dials "
                    f"({drained} in {g['drain_ms']} ms)"
                )
            if not res.get("recorded"):
                print(
                    "warning: the database did not record it (see the control log)", file=sys.stderr
                )
        elif args.cmd == "workers":
            rows = client.workers()
            if args.json:
                _print_json(rows)
            else:
                now = time.time()
                _table(
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
        elif args.cmd == "status":
            ready = client.ready()
            estop = client.estop_state()
            rows = client.campaigns()
            workers = client.workers()
            by_status: dict[str, int] = {}
            for c in rows:
                by_status[c["status"]] = by_status.get(c["status"], 0) + 1
            if args.json:
                _print_json(
                    {
                        "ready": ready,
                        "emergency_stop": estop,
                        "workers_live": len(workers),
                        "campaigns": by_status,
                    }
                )
                return 0
            for name, check in ready.get("checks", {}).items():
                state = "ok" if check["ok"] else f"DOWN: {check.get('error')}"
                print(f"{name:<10} {state}")
            if estop.get("active"):
                print(
                    f"EMERGENCY STOP in force since {estop.get('since')} by {estop.get('by')}"
                    f": {estop.get('reason') or 'no reason given'}"
                )
            else:
                print("emergency stop: not in force")
            print(f"live workers: {len(workers)}")
            print(
                "campaigns: "
                + (", ".join(f"{n} {s}" for s, n in sorted(by_status.items())) or "none")
            )
        elif args.cmd == "history":
            rows = client.transitions(args.id)
            _print_json(rows) if args.json else _transitions(rows)
    except ApiError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2 if exc.status == 0 else 1
    return 0


def run_audit(args: argparse.Namespace) -> int:
    from control.campaigns.safety import audit, print_report, read_calls
    from shared.db import make_engine, make_sessionmaker

    settings = Settings()
    path = args.call_log or settings.sim_call_log
    if not path:
        print("error: give --call-log FILE (or set DIALGATE_SIM_CALL_LOG)", file=sys.stderr)
        return 2
    try:
        calls = read_calls(Path(path))
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    ids = set(args.campaign) if args.campaign else None
    report = audit(make_sessionmaker(make_engine(settings)), calls, ids)
    _print_json(report.as_dict()) if args.json else print_report(report)
    return 0 if report.ok else 1


def _positive(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = 0.0
    if not number > 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds above 0, got {value!r}")
    return number


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dialgate", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    up = sub.add_parser("up", help="run the whole stack in the foreground")
    up.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    up.add_argument("--threads", type=int, default=4, help="threads per worker process")
    up.add_argument("--port", type=int, default=None, help="HTTP port (default 8000)")
    up.add_argument("--demo", action="store_true", help="create and start a demo campaign")
    sub.add_parser("migrate", help="apply database migrations")
    ctl = sub.add_parser("control", help="run the control service (API + background loops)")
    ctl.add_argument("--port", type=int, default=None)
    ctl.add_argument(
        "--role",
        choices=["all", "api", "loops"],
        default="all",
        help="api: HTTP only; loops: relay, feeder, reconciler, recovery, cap lifter, monitor; "
        "all (default): both, the loops in a child process",
    )
    sub.add_parser("monitor", help="run the monitor alone (the control service runs it too)")
    w = sub.add_parser("worker", help="run dialer worker processes (dramatiq)", add_help=False)
    w.add_argument("rest", nargs=argparse.REMAINDER)

    def op(name: str, help: str, with_id: bool = True) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help)
        if with_id:
            sp.add_argument("id", type=int, help="campaign id")
        sp.add_argument("--json", action="store_true", help="print the raw JSON answer")
        return sp

    op("campaigns", "list campaigns", with_id=False)
    op("show", "one campaign: the campaign page's facts, transitions and diagnosis")
    wa = op("watch", "show one campaign, refreshed until Ctrl-C")
    wa.add_argument("--interval", type=_positive, default=2.0, help="seconds between refreshes")
    wa.add_argument("--count", type=int, default=0, help="stop after N refreshes (0: never)")
    op("why", "why isn't it dialing? every reason, with evidence and the fix")
    op("history", "a campaign's transitions, newest first")
    cr = op("create", "create a campaign (draft)", with_id=False)
    cr.add_argument("name")
    cr.add_argument("--max-concurrency", type=int, default=1)
    cr.add_argument("--max-attempts", type=int, default=1, help="calls per contact at most")
    cr.add_argument("--retry-backoff", type=float, default=60.0, help="s, doubling")
    cr.add_argument("--timezone", default="UTC")
    op("start", "start a draft campaign")
    op("pause", "pause a running campaign (waits for in-flight dials)").add_argument("--reason")
    rs = op("resume", "resume a paused campaign, optionally with a temporary concurrency cap")
    rs.add_argument("--reason")
    rs.add_argument(
        "--max-concurrency", type=int, help="temporary cap (with --for-minutes), lifts by itself"
    )
    rs.add_argument("--for-minutes", type=float, help="how long the temporary cap lasts")
    op("cancel", "cancel a campaign (irreversible)").add_argument(
        "--yes", action="store_true", help="confirm"
    )
    es = op("estop", "emergency stop: close every campaign's gate at once", with_id=False)
    es.add_argument("--lift", action="store_true", help="lift the emergency stop")
    es.add_argument("--reason")
    op("workers", "live workers", with_id=False)
    op("status", "services, emergency stop, workers, campaigns", with_id=False)
    au = op(
        "audit", "check the call log against the transitions (exit 1 on findings)", with_id=False
    )
    au.add_argument("--call-log", help="the simulated provider's call log (JSON lines)")
    au.add_argument("--campaign", type=int, action="append", help="only this campaign")
    wi = op("window", "set (or --clear) a campaign's calling window and timezone")
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
    dn = sub.add_parser("dnc", help="the do-not-call list")
    dn_sub = dn.add_subparsers(dest="dnc_cmd", required=True)
    dn_sub.add_parser("list", help="list the numbers")
    dn_sub.add_parser("add", help="add numbers").add_argument("phones", nargs="+")
    dn_sub.add_parser(
        "import", help="add the numbers of a CSV file (a 'phone' column)"
    ).add_argument("file")
    dn_sub.add_parser("remove", help="remove one number").add_argument("phone")
    ci = sub.add_parser("contacts", help="contacts of a campaign")
    ci_sub = ci.add_subparsers(dest="contacts_cmd", required=True)
    imp = ci_sub.add_parser("import", help="import contacts from a CSV (phone,name) or JSON file")
    imp.add_argument("id", type=int)
    imp.add_argument("file")
    tk = sub.add_parser("tokens", help="API tokens (admin)")
    tk_sub = tk.add_subparsers(dest="tokens_cmd", required=True)
    tc = tk_sub.add_parser("create", help="create a token (printed once)")
    tc.add_argument("--name", required=True)
    tc.add_argument(
        "--role", required=True, choices=["viewer", "operator", "supervisor", "admin", "monitor"]
    )
    tc.add_argument("--org", help="organisation (default: yours)")
    tc.add_argument("--expires-in-days", type=float)
    tk_sub.add_parser("list", help="tokens of your organisation")
    tr = tk_sub.add_parser("revoke", help="revoke a token (its web sessions end too)")
    tr.add_argument("token_id", type=int)
    for sp in tk_sub.choices.values():
        sp.add_argument("--json", action="store_true", help="print the raw JSON answer")
    return p


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    sys.exit(dispatch(args))


def dispatch(args: argparse.Namespace) -> int:
    if args.cmd == "up":
        from control.cli.up import up

        return up(args)
    if args.cmd in ("migrate", "control", "monitor"):
        from shared.db import make_engine
        from shared.logging import configure
        from shared.migrate import upgrade

        settings = Settings()
        if getattr(args, "port", None):
            settings.http_port = args.port
        configure(settings.log_level, settings.log_json)
        if args.cmd == "migrate":
            upgrade(make_engine(settings))
            print("database is at the latest migration")
        elif args.cmd == "monitor":
            from control.server import run_monitor

            run_monitor(settings)
        else:
            from control.server import serve

            serve(settings, role=args.role)
        return 0
    if args.cmd == "audit":
        return run_audit(args)
    if args.cmd == "tokens":
        return tokens(args)
    if args.cmd == "worker":
        # control and worker never import each other: hand over to `python -m worker`.
        os.execvp(sys.executable, [sys.executable, "-m", "worker", *args.rest])
    return operator(args)


if __name__ == "__main__":
    main()
