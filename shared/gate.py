"""The gate: what every dial passes, atomically, right before the call is placed.

Per campaign, in Redis (keys in :mod:`shared.keys`, one hash tag per campaign):

- ``gate`` hash ``{status, version, max_concurrency, max_lines, max_cps, epoch}`` (and,
  while a canary resume is watched, ``canary`` calls, ``canary_since`` the resume's
  version and ``canary_used`` the calls the claim granted under it: the claim grants no
  more than ``canary`` until the canary's verdict takes it off), written
  only by :data:`WRITE_LUA`, a compare-and-set on ``version``: a lower version never
  overwrites a higher one of the same database. A gate left by another database (another
  ``epoch``: the database was recreated) is overwritten, its versions mean nothing here,
  and the leases, lines and calls-per-second window of that campaign id are dropped with
  it (the old database's calls are not the new campaign's).
- ``leases`` sorted set ``lease -> expiry ms``: one per placement in progress (claim → the
  provider has the call); what a pause drains. A lease is
  ``<attempt>:<worker>:<random>:v<version>``: who holds it, and the campaign version it was
  granted under (a fencing token, also stored on the attempt row). :data:`FREE_LUA` gives
  leases back, and pushes a token on ``drained`` when the last live lease of a closed gate
  goes: what a pause's drain blocks on instead of polling.
- ``lines`` sorted set ``attempt -> expiry ms``: one per live call (claim → the call
  ended); what ``max_lines`` counts. Whoever applies a call's ``ended`` removes it; one whose
  end never arrives expires ``max_call_seconds`` + :data:`LINE_MARGIN_S` after its claim,
  and the claim that removes it says so (counted, logged: never silently).
- ``cps`` sorted set ``lease -> claim ms``: the calls started in the last window, for
  ``max_cps``; :data:`PROVIDER_CPS_LUA` keeps the same for the whole trunk or account.
- ``freed`` list: at most one token, pushed when a lease or line is given back and passed
  on by a claim that leaves room (short-lived): what a dial waiting for room blocks on, so
  one waiter wakes per release instead of all of them. A hint only; the claim decides.

:data:`CLAIM_LUA` checks status, version, concurrency, lines and the campaign's calls per
second, and takes a lease, a line and a token for as many of the attempts it is given (in
order) as there is room for, in one step; a crashed worker's lease and line expire by
themselves. The same round trip first gives back the leases of the calls placed before
(fetch-next). The trunk's calls per second live under a hash tag of their own (a script
may only touch one hash slot), taken right after a granted claim when
``DIALGATE_PROVIDER_MAX_CPS`` is set; the claims it has no slot for are given back.

A calls-per-second limit ``r`` is a sliding window: at most ``max(1, ⌊r⌋)`` claims in any
``max(1, ⌊r⌋) / r`` seconds, plus :data:`CPS_GUARD_MS` so that the few milliseconds between
a claim and its INVITE never let the far end see more than ``r`` in a second.

The services reach these keys only through :class:`Gate`, whose client is private; what
else they keep in Redis (nudges, counters, the do-not-call set, the fleet) goes through
their own client.

The emergency stop is a global key. It is read in the same pipeline right *after* the
claim script (one round trip): a claim that ran before the stop was set holds a lease
that a drain waits for, a claim after it sees the stop and gives its lease back. On a
Redis Cluster the stop's key lives on another node than the campaign's, and a pipeline
sent to two nodes is not run in order: there the stop is read after the claim's answer
(a second round trip, only when something was granted).

Every failure to reach Redis is a denial (fail closed).
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
from redis.client import Pipeline
from redis.cluster import RedisCluster
from redis.commands.core import Script

from shared import metrics
from shared.clients import REDIS_ERRORS
from shared.keys import Keys
from shared.states import DenyReason

WRITE_LUA = """
-- ARGV: status, version, max_concurrency, epoch, max_lines, max_cps, campaign id, canary
-- calls (0: none), the canary's version, its calls already made, channels.
-- The notices go out from the script: a cluster's pipelines may not hold a PUBLISH.
for i = 11, #ARGV do redis.call('PUBLISH', ARGV[i], ARGV[7]) end
local cur = redis.call('HMGET', KEYS[1], 'version', 'epoch', 'canary_since', 'canary_used')
local v = tonumber(ARGV[2])
if cur[1] and tonumber(cur[1]) > v and cur[2] == ARGV[4] then return tonumber(cur[1]) end
-- Another database's gate: its leases, lines and calls-per-second window are not ours.
if cur[1] and cur[2] ~= ARGV[4] then redis.call('DEL', KEYS[2], KEYS[3], KEYS[4]) end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'version', v, 'max_concurrency', ARGV[3],
           'epoch', ARGV[4], 'max_lines', ARGV[5], 'max_cps', ARGV[6])
-- A canary's count of calls only grows while it is the same canary.
if tonumber(ARGV[8]) > 0 then
  local used = tonumber(ARGV[10])
  if cur[3] == ARGV[9] and cur[2] == ARGV[4] then used = math.max(used, tonumber(cur[4])) end
  redis.call('HSET', KEYS[1], 'canary', ARGV[8], 'canary_since', ARGV[9], 'canary_used', used)
else
  redis.call('HDEL', KEYS[1], 'canary', 'canary_since', 'canary_used')
end
return v
"""

# A line whose end never arrives expires this long after the call's bound.
LINE_MARGIN_S = 5.0
# Added to every calls-per-second window (see the module docs).
CPS_GUARD_MS = 50

# A call-per-second window: (capacity, window ms) of a limit r (see the module docs).
CPS_WINDOW_LUA = """
local function window(r)
  local cap = math.max(1, math.floor(r))
  return cap, math.floor(cap * 1000 / r) + %d
end
"""

CLAIM_LUA = (
    CPS_WINDOW_LUA
    + """
-- ARGV: holder, min version, lease ttl ms, line ttl ms, attempt ids (in dial order).
-- {granted, reason the rest was not, version, cps wait ms, lines expired, lease...}
local g = redis.call('HMGET', KEYS[1], 'status', 'version', 'max_concurrency', 'max_lines',
                     'max_cps', 'canary', 'canary_used')
if not g[1] then return {0, 'gate_missing', -1, 0, 0} end
local v = tonumber(g[2])
if v < tonumber(ARGV[2]) then return {0, 'gate_behind', v, 0, 0} end
if g[1] ~= 'running' then return {0, g[1], v, 0, 0} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n, reason, wait = #ARGV - 4, 'ok', 0
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local room = tonumber(g[3]) - redis.call('ZCARD', KEYS[2])
local left = room
if room < n then n, reason = math.max(0, room), 'concurrency' end
local expired = redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
room = tonumber(g[4] or g[3]) - redis.call('ZCARD', KEYS[3])
left = math.min(left, room)
if room < n then n, reason = math.max(0, room), 'lines' end
-- A canary resume: no more calls than it watches until its verdict.
local canary = tonumber(g[6] or '0')
if canary > 0 then
  room = canary - tonumber(g[7] or '0')
  left = math.min(left, room)
  if room < n then n, reason = math.max(0, room), 'canary' end
end
local r = tonumber(g[5] or '0')
local win = 0
if r > 0 and n > 0 then
  local cap
  cap, win = window(r)
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - win)
  room = cap - redis.call('ZCARD', KEYS[4])
  if room < n then
    n, reason = math.max(0, room), 'cps'
    local oldest = redis.call('ZRANGE', KEYS[4], 0, 0, 'WITHSCORES')
    if oldest[2] then wait = tonumber(oldest[2]) + win - now + 1 end
  end
end
local out = {n, reason, v, wait, expired}
for i = 1, n do
  local lease = ARGV[4 + i] .. ':' .. ARGV[1] .. ':v' .. v
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), lease)
  redis.call('ZADD', KEYS[3], now + tonumber(ARGV[4]), ARGV[4 + i])
  if r > 0 then redis.call('ZADD', KEYS[4], now, lease) end
  out[5 + i] = lease
end
if r > 0 and n > 0 then redis.call('PEXPIRE', KEYS[4], win * 2) end
if canary > 0 and n > 0 then redis.call('HINCRBY', KEYS[1], 'canary_used', n) end
-- Room left after a claim that got all it asked for: wake the next dial waiting for room.
if reason == 'ok' and left > n and redis.call('EXISTS', KEYS[5]) == 0 then
  redis.call('LPUSH', KEYS[5], '1')
  redis.call('PEXPIRE', KEYS[5], 2000)
end
return out
"""
)

# The trunk's (or account's) calls per second: ARGV limit, members wanting a token.
# {tokens granted (to the first members), wait ms for the next one}.
PROVIDER_CPS_LUA = (
    CPS_WINDOW_LUA
    + """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cap, win = window(tonumber(ARGV[1]))
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - win)
local n = math.min(#ARGV - 1, cap - redis.call('ZCARD', KEYS[1]))
for i = 1, n do redis.call('ZADD', KEYS[1], now, ARGV[1 + i]) end
redis.call('PEXPIRE', KEYS[1], win * 2)
if n == #ARGV - 1 then return {n, 0} end
n = math.max(0, n)
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {n, tonumber(oldest[2]) + win - now + 1}
"""
)

# Room given back (KEYS: leases or lines, freed, gate, drained; ARGV: members): a token
# (at most one waits in the list) wakes one dial waiting for room, which claims all the
# room it needs and, if some is left, passes the token on (CLAIM_LUA); the last live lease
# of a closed gate wakes the drain.
FREE_LUA = """
local n = redis.call('ZREM', KEYS[1], unpack(ARGV))
if n == 0 then return 0 end
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('LPUSH', KEYS[2], '1')
  redis.call('PEXPIRE', KEYS[2], 2000)
end
if KEYS[4] and redis.call('HGET', KEYS[3], 'status') ~= 'running' then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  if redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf') == 0 then
    redis.call('LPUSH', KEYS[4], '1')
    redis.call('PEXPIRE', KEYS[4], 60000)
  end
end
return n
"""

# Is there room for a call (KEYS: gate, leases, lines; ARGV: min version)? A read: 'ok',
# or why not (the claim's reasons). The claim still decides.
ROOM_LUA = """
local g = redis.call('HMGET', KEYS[1], 'status', 'version', 'max_concurrency', 'max_lines',
                     'canary', 'canary_used')
if not g[1] then return 'gate_missing' end
if tonumber(g[2]) < tonumber(ARGV[1]) then return 'gate_behind' end
if g[1] ~= 'running' then return g[1] end
local t = redis.call('TIME')
local now = '(' .. (tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
if redis.call('ZCOUNT', KEYS[2], now, '+inf') >= tonumber(g[3]) then return 'concurrency' end
if redis.call('ZCOUNT', KEYS[3], now, '+inf') >= tonumber(g[4] or g[3]) then return 'lines' end
if g[5] and tonumber(g[6] or '0') >= tonumber(g[5]) then return 'canary' end
return 'ok'
"""

INFLIGHT_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')
"""  # also counts live lines (KEYS[1]: a campaign's lines)

ACK_LUA = """
local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[1]))
if cur and cur >= tonumber(ARGV[2]) then return cur end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return tonumber(ARGV[2])
"""


@dataclass(frozen=True)
class Claim:
    ok: bool
    reason: str  # ok | running-state names (paused, cancelled, ...) | gate_missing |
    #              gate_behind | concurrency | lines | cps | estop | redis_error
    version: int
    lease_id: str | None = None  # the lease to release; the version is the fencing token
    members: tuple[bool, ...] | None = None  # answers to the claim's probes; None: not asked
    retry_after_ms: int = 0  # cps: when a token is free again
    lines_expired: int = 0  # lines whose end never arrived, removed by this claim


@dataclass(frozen=True)
class Claims:
    """What one claim for several attempts granted: a lease for each of the first
    ``len(leases)`` attempts (in the order asked); ``reason`` says why the rest got none
    (``ok``: every attempt got one)."""

    reason: str  # as Claim's
    version: int
    leases: tuple[str, ...] = ()
    members: tuple[bool, ...] | None = None  # answers to the claim's probes; None: not asked
    retry_after_ms: int = 0  # cps: when a token is free again
    lines_expired: int = 0


@dataclass(frozen=True)
class Drain:
    drained: bool
    inflight: int
    drain_ms: float


@dataclass(frozen=True)
class Snapshot:
    """What Redis knows of a campaign now (:meth:`Gate.snapshot`)."""

    live_workers: tuple[str, ...]
    acks: dict[str, int]  # worker id -> version it applied
    gate: GateState | None
    inflight: int  # live leases (placements in progress)
    lines: int  # live lines (calls up, or of unknown fate until they expire)
    estop: str | None  # the emergency stop's record while it is in force


@dataclass(frozen=True)
class GateState:
    status: str
    version: int
    max_concurrency: int
    max_lines: int | None = None  # None: as max_concurrency
    max_cps: float | None = None
    # A canary resume: the calls it watches and the resume's version (None: no canary);
    # the calls claimed under it so far (Redis's own count, not compared).
    canary: int | None = None
    canary_since: int | None = None
    canary_used: int = field(default=0, compare=False)

    @property
    def canary_spent(self) -> bool:
        """Every call of a canary is claimed: the rest wait for its verdict."""
        return self.canary is not None and self.canary_used >= self.canary


@dataclass(frozen=True)
class Canary:
    """What a gate write says of a canary: its calls, the resume's version, the calls
    already made under it (a lower bound: Redis keeps the larger count)."""

    calls: int
    since: int
    used: int = 0


# How long a closing waits for its replicas (a replica away: the pause goes on without).
REPLICA_WAIT_MS = 200

# A drain blocked on its token looks at the leases again at least this often.
DRAIN_LOOK_S = 0.05

# The gate hash's fields a claim reads.
_FIELDS = (
    "status",
    "version",
    "max_concurrency",
    "max_lines",
    "max_cps",
    "canary",
    "canary_since",
    "canary_used",
)


def _state(
    status: str | None,
    version: str | None,
    limit: str | None,
    lines: str | None = None,
    cps: str | None = None,
    canary: str | None = None,
    canary_since: str | None = None,
    canary_used: str | None = None,
) -> GateState | None:
    """The gate hash's :data:`_FIELDS` as a :class:`GateState` (None: no gate)."""
    if status is None or version is None or limit is None:
        return None
    rate = float(cps) if cps else 0.0
    return GateState(
        str(status),
        int(version),
        int(limit),
        int(lines or limit),
        rate if rate > 0 else None,
        int(canary) if canary else None,
        int(canary_since) if canary_since else None,
        int(canary_used or 0),
    )


class Gate:
    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        epoch: str = "",
        provider_cps: float | None = None,
        replicas: int = 0,
    ) -> None:
        self._r = client
        # Behind a Sentinel: a closing waits (WAIT, at most REPLICA_WAIT_MS) until this many
        # replicas have it, so a failover right after a pause does not lose the pause.
        self.replicas = replicas
        # One server runs a pipeline in order (a node, a Sentinel's master); a cluster's
        # pipeline goes to several nodes, which answer in any order.
        self.in_order = not isinstance(client, RedisCluster)
        self.keys = keys
        self.epoch = epoch  # the database's epoch, stamped on every gate written
        self.provider_cps = provider_cps  # DIALGATE_PROVIDER_MAX_CPS (None: no limit)
        self._write = client.register_script(WRITE_LUA)
        self._claim = client.register_script(CLAIM_LUA % CPS_GUARD_MS)
        self._provider_cps = client.register_script(PROVIDER_CPS_LUA % CPS_GUARD_MS)
        self._inflight = client.register_script(INFLIGHT_LUA)
        self._ack = client.register_script(ACK_LUA)
        self._free = client.register_script(FREE_LUA)
        self._room = client.register_script(ROOM_LUA)
        self._scripts = (
            self._write,
            self._claim,
            self._provider_cps,
            self._inflight,
            self._ack,
            self._free,
            self._room,
        )

    def _pipelined(self, stage: Callable[[Pipeline], object]) -> list[Any]:
        """Run the commands ``stage`` puts in a pipeline, in one round trip. Scripts go by
        SHA (:meth:`_sha`), without redis-py's ``SCRIPT EXISTS`` round trip before each
        pipeline; when Redis lost them (restarted) they are loaded and the pipeline is run
        again once (every command in it is a read or idempotent)."""
        for loaded in (False, True):
            pipe = self._r.pipeline(transaction=False)
            stage(pipe)
            try:
                return pipe.execute()
            except redis.exceptions.NoScriptError:
                if loaded:
                    raise
                for script in self._scripts:
                    script.sha = self._r.script_load(script.script)
        raise AssertionError("unreachable")

    @staticmethod
    def _sha(pipe: Pipeline, script: Script, keys: list[str], args: list[Any]) -> None:
        pipe.evalsha(script.sha, len(keys), *keys, *args)

    # -- control side ----------------------------------------------------------------------
    def write(
        self,
        campaign_id: int,
        status: str,
        version: int,
        max_concurrency: int,
        max_lines: int | None = None,
        max_cps: float | None = None,
        notify: Sequence[str] = (),
        canary: Canary | None = None,
    ) -> int:
        """Versioned compare-and-set; returns the version the gate holds afterwards.
        ``max_lines`` defaults to ``max_concurrency``; ``max_cps`` None: no limit; ``canary``
        None: none. The campaign's id is published on each channel of ``notify`` in the
        same round trip."""
        gate = (campaign_id, status, version, max_concurrency, max_lines, max_cps, canary)
        stored, *_ = self._pipelined(lambda pipe: self._write_stage(pipe, gate, notify))
        return int(stored)

    def close(
        self,
        campaign_id: int,
        status: str,
        version: int,
        max_concurrency: int,
        max_lines: int | None,
        max_cps: float | None,
        notify: Sequence[str],
        timeout: float,
    ) -> tuple[int, Drain]:
        """:meth:`write` a closed gate and :meth:`drain` it: the write, the notices and the
        drain's first count in one round trip (a closed gate keeps no canary)."""
        gate = (campaign_id, status, version, max_concurrency, max_lines, max_cps, None)
        start = time.perf_counter()

        def stage(pipe: Pipeline) -> None:
            self._write_stage(pipe, gate, notify)
            if self.replicas:
                pipe.wait(self.replicas, REPLICA_WAIT_MS)
            self._count_stage(pipe, campaign_id)

        stored, *_, n = self._pipelined(stage)
        return int(stored), self._drained(campaign_id, int(n), start, start + timeout)

    def _write_stage(self, pipe: Pipeline, gate: tuple[Any, ...], notify: Sequence[str]) -> None:
        campaign_id, status, version, max_concurrency, max_lines, max_cps, canary = gate
        lines = max_concurrency if max_lines is None else max_lines
        k = self.keys
        self._sha(
            pipe,
            self._write,
            [k.gate(campaign_id), k.leases(campaign_id), k.lines(campaign_id), k.cps(campaign_id)],
            [
                status,
                version,
                max_concurrency,
                self.epoch,
                lines,
                max_cps or 0,
                campaign_id,
                canary.calls if canary else 0,
                canary.since if canary else 0,
                canary.used if canary else 0,
                *notify,
            ],
        )
        pipe.sadd(self.keys.gates_index, campaign_id)

    def _count_stage(self, pipe: Pipeline, campaign_id: int) -> None:
        """The drain's first look: a token left by an earlier pause means nothing now, so it
        is cleared, then the live leases are counted (the last reply)."""
        pipe.delete(self.keys.drained(campaign_id))
        self._sha(pipe, self._inflight, [self.keys.leases(campaign_id)], [])

    def ping(self) -> None:
        self._r.ping()

    def read(self, campaign_id: int) -> GateState | None:
        """The campaign's gate (None: no gate)."""
        return self.states([campaign_id])[campaign_id]

    def states(self, campaign_ids: Sequence[int]) -> dict[int, GateState | None]:
        """Each campaign's gate (None: no gate), in one round trip."""
        pipe = self._r.pipeline(transaction=False)
        for cid in campaign_ids:
            pipe.hmget(self.keys.gate(cid), *_FIELDS)
        return {cid: _state(*g) for cid, g in zip(campaign_ids, pipe.execute(), strict=True)}

    def versions(self, campaign_ids: Sequence[int]) -> dict[int, int | None]:
        """Each campaign's gate version (None: no gate), in one round trip."""
        pipe = self._r.pipeline(transaction=False)
        for cid in campaign_ids:
            pipe.hget(self.keys.gate(cid), "version")
        replies = pipe.execute()
        return {
            cid: None if v is None else int(v) for cid, v in zip(campaign_ids, replies, strict=True)
        }

    def propagation(
        self, campaign_ids: Sequence[int]
    ) -> dict[int, tuple[int | None, dict[str, int]]]:
        """Each campaign's gate version (None: no gate) and the versions its workers have
        acknowledged (worker id -> version), in one round trip."""
        pipe = self._r.pipeline(transaction=False)
        for cid in campaign_ids:
            pipe.hget(self.keys.gate(cid), "version")
            pipe.hgetall(self.keys.acks(cid))
        replies = pipe.execute()
        return {
            cid: (
                None if replies[2 * n] is None else int(replies[2 * n]),
                {str(w): int(v) for w, v in replies[2 * n + 1].items()},
            )
            for n, cid in enumerate(campaign_ids)
        }

    def inflight(self, campaign_id: int) -> int:
        return int(self._inflight(keys=[self.keys.leases(campaign_id)]))

    def inflight_all(self) -> int:
        """Live leases of every campaign (for the emergency stop's drain)."""
        ids = list(self.campaign_ids())
        answers = self._pipelined(
            lambda pipe: [self._sha(pipe, self._inflight, [self.keys.leases(c)], []) for c in ids]
        )
        return sum(int(n) for n in answers)

    def drain(self, campaign_id: int | None, timeout: float) -> Drain:
        """Wait until the campaign's (None: every campaign's) live leases are gone,
        at most ``timeout`` seconds. A campaign's drain blocks on the token the last
        release pushes (:data:`FREE_LUA`), looking again at least every
        :data:`DRAIN_LOOK_S` (a crashed worker's lease expires without one); the emergency
        stop's (every gate stays open under it) looks every 2 ms."""
        start = time.perf_counter()
        if campaign_id is None:
            n = self.inflight_all()
        else:
            *_, n = self._pipelined(lambda pipe: self._count_stage(pipe, campaign_id))
        return self._drained(campaign_id, int(n), start, start + timeout)

    def _drained(self, campaign_id: int | None, n: int, start: float, deadline: float) -> Drain:
        """Wait from a first count of ``n`` live leases until none is left or ``deadline``."""
        while True:
            now = time.perf_counter()
            if n == 0 or now >= deadline:
                return Drain(n == 0, n, round((now - start) * 1000, 3))
            left = deadline - now
            if campaign_id is None:
                time.sleep(min(0.002, left))
                n = self.inflight_all()
            else:
                signal = self.keys.drained(campaign_id)
                self._r.blpop([signal], timeout=max(0.001, min(DRAIN_LOOK_S, left)))
                n = self.inflight(campaign_id)

    def snapshot(self, campaign_id: int, live_since: float) -> Snapshot:
        """Live workers, acks, gate, in-flight leases, lines and emergency stop: one round
        trip."""
        k = self.keys
        live, acks, g, inflight, lines, estop = self._pipelined(
            lambda pipe: (
                pipe.zrangebyscore(k.workers, live_since, "+inf"),
                pipe.hgetall(k.acks(campaign_id)),
                pipe.hmget(k.gate(campaign_id), *_FIELDS),
                self._sha(pipe, self._inflight, [k.leases(campaign_id)], []),
                self._sha(pipe, self._inflight, [k.lines(campaign_id)], []),
                pipe.get(k.estop),
            )
        )
        return Snapshot(
            tuple(str(w) for w in live),
            {str(w): int(v) for w, v in acks.items()},
            _state(*g),
            int(inflight),
            int(lines),
            estop,
        )

    def campaign_ids(self) -> set[int]:
        return {int(x) for x in self._r.smembers(self.keys.gates_index)}

    def estop(self) -> str | None:
        """The emergency stop's record (JSON) while it is in force, else None."""
        value = self._r.get(self.keys.estop)
        return value if isinstance(value, str) else None

    def set_estop(self, record: str) -> None:
        """One Redis write closes every gate: each claim reads this key."""
        self._r.set(self.keys.estop, record)

    def lift_estop(self) -> bool:
        return bool(self._r.delete(self.keys.estop))

    # -- worker side -----------------------------------------------------------------------
    def claim(
        self,
        campaign_id: int,
        attempt_id: int,
        worker_id: str,
        min_version: int,
        ttl_ms: int,
        probes: Sequence[tuple[str, str]] = (),
        line_ttl_ms: int = 3_605_000,
    ) -> Claim:
        """:meth:`claim_many` for one attempt."""
        c = self.claim_many(
            campaign_id, [attempt_id], worker_id, min_version, ttl_ms, probes, line_ttl_ms
        )
        lease = c.leases[0] if c.leases else None
        reason = "ok" if lease else c.reason
        return Claim(
            bool(lease), reason, c.version, lease, c.members, c.retry_after_ms, c.lines_expired
        )

    def claim_many(
        self,
        campaign_id: int,
        attempt_ids: Sequence[int],
        worker_id: str,
        min_version: int,
        ttl_ms: int,
        probes: Sequence[tuple[str, str]] = (),
        line_ttl_ms: int = 3_605_000,
        release: Sequence[str] = (),
    ) -> Claims:
        """Check estop, status, version, concurrency, lines and calls per second, and take
        a lease, a line and a token for as many of ``attempt_ids`` (in order) as there is
        room for: one round trip, which also gives back the leases in ``release`` first
        (the calls placed before) and answers ``probes`` (set-membership lookups, e.g. the
        do-not-call list); a second one for the trunk's calls per second when it has a
        limit."""
        holder = f"{worker_id}:{secrets.token_hex(4)}"  # a lease: <attempt>:<holder>:v<n>
        k = self.keys
        started = time.perf_counter()
        try:

            def stage(pipe: Pipeline) -> None:
                if release:
                    self._release(pipe, campaign_id, release)
                for key, member in probes:
                    pipe.sismember(key, member)
                self._sha(
                    pipe,
                    self._claim,
                    [
                        k.gate(campaign_id),
                        k.leases(campaign_id),
                        k.lines(campaign_id),
                        k.cps(campaign_id),
                        k.freed(campaign_id),
                    ],
                    [holder, min_version, ttl_ms, line_ttl_ms, *attempt_ids],
                )
                if self.in_order:
                    pipe.get(k.estop)

            replies = self._pipelined(stage)[1 if release else 0 :]
            estop = replies.pop() if self.in_order else None
            *answers, (_, reason, version, wait, expired, *leases) = replies
            members = tuple(bool(a) for a in answers)
            v = int(version)
            granted = [str(x) for x in leases]
            if granted and not self.in_order:
                estop = self._estop_after(campaign_id, attempt_ids, granted)
            if granted and estop is not None:
                self.give_back(campaign_id, attempt_ids[: len(granted)], granted)
                return Claims(DenyReason.ESTOP, v, (), members, 0, int(expired))
            if granted and self.provider_cps is not None:
                tokens, trunk_wait = self._provider_cps(
                    keys=[k.provider_cps], args=[self.provider_cps, *granted]
                )
                if int(tokens) < len(granted):
                    cut = int(tokens)
                    self.give_back(campaign_id, attempt_ids[cut : len(granted)], granted[cut:])
                    granted, reason, wait = granted[:cut], DenyReason.CPS, trunk_wait
            return Claims(str(reason), v, tuple(granted), members, int(wait), int(expired))
        except REDIS_ERRORS:
            return Claims(DenyReason.REDIS_ERROR, -1)
        finally:
            metrics.GATE_CHECK_SECONDS.observe(time.perf_counter() - started)

    def _estop_after(
        self, campaign_id: int, attempt_ids: Sequence[int], granted: list[str]
    ) -> str | None:
        """On a cluster, the emergency stop read after the claim's answer (the stop's key
        is on another node, which could answer a pipelined read first); if it cannot be
        read, the claims are given back and the error raised (fail closed)."""
        try:
            return self.estop()
        except REDIS_ERRORS:
            self.give_back(campaign_id, attempt_ids[: len(granted)], granted)
            raise

    def _release(self, pipe: Pipeline, campaign_id: int, leases: Sequence[str]) -> None:
        k = self.keys
        keys = [k.leases(campaign_id), k.freed(campaign_id), k.gate(campaign_id)]
        self._sha(pipe, self._free, [*keys, k.drained(campaign_id)], list(leases))

    def release(self, campaign_id: int, *leases: str) -> None:
        """Give leases back once the provider has their calls (or refused them); the last
        live one of a closed gate wakes its drain. If Redis is away they expire on their
        own. The lines stay until the calls end."""
        if leases:
            with contextlib.suppress(*REDIS_ERRORS):
                self._pipelined(lambda pipe: self._release(pipe, campaign_id, leases))

    def give_back(
        self, campaign_id: int, attempt_ids: Sequence[int], leases: Sequence[str]
    ) -> None:
        """Claims whose calls were never placed (denied after the claim): their leases,
        lines and calls-per-second tokens go back, in one round trip."""
        k = self.keys

        def stage(pipe: Pipeline) -> None:
            self._release(pipe, campaign_id, leases)
            self._sha(
                pipe, self._free, [k.lines(campaign_id), k.freed(campaign_id)], list(attempt_ids)
            )
            pipe.zrem(k.cps(campaign_id), *leases)

        if leases:
            with contextlib.suppress(*REDIS_ERRORS):
                self._pipelined(stage)

    def end_lines(self, campaign_id: int, attempt_ids: Sequence[int]) -> None:
        """The calls of these attempts ended: their lines are free (if Redis is away, they
        expire on their own)."""
        if attempt_ids:
            k = self.keys
            with contextlib.suppress(*REDIS_ERRORS):
                self._pipelined(
                    lambda pipe: self._sha(
                        pipe,
                        self._free,
                        [k.lines(campaign_id), k.freed(campaign_id)],
                        list(attempt_ids),
                    )
                )

    def room(self, campaign_id: int, min_version: int) -> str:
        """Whether the campaign has room for a call now: ``ok``, or why not (a claim's
        reasons; Redis away: ``redis_error``). One round trip, nothing taken: the claim
        still decides."""
        k = self.keys

        def stage(pipe: Pipeline) -> None:
            keys = [k.gate(campaign_id), k.leases(campaign_id), k.lines(campaign_id)]
            self._sha(pipe, self._room, keys, [min_version])
            pipe.get(k.estop)

        started = time.perf_counter()
        try:
            reason, estop = self._pipelined(stage)
        except REDIS_ERRORS:
            return DenyReason.REDIS_ERROR
        finally:
            metrics.GATE_CHECK_SECONDS.observe(time.perf_counter() - started)
        return DenyReason.ESTOP if estop is not None else str(reason)

    def wait_freed(self, campaign_id: int, timeout: float) -> None:
        """Block until a lease or line of the campaign is given back (at most ``timeout``
        s): a dial denied for room tries again then, not on a timer."""
        with contextlib.suppress(*REDIS_ERRORS):
            self._r.blpop([self.keys.freed(campaign_id)], timeout=max(0.001, timeout))

    def holders(self, campaign_ids: Sequence[int]) -> dict[int, tuple[list[str], list[int]]]:
        """Each campaign's leases and the attempts holding its lines (live or not yet
        expired), in one round trip: what the reconciler compares with the database."""
        pipe = self._r.pipeline(transaction=False)
        for cid in campaign_ids:
            pipe.zrange(self.keys.leases(cid), 0, -1)
            pipe.zrange(self.keys.lines(cid), 0, -1)
        got = pipe.execute()
        return {
            cid: ([str(x) for x in got[2 * n]], [int(a) for a in got[2 * n + 1]])
            for n, cid in enumerate(campaign_ids)
        }

    def lines(self, campaign_id: int) -> int:
        """The campaign's live lines (calls up), fleet-wide."""
        return int(self._inflight(keys=[self.keys.lines(campaign_id)]))

    def ack(self, campaign_id: int, worker_id: str, version: int) -> None:
        """Record that ``worker_id`` applied ``version`` (only ever increases)."""
        self._ack(keys=[self.keys.acks(campaign_id)], args=[worker_id, version])
