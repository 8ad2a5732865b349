"""The fleet of workers in Redis: who is live and what each last said of itself.

- ``Keys.workers``: sorted set, worker id -> last heartbeat (unix seconds); a worker is
  live while its last heartbeat is within ``worker_ttl``;
- ``Keys.worker(id)``: hash, the worker's :class:`Record`; it expires ``worker_ttl`` after
  the last heartbeat, so a dead worker's record disappears within that bound.

Workers write (:func:`beat`, :func:`leave`); the control service and the liveness probe
read (:func:`live`, :func:`records`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass

import redis

from shared.keys import Keys


def _opt(fields: dict[str, str], name: str) -> str | None:
    return fields.get(name) or None


@dataclass(frozen=True)
class Record:
    """A worker's heartbeat record. Read back, a field the hash lacks is ``None`` (or no
    dial in flight, no version applied)."""

    host: str | None
    pid: int | None
    started: float | None  # unix seconds
    threads: int | None
    inflight: int  # placements in progress (a claim's lease held)
    last: float | None  # the heartbeat that wrote this record (unix seconds)
    applied: dict[str, int]  # campaign id -> highest version this worker has heard of
    calls: int = 0  # calls this worker placed that are up (ringing or answered)

    def to_redis(self) -> dict[str, str]:
        fields = {
            "host": self.host,
            "pid": self.pid,
            "started": self.started,
            "threads": self.threads,
            "inflight": self.inflight,
            "calls": self.calls,
            "last": self.last,
        }
        out = {k: str(v) for k, v in fields.items() if v is not None}
        out["applied"] = json.dumps(self.applied)
        return out

    @classmethod
    def from_redis(cls, fields: dict[str, str]) -> Record:
        pid, started = _opt(fields, "pid"), _opt(fields, "started")
        threads, last = _opt(fields, "threads"), _opt(fields, "last")
        return cls(
            host=fields.get("host"),
            pid=None if pid is None else int(pid),
            started=None if started is None else float(started),
            threads=None if threads is None else int(threads),
            inflight=int(fields.get("inflight") or 0),
            calls=int(fields.get("calls") or 0),
            last=None if last is None else float(last),
            applied=json.loads(fields.get("applied") or "{}"),
        )


def beat(r: redis.Redis, keys: Keys, worker_id: str, record: Record, ttl: float) -> None:
    """Write the worker's record and mark it live at ``record.last`` (one round trip);
    entries silent for ten TTLs leave the live set."""
    now = time.time() if record.last is None else record.last
    key = keys.worker(worker_id)
    pipe = r.pipeline(transaction=False)
    pipe.hset(key, mapping=dict(record.to_redis().items()))
    pipe.expire(key, int(ttl) + 1)
    pipe.zadd(keys.workers, {worker_id: now})
    pipe.zremrangebyscore(keys.workers, "-inf", now - 10 * ttl)
    pipe.execute()


def leave(r: redis.Redis, keys: Keys, worker_id: str) -> None:
    """Remove the worker from the live set and drop its record (graceful shutdown)."""
    r.zrem(keys.workers, worker_id)
    r.delete(keys.worker(worker_id))


def live(r: redis.Redis, keys: Keys, ttl: float) -> list[str]:
    """The workers whose last heartbeat is within ``ttl`` seconds."""
    return [str(w) for w in r.zrangebyscore(keys.workers, time.time() - ttl, "+inf")]


def records(r: redis.Redis, keys: Keys, worker_ids: Sequence[str]) -> dict[str, Record]:
    """These workers' records (one round trip); a worker whose record expired is left out."""
    pipe = r.pipeline(transaction=False)
    for w in worker_ids:
        pipe.hgetall(keys.worker(w))
    return {
        w: Record.from_redis(fields)
        for w, fields in zip(worker_ids, pipe.execute(), strict=True)
        if fields
    }
