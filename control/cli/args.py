"""What every command group's parser shares: the subcommand helper and argument types."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

Handler = Callable[[argparse.Namespace], int]
Commands = Any  # argparse's private _SubParsersAction: what add_subparsers() returns


def command(
    sub: Commands, name: str, help: str, run: Handler, with_id: bool = True
) -> argparse.ArgumentParser:
    """A subcommand that ``run`` handles; ``with_id``: it takes a campaign id. Every one
    can print the raw JSON answer."""
    sp: argparse.ArgumentParser = sub.add_parser(name, help=help)
    if with_id:
        sp.add_argument("id", type=int, help="campaign id")
    sp.add_argument("--json", action="store_true", help="print the raw JSON answer")
    sp.set_defaults(run=run)
    return sp


def positive(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = 0.0
    if not number > 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds above 0, got {value!r}")
    return number


RETRYABLE = ("busy", "no_answer", "declined", "failed", "canceled")


def retry_policy(value: str) -> dict[str, float]:
    """``busy=600,no_answer=3600``: seconds before calling again, by disposition."""
    policy: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in value.split(","))):
        name, _, seconds = part.partition("=")
        if name not in RETRYABLE:
            raise argparse.ArgumentTypeError(
                f"{name!r} is not a disposition to retry: one of {', '.join(RETRYABLE)}"
            )
        try:
            policy[name] = float(seconds)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{part!r}: give seconds after '=', e.g. busy=600"
            ) from None
    return policy


def add_call_limits(sp: argparse.ArgumentParser) -> None:
    """Lines, calls per second, retries, machine detection: what create and ``limits`` set."""
    sp.add_argument("--max-lines", type=int, help="live calls at once (default: max concurrency)")
    sp.add_argument("--max-cps", type=float, help="calls started per second (default: no limit)")
    sp.add_argument(
        "--retry",
        type=retry_policy,
        help="seconds before calling again, by disposition: busy=600,no_answer=3600 "
        "(a disposition not listed is final)",
    )
    sp.add_argument(
        "--machine-detection",
        action=argparse.BooleanOptionalAction,
        help="answering-machine detection, where the back end has it",
    )


def call_limits(args: argparse.Namespace) -> dict[str, Any]:
    given = {
        "max_lines": args.max_lines,
        "max_cps": args.max_cps,
        "retry": args.retry,
        "machine_detection": args.machine_detection,
    }
    return {k: v for k, v in given.items() if v is not None}


def add_hangup(sp: argparse.ArgumentParser, default: str) -> None:
    sp.add_argument(
        "--hangup",
        choices=("none", "ringing", "all"),
        help=f"calls up to end: ringing (not yet answered) or all (default: {default})",
    )
