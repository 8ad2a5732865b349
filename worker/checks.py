"""Checks of one dial beside the gate claim: the calling window and the do-not-call list.

:meth:`DialChecks.check` runs in the dial path right before the claim, for every attempt
(first dials, retries and redeliveries alike). It answers ``None`` (go on) or a
:class:`Denial`: the calling window is closed (the contact waits until ``dial_after``), or
the number is on the do-not-call list (the contact ends ``blocked_dnc``), or the list is
not known in Redis / Redis is away (fail closed: the contact waits a little and is tried
again).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import redis
from sqlalchemy import Engine, select

from shared import windows
from shared.dnc import DncSet
from shared.messages import DialArgs
from shared.models import DEFAULT_ORG, Campaign

# A contact whose window never opens (disjoint zones, a window with no day left) is looked
# at again after this long; a dial denied because the DNC list was unknown, after RETRY.
NEVER_OPENS_RECHECK = timedelta(hours=24)
RETRY = timedelta(seconds=5)


@dataclass(frozen=True)
class Denial:
    reason: str  # calling_window | dnc | dnc_unknown
    dial_after: datetime | None = None  # contact back to pending, not fed before this


class DialChecks:
    def __init__(self, engine: Engine, dnc: DncSet, clock: windows.Clock) -> None:
        self.engine = engine
        self.dnc = dnc
        self.clock = clock

    def check(self, args: DialArgs) -> Denial | None:
        now = self.clock()
        with self.engine.connect() as conn:
            row = conn.execute(
                select(Campaign.timezone, Campaign.calling_window).where(
                    Campaign.id == args.campaign_id
                )
            ).one()
        verdict = windows.check(row.calling_window, row.timezone, args.phone, now)
        if not verdict.open:
            return Denial("calling_window", verdict.opens_at or now + NEVER_OPENS_RECHECK)
        try:
            listed = self.dnc.contains(DEFAULT_ORG, args.phone)
        except redis.RedisError:
            listed = None
        if listed is None:
            return Denial("dnc_unknown", now + RETRY)
        return Denial("dnc") if listed else None
