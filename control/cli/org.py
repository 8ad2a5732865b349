"""The organisation's settings: ``dialgate org show``, ``dialgate org set``."""

from __future__ import annotations

import argparse
import re
from typing import Any

from control.cli.args import Commands, command
from control.cli.client import make_client
from control.cli.output import esc, print_json

FLAG = "--max-calls-per-number"
FORM = re.compile(r"(\d+)/(\d+(?:\.\d+)?)([hd])")
FORMS = "CALLS/HOURSh (3/24h: 3 calls per number per 24 hours), CALLS/DAYSd (3/1d) or off"


def limit(value: str) -> dict[str, Any] | None:
    """``3/24h`` (or ``3/1d``) as the API's ``{"calls": 3, "hours": 24}``; ``off``: None."""
    text = value.strip().lower()
    if text == "off":
        return None
    found = FORM.fullmatch(text)
    if not found:
        raise argparse.ArgumentTypeError(f"must be {FORMS}, got {value!r}")
    hours = float(found[2]) * (24 if found[3] == "d" else 1)
    return {"calls": int(found[1]), "hours": int(hours) if hours.is_integer() else hours}


def describe(settings: dict[str, Any]) -> str:
    lim = settings.get("max_calls_per_number")
    if not lim:
        return "max calls per number: no limit"
    hours = f"{float(lim['hours']):g}"
    return (
        f"max calls per number: {esc(lim['calls'])} per {esc(hours)} h "
        "(rolling, across every campaign of the organisation)"
    )


def show(args: argparse.Namespace) -> int:
    res = make_client().org_settings()
    if args.json:
        print_json(res)
        return 0
    print(f"organisation {esc(res['org'])}")
    print(describe(res))
    if res.get("updated_by"):
        print(f"changed by {esc(res['updated_by'])} at {esc(res['updated_at'])}")
    return 0


def set_settings(args: argparse.Namespace) -> int:
    res = make_client().org_settings_put({"max_calls_per_number": args.max_calls_per_number})
    if args.json:
        print_json(res)
        return 0
    print(describe(res))
    return 0


def add(sub: Commands) -> None:
    group = sub.add_parser("org", help="your organisation's settings")
    org_sub = group.add_subparsers(dest="org_cmd", required=True)
    command(org_sub, "show", "the organisation's settings", show, with_id=False)
    sp = command(org_sub, "set", "change the organisation's settings", set_settings, with_id=False)
    sp.add_argument(
        FLAG,
        dest="max_calls_per_number",
        type=limit,
        required=True,
        metavar="CALLS/HOURSh|off",
        help=f"the contact frequency limit: {FORMS}",
    )
