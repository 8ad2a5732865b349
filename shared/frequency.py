"""Contact frequency limits: at most ``calls`` calls to one number within any ``hours``,
per organisation, across all its campaigns, taken atomically at dial time.

The table ``org_settings`` is the truth of the limit (:class:`Limit`). Workers read it with
the campaign's calling window, in the same cached query (:mod:`worker.checks`, at most
once every :data:`READ_TTL_S` per campaign and process): an organisation without a limit
costs its dials nothing more. With a limit, every dial the gate granted takes a slot of
its number by :data:`FREQUENCY_LUA`, one script call for a message's granted attempts:

- one sorted set per number, ``<ns>:{f:<org>}:n:<phone>``, ``attempt id -> start ms``: the
  organisation's calls to that number within the window (the phone as stored, E.164);
- the marker ``<ns>:{f:<org>}:ready``: the window (ms) over which the sets are known to
  hold every call dialed. A marker missing (Redis restarted, flushed; the limit newly set)
  or shorter than the limit's window makes the script answer "unknown", and the dial is
  denied (fail closed) until the sets are rebuilt from the database.

For each attempt, in one step, the script drops the entries older than the window and
takes a slot only if fewer than ``calls`` remain; otherwise it answers how long until
enough of them have left the window. All keys of an organisation share its hash tag, so
the script runs on one Redis Cluster node, and workers of several campaigns (and
processes) can never together place more calls to one number than the limit.

A rebuild (:meth:`FrequencySet.rebuild`) adds the database's dialed attempts of the window
(by their start) to the sets, never removes any (more counted is the safe side), then sets
the marker. The script removes its attempt's own entry before it counts, so an attempt
that a rebuild found already started is not counted twice, and not granted on its own
count.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis

from shared.keys import Keys

# How long a worker may keep a campaign's reading of its organisation's limit (and of its
# calling window). A change of the limit rebuilds the counts only after this long, so that
# every dial placed on the old reading is in the database by then.
READ_TTL_S = 1.0
# What the limit allows (the API refuses anything else).
MAX_CALLS = 1000
MAX_HOURS = 720.0
# A number's set outlives its newest entry's window by this much.
EXPIRY_MARGIN_MS = 60_000


@dataclass(frozen=True)
class Limit:
    calls: int
    hours: float

    @property
    def window_ms(self) -> int:
        return max(1, round(self.hours * 3_600_000))

    def stored(self) -> dict[str, Any]:
        return {"calls": self.calls, "hours": self.hours}

    @staticmethod
    def of(stored: dict[str, Any] | None) -> Limit | None:
        """The limit a row stores (None: no limit)."""
        if not stored:
            return None
        return Limit(int(stored["calls"]), float(stored["hours"]))

    def describe(self) -> str:
        hours = f"{self.hours:g}"
        return f"{self.calls} call{'s' if self.calls != 1 else ''} per number per {hours} h"


FREQUENCY_LUA = """
-- KEYS: the ready marker, then one set per attempt's number. ARGV: calls, window ms, then
-- the attempts' ids (in the order of KEYS[2..]). {'unknown'} when the sets do not cover
-- the window; else {'ok', then per attempt 0 (a slot taken) or the ms until one is free}.
local covered = tonumber(redis.call('GET', KEYS[1]) or '-1')
local calls, win = tonumber(ARGV[1]), tonumber(ARGV[2])
if covered < win then return {'unknown'} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {'ok'}
for i = 2, #KEYS do
  local k, member = KEYS[i], ARGV[1 + i]
  redis.call('ZREMRANGEBYSCORE', k, '-inf', now - win)
  redis.call('ZREM', k, member)
  local n = redis.call('ZCARD', k)
  if n < calls then
    redis.call('ZADD', k, now, member)
    redis.call('PEXPIRE', k, win + MARGIN_MS)
    out[i] = 0
  else
    local nth = redis.call('ZRANGE', k, n - calls, n - calls, 'WITHSCORES')
    out[i] = math.max(1, tonumber(nth[2]) + win - now + 1)
  end
end
-- A shorter window prunes the sets: from now on they cover only it.
if covered > win then redis.call('SET', KEYS[1], win) end
return out
""".replace("MARGIN_MS", str(EXPIRY_MARGIN_MS))


class FrequencySet:
    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.r = client
        self.keys = keys
        self._take = client.register_script(FREQUENCY_LUA)

    def take(self, org: str, limit: Limit, dials: Sequence[tuple[int, str]]) -> list[int] | None:
        """A slot for each ``(attempt id, phone)``: 0 when taken, else the ms until the
        number may be called again; None when the counts are not known (deny every one).
        Redis errors are raised (the caller fails closed)."""
        if not dials:
            return []
        keys = [self.keys.frequency_ready(org)]
        keys += [self.keys.frequency(org, phone) for _, phone in dials]
        got = self._take(keys=keys, args=[limit.calls, limit.window_ms, *(a for a, _ in dials)])
        if str(got[0]) != "ok":
            return None
        return [int(x) for x in got[1:]]

    def covered(self, org: str) -> int | None:
        """The window (ms) the organisation's sets cover, None when not built."""
        value = self.r.get(self.keys.frequency_ready(org))
        return None if value is None else int(str(value))

    def forget(self, org: str) -> None:
        """The limit is gone: the sets are no longer kept up to date, so they no longer
        count as built (a limit set again rebuilds them)."""
        self.r.delete(self.keys.frequency_ready(org))

    def rebuild(
        self, org: str, limit: Limit, read: Callable[[], list[tuple[int, str, datetime]]]
    ) -> int:
        """Add the calls ``read()`` gives (attempt id, phone, start) to the sets, then mark
        them as covering the limit's window; returns how many calls."""
        rows = read()
        win = limit.window_ms
        pipe = self.r.pipeline(transaction=False)
        by_phone: dict[str, dict[str, float]] = {}
        for attempt_id, phone, started in rows:
            by_phone.setdefault(phone, {})[str(attempt_id)] = round(started.timestamp() * 1000)
        for phone, members in by_phone.items():
            key = self.keys.frequency(org, phone)
            pipe.zadd(key, members)
            pipe.pexpire(key, win + EXPIRY_MARGIN_MS)
        pipe.set(self.keys.frequency_ready(org), win)
        pipe.execute()
        return len(rows)
