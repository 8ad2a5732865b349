"""Scale in campaigns: pause latency with 10,000 campaigns ÷ with 10, same load, one run.

For each number of campaigns (``--campaigns``, default 10 and 10,000), the peer protocol's
dialgate run (:func:`bench.peer.dialgate`: ``dialgate up --workers 3 --threads 4``, 5 ms
provider, one campaign dialing, ``--cycles`` seeded pause/resume cycles, 100 by default so
that the p99 is not the single slowest), with the campaigns beyond the measured one
written straight into the database first: paused, with ``--contacts-each`` pending
contacts each (a large organisation's idle campaigns: rows in
every table the pause path reads, a gate each in Redis, all compared by the reconciler
every 5 s). Prints both points and the ratios of the pause's p50 and p99.

    .venv/bin/python -m bench.campaigns                 # 10 and 10,000 campaigns
    .venv/bin/python -m bench.campaigns --campaigns 10 1000 --cycles 20   # smoke
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

import redis
from sqlalchemy import create_engine, func, insert, select

from bench.peer import dialgate
from bench.processes import Dialgate
from shared.keys import Keys
from shared.models import Campaign, Contact, utcnow
from tests.conftest import _missing
from tests.support.stack import REDIS_URL, wait_for

BATCH = 5000


def idle_campaigns(n: int, contacts_each: int) -> Callable[[Dialgate], None]:
    """What writes ``n`` paused campaigns of ``contacts_each`` pending contacts into a
    running stack's database, then waits until the reconciler has given each a gate."""

    def write(dg: Dialgate) -> None:
        engine = create_engine(dg.env["DIALGATE_DATABASE_URL"])
        now = utcnow()
        with engine.begin() as conn:
            for start in range(0, n, BATCH):
                rows = [
                    {
                        "org": "default",
                        "name": f"idle {i}",
                        "status": "paused",
                        "version": 2,
                        "max_concurrency": 4,
                        "paused_at": now,
                        "pause_source": "operator",
                        "created_at": now,
                        "updated_at": now,
                    }
                    for i in range(start, min(n, start + BATCH))
                ]
                ids = list(conn.scalars(insert(Campaign).returning(Campaign.id), rows))
                contacts = [
                    {"campaign_id": cid, "phone": f"+3361{cid:05d}{k:03d}", "state": "pending"}
                    for cid in ids
                    for k in range(contacts_each)
                ]
                for i in range(0, len(contacts), BATCH):
                    conn.execute(insert(Contact), contacts[i : i + BATCH])
                print(f"  {min(n, start + BATCH)}/{n} idle campaigns written", end="\r", flush=True)
        with engine.connect() as conn:
            total = int(conn.scalar(select(func.count()).select_from(Campaign)) or 0)
        engine.dispose()
        client = redis.Redis.from_url(REDIS_URL)
        index = Keys(dg.namespace).gates_index
        wait_for(lambda: client.scard(index) >= total, 120, "a gate for every campaign")
        print(f"\n  {total} campaigns, a gate each")

    return write


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--campaigns", type=int, nargs="+", default=[10, 10_000])
    ap.add_argument("--contacts-each", type=int, default=10)
    ap.add_argument("--cycles", type=int, default=100)
    ap.add_argument("--jobs", type=int, default=20_000, help="the measured campaign's contacts")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    args = ap.parse_args()
    if missing := _missing():
        raise SystemExit(f"services not reachable: {', '.join(missing)}")
    points = []
    for n in args.campaigns:
        print(f"{n} campaigns")
        run = dialgate(
            args.seed,
            args.jobs,
            args.db,
            cycles=args.cycles,
            before=idle_campaigns(n - 1, args.contacts_each),
        )
        points.append({"campaigns": n, **run})
        print("  " + json.dumps(points[-1]))
    base = points[0]
    for p in points[1:]:
        print(
            f"{p['campaigns']} ÷ {base['campaigns']} campaigns: pause p50 "
            f"{p['pause_p50_ms']:.1f} ÷ {base['pause_p50_ms']:.1f} ms = "
            f"{p['pause_p50_ms'] / base['pause_p50_ms']:.2f}×, p99 "
            f"{p['pause_p99_ms']:.1f} ÷ {base['pause_p99_ms']:.1f} ms = "
            f"{p['pause_p99_ms'] / base['pause_p99_ms']:.2f}×; late calls "
            f"{base['late_calls']} / {p['late_calls']}"
        )


if __name__ == "__main__":
    main()
