"""Lists of numbers: a campaign's contact import and the do-not-call list."""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from collections.abc import Iterator

from control.cli.args import Commands
from control.cli.client import Client, make_client
from control.cli.output import esc, table


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
        print(f"  rejected {esc(place)}: {esc(repr(r['phone']))}: {esc(r['error'])}")
    print(f"accepted {accepted}, rejected {len(rejected)} of {total}")


def import_contacts(args: argparse.Namespace) -> int:
    _import(make_client(), args.id, args.file)
    return 0


def dnc(args: argparse.Namespace) -> int:
    client = make_client()
    if args.dnc_cmd == "list":
        entries = client.dnc()
        table(
            [[e["phone"], e["actor"], str(e["added_at"])] for e in entries],
            ["PHONE", "BY", "ADDED"],
        )
    elif args.dnc_cmd == "remove":
        print(f"removed {esc(client.dnc_remove(args.phone)['removed'])}")
    else:
        phones = args.phones if args.dnc_cmd == "add" else _phones_from_csv(args.file)
        res = client.dnc_add(phones)
        print(f"added {esc(res['added'])}, already listed {esc(res['already_listed'])}")
    return 0


def add(sub: Commands) -> None:
    dn = sub.add_parser("dnc", help="the do-not-call list")
    dn.set_defaults(run=dnc)
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
    imp.set_defaults(run=import_contacts)
