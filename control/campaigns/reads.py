"""What the control service reads: campaigns with their counts and live gate, their
history, the fleet of workers. Nothing here writes."""

from __future__ import annotations

import time
from typing import Any

import redis
import structlog
from sqlalchemy import and_, func, or_, select, text
from sqlalchemy.orm import Session, sessionmaker

from control.campaigns import holds
from control.campaigns.views import (
    COUNTED_STATES,
    DISPOSITIONS,
    LIVE_SHOWN,
    attempt_view,
    campaign_view,
    transition_view,
    worker_view,
)
from shared import fleet
from shared.clients import REDIS_ERRORS
from shared.errors import NotFound
from shared.gate import Gate
from shared.keys import Keys
from shared.models import Attempt, Campaign, Contact, Transition, utcnow
from shared.settings import Settings
from shared.states import DIALED, Action, AttemptState, Status

log = structlog.get_logger("dialgate.control")


class Reads:
    """The read side of :class:`control.campaigns.service.Control`."""

    settings: Settings
    sessions: sessionmaker[Session]
    redis: redis.Redis
    gate: Gate
    keys: Keys
    _orgs: dict[int, str]

    def get(self, s: Session, campaign_id: int) -> Campaign:
        c = s.get(Campaign, campaign_id)
        if c is None:
            raise NotFound(f"campaign {campaign_id} does not exist")
        return c

    def _counts(self, s: Session, ids: list[int]) -> dict[int, dict[str, int]]:
        counts = {i: dict.fromkeys(COUNTED_STATES, 0) for i in ids}
        if not ids:
            return counts
        rows = s.execute(
            select(Contact.campaign_id, Contact.state, func.count())
            .where(Contact.campaign_id.in_(ids))
            .group_by(Contact.campaign_id, Contact.state)
        )
        for cid, state, n in rows:
            counts[cid][state] = n
        return counts

    @staticmethod
    def _calls(s: Session, ids: list[int]) -> dict[int, dict[str, dict[str, int]]]:
        """Per campaign: its attempts' final dispositions, and its calls up right now."""
        calls = {
            i: {
                "dispositions": dict.fromkeys(DISPOSITIONS, 0),
                "live": dict.fromkeys(LIVE_SHOWN, 0),
            }
            for i in ids
        }
        if not ids:
            return calls
        ended = s.execute(
            select(Attempt.campaign_id, Attempt.disposition, func.count())
            .where(
                Attempt.campaign_id.in_(ids),
                Attempt.state == AttemptState.ENDED.value,
                Attempt.disposition.is_not(None),
            )
            .group_by(Attempt.campaign_id, Attempt.disposition)
        )
        for cid, disposition, n in ended:
            calls[cid]["dispositions"][str(disposition)] = n
        up = s.execute(
            select(Attempt.campaign_id, Attempt.state, func.count())
            .where(
                Attempt.campaign_id.in_(ids),
                or_(
                    Attempt.state.in_([AttemptState.RINGING.value, AttemptState.ANSWERED.value]),
                    # placed, not ringing yet: shown as ringing (not yet answered)
                    and_(Attempt.state == AttemptState.DIALING.value, Attempt.outcome.is_not(None)),
                ),
            )
            .group_by(Attempt.campaign_id, Attempt.state)
        )
        for cid, state, n in up:
            shown = AttemptState.RINGING.value if state == AttemptState.DIALING.value else state
            calls[cid]["live"][shown] += n
        return calls

    def ping_database(self) -> None:
        with self.sessions() as s:
            s.execute(text("SELECT 1"))

    def live_workers(self) -> list[str]:
        """The workers with a heartbeat within ``worker_ttl``."""
        return fleet.live(self.redis, self.keys, self.settings.worker_ttl)

    def workers(self) -> list[dict[str, Any]]:
        """Live workers (heartbeat within ``worker_ttl``) with what they last reported."""
        found = fleet.records(self.redis, self.keys, self.live_workers())
        return [worker_view(record, w) for w, record in found.items()]

    def _live_view(self, campaign_id: int, version: int) -> dict[str, Any]:
        """What Redis knows: gate, leases, propagation, emergency stop. ``None`` if away."""
        try:
            now = self.gate.snapshot(campaign_id, time.time() - self.settings.worker_ttl)
            g, live = now.gate, now.live_workers
            return {
                "gate": None if g is None else {"status": g.status, "version": g.version},
                "inflight": now.inflight,
                "propagation": {
                    "version": version,
                    "workers_live": len(live),
                    "workers_acked": sum(1 for w in live if now.acks.get(w, 0) >= version),
                },
                "emergency_stop": now.estop is not None,
            }
        except REDIS_ERRORS as exc:
            log.warning("redis_unreachable_for_view", error=str(exc))
            return {"gate": None, "inflight": None, "propagation": None, "emergency_stop": None}

    def campaign_org(self, campaign_id: int) -> str | None:
        """The organisation a campaign belongs to (``None``: no such campaign); remembered,
        as a campaign never changes organisation."""
        org = self._orgs.get(campaign_id)
        if org is None:
            with self.sessions() as s:
                org = s.scalar(select(Campaign.org).where(Campaign.id == campaign_id))
            if org is not None:
                self._orgs[campaign_id] = org
        return org

    def org_known(self, raw_id: str) -> bool:
        """Whether :meth:`campaign_org` of this path id is answered from memory."""
        return raw_id.isascii() and raw_id.isdigit() and int(raw_id) in self._orgs

    def campaign_ids(self, org: str, status: Status | None = None) -> set[int]:
        """The ids of an organisation's campaigns (of one status, if given)."""
        q = select(Campaign.id).where(Campaign.org == org)
        if status is not None:
            q = q.where(Campaign.status == status.value)
        with self.sessions() as s:
            return set(s.scalars(q))

    @staticmethod
    def latest_transition(s: Session, campaign_id: int, action: Action) -> Transition | None:
        """The campaign's most recent transition of this action (``None``: never)."""
        return s.scalars(
            select(Transition)
            .where(Transition.campaign_id == campaign_id, Transition.action == action.value)
            .order_by(Transition.version.desc())
            .limit(1)
        ).first()

    def campaign(self, campaign_id: int) -> dict[str, Any]:
        with self.sessions() as s:
            view = self._stored_view(s, self.get(s, campaign_id))
        view.update(self._live_view(campaign_id, view["version"]))
        return view

    def _stored_view(self, s: Session, c: Campaign) -> dict[str, Any]:
        """The campaign as the database has it (row, counts, its holds and their causes)."""
        view = campaign_view(c, self._counts(s, [c.id])[c.id], self._calls(s, [c.id])[c.id])
        view.update(self._holds(s, c.id))
        return view

    @staticmethod
    def _holds(s: Session, campaign_id: int) -> dict[str, Any]:
        found = holds.causes(s, campaign_id, utcnow())
        return {
            "holds": [holds.view(h) for h in holds.active(s, campaign_id)],
            "pause_causes": found,
            "repeated_causes": [c for c in found if c["repeated"]],
        }

    def holds(self, campaign_id: int) -> dict[str, Any]:
        with self.sessions() as s:
            self.get(s, campaign_id)
            return {"campaign_id": campaign_id, **self._holds(s, campaign_id)}

    def campaigns(self, org: str | None = None) -> list[dict[str, Any]]:
        """Every campaign, or those of one organisation."""
        with self.sessions() as s:
            q = select(Campaign).order_by(Campaign.id)
            if org is not None:
                q = q.where(Campaign.org == org)
            rows = list(s.scalars(q))
            ids = [c.id for c in rows]
            counts, calls = self._counts(s, ids), self._calls(s, ids)
            return [campaign_view(c, counts[c.id], calls[c.id]) for c in rows]

    def transitions(self, campaign_id: int, limit: int = 100) -> list[dict[str, Any]]:
        with self.sessions() as s:
            self.get(s, campaign_id)
            rows = s.scalars(
                select(Transition)
                .where(Transition.campaign_id == campaign_id)
                .order_by(Transition.version.desc())
                .limit(limit)
            )
            return [transition_view(t) for t in rows]

    def attempts(
        self, campaign_id: int, limit: int = 100, disposition: str | None = None
    ) -> list[dict[str, Any]]:
        """The campaign's dialed attempts, newest first (with ``disposition``: only those
        that ended so)."""
        with self.sessions() as s:
            self.get(s, campaign_id)
            q = (
                select(Attempt, Contact.phone)
                .join(Contact, Contact.id == Attempt.contact_id)
                .where(
                    Attempt.campaign_id == campaign_id,
                    Attempt.state.in_([x.value for x in DIALED]),
                )
                .order_by(Attempt.id.desc())
                .limit(limit)
            )
            if disposition is not None:
                q = q.where(Attempt.disposition == disposition)
            return [attempt_view(a, phone) for a, phone in s.execute(q)]

    def first_dial_after_resume(self, campaign_id: int) -> dict[str, Any] | None:
        """The latest resume and the first dial that started after it (None: no resume)."""
        with self.sessions() as s:
            resume = self.latest_transition(s, campaign_id, Action.RESUME)
            if resume is None:
                return None
            first = s.execute(
                select(Attempt.id, Attempt.started_at, Attempt.worker_id)
                .where(
                    Attempt.campaign_id == campaign_id,
                    Attempt.started_at >= resume.created_at,
                )
                .order_by(Attempt.started_at)
                .limit(1)
            ).first()
        view: dict[str, Any] = {"version": resume.version, "resumed_at": resume.created_at}
        if first is not None and first[1] is not None:
            view.update(attempt_id=first[0], started_at=first[1], worker_id=first[2])
            view["after_s"] = round((first[1] - resume.created_at).total_seconds(), 3)
        return view
