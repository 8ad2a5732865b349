"""Heartbeats: every ``heartbeat_interval`` the worker writes who it is and how it is
(:mod:`shared.fleet`: the live set and the worker's record, which expires after
``worker_ttl`` so a dead worker disappears within that bound).
"""

from __future__ import annotations

import contextlib
import threading
import time

import structlog

from shared import fleet, metrics
from shared.clients import REDIS_ERRORS
from shared.keys import Keys
from worker.runtime import Runtime

log = structlog.get_logger("dialgate.heartbeat")


class Heartbeat:
    def __init__(self, runtime: Runtime, keys: Keys) -> None:
        self.runtime = runtime
        self.keys = keys
        self.stop_event = threading.Event()
        self._thread: threading.Thread | None = None

    def beat(self) -> None:
        rt = self.runtime
        record = rt.describe(time.time())
        metrics.DIALS_IN_FLIGHT.set(record.inflight)
        fleet.beat(rt.redis, self.keys, rt.worker_id, record, rt.settings.worker_ttl)

    def leave(self) -> None:
        """Remove this worker from the live set (graceful shutdown)."""
        with contextlib.suppress(*REDIS_ERRORS):
            fleet.leave(self.runtime.redis, self.keys, self.runtime.worker_id)

    def _run(self) -> None:
        while not self.stop_event.is_set():
            try:
                self.beat()
            except Exception as exc:  # never let the heartbeat thread die
                log.warning("heartbeat_failed", error=f"{type(exc).__name__}: {exc}")
            self.stop_event.wait(self.runtime.settings.heartbeat_interval)

    def start(self) -> Heartbeat:
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()
        if self._thread is not None:
            self._thread.join(5)
        self.leave()
