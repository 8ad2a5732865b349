"""``dialgate worker``: N supervised worker processes on the dial queue.

Processes and threads come from ``--processes``/``--threads`` or
``DIALGATE_WORKER_PROCESSES``/``DIALGATE_WORKER_THREADS``. Each process
(:mod:`worker.process`) is a child of this one, restarted with backoff should it die
(:mod:`shared.supervisor`); this process serves their metrics, summed, at ``/metrics``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile

from shared.clients import make_redis
from shared.keys import Keys
from shared.logging import configure
from shared.queue import queue_conflict
from shared.settings import load
from shared.supervisor import die_with_parent
from worker import backends

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client reads it on import


def main(argv: list[str] | None = None) -> int:
    settings = load("dialgate worker")
    try:  # bad configuration of the back end stops the worker here, in one line
        backends.check(settings)
    except ValueError as exc:
        print(f"dialgate worker: {exc}", file=sys.stderr)
        return 2
    if conflict := queue_conflict(settings):
        print(f"dialgate worker: {conflict}", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(prog="dialgate worker", description=__doc__)
    parser.add_argument("--processes", type=int, default=settings.worker_processes)
    parser.add_argument("--threads", type=int, default=settings.worker_threads)
    parser.add_argument("--shutdown-timeout", type=int, default=30_000, help="ms")
    args = parser.parse_args(argv)
    die_with_parent()  # under `dialgate up`: ends with it
    configure(settings.log_level, settings.log_json)
    # The worker processes read their settings from the environment.
    os.environ["DIALGATE_WORKER_THREADS"] = str(args.threads)
    # Before any process imports prometheus_client: every worker process writes its
    # samples to this private directory, and this one serves their sum at /metrics
    # (two workers on one host never wipe each other's samples).
    metrics_dir = tempfile.mkdtemp(prefix="dialgate-metrics-")
    os.environ[MULTIPROC_ENV] = metrics_dir
    from shared import metrics
    from shared.supervisor import Spec, Supervisor

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
    command = [sys.executable, "-m", "worker.process", "--threads", str(args.threads)]
    command += ["--shutdown-timeout", str(args.shutdown_timeout)]
    specs = [Spec(f"worker-{i + 1}", command) for i in range(args.processes)]
    supervisor = Supervisor(
        "dialgate worker",
        specs,
        redis_client=make_redis(settings),
        keys=Keys(settings.namespace),
        on_exit=metrics.process_exited,
    )
    try:
        return supervisor.run()
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
