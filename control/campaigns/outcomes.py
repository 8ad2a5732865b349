"""What providers report of calls after placement (``POST /api/v1/provider/events``,
Twilio's status callback): applied by :func:`shared.calls.apply_events`, like the worker's."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from sqlalchemy import select

from control.campaigns.reads import Reads
from shared.calls import Applied, CallEvent, apply_events
from shared.errors import NotFound
from shared.models import Attempt, Campaign


class Outcomes(Reads):
    def record_events(self, events: Sequence[CallEvent], org: str | None = None) -> list[Applied]:
        """Apply a provider's events (with ``org``: only of that organisation's campaigns;
        another's attempt is answered as not existing), then release the lines of the calls
        they ended."""
        with self.sessions.begin() as s:
            if org is not None:
                ids = sorted({e.attempt_id for e in events})
                theirs = set(
                    s.scalars(
                        select(Attempt.id)
                        .join(Campaign, Campaign.id == Attempt.campaign_id)
                        .where(Attempt.id.in_(ids), Campaign.org == org)
                    )
                )
                for i in ids:
                    if i not in theirs:
                        raise NotFound(f"attempt {i} does not exist")
            applied = [a for a in apply_events(s.connection(), events) if a is not None]
        ended: dict[int, list[int]] = defaultdict(list)
        for a in applied:
            if a.ended:
                ended[a.campaign_id].append(a.attempt_id)
        for campaign_id, attempt_ids in ended.items():
            self.gate.end_lines(campaign_id, attempt_ids)
        return applied
