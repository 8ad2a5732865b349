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
