"""Recovery sweep: attempts left ``dialing`` by a worker that vanished become ``unknown``.

A worker releases its lease as soon as the provider accepted or refused the call and then
writes the outcome, so an attempt still ``dialing`` well after its lease would have
expired (``lease_ttl_ms`` plus a margin) belongs to a worker that crashed, or whose
outcome write failed. The person may have been called: the attempt and its contact are
marked ``unknown`` (counted in the campaign's ``counts``) and never dialed again
automatically. A late outcome from a slow provider still overwrites ``unknown``.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from control.loops.base import Loop
from shared.models import Attempt, Contact, utcnow
from shared.settings import Settings
from shared.states import AttemptState, ContactState

MARGIN_S = 2.0


class Recovery(Loop):
    name = "recovery"

    def __init__(self, settings: Settings, sessions: sessionmaker[Session]) -> None:
        super().__init__(max(0.5, settings.lease_ttl_ms / 2000))
        self.settings = settings
        self.sessions = sessions

    def step(self) -> int:
        self.sweep()
        return 0

    def sweep(self) -> int:
        cutoff = utcnow() - timedelta(seconds=self.settings.lease_ttl_ms / 1000 + MARGIN_S)
        with self.sessions.begin() as s:
            stale = list(
                s.execute(
                    update(Attempt)
                    .where(Attempt.state == AttemptState.DIALING.value, Attempt.started_at < cutoff)
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
