"""Heartbeats: every ``heartbeat_interval`` the worker writes who it is and how it is.

``<ns>:workers`` (sorted set, worker id -> last beat) says who is live; the per-worker
hash expires after ``worker_ttl`` so a dead worker disappears within that bound.
"""

from __future__ import annotations

import json
import threading
import time

import redis
import structlog

from shared import metrics
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
        now = time.time()
        info = {**rt.describe(), "last": now, "applied": json.dumps(rt.applied())}
        metrics.DIALS_IN_FLIGHT.set(info["inflight"])
        r = rt.gate.r
        pipe = r.pipeline(transaction=False)
        key = self.keys.worker(rt.worker_id)
        pipe.hset(key, mapping={k: str(v) for k, v in info.items()})
        pipe.expire(key, int(rt.settings.worker_ttl) + 1)
        pipe.zadd(self.keys.workers, {rt.worker_id: now})
        pipe.zremrangebyscore(self.keys.workers, "-inf", now - 10 * rt.settings.worker_ttl)
        pipe.execute()

    def leave(self) -> None:
        """Remove this worker from the live set (graceful shutdown)."""
        try:
            r = self.runtime.gate.r
            r.zrem(self.keys.workers, self.runtime.worker_id)
            r.delete(self.keys.worker(self.runtime.worker_id))
        except redis.RedisError:
            pass

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
