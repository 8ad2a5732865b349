"""Recovery sweep: attempts whose call's end will never be heard of become ``unknown``.

A live attempt (``dialing``, ``ringing``, ``answered``) is swept when

- its worker's heartbeat is gone (``worker_ttl``) and it started more than a lease ago:
  the worker died while placing it or with the call up (its line expires by itself,
  ``max_call_seconds`` after the claim: the far end may still hold the call until then).
- it was never placed (``dialing``, no outcome) three leases after it started (its
  message's claim waits at most 2 s for room, and the placement of its calls fits in a
  lease): the worker lost its write;
- it started longer ago than any call may last (``max_call_seconds`` plus the line's
  margin): an end that was lost.

The person may have been called: the attempt and its contact are marked ``unknown``
(counted in the campaign's ``counts``, logged) and never dialed again automatically. A late
``ended`` from the provider still overwrites ``unknown`` (:mod:`shared.calls`).
"""

from __future__ import annotations

from datetime import timedelta

import redis
from sqlalchemy import and_, or_, update
from sqlalchemy.orm import Session, sessionmaker

from control.loops.base import Loop
from shared import fleet
from shared.clients import REDIS_ERRORS
from shared.gate import LINE_MARGIN_S
from shared.keys import Keys
from shared.models import Attempt, Contact, utcnow
from shared.settings import Settings
from shared.states import LIVE, AttemptState, ContactState

MARGIN_S = 2.0


class Recovery(Loop):
    name = "recovery"

    def __init__(
        self, settings: Settings, sessions: sessionmaker[Session], client: redis.Redis
    ) -> None:
        super().__init__(max(0.5, settings.lease_ttl_ms / 2000))
        self.settings = settings
        self.sessions = sessions
        self.redis = client
        self.keys = Keys(settings.namespace)

    def step(self) -> int:
        self.sweep()
        return 0

    def sweep(self) -> int:
        now = utcnow()
        placing = now - timedelta(seconds=self.settings.lease_ttl_ms / 1000 + MARGIN_S)
        bound = now - timedelta(seconds=self.settings.max_call_seconds + LINE_MARGIN_S + MARGIN_S)
        live = [s.value for s in LIVE]
        try:
            alive = fleet.live(self.redis, self.keys, self.settings.worker_ttl)
        except REDIS_ERRORS:
            alive = None  # who is alive is not known: only the call's own bound applies
        # Never placed, long after its message's claim and placement could have taken
        # (each within a lease): its write was lost.
        unplaced = now - timedelta(seconds=3 * self.settings.lease_ttl_ms / 1000 + 2 * MARGIN_S)
        stale_when = [
            Attempt.started_at < bound,
            and_(
                Attempt.state == AttemptState.DIALING.value,
                Attempt.outcome.is_(None),
                Attempt.started_at < unplaced,
            ),
        ]
        if alive is not None:
            gone = Attempt.worker_id.not_in(alive) if alive else Attempt.id.is_not(None)
            stale_when.append(and_(Attempt.started_at < placing, gone))
        with self.sessions.begin() as s:
            stale = list(
                s.execute(
                    update(Attempt)
                    .where(Attempt.state.in_(live), or_(*stale_when))
                    .values(
                        state=AttemptState.UNKNOWN.value, outcome="unknown", finished_at=utcnow()
                    )
                    .returning(Attempt.id, Attempt.contact_id, Attempt.campaign_id)
                    .execution_options(synchronize_session=False)
                )
            )
            if stale:
                s.execute(
                    update(Contact)
                    .where(
                        Contact.id.in_([x[1] for x in stale]),
                        Contact.state == ContactState.DIALING.value,
                    )
                    .values(state=ContactState.UNKNOWN.value, updated_at=utcnow())
                    .execution_options(synchronize_session=False)
                )
        for attempt_id, _contact_id, campaign_id in stale:
            self.log.warning(
                "attempt_outcome_unknown", attempt_id=attempt_id, campaign_id=campaign_id
            )
        return len(stale)
