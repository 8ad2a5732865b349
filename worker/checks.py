"""Checks of one dial beside the gate claim: the calling window, the do-not-call list and
the organisation's contact frequency limit.

:meth:`DialChecks.calling_window` runs in the dial path right before the claim, for every
attempt (first dials, retries and redeliveries alike); the do-not-call lookups
(:meth:`DialChecks.dnc_probes`) ride in the claim's own Redis round trip and
:meth:`DialChecks.dnc_verdict` judges their answers. Each answers ``None`` (go on) or a
:class:`Denial`: the calling window is closed (the contact waits until ``dial_after``), or
the number is on the do-not-call list (the contact ends ``blocked_dnc``), or the list is
not known in Redis / Redis is away (fail closed: the contact waits a little and is tried
again). :meth:`DialChecks.frequency` runs right after the claim for the attempts it granted
(and the do-not-call list let through): with a limit, one script call takes a slot of each
number (:mod:`shared.frequency`), and an attempt refused one waits until its number's
oldest counted call leaves the window; without a limit, nothing (the limit is read with
the window, in the same cached query).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError

from shared import windows
from shared.clients import REDIS_ERRORS
from shared.dnc import DncSet
from shared.frequency import READ_TTL_S, FrequencySet, Limit
from shared.messages import DialArgs
from shared.models import Campaign, OrgSettings
from shared.states import DenyReason

# A contact whose window never opens (disjoint zones, a window with no day left) is looked
# at again after this long; a dial denied because the DNC list was unknown, after RETRY.
NEVER_OPENS_RECHECK = timedelta(hours=24)
RETRY = timedelta(seconds=5)
# A campaign's timezone and window, and its organisation's frequency limit, are read from
# the database at most this often per process (the window itself is judged against the
# clock at every dial), which spares the dial path a database transaction per dial. A
# denial always re-reads them first, so a widened window or a loosened limit never parks a
# contact on a stale reading; a narrowed window can let dials through for up to this long
# (pause is the immediate tool). A new or changed limit is counted only once every
# reading is at least this fresh (:func:`control.campaigns.org.put` waits it out).
WINDOW_TTL_S = READ_TTL_S


@dataclass(frozen=True)
class Denial:
    reason: str  # a DenyReason (the gate's denials arrive as the claim's text)
    dial_after: datetime | None = None  # contact back to pending, not fed before this


class DialChecks:
    def __init__(
        self,
        engine: Engine,
        dnc: DncSet,
        clock: windows.Clock,
        frequency: FrequencySet | None = None,
    ) -> None:
        self.engine = engine
        self.dnc = dnc
        self.clock = clock
        self.counts = frequency
        # campaign id -> (read at (monotonic), organisation, timezone, window, limit)
        self._windows: dict[int, _Facts] = {}
        self._lock = threading.Lock()

    def _read(self, campaign_id: int, fresh: bool = False) -> _Facts:
        """The campaign's organisation, timezone, calling window and its organisation's
        frequency limit (read at most once a ``WINDOW_TTL_S``, or afresh)."""
        with self._lock:
            cached = self._windows.get(campaign_id)
        if not fresh and cached is not None and time.monotonic() - cached[0] < WINDOW_TTL_S:
            return cached
        with self.engine.connect() as conn:
            org, tz, window, limit = conn.execute(
                select(
                    Campaign.org,
                    Campaign.timezone,
                    Campaign.calling_window,
                    OrgSettings.max_calls_per_number,
                )
                .outerjoin(OrgSettings, OrgSettings.org == Campaign.org)
                .where(Campaign.id == campaign_id)
            ).one()
        facts = (time.monotonic(), org, tz, window, Limit.of(limit))
        with self._lock:
            self._windows[campaign_id] = facts
        return facts

    def window(
        self, campaign_id: int, fresh: bool = False
    ) -> tuple[str, str, dict[str, Any] | None]:
        """The campaign's organisation, timezone and calling window (read at most once a
        ``WINDOW_TTL_S``, or afresh)."""
        _, org, tz, window, _ = self._read(campaign_id, fresh)
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

    def frequency(self, campaign_id: int, dials: list[DialArgs]) -> list[Denial | None]:
        """A slot of the organisation's frequency limit for each of these granted dials
        (one script call; none without a limit): ``None`` for a slot taken, else a denial
        until the number's oldest counted call leaves the window; all denied (fail closed,
        tried again a little later) while the counts are unknown or Redis is away. A
        denial re-reads the limit first, and the dials it no longer holds back go on. It
        raises nothing: the attempts it is given hold leases and lines."""
        verdicts: list[Denial | None] = [None] * len(dials)
        try:
            _, org, _, _, limit = self._read(campaign_id)
        except SQLAlchemyError:  # the limit unknown: fail closed
            return [Denial(DenyReason.FREQUENCY_UNKNOWN, self.clock() + RETRY)] * len(dials)
        todo = list(range(len(dials)))
        for fresh in (False, True):
            if fresh:
                try:
                    _, org, _, _, fresher = self._read(campaign_id, fresh=True)
                except SQLAlchemyError:  # the slots are taken: deny on the reading we had
                    break
                if fresher == limit:
                    break
                limit, todo = fresher, [i for i in todo if verdicts[i] is not None]
                for i in todo:
                    verdicts[i] = None
            if limit is None or self.counts is None or not todo:
                break
            taken = self._take(org, limit, [dials[i] for i in todo])
            waits: list[int | None] = [None] * len(todo) if taken is None else list(taken)
            now = self.clock()
            for i, wait in zip(todo, waits, strict=True):
                if wait is None:
                    verdicts[i] = Denial(DenyReason.FREQUENCY_UNKNOWN, now + RETRY)
                elif wait > 0:
                    verdicts[i] = Denial(DenyReason.FREQUENCY, _second_after(now, wait))
            if all(v is None for v in verdicts):
                break
        return verdicts

    def _take(self, org: str, limit: Limit, dials: list[DialArgs]) -> list[int] | None:
        assert self.counts is not None
        try:
            return self.counts.take(org, limit, [(d.attempt_id, d.phone) for d in dials])
        except REDIS_ERRORS:
            return None


# read at (monotonic), organisation, timezone, calling window, frequency limit
_Facts = tuple[float, str, str, dict[str, Any] | None, Limit | None]


def _second_after(now: datetime, wait_ms: int) -> datetime:
    """``now`` + ``wait_ms``, rounded up to a whole second (contacts parked together)."""
    at = now + timedelta(milliseconds=wait_ms)
    return at if not at.microsecond else at.replace(microsecond=0) + timedelta(seconds=1)
