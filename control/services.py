"""The control service's business logic. Routes are thin; everything takes this object.

The write path of a transition (:meth:`Control.transition`):

1. one SQL transaction: version-checked update of the campaign row, validated against
   the state machine, a transition row and an outbox row (and, on cancel, every
   pending/queued contact marked cancelled);
2. after the commit, the gate's versioned compare-and-set in Redis;
3. for pause and cancel, wait (bounded) for the campaign's leases to drain;
4. answer with the campaign as it now is and what the gate did.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
import structlog
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.attributes import set_committed_value

from control.authz import Who
from control.dnc import DncList
from control.schemas import CampaignCreate, CampaignUpdate
from control.trail import record
from shared import metrics, windows
from shared.dnc import DncSet
from shared.errors import (
    ConfirmationRequired,
    Conflict,
    InvalidInput,
    NotFound,
    Unavailable,
)
from shared.gate import Drain, Gate
from shared.keys import Keys
from shared.models import DEFAULT_ORG, Attempt, Campaign, Contact, Outbox, Transition, utcnow
from shared.settings import Settings
from shared.states import (
    CLOSING,
    Action,
    AttemptState,
    ContactState,
    Source,
    Status,
    allowed_actions,
    next_status,
)

log = structlog.get_logger("dialgate.control")

COUNTED_STATES = [s.value for s in ContactState]


@dataclass(frozen=True)
class Cap:
    """A controlled resume's temporary concurrency cap and how long it lasts."""

    max_concurrency: int
    for_minutes: float


@dataclass
class TransitionResult:
    campaign: dict[str, Any]
    gate: dict[str, Any]


def _db_unavailable(exc: OperationalError) -> Unavailable:
    return Unavailable(
        "the database is unreachable or timed out; nothing was changed, retry "
        f"({type(exc.orig).__name__ if exc.orig else 'OperationalError'})"
    )


class Control:
    def __init__(
        self, settings: Settings, sessions: sessionmaker[Session], gate: Gate, keys: Keys
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.gate = gate
        self.keys = keys
        self.dnc = DncList(sessions, DncSet(gate.r, keys))
        self._answers = ThreadPoolExecutor(max_workers=4, thread_name_prefix="answer")

    # -- reads ---------------------------------------------------------------------------
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

    def live_workers(self) -> list[str]:
        cutoff = time.time() - self.settings.worker_ttl
        return [str(w) for w in self.gate.r.zrangebyscore(self.keys.workers, cutoff, "+inf")]

    def workers(self) -> list[dict[str, Any]]:
        """Live workers (heartbeat within ``worker_ttl``) with what they last reported."""
        live = self.live_workers()
        pipe = self.gate.r.pipeline(transaction=False)
        for w in live:
            pipe.hgetall(self.keys.worker(w))
        return [worker_view(info, w) for w, info in zip(live, pipe.execute(), strict=True) if info]

    def _live_view(self, campaign_id: int, version: int) -> dict[str, Any]:
        """What Redis knows: gate, leases, propagation, emergency stop. ``None`` if away."""
        try:
            live, acks, g, inflight, estop = self.gate.snapshot(
                campaign_id, time.time() - self.settings.worker_ttl
            )
            return {
                "gate": None if g is None else {"status": g.status, "version": g.version},
                "inflight": inflight,
                "propagation": {
                    "version": version,
                    "workers_live": len(live),
                    "workers_acked": sum(1 for w in live if acks.get(w, 0) >= version),
                },
                "emergency_stop": estop is not None,
            }
        except redis.RedisError as exc:
            log.warning("redis_unreachable_for_view", error=str(exc))
            return {"gate": None, "inflight": None, "propagation": None, "emergency_stop": None}

    def _view(self, c: Campaign, counts: dict[str, int], live: bool = True) -> dict[str, Any]:
        view: dict[str, Any] = {
            "id": c.id,
            "name": c.name,
            "status": c.status,
            "version": c.version,
            "max_concurrency": c.max_concurrency,
            "concurrency": c.concurrency,
            "cap": _cap_view(c.cap_concurrency, c.cap_until),
            "max_attempts": c.max_attempts,
            "retry_backoff_s": c.retry_backoff_s,
            "timezone": c.timezone,
            "calling_window": c.calling_window,
            "paused_at": c.paused_at,
            "pause_reason": c.pause_reason,
            "pause_source": c.pause_source,
            "created_at": c.created_at,
            "updated_at": c.updated_at,
            "counts": counts,
            "allowed_actions": [a.value for a in allowed_actions(Status(c.status))],
            "dialing": dialing_view(c),
            "monitor": c.monitor,
        }
        if live:
            view.update(self._live_view(c.id, c.version))
        return view

    def campaign_org(self, campaign_id: int) -> str | None:
        """The organisation a campaign belongs to (``None``: no such campaign)."""
        with self.sessions() as s:
            return s.scalar(select(Campaign.org).where(Campaign.id == campaign_id))

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

    @staticmethod
    def _automatic_pauses(s: Session, campaign_id: int) -> dict[str, int]:
        """System pauses in the last 24 h per monitor rule (or other actor, e.g.
        ``alertmanager:<alert>``): repeated pauses for one root cause show."""
        since = utcnow() - timedelta(hours=24)
        rows = s.execute(
            select(Transition.actor, func.count())
            .where(
                Transition.campaign_id == campaign_id,
                Transition.action == Action.PAUSE.value,
                Transition.source == Source.SYSTEM.value,
                Transition.created_at >= since,
            )
            .group_by(Transition.actor)
        )
        return {actor.removeprefix("monitor:"): n for actor, n in rows}

    def record_outcome(
        self,
        attempt_id: int,
        outcome: str,
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

    def campaign(self, campaign_id: int) -> dict[str, Any]:
        with self.sessions() as s:
            view = self._stored_view(s, self.get(s, campaign_id))
        view.update(self._live_view(campaign_id, view["version"]))
        return view

    def _stored_view(self, s: Session, c: Campaign) -> dict[str, Any]:
        """The campaign as the database has it (row, counts, automatic pauses)."""
        view = self._view(c, self._counts(s, [c.id])[c.id], live=False)
        view["automatic_pauses_24h"] = self._automatic_pauses(s, c.id)
        return view

    def _committed_view(self, c: Campaign) -> dict[str, Any]:
        """:meth:`_stored_view` of a campaign row just committed (read in its own session)."""
        with self.sessions() as s:
            return self._stored_view(s, c)

    def campaigns(self, org: str | None = None) -> list[dict[str, Any]]:
        """Every campaign, or those of one organisation."""
        with self.sessions() as s:
            q = select(Campaign).order_by(Campaign.id)
            if org is not None:
                q = q.where(Campaign.org == org)
            rows = list(s.scalars(q))
            counts = self._counts(s, [c.id for c in rows])
            return [self._view(c, counts[c.id], live=False) for c in rows]

    def transitions(self, campaign_id: int, limit: int = 100) -> list[dict[str, Any]]:
        with self.sessions() as s:
            self.get(s, campaign_id)
            rows = s.scalars(
                select(Transition)
                .where(Transition.campaign_id == campaign_id)
                .order_by(Transition.version.desc())
                .limit(limit)
            )
            return [
                {
                    "version": t.version,
                    "from": t.from_status,
                    "to": t.to_status,
                    "action": t.action,
                    "actor": t.actor,
                    "source": t.source,
                    "reason": t.reason,
                    "role": t.role,
                    "source_ip": t.source_ip,
                    "request_id": t.request_id,
                    "at": t.created_at,
                    "cap": _cap_view(t.cap_concurrency, t.cap_until),
                    "answered_at": t.answered_at,
                    "drained": t.drained,
                }
                for t in rows
            ]

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

    # -- writes --------------------------------------------------------------------------
    def create_campaign(self, data: CampaignCreate, who: Who | None = None) -> dict[str, Any]:
        with self.sessions.begin() as s:
            c = Campaign(
                org=who.org if who else DEFAULT_ORG,
                name=data.name,
                status=Status.DRAFT.value,
                version=0,
                max_concurrency=data.max_concurrency,
                max_attempts=data.max_attempts,
                retry_backoff_s=data.retry_backoff_s,
                timezone=data.timezone,
                calling_window=data.calling_window.model_dump() if data.calling_window else None,
                monitor=data.monitor.stored() if data.monitor else None,
            )
            s.add(c)
            s.flush()
            cid = c.id
            record(s, who, "campaign.created", f"campaign:{cid}", c.org, name=data.name)
        try:
            self.gate.write(cid, Status.DRAFT.value, 0, data.max_concurrency)  # no cap yet
        except redis.RedisError as exc:  # the reconciler writes it later; draft never dials
            log.warning("gate_write_failed", campaign_id=cid, error=str(exc))
        log.info("campaign_created", campaign_id=cid)
        return self.campaign(cid)

    def update_campaign(self, campaign_id: int, data: CampaignUpdate) -> dict[str, Any]:
        """Change the timezone and/or calling window. Contacts waiting for the old window
        to open are fed again at once (the workers judge them against the new one)."""
        fields = data.model_fields_set
        with self.sessions.begin() as s:
            c = self.get(s, campaign_id)
            if "timezone" in fields and data.timezone is not None:
                c.timezone = data.timezone
            if "calling_window" in fields:
                w = data.calling_window
                c.calling_window = w.model_dump() if w is not None else None
            if "monitor" in fields:
                c.monitor = data.monitor.stored() if data.monitor is not None else None
            c.updated_at = utcnow()
            s.execute(
                update(Contact)
                .where(
                    Contact.campaign_id == campaign_id,
                    Contact.state == ContactState.PENDING.value,
                    Contact.dial_after.is_not(None),
                )
                .values(dial_after=None)
            )
        log.info("campaign_updated", campaign_id=campaign_id, fields=sorted(fields))
        return self.campaign(campaign_id)

    def transition(
        self,
        campaign_id: int,
        action: Action,
        *,
        actor: str,
        source: Source,
        reason: str | None = None,
        request_id: str | None = None,
        confirm: bool = False,
        drain_timeout: float | None = None,
        cap: Cap | None = None,
        who: Who | None = None,
    ) -> TransitionResult:
        if cap is not None and action is not Action.RESUME:
            raise InvalidInput(
                "max_concurrency", "a temporary cap (with for_minutes) is only allowed on resume"
            )
        if action is Action.CANCEL and not confirm:
            raise ConfirmationRequired(
                "confirm", 'cancel is irreversible; send {"confirm": true} to cancel'
            )
        if source is Source.SYSTEM and action is Action.PAUSE and not (reason or "").strip():
            raise InvalidInput("reason", "a system pause must say why (reason is required)")
        started = time.perf_counter()
        c = self._commit_transition(
            campaign_id, action, actor, source, reason, request_id, cap, who
        )
        # The answer's database part is read while the gate drains: the pause waits for
        # calls in flight, not for a recount of the campaign's contacts.
        stored = self._answers.submit(self._committed_view, c)
        gate, recorded = self._apply_gate(c, action, drain_timeout)
        metrics.observe_transition(
            action.value, time.perf_counter() - started, gate.get("drain_ms"), gate.get("drained")
        )
        log.info(
            "transition",
            campaign_id=c.id,
            action=action.value,
            version=c.version,
            status=c.status,
            actor=actor,
            source=source.value,
            gate=gate,
        )
        try:
            view = stored.result()
            view.update(self._live_view(campaign_id, view["version"]))
            recorded.result()
            return TransitionResult(view, gate)
        except OperationalError as exc:
            raise Unavailable(
                f"campaign {c.id} is now {c.status} (version {c.version}, gate {gate}), but "
                "reading it back from the database failed; GET it again"
            ) from exc

    def _commit_transition(
        self,
        campaign_id: int,
        action: Action,
        actor: str,
        source: Source,
        reason: str | None,
        request_id: str | None,
        cap: Cap | None = None,
        who: Who | None = None,
    ) -> Campaign:
        for _ in range(5):
            try:
                with self.sessions.begin() as s:
                    c = self.get(s, campaign_id)
                    current = Status(c.status)
                    target = next_status(current, action)
                    version = c.version + 1
                    now = utcnow()
                    values: dict[str, Any] = {
                        "status": target.value,
                        "version": version,
                        "updated_at": now,
                    }
                    if action is Action.PAUSE:
                        values.update(paused_at=now, pause_reason=reason, pause_source=source.value)
                    elif target is not Status.PAUSED:
                        values.update(paused_at=None, pause_reason=None, pause_source=None)
                    values.update(_cap_values(c, action, cap, now))
                    done = s.execute(
                        update(Campaign)
                        .where(Campaign.id == campaign_id, Campaign.version == c.version)
                        .values(**values)
                    )
                    if done.rowcount != 1:  # type: ignore[attr-defined]
                        raise _Raced()
                    s.add(
                        Transition(
                            campaign_id=campaign_id,
                            version=version,
                            from_status=current.value,
                            to_status=target.value,
                            action=action.value,
                            actor=actor,
                            source=source.value,
                            reason=reason,
                            request_id=request_id,
                            role=who.role if who else None,
                            source_ip=who.source_ip if who else None,
                            created_at=now,
                            cap_concurrency=values.get("cap_concurrency"),
                            cap_until=values.get("cap_until"),
                        )
                    )
                    record(
                        s,
                        who,
                        f"campaign.{action.value}",
                        f"campaign:{campaign_id}",
                        actor=actor,
                        source=source.value,
                        reason=reason,
                        version=version,
                    )
                    s.add(
                        Outbox(
                            routing_key=Keys.routing_key(campaign_id, action.value),
                            payload={
                                "type": "campaign.transition",
                                "campaign_id": campaign_id,
                                "version": version,
                                "action": action.value,
                                "status": target.value,
                                "at": now.isoformat(),
                            },
                            created_at=now,
                        )
                    )
                    if action is Action.CANCEL:
                        self._cancel_contacts(s, campaign_id)
                    # The row as committed, without reading it back: a read after the
                    # commit that failed would answer 503 for a transition that was made.
                    for name, value in values.items():
                        set_committed_value(c, name, value)
                return c
            except (_Raced, IntegrityError):
                continue  # someone else moved it first: re-read and re-validate
            except OperationalError as exc:
                if _retryable(exc):
                    continue
                raise _db_unavailable(exc) from exc
        raise Conflict(f"campaign {campaign_id} is changing too fast; retry")

    @staticmethod
    def _cancel_contacts(s: Session, campaign_id: int) -> None:
        # Attempts before contacts: the order workers lock them in (no deadlock).
        now = utcnow()
        s.execute(
            update(Attempt)
            .where(Attempt.campaign_id == campaign_id, Attempt.state == AttemptState.QUEUED.value)
            .values(state=AttemptState.CANCELLED.value, finished_at=now)
        )
        s.execute(
            update(Contact)
            .where(
                Contact.campaign_id == campaign_id,
                Contact.state.in_(
                    [
                        ContactState.PENDING.value,
                        ContactState.QUEUED.value,
                        ContactState.RETRY_WAIT.value,
                    ]
                ),
            )
            .values(state=ContactState.CANCELLED.value, updated_at=now)
        )

    def _apply_gate(
        self, c: Campaign, action: Action, drain_timeout: float | None
    ) -> tuple[dict[str, Any], Future[None]]:
        """Gate CAS (and drain for pause/cancel); never raises: the commit is done. The
        answer's record is written meanwhile (the future); wait for it before answering."""
        closing = action in CLOSING
        gate: dict[str, Any] = {"version": c.version, "written": False}
        try:
            stored = self.gate.write(c.id, c.status, c.version, c.concurrency)
            gate["written"] = stored == c.version
            # The relay wakes at once; on an opening, the feeder too.
            nudge = self.gate.r.pipeline(transaction=False)
            nudge.publish(self.keys.outbox_nudge, c.id)
            if not closing:
                nudge.publish(self.keys.feed_nudge, c.id)
            nudge.execute()
            if closing:
                timeout = self.settings.drain_timeout if drain_timeout is None else drain_timeout
                d = self.gate.drain(c.id, timeout)
            else:
                d = None
        except redis.RedisError as exc:
            # Workers cannot claim without Redis either, so a closing gate is still closed;
            # an opening one opens when the reconciler next writes it.
            log.error("gate_write_failed", campaign_id=c.id, error=str(exc))
            gate["error"] = f"Redis unreachable ({exc}); the reconciler will write the gate"
            d = Drain(False, -1, 0.0) if closing else None
        if closing and d is not None:
            gate.update(closed=True, drained=d.drained, inflight=d.inflight, drain_ms=d.drain_ms)
        at = datetime.now(UTC)
        recorded = self._answers.submit(
            self._record_answer, c.id, c.version, at, d.drained if d else None
        )
        return gate, recorded

    def _record_answer(
        self, campaign_id: int, version: int, at: datetime, drained: bool | None
    ) -> None:
        """When the answer left and whether it was drained: the safety checker's evidence."""
        try:
            with self.sessions.begin() as s:
                s.execute(
                    update(Transition)
                    .where(Transition.campaign_id == campaign_id, Transition.version == version)
                    .values(answered_at=at, drained=drained)
                )
        except OperationalError as exc:
            log.warning("answer_not_recorded", campaign_id=campaign_id, error=str(exc))


def _cap_values(c: Campaign, action: Action, cap: Cap | None, now: datetime) -> dict[str, Any]:
    """The cap columns a transition writes: set by a capped resume, kept by a pause,
    cleared by anything else; ``lift_cap`` only once its time is up."""
    if action is Action.RESUME and cap is not None:
        if cap.max_concurrency > c.max_concurrency:
            raise InvalidInput(
                "max_concurrency",
                f"a temporary cap must be at most the campaign's max_concurrency "
                f"({c.max_concurrency}), got {cap.max_concurrency}",
            )
        until = now + timedelta(minutes=cap.for_minutes)
        return {"cap_concurrency": cap.max_concurrency, "cap_until": until}
    if action is Action.PAUSE:
        return {}
    if action is Action.LIFT_CAP and (c.cap_until is None or c.cap_until > now):
        raise Conflict(f"campaign {c.id} has no temporary cap whose time is up")
    return {"cap_concurrency": None, "cap_until": None}


def _cap_view(cap: int | None, until: datetime | None) -> dict[str, Any] | None:
    return None if cap is None else {"max_concurrency": cap, "until": until}


def _retryable(exc: OperationalError) -> bool:
    """A deadlock or serialization failure: the transaction rolled back, try again."""
    return getattr(exc.orig, "sqlstate", None) in ("40P01", "40001")


class _Raced(Exception):
    """The campaign row changed between our read and our version-checked update."""


def dialing_view(c: Campaign, at: datetime | None = None) -> dict[str, Any]:
    """Why a running campaign dials nothing right now, when it is its calling window."""
    if c.status != Status.RUNNING.value:
        return {"blocked_by": None}
    verdict = windows.check(c.calling_window, c.timezone, None, at or utcnow())
    if verdict.open:
        return {"blocked_by": None}
    return {"blocked_by": "calling_window", "opens_at": verdict.opens_at}


def worker_view(info: dict[str, str], worker_id: str) -> dict[str, Any]:
    return {
        "id": worker_id,
        "host": info.get("host"),
        "pid": int(info["pid"]) if info.get("pid") else None,
        "threads": int(info["threads"]) if info.get("threads") else None,
        "started": float(info["started"]) if info.get("started") else None,
        "last_heartbeat": float(info["last"]) if info.get("last") else None,
        "inflight": int(info.get("inflight") or 0),
        "applied": json.loads(info.get("applied") or "{}"),
    }
