"""``dialgate worker``: run dramatiq on the dial queue with the dialgate actors.

Processes and threads come from ``--processes``/``--threads`` or
``DIALGATE_WORKER_PROCESSES``/``DIALGATE_WORKER_THREADS``.
"""

from __future__ import annotations

import argparse
import os
import sys

from dramatiq.cli import main as dramatiq_main

from shared.keys import Keys
from shared.settings import Settings


def main(argv: list[str] | None = None) -> int:
    settings = Settings()
    parser = argparse.ArgumentParser(prog="dialgate worker", description=__doc__)
    parser.add_argument("--processes", type=int, default=settings.worker_processes)
    parser.add_argument("--threads", type=int, default=settings.worker_threads)
    parser.add_argument("--shutdown-timeout", type=int, default=30_000, help="ms")
    args = parser.parse_args(argv)
    # The worker processes dramatiq starts read their settings from the environment.
    os.environ["DIALGATE_WORKER_THREADS"] = str(args.threads)
    sys.argv = [
        "dramatiq",
        "worker.actors",
        "--processes",
        str(args.processes),
        "--threads",
        str(args.threads),
        "--queues",
        Keys(settings.namespace).dial_queue,
        "--worker-shutdown-timeout",
        str(args.shutdown_timeout),
        "--skip-logging",
    ]
    return int(dramatiq_main() or 0)


if __name__ == "__main__":
    sys.exit(main())
