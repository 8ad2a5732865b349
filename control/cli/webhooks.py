"""Webhook commands (admin): list, add (the secret is printed once), remove, test,
deliveries (the log of one subscription)."""

from __future__ import annotations

import argparse
import sys

from control.campaigns.webhooks import EVENTS, WILDCARDS
from control.cli.args import Commands
from control.cli.client import make_client
from control.cli.output import esc, print_json, table


def list_webhooks(args: argparse.Namespace) -> int:
    rows = make_client().webhooks()
    if args.json:
        print_json(rows)
        return 0
    table(
        [
            [
                str(w["id"]),
                w["url"],
                ",".join(w["events"]),
                "enabled" if w["enabled"] else f"disabled: {w['disabled_reason']}",
                str(w["failing_since"] or "")[:19],
            ]
            for w in rows
        ],
        ["ID", "URL", "EVENTS", "STATE", "FAILING SINCE"],
    )
    return 0


def add_webhook(args: argparse.Namespace) -> int:
    w = make_client().create_webhook(args.url, args.event)
    if args.json:
        print_json(w)
        return 0
    print(f"webhook {esc(w['id'])} {esc(w['url'])}: {esc(', '.join(w['events']))}")
    print(esc(w["secret"]))
    print("(the signing secret, shown once: store it now)", file=sys.stderr)
    return 0


def remove_webhook(args: argparse.Namespace) -> int:
    w = make_client().remove_webhook(args.webhook_id)
    print_json(w) if args.json else print(f"webhook {esc(w['id'])} {esc(w['url'])} removed")
    return 0


def test_webhook(args: argparse.Namespace) -> int:
    t = make_client().test_webhook(args.webhook_id)
    if args.json:
        print_json(t)
        return 0
    print(
        f"{esc(t['event'])} queued: delivery {esc(t['delivery_id'])}, webhook-id {esc(t['msg_id'])}"
    )
    return 0


def deliveries(args: argparse.Namespace) -> int:
    rows = make_client().webhook_deliveries(args.webhook_id, args.limit)
    if args.json:
        print_json(rows)
        return 0
    table(
        [
            [
                str(d["id"]),
                d["event"],
                str(d["campaign_id"] or ""),
                d["state"],
                str(d["attempts"]),
                str(d["last_status"] or ""),
                str(d["next_attempt_at"] or "")[:19],
                d["last_error"] or "",
            ]
            for d in rows
        ],
        ["ID", "EVENT", "CAMPAIGN", "STATE", "ATTEMPTS", "STATUS", "NEXT RETRY", "ERROR"],
    )
    return 0


def add(sub: Commands) -> None:
    wh = sub.add_parser("webhooks", help="webhook subscriptions of your organisation (admin)")
    wh_sub = wh.add_subparsers(dest="webhooks_cmd", required=True)
    wh_sub.add_parser("list", help="subscriptions and their state").set_defaults(run=list_webhooks)
    wa = wh_sub.add_parser("add", help="subscribe a URL to events (the secret is printed once)")
    wa.add_argument("url")
    wa.add_argument(
        "--event",
        action="append",
        required=True,
        help=f"repeatable; one of {', '.join((*EVENTS, *WILDCARDS))}",
    )
    wa.set_defaults(run=add_webhook)
    wr = wh_sub.add_parser("remove", help="remove a subscription and its delivery log")
    wr.add_argument("webhook_id", type=int)
    wr.set_defaults(run=remove_webhook)
    wt = wh_sub.add_parser("test", help="send a webhook.test delivery")
    wt.add_argument("webhook_id", type=int)
    wt.set_defaults(run=test_webhook)
    wd = wh_sub.add_parser("deliveries", help="the delivery log, newest first")
    wd.add_argument("webhook_id", type=int)
    wd.add_argument("--limit", type=int, default=50)
    wd.set_defaults(run=deliveries)
    for sp in wh_sub.choices.values():
        sp.add_argument("--json", action="store_true", help="print the raw JSON answer")
