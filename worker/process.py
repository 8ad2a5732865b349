"""One supervised worker process: a dramatiq ``Worker`` on the dial queue, in this process.

``dialgate worker --processes N`` runs N of these under :class:`shared.supervisor.Supervisor`
(dramatiq's own master process stops every child when one dies). What this does is what
dramatiq's ``worker_process`` does, minus its master: load the broker and the ``dial``
actor (:mod:`worker.actors`), emit ``process_boot``, start the worker threads, and on
SIGTERM, SIGINT or SIGHUP stop them gracefully (dials in flight finish within
``--shutdown-timeout``; a second signal changes nothing).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from shared.supervisor import die_with_parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker.process", description=__doc__)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--shutdown-timeout", type=int, default=30_000, help="ms")
    args = parser.parse_args(argv)
    die_with_parent()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())

    import dramatiq

    from worker import actors

    actors.broker.emit_after("process_boot")
    worker = dramatiq.Worker(
        actors.broker, queues={actors.dial.queue_name}, worker_threads=args.threads
    )
    worker.start()
    try:
        while not stop.wait(0.5):  # a timed wait: the signal handler always gets its turn
            pass
    finally:
        worker.stop(timeout=args.shutdown_timeout)
        actors.broker.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
