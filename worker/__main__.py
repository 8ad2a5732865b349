"""``dialgate worker``: run dramatiq on the dial queue with the dialgate actors.

Processes and threads come from ``--processes``/``--threads`` or
``DIALGATE_WORKER_PROCESSES``/``DIALGATE_WORKER_THREADS``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile

from dramatiq.cli import main as dramatiq_main

from shared.keys import Keys
from shared.settings import load
from worker import backends

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client reads it on import


def main(argv: list[str] | None = None) -> int:
    settings = load("dialgate worker")
    try:  # bad configuration of the back end stops the worker here, in one line
        backends.check(settings)
    except ValueError as exc:
        print(f"dialgate worker: {exc}", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(prog="dialgate worker", description=__doc__)
    parser.add_argument("--processes", type=int, default=settings.worker_processes)
    parser.add_argument("--threads", type=int, default=settings.worker_threads)
    parser.add_argument("--shutdown-timeout", type=int, default=30_000, help="ms")
    args = parser.parse_args(argv)
    # The worker processes dramatiq starts read their settings from the environment.
    os.environ["DIALGATE_WORKER_THREADS"] = str(args.threads)
    # Before any process imports prometheus_client (the forked worker processes inherit
    # what this one imported): they all write their samples to this private directory,
    # and this process (dramatiq's main one) serves their sum at /metrics. dramatiq's own
    # Prometheus middleware uses one directory and one port per host: two workers on a
    # host would wipe each other's samples.
    metrics_dir = tempfile.mkdtemp(prefix="dialgate-metrics-")
    os.environ[MULTIPROC_ENV] = metrics_dir
    from shared import metrics

    try:
        port = metrics.serve_worker(settings.worker_metrics_host, settings.worker_metrics_port)
    except OSError as exc:
        shutil.rmtree(metrics_dir, ignore_errors=True)
        print(
            f"dialgate worker: cannot serve metrics on {settings.worker_metrics_host}:"
            f"{settings.worker_metrics_port} ({exc}); give each worker on this host its own "
            "DIALGATE_WORKER_METRICS_PORT, or 0 for any free port",
            file=sys.stderr,
        )
        return 2
    print(f"dialgate worker: metrics on :{port}/metrics", file=sys.stderr, flush=True)
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
    try:
        return int(dramatiq_main() or 0)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
