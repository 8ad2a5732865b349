"""Commands that run dialgate: up, migrate, control, monitor, worker."""

from __future__ import annotations

import argparse
import os
import sys

from control.cli.args import Commands


def up(args: argparse.Namespace) -> int:
    from control.cli.up import up

    return up(args)


def service(args: argparse.Namespace) -> int:
    """``migrate``, ``control``, ``monitor``: config → logging → connections → serve."""
    from shared.db import make_engine
    from shared.logging import configure
    from shared.migrate import upgrade
    from shared.settings import load

    settings = load("dialgate")
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
        from shared.queue import queue_conflict

        if conflict := queue_conflict(settings):
            print(f"dialgate control: {conflict}", file=sys.stderr)
            return 2
        return serve(settings, role=args.role)
    return 0


def worker(args: argparse.Namespace) -> int:
    # control and worker never import each other: hand over to `python -m worker`.
    os.execvp(sys.executable, [sys.executable, "-m", "worker", *args.rest])


def add(sub: Commands) -> None:
    u = sub.add_parser("up", help="run the whole stack in the foreground")
    u.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    u.add_argument("--threads", type=int, default=4, help="threads per worker process")
    u.add_argument("--port", type=int, default=None, help="HTTP port (default 8000)")
    u.add_argument("--demo", action="store_true", help="create and start a demo campaign")
    u.set_defaults(run=up)
    sub.add_parser("migrate", help="apply database migrations").set_defaults(run=service)
    ctl = sub.add_parser("control", help="run the control service (API + background loops)")
    ctl.add_argument("--port", type=int, default=None)
    ctl.add_argument(
        "--role",
        choices=["all", "api", "loops"],
        default="all",
        help="api: HTTP only; loops: the seven background loops (relay, feeder, reconciler, "
        "recovery, cap lifter, monitor, webhook sender) only; all (default): both, each in a "
        "supervised child process (restarted should it die)",
    )
    ctl.set_defaults(run=service)
    sub.add_parser(
        "monitor", help="run the monitor alone (the control service runs it too)"
    ).set_defaults(run=service)
    w = sub.add_parser(
        "worker", help="run supervised dialer worker processes (dramatiq)", add_help=False
    )
    w.add_argument("rest", nargs=argparse.REMAINDER)
    w.set_defaults(run=worker)
