"""Cap lifter: ends each controlled resume's temporary concurrency cap when its time is up.

A resume may carry ``{"max_concurrency": N, "for_minutes": M}``: the gate enforces N
(its atomic claim counts leases against the gate's ``max_concurrency``) until M minutes
later. Every ``cap_lift_interval`` seconds this loop finds the caps whose time is up and
ends each with a ``lift_cap`` transition (system), so the lift is recorded, versioned and
written to the gate like any other change. Safe in several processes: the transition is
version-checked and refused once the cap is gone.
"""

from __future__ import annotations

from sqlalchemy import select

from control.campaigns.service import Control
from control.loops.base import Loop
from shared.errors import Conflict
from shared.models import Campaign, utcnow
from shared.states import Action, Source


class CapLifter(Loop):
    name = "cap_lifter"

    def __init__(self, control: Control) -> None:
        super().__init__(control.settings.cap_lift_interval)
        self.control = control

    def step(self) -> int:
        with self.control.sessions() as s:
            due = list(
                s.execute(
                    select(Campaign.id, Campaign.cap_concurrency).where(
                        Campaign.cap_until <= utcnow()
                    )
                )
            )
        lifted = 0
        for cid, cap in due:
            try:
                self.control.transition(
                    cid,
                    Action.LIFT_CAP,
                    actor="cap-lifter",
                    source=Source.SYSTEM,
                    reason=f"temporary concurrency cap of {cap} ended",
                )
                lifted += 1
            except Conflict as exc:  # changed meanwhile (resumed with a new cap, cancelled)
                self.log.info("cap_not_lifted", campaign_id=cid, why=exc.message)
        return lifted
