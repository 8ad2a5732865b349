"""``dialgate``: run the stack (up, control, worker, migrate) and operate campaigns.

Operator commands talk to the control API at ``DIALGATE_URL``. Exit codes: 0 done,
1 refused by the API (the message says why), 2 the control service is unreachable.
Each command group is a module of this package that adds its parsers: :mod:`.run`,
:mod:`.campaigns`, :mod:`.contacts`, :mod:`.fleet`, :mod:`.tokens`, :mod:`.webhooks`,
:mod:`.check`, :mod:`.org`.
"""

from __future__ import annotations

import argparse
import sys

from control.cli import campaigns, check, contacts, fleet, org, run, tokens, webhooks
from control.cli.client import ApiError
from control.cli.output import esc

GROUPS = (run, campaigns, contacts, fleet, tokens, webhooks, check, org)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dialgate", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.add(sub)
    return p


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["worker"]:
        # handed on as they are: argparse's REMAINDER refuses a leading option (--processes)
        sys.exit(dispatch(argparse.Namespace(cmd="worker", run=run.worker, rest=argv[1:])))
    sys.exit(dispatch(parser().parse_args(argv)))


def dispatch(args: argparse.Namespace) -> int:
    try:
        code: int = args.run(args)
    except ApiError as exc:
        print(f"error: {esc(exc.message)}", file=sys.stderr)
        return 2 if exc.status == 0 else 1
    return code


if __name__ == "__main__":
    main()
