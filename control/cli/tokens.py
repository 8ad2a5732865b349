"""API token commands (admin): create (the secret is printed once), list, revoke."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from control.auth.roles import Role
from control.cli.args import Commands
from control.cli.client import make_client
from control.cli.output import esc, print_json, table


def create(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"name": args.name, "role": args.role}
    if args.org:
        body["org"] = args.org
    if args.expires_in_days:
        body["expires_in_days"] = args.expires_in_days
    t = make_client().create_token(**body)
    if args.json:
        print_json(t)
        return 0
    print(f"token {esc(t['id'])} {esc(repr(t['name']))}: {esc(t['role'])} of {esc(t['org'])}")
    print(esc(t["token"]))
    print("(shown once: store it now; only its hash is kept)", file=sys.stderr)
    return 0


def list_tokens(args: argparse.Namespace) -> int:
    rows = make_client().tokens()
    if args.json:
        print_json(rows)
        return 0
    table(
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
    return 0


def revoke(args: argparse.Namespace) -> int:
    t = make_client().revoke_token(args.token_id)
    print_json(t) if args.json else print(f"token {esc(t['id'])} {esc(repr(t['name']))} revoked")
    return 0


def add(sub: Commands) -> None:
    tk = sub.add_parser("tokens", help="API tokens (admin)")
    tk_sub = tk.add_subparsers(dest="tokens_cmd", required=True)
    tc = tk_sub.add_parser("create", help="create a token (printed once)")
    tc.add_argument("--name", required=True)
    tc.add_argument("--role", required=True, choices=[r.value for r in Role])
    tc.add_argument("--org", help="organisation (default: yours)")
    tc.add_argument("--expires-in-days", type=float)
    tc.set_defaults(run=create)
    tk_sub.add_parser("list", help="tokens of your organisation").set_defaults(run=list_tokens)
    tr = tk_sub.add_parser("revoke", help="revoke a token (its web sessions end too)")
    tr.add_argument("token_id", type=int)
    tr.set_defaults(run=revoke)
    for sp in tk_sub.choices.values():
        sp.add_argument("--json", action="store_true", help="print the raw JSON answer")
