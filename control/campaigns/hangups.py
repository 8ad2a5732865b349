"""Waiting for a hang-up: a pause (``?hangup=``), a cancel or an emergency stop asks the
workers that own the calls to end them (over the control broadcast), then waits, bounded by
what is left of the drain timeout, until the calls it targeted have ended in the database.
The answer says how many ended and whether all of them did."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from shared.models import Attempt
from shared.states import AttemptState, Hangup

# The attempts each scope targets: calls not yet answered, or every call up.
TARGETS = {
    Hangup.RINGING: [AttemptState.DIALING.value, AttemptState.RINGING.value],
    Hangup.ALL: [
        AttemptState.DIALING.value,
        AttemptState.RINGING.value,
        AttemptState.ANSWERED.value,
    ],
}


def hang_up(
    sessions: sessionmaker[Session], campaign_id: int | None, scope: Hangup, timeout: float
) -> dict[str, Any]:
    """Wait until the calls ``scope`` targets (of one campaign; None: of every campaign)
    have ended, at most ``timeout`` seconds: ``{hung_up, hangup_complete}`` ({} for none)."""
    if scope is Hangup.NONE:
        return {}
    q = select(Attempt.id).where(Attempt.state.in_(TARGETS[scope]))
    if campaign_id is not None:
        q = q.where(Attempt.campaign_id == campaign_id)
    with sessions() as s:
        targeted = set(s.scalars(q))
    left = set(targeted)
    deadline = time.monotonic() + timeout
    pause = 0.01
    while left and time.monotonic() < deadline:
        time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
        pause = min(pause * 2, 0.1)
        with sessions() as s:
            left &= set(s.scalars(q.where(Attempt.id.in_(left))))
    return {"hung_up": len(targeted) - len(left), "hangup_complete": not left}
