"""Reconciler: rebuilds every campaign's gate in Redis from the database.

Redis may lose everything at any moment (it keeps nothing on disk in many deployments).
At start-up and every ``reconcile_interval`` seconds, each campaign's gate is compared
with its row and rewritten through the same versioned compare-and-set as a transition,
so a reconciler reading an older row can never overwrite a newer gate. Until a gate is
rebuilt, claims find it missing and are denied (fail closed). The do-not-call set is
rebuilt the same way when it is missing or its size differs from the table's, and an
emergency stop whose latest record is a stop is set again, before any gate, when the key
is gone.
"""

from __future__ import annotations

import redis
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from control.campaigns.dnc import DncList
from control.campaigns.emergency import restore
from control.loops.base import Loop
from shared import metrics
from shared.gate import Gate, GateState
from shared.models import Campaign, EmergencyStop, effective_concurrency
from shared.settings import Settings

BATCH = 500


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

    def step(self) -> int:
        """Repair what differs; returns 0 so the loop then waits a full interval."""
        self.reconcile()
        return 0

    def reconcile(self) -> int:
        with self.sessions() as s:  # the emergency stop first: before any gate can open
            latest = s.scalars(
                select(EmergencyStop).order_by(EmergencyStop.id.desc()).limit(1)
            ).first()
        restore(self.gate, latest)
        for org in self.dnc.orgs():  # every organisation's set, or its dials fail closed
            rebuilt = self.dnc.reconcile(org)
            if rebuilt is not None:
                self.log.warning("dnc_set_rebuilt", org=org, phones=rebuilt)
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
                    )
                )
            )
        rows = [
            GateState(st, v, effective_concurrency(m, cap), lines, cps)
            for st, v, m, cap, lines, cps in ((r[1], r[2], r[3], r[4], r[5], r[6]) for r in found)
        ]
        ids = [r[0] for r in found]
        repaired = 0
        for i in range(0, len(rows), BATCH):
            batch = list(zip(ids[i : i + BATCH], rows[i : i + BATCH], strict=True))
            current = self.gate.states([cid for cid, _ in batch])
            for cid, want in batch:
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
        metrics.count(self.redis, self.gate.keys, metrics.LoopCount.RECONCILER_REPAIRS, repaired)
        return repaired
