"""``python -m worker.alive``: the worker pod's liveness check, from its heartbeat.

Exits 0 while at least ``--processes`` worker processes of this host (a pod's host name
is the pod's name) have sent a heartbeat within ``DIALGATE_WORKER_TTL``; 1 otherwise, so
a hung or silent worker is restarted. An unreachable Redis exits 0: no worker could
heartbeat, restarting them would not help, and the ``DialgateBackendDown`` alert says so.
"""

from __future__ import annotations

import argparse
import socket
import sys

from shared import fleet
from shared.clients import REDIS_ERRORS, make_redis
from shared.keys import Keys
from shared.settings import Settings


def main(argv: list[str] | None = None) -> int:
    settings = Settings()
    parser = argparse.ArgumentParser(prog="python -m worker.alive", description=__doc__)
    parser.add_argument("--processes", type=int, default=settings.worker_processes)
    args = parser.parse_args(argv)
    host = socket.gethostname()
    try:
        live = fleet.live(make_redis(settings), Keys(settings.namespace), settings.worker_ttl)
    except REDIS_ERRORS as exc:
        print(f"alive: Redis unreachable ({exc}); not judging the worker", file=sys.stderr)
        return 0
    mine = [w for w in live if w.startswith(f"{host}-")]
    if len(mine) >= args.processes:
        return 0
    print(
        f"not alive: {len(mine)} of {args.processes} worker processes on {host} sent a "
        f"heartbeat within {settings.worker_ttl:g} s",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
