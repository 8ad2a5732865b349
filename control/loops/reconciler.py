"""Reconciler: rebuilds every campaign's gate in Redis from the database.

Redis may lose everything at any moment (it keeps nothing on disk in many deployments).
At start-up all at once, then once every ``reconcile_interval`` seconds spread evenly
over the interval (:data:`BATCH` campaigns per step, so 10,000 campaigns cost twenty
small steps, not one burst), each campaign's gate is compared with its row, and only a
gate that differs is rewritten, through the same versioned compare-and-set as a transition,
so a reconciler reading an older row can never overwrite a newer gate. Until a gate is
rebuilt, claims find it missing and are denied (fail closed). The do-not-call set is
rebuilt the same way when it is missing or its size differs from the table's, and an
emergency stop whose latest record is a stop is set again, before any gate, when the key
is gone. So are the counts of each organisation's contact frequency limit when their
ready marker is missing or covers a shorter window than the limit's (from the attempts
dialed within the window: :func:`control.campaigns.org.reconcile`).

A line whose call the database says is over (ended, parked, cancelled, blocked) is given
back too: its end was recorded while Redis was away (the line would otherwise hold its
place until it expires, up to ``max_call_seconds``, and a brief Redis outage could hold
a campaign's every line for an hour). A line of an attempt still queued is a claim in
progress, and one of an ``unknown`` attempt may be a call still up: both stay. Likewise
the lease of an attempt placed (ringing, answered) or over: a release lost while Redis was
away would hold a slot, and make a pause's drain wait, until the lease expires.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import redis
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from control.campaigns.dnc import DncList
from control.campaigns.emergency import restore
from control.campaigns.org import reconcile as reconcile_frequency
from control.loops.base import Loop
from shared import metrics
from shared.frequency import FrequencySet
from shared.gate import Canary, Gate, GateState
from shared.models import Attempt, Campaign, EmergencyStop, effective_concurrency
from shared.settings import Settings
from shared.states import AttemptState

BATCH = 500  # campaigns compared per step (one query, one Redis pipeline)
# Attempts whose call is known to be over (or never placed): their lines are given back.
CALL_OVER = (
    AttemptState.ENDED,
    AttemptState.PARKED,
    AttemptState.CANCELLED,
    AttemptState.BLOCKED_DNC,
)
# Attempts whose placement is over (the call placed, or never to be): their leases go.
PLACEMENT_OVER = (*CALL_OVER, AttemptState.RINGING, AttemptState.ANSWERED)


def _attempt(lease: str) -> int:
    """The attempt a lease is for (``<attempt>:<worker>:<random>:v<version>``)."""
    return int(lease.split(":", 1)[0])


class Reconciler(Loop):
    name = "reconciler"

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        redis_client: redis.Redis,
        gate: Gate,
        dnc: DncList,
    ) -> None:
        super().__init__(settings.reconcile_interval)
        self.sessions = sessions
        self.redis = redis_client  # the repair counter (the gates go through ``gate``)
        self.gate = gate
        self.dnc = dnc
        self.frequency = FrequencySet(redis_client, gate.keys)
        self._after = 0  # the sweep's position: the last campaign id compared
        self._steps = 1  # how many steps the last sweep took (paces the next one)
        self._taken = 0

    def step(self) -> int:
        """Compare the next :data:`BATCH` campaigns; returns 0 so the loop then waits its
        share of the interval."""
        _, done = self._slice()
        self._taken += 1
        if done:
            self._steps, self._taken = self._taken, 0
        return 0

    def wait_s(self) -> float:
        """Each step's share of the interval: a sweep of every campaign takes one
        interval, spread evenly, never one burst."""
        return self.interval / self._steps

    def reconcile(self) -> int:
        """A whole sweep at once (at start-up, before any worker may dial); returns how
        many gates were repaired."""
        self._after = 0
        repaired, done = self._slice()
        while not done:
            more, done = self._slice()
            repaired += more
        return repaired

    def _slice(self) -> tuple[int, bool]:
        """Repair what differs among the next :data:`BATCH` campaigns by id; (repaired,
        whether the sweep is complete). A sweep begins with the emergency stop and the
        do-not-call sets, before any gate can open."""
        if self._after == 0:
            self._safety()
        with self.sessions() as s:
            found = list(
                s.execute(
                    select(
                        Campaign.id,
                        Campaign.status,
                        Campaign.version,
                        Campaign.max_concurrency,
                        Campaign.cap_concurrency,
                        Campaign.max_lines,
                        Campaign.max_cps,
                        Campaign.canary,
                    )
                    .where(Campaign.id > self._after)
                    .order_by(Campaign.id)
                    .limit(BATCH)
                )
            )
        wanted = {
            cid: GateState(
                st,
                v,
                effective_concurrency(m, cap),
                lines,
                cps,
                canary["calls"] if canary else None,
                canary["version"] if canary else None,
            )
            for cid, st, v, m, cap, lines, cps, canary in found
        }
        canaries = {cid: canary for cid, *_, canary in found if canary}
        current = self.gate.states(list(wanted))
        repaired = 0
        for cid, want in wanted.items():
            held = current[cid]
            if held == want:
                continue
            stored = self.gate.write(
                cid,
                want.status,
                want.version,
                want.max_concurrency,
                want.max_lines,
                want.max_cps,
                canary=self._canary(cid, canaries.get(cid)),
            )
            repaired += 1
            self.log.warning(
                "gate_repaired",
                campaign_id=cid,
                status=want.status,
                version=want.version,
                found=None if held is None else f"{held.status}@{held.version}",
                stored=stored,
            )
        self._give_back(list(wanted))
        metrics.count(self.redis, self.gate.keys, metrics.LoopCount.RECONCILER_REPAIRS, repaired)
        done = len(found) < BATCH
        self._after = 0 if done else found[-1][0]
        return repaired, done

    def _canary(self, cid: int, canary: dict[str, Any] | None) -> Canary | None:
        """A canary as the database knows it: its calls made so far are those started since
        its resume (Redis keeps its own count when it is higher)."""
        if not canary:
            return None
        with self.sessions() as s:
            used = s.scalar(
                select(func.count()).where(
                    Attempt.campaign_id == cid,
                    Attempt.started_at >= datetime.fromisoformat(canary["at"]),
                )
            )
        return Canary(int(canary["calls"]), int(canary["version"]), int(used or 0))

    def _give_back(self, campaign_ids: list[int]) -> None:
        """Give back the lines of calls the database says are over, and the leases of
        attempts it says were placed or are over."""
        held = {c: h for c, h in self.gate.holders(campaign_ids).items() if h[0] or h[1]}
        if not held:
            return
        asked = {a for leases, lines in held.values() for a in [*map(_attempt, leases), *lines]}
        with self.sessions() as s:
            rows = s.execute(
                select(Attempt.id, Attempt.state).where(
                    Attempt.id.in_(asked), Attempt.state.in_(PLACEMENT_OVER)
                )
            )
            state = {attempt_id: st for attempt_id, st in rows}
        for cid, (leases, lines) in held.items():
            ended = [a for a in lines if state.get(a) in CALL_OVER]
            placed = [x for x in leases if _attempt(x) in state]
            if ended:
                self.gate.end_lines(cid, ended)
                self.log.warning("lines_given_back", campaign_id=cid, attempts=ended)
            if placed:
                self.gate.release(cid, *placed)
                self.log.warning("leases_given_back", campaign_id=cid, leases=placed)

    def _safety(self) -> None:
        with self.sessions() as s:
            latest = s.scalars(
                select(EmergencyStop).order_by(EmergencyStop.id.desc()).limit(1)
            ).first()
        restore(self.gate, latest)
        for org in self.dnc.orgs():  # every organisation's set, or its dials fail closed
            rebuilt = self.dnc.reconcile(org)
            if rebuilt is not None:
                self.log.warning("dnc_set_rebuilt", org=org, phones=rebuilt)
        for org, calls in reconcile_frequency(self.sessions, self.frequency).items():
            self.log.warning("frequency_counts_rebuilt", org=org, calls=calls)
