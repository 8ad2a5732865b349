"""Reconciler: rebuilds every campaign's gate in Redis from the database.

Redis may lose everything at any moment (it keeps nothing on disk in many deployments).
At start-up and every ``reconcile_interval`` seconds, each campaign's gate is compared
with its row and rewritten through the same versioned compare-and-set as a transition,
so a reconciler reading an older row can never overwrite a newer gate. Until a gate is
rebuilt, claims find it missing and are denied (fail closed). The do-not-call set is
rebuilt the same way when it is missing or its size differs from the table's.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from control.campaigns.dnc import DncList
from control.loops.base import Loop
from shared import metrics
from shared.gate import Gate
from shared.models import Campaign, effective_concurrency
from shared.settings import Settings

BATCH = 500


class Reconciler(Loop):
    name = "reconciler"

    def __init__(
        self, settings: Settings, sessions: sessionmaker[Session], gate: Gate, dnc: DncList
    ) -> None:
        super().__init__(settings.reconcile_interval)
        self.sessions = sessions
        self.gate = gate
        self.dnc = dnc
        self.repairs = 0

    def step(self) -> int:
        """Repair what differs; returns 0 so the loop then waits a full interval."""
        self.reconcile()
        return 0

    def reconcile(self) -> int:
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
                    )
                )
            )
        rows = [(cid, st, v, effective_concurrency(m, cap)) for cid, st, v, m, cap in found]
        repaired = 0
        r = self.gate.r
        for i in range(0, len(rows), BATCH):
            batch = rows[i : i + BATCH]
            pipe = r.pipeline(transaction=False)
            for cid, *_ in batch:
                pipe.hmget(self.gate.keys.gate(cid), "status", "version", "max_concurrency")
            current = pipe.execute()
            for (cid, status, version, conc), (g_status, g_version, g_conc) in zip(
                batch, current, strict=True
            ):
                if (g_status, g_version, g_conc) == (status, str(version), str(conc)):
                    continue
                stored = self.gate.write(cid, status, version, conc)
                repaired += 1
                self.log.warning(
                    "gate_repaired",
                    campaign_id=cid,
                    status=status,
                    version=version,
                    found=None if g_version is None else f"{g_status}@{g_version}",
                    stored=stored,
                )
        self.repairs += repaired
        metrics.count(r, self.gate.keys, metrics.LoopCount.RECONCILER_REPAIRS, repaired)
        return repaired
