"""``dialgate check-calls``: the provider's call log checked against the transition log
(the independent safety checker, :mod:`control.campaigns.safety`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from control.cli.args import Commands, command
from control.cli.output import print_json


def check_calls(args: argparse.Namespace) -> int:
    from control.campaigns.safety import check_calls, print_report, read_calls
    from shared.db import make_engine, make_sessionmaker
    from shared.settings import Settings

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
    report = check_calls(make_sessionmaker(make_engine(settings)), calls, ids)
    print_json(report.as_dict()) if args.json else print_report(report)
    return 0 if report.ok else 1


def add(sub: Commands) -> None:
    cc = command(
        sub,
        "check-calls",
        "check the call log against the transitions (exit 1 on findings)",
        check_calls,
        with_id=False,
    )
    cc.add_argument("--call-log", help="the simulated provider's call log (JSON lines)")
    cc.add_argument("--campaign", type=int, action="append", help="only this campaign")
