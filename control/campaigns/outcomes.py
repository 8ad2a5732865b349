"""Outcomes that providers report after the call (``POST /api/v1/provider/events``)."""

from __future__ import annotations

from typing import Any

from control.campaigns.reads import Reads
from shared.errors import Conflict, NotFound
from shared.models import Attempt, utcnow
from shared.states import AttemptState, ReportedOutcome


class Outcomes(Reads):
    """A provider's (late) outcome of an attempt, read by the monitor like the worker's."""

    def record_outcome(
        self,
        attempt_id: int,
        outcome: ReportedOutcome,
        error_code: str | None = None,
        duration_ms: int | None = None,
        org: str | None = None,
    ) -> dict[str, Any]:
        """A provider's (late) outcome of an attempt: the monitor reads it like the
        worker's own. Only an attempt that was dialed can have one; with ``org``, only
        an attempt of that organisation's campaigns."""
        dialed = [
            AttemptState.DIALING.value,
            AttemptState.DONE.value,
            AttemptState.FAILED.value,
            AttemptState.UNKNOWN.value,
        ]
        with self.sessions.begin() as s:
            a = s.get(Attempt, attempt_id)
            if a is None or (org is not None and self.get(s, a.campaign_id).org != org):
                raise NotFound(f"attempt {attempt_id} does not exist")
            if a.state not in dialed:
                raise Conflict(f"attempt {attempt_id} was never dialed (it is {a.state})")
            a.outcome = outcome
            a.error_code = error_code
            a.duration_ms = duration_ms
            a.finished_at = a.finished_at or utcnow()
            return {"attempt_id": attempt_id, "campaign_id": a.campaign_id, "outcome": outcome}
