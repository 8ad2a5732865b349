"""Checks of one dial beside the gate claim: the calling window and the do-not-call list.

:meth:`DialChecks.calling_window` runs in the dial path right before the claim, for every
attempt (first dials, retries and redeliveries alike); the do-not-call lookups
(:meth:`DialChecks.dnc_probes`) ride in the claim's own Redis round trip and
:meth:`DialChecks.dnc_verdict` judges their answers. Each answers ``None`` (go on) or a
:class:`Denial`: the calling window is closed (the contact waits until ``dial_after``), or
the number is on the do-not-call list (the contact ends ``blocked_dnc``), or the list is
not known in Redis / Redis is away (fail closed: the contact waits a little and is tried
again).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select

from shared import windows
from shared.dnc import DncSet
from shared.messages import DialArgs
from shared.models import Campaign
from shared.states import DenyReason

# A contact whose window never opens (disjoint zones, a window with no day left) is looked
# at again after this long; a dial denied because the DNC list was unknown, after RETRY.
NEVER_OPENS_RECHECK = timedelta(hours=24)
RETRY = timedelta(seconds=5)
# A campaign's timezone and window are read from the database at most this often per
# process (the window itself is judged against the clock at every dial), which spares the
# dial path a database transaction per dial. A denial always re-reads the window first, so
# a widened window never parks a contact on a stale reading; a narrowed one can let dials
# through for up to this long (pause is the immediate tool).
WINDOW_TTL_S = 1.0


@dataclass(frozen=True)
class Denial:
    reason: str  # a DenyReason (the gate's denials arrive as the claim's text)
    dial_after: datetime | None = None  # contact back to pending, not fed before this


class DialChecks:
    def __init__(self, engine: Engine, dnc: DncSet, clock: windows.Clock) -> None:
        self.engine = engine
        self.dnc = dnc
        self.clock = clock
        # campaign id -> (read at (monotonic), organisation, timezone, window)
        self._windows: dict[int, tuple[float, str, str, dict[str, Any] | None]] = {}
        self._lock = threading.Lock()

    def window(
        self, campaign_id: int, fresh: bool = False
    ) -> tuple[str, str, dict[str, Any] | None]:
        """The campaign's organisation, timezone and calling window (read at most once a
        ``WINDOW_TTL_S``, or afresh)."""
        with self._lock:
            cached = self._windows.get(campaign_id)
        if not fresh and cached is not None and time.monotonic() - cached[0] < WINDOW_TTL_S:
            return cached[1], cached[2], cached[3]
        with self.engine.connect() as conn:
            org, tz, window = conn.execute(
                select(Campaign.org, Campaign.timezone, Campaign.calling_window).where(
                    Campaign.id == campaign_id
                )
            ).one()
        with self._lock:
            self._windows[campaign_id] = (time.monotonic(), org, tz, window)
        return org, tz, window

    def calling_window(self, args: DialArgs) -> Denial | None:
        """The campaign's (or the contact's local) calling window; no I/O while the cached
        window is fresh."""
        now = self.clock()
        _, tz, window = self.window(args.campaign_id)
        verdict = windows.check(window, tz, args.phone, now)
        if not verdict.open:  # a denial is never based on a stale window: read it again
            _, tz, window = self.window(args.campaign_id, fresh=True)
            verdict = windows.check(window, tz, args.phone, now)
        if not verdict.open:
            return Denial(DenyReason.CALLING_WINDOW, verdict.opens_at or now + NEVER_OPENS_RECHECK)
        return None

    def dnc_probes(self, args: DialArgs) -> list[tuple[str, str]]:
        """The do-not-call lookups of this dial, sent in the gate claim's round trip."""
        org, _, _ = self.window(args.campaign_id)
        return self.dnc.probes(org, args.phone)

    def dnc_verdict(self, members: tuple[bool, ...] | None) -> Denial | None:
        """The do-not-call verdict from the probes' answers (None: Redis was away)."""
        listed = None if members is None else DncSet.verdict(members)
        if listed is None:
            return Denial(DenyReason.DNC_UNKNOWN, self.clock() + RETRY)
        return Denial(DenyReason.DNC) if listed else None
