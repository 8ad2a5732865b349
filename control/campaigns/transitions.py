"""The write path of a transition (:meth:`Transitions.transition`):

0. a resume first judges the campaign's holds (:mod:`control.campaigns.holds`: all are
   released or none, 409 naming what remains) and its preflight
   (:mod:`control.campaigns.preflight`: a blocking finding answers 409 unless overridden);
1. one SQL transaction: version-checked update of the campaign row, validated against
   the state machine, a transition row, its audit event, an outbox row and a webhook
   delivery per subscription that names its event; a pause places its hold (of a
   campaign already paused: a ``hold`` transition), a resume releases them, a cancel
   ends them (and, on cancel, every pending/queued contact marked cancelled);
2. after the commit, the gate's versioned compare-and-set in Redis;
3. for pause and cancel, wait (bounded) for the campaign's leases to drain;
4. answer with the campaign as it now is and what the gate did.
"""

from __future__ import annotations

import contextlib
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from control.auth.roles import Who
from control.auth.trail import record
from control.campaigns import holds, preflight, webhooks
from control.campaigns.hangups import hang_up
from control.campaigns.holds import HoldSpec, Release
from control.campaigns.reads import Reads
from control.campaigns.views import campaign_state
from shared import metrics
from shared.clients import REDIS_ERRORS
from shared.errors import ConfirmationRequired, Conflict, InvalidInput, Unavailable
from shared.gate import Canary, Drain
from shared.keys import Keys
from shared.messages import ControlEvent
from shared.models import Attempt, Campaign, Contact, Outbox, Transition, utcnow
from shared.states import (
    CLOSING,
    Action,
    AttemptState,
    ContactState,
    Hangup,
    HoldKind,
    Source,
    Status,
    next_status,
)

log = structlog.get_logger("dialgate.control")


@dataclass(frozen=True)
class Cap:
    """A controlled resume's temporary concurrency cap and how long it lasts."""

    max_concurrency: int
    for_minutes: float


@dataclass(frozen=True)
class CanaryWatch:
    """A canary resume: the first ``calls`` after it are watched; more than
    ``max_failure_ratio`` of them failing pauses the campaign again."""

    calls: int
    max_failure_ratio: float


@dataclass
class TransitionResult:
    campaign: dict[str, Any]
    gate: dict[str, Any]


def _db_unavailable(exc: OperationalError) -> Unavailable:
    return Unavailable(
        "the database is unreachable or timed out; nothing was changed, retry "
        f"({type(exc.orig).__name__ if exc.orig else 'OperationalError'})"
    )


class Transitions(Reads):
    """The write side of a campaign's life: start, pause, resume, cancel, complete."""

    _answers: ThreadPoolExecutor

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
        hangup: Hangup | None = None,
        hold: HoldKind | None = None,
        release: Release | None = None,
        canary: CanaryWatch | None = None,
    ) -> TransitionResult:
        if hold is not None and action is not Action.PAUSE:
            raise InvalidInput("hold", "only a pause places a hold")
        if (release is not None or canary is not None) and action is not Action.RESUME:
            field = "canary" if canary is not None else "acknowledge"
            raise InvalidInput(field, "only a resume acknowledges, overrides or watches a canary")
        if hangup is not None and hangup is not Hangup.NONE and action not in CLOSING:
            raise InvalidInput("hangup", "only pause and cancel hang up calls")
        # Calls already up continue after a pause; a cancel ends those not yet answered.
        scope = hangup or (Hangup.RINGING if action is Action.CANCEL else Hangup.NONE)
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
        release = release or Release()
        if action is Action.RESUME:
            self._judge_resume(campaign_id, who, release)
        started = time.perf_counter()
        spec = holds.spec_for(actor, source, who, hold) if action is Action.PAUSE else None
        c, action, details = self._commit_transition(
            campaign_id,
            action,
            actor,
            source,
            reason,
            request_id,
            cap,
            who,
            scope,
            _Asked(spec, release, canary, reason),
        )
        gate, recorded = self._apply_gate(c, action, drain_timeout, scope)
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
        # The answer is what the transaction committed and what Redis says now: no read
        # back, no recount (GET the campaign for its counts).
        view = {**campaign_state(c), **self._live_view(campaign_id, c.version), **details}
        recorded.result()
        return TransitionResult(view, gate)

    def _judge_resume(self, campaign_id: int, who: Who | None, release: Release) -> None:
        """Before a resume's transaction: its holds (a compliance release it asks for is
        recorded, in a transaction of its own), then its preflight."""
        with self.sessions.begin() as s:
            c = self.get(s, campaign_id)
            if c.status != Status.PAUSED.value:
                return  # the state machine answers
            verdict = holds.judge(
                holds.active(s, campaign_id), who, release, utcnow(), self._approval()
            )
        if verdict.remaining:
            raise holds.HoldsRemain(campaign_id, verdict.remaining)
        preflight.require(self, campaign_id, release.override)  # type: ignore[arg-type]

    def _approval(self) -> timedelta:
        return timedelta(minutes=self.settings.approval_minutes)

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
        scope: Hangup = Hangup.NONE,
        asked: _Asked | None = None,
    ) -> tuple[Campaign, Action, dict[str, Any]]:
        asked = asked or _Asked()
        asked_action = action
        for _ in range(5):
            try:
                with self.sessions.begin() as s:
                    c = self.get(s, campaign_id)
                    current = Status(c.status)
                    action = asked_action
                    if action is Action.PAUSE and current is Status.PAUSED:
                        action = Action.HOLD  # one more hold, if it is a new one
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
                    values.update(_canary_values(c, action, asked.canary, version, now))
                    details = self._holds_change(s, c, action, actor, who, version, now, asked)
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
                            peer_ip=who.peer_ip if who else None,
                            created_at=now,
                            cap_concurrency=values.get("cap_concurrency"),
                            cap_until=values.get("cap_until"),
                            details=_stored(details),
                        )
                    )
                    record(
                        s,
                        who,
                        f"campaign.{action.value}",
                        f"campaign:{campaign_id}",
                        c.org,
                        actor=actor,
                        source=source.value,
                        reason=reason,
                        version=version,
                    )
                    s.add(
                        Outbox(
                            routing_key=Keys.routing_key(campaign_id, action.value),
                            payload=ControlEvent(
                                campaign_id=campaign_id,
                                version=version,
                                action=action,
                                status=target,
                                at=now,
                                hangup=scope,
                            ).model_dump(mode="json"),
                            created_at=now,
                        )
                    )
                    webhooks.enqueue(
                        s,
                        c.org,
                        webhooks.ACTION_EVENTS.get(action.value),
                        {
                            **webhooks.transition_data(
                                c,
                                version,
                                current.value,
                                target.value,
                                action.value,
                                actor,
                                source.value,
                                reason,
                                now,
                            ),
                            **(_stored(details) or {}),  # the hold placed, or those released
                        },
                        campaign_id,
                    )
                    if action is Action.CANCEL:
                        self._cancel_contacts(s, campaign_id)
                    # The row as committed, without reading it back: a read after the
                    # commit that failed would answer 503 for a transition that was made.
                    for name, value in values.items():
                        set_committed_value(c, name, value)
                return c, action, details
            except (_Raced, IntegrityError):
                continue  # someone else moved it first: re-read and re-validate
            except OperationalError as exc:
                if _retryable(exc):
                    continue
                raise _db_unavailable(exc) from exc
        raise Conflict(f"campaign {campaign_id} is changing too fast; retry")

    def _holds_change(
        self,
        s: Session,
        c: Campaign,
        action: Action,
        actor: str,
        who: Who | None,
        version: int,
        now: datetime,
        asked: _Asked,
    ) -> dict[str, Any]:
        """Place, release or end holds in the transition's transaction; what the
        transition records of them (and answers: ``holds``, ``released``)."""
        if action in (Action.PAUSE, Action.HOLD):
            spec = asked.hold or HoldSpec(HoldKind.OPERATOR)
            # A running campaign holds nothing (a resume released all): a pause inserts one
            # row and reads none; a hold first looks for the same hold.
            current = holds.active(s, c.id) if action is Action.HOLD else []
            dup = holds.same(current, spec)
            if dup is not None:
                raise Conflict(
                    f"campaign {c.id} is already paused, and already held so: "
                    f"{holds.describe(dup)}; allowed: resume, cancel"
                )
            h = holds.place(s, c.id, spec, asked.reason, actor, who, version, now)
            s.flush()
            return {"hold": holds.view(h), "holds": [holds.view(x) for x in [*current, h]]}
        if action is Action.RESUME:
            verdict = holds.judge(holds.active(s, c.id), who, asked.release, now, self._approval())
            if verdict.remaining:  # placed since the resume was judged
                raise holds.HoldsRemain(c.id, verdict.remaining)
            for h, _ in verdict.released:
                holds.released(h, actor, version, now)
            details: dict[str, Any] = {
                "owner": actor,
                "released": [{**holds.view(h), **how} for h, how in verdict.released],
                "holds": [],
            }
            if asked.release.override:
                details["overrides"] = sorted(asked.release.override)
            if asked.canary is not None:
                details["canary"] = {
                    "calls": asked.canary.calls,
                    "max_failure_ratio": asked.canary.max_failure_ratio,
                }
            return details
        if action is Action.CANCEL:
            for h in holds.active(s, c.id):
                holds.released(h, actor, version, now)
            return {"holds": []}
        return {}

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
        self, c: Campaign, action: Action, drain_timeout: float | None, scope: Hangup
    ) -> tuple[dict[str, Any], Future[None]]:
        """Gate CAS (and, for pause/cancel, drain, then the hang-up's wait); never raises:
        the commit is done. The answer's record is written meanwhile (the future); wait for
        it before answering."""
        closing = action in CLOSING
        gate: dict[str, Any] = {"version": c.version, "written": False}
        timeout = self.settings.drain_timeout if drain_timeout is None else drain_timeout
        started = time.monotonic()
        try:
            # The relay wakes at once; on an opening, the feeder too.
            notify = [self.keys.outbox_nudge] + ([] if closing else [self.keys.feed_nudge])
            gate_values = (c.id, c.status, c.version, c.concurrency, c.max_lines, c.max_cps)
            d = None
            if closing:
                stored, d = self.gate.close(*gate_values, notify, timeout)
            else:
                stored = self.gate.write(*gate_values, notify=notify, canary=canary_of(c))
            gate["written"] = stored == c.version
        except REDIS_ERRORS as exc:
            # Workers cannot claim without Redis either, so a closing gate is still closed;
            # an opening one opens when the reconciler next writes it.
            log.error("gate_write_failed", campaign_id=c.id, error=str(exc))
            gate["error"] = f"Redis unreachable ({exc}); the reconciler will write the gate"
            d = Drain(False, -1, 0.0) if closing else None
        if closing and d is not None:
            gate.update(closed=True, drained=d.drained, inflight=d.inflight, drain_ms=d.drain_ms)
        if closing:
            left = max(0.0, timeout - (time.monotonic() - started))
            gate.update(hang_up(self.sessions, c.id, scope, left))
            with contextlib.suppress(*REDIS_ERRORS):
                gate["live_calls"] = self.gate.lines(c.id)
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


def _canary_values(
    c: Campaign, action: Action, canary: CanaryWatch | None, version: int, now: datetime
) -> dict[str, Any]:
    """The canary a transition leaves: set by a canary resume, ended by a closing, a plain
    resume and its verdict; kept by the rest."""
    if action is Action.RESUME and canary is not None:
        watch = {
            "calls": canary.calls,
            "max_failure_ratio": canary.max_failure_ratio,
            "version": version,
            "at": now.isoformat(),
        }
        return {"canary": watch}
    if action in (*CLOSING, Action.RESUME, Action.CANARY_PASSED):
        return {"canary": None}
    return {}


def canary_of(c: Campaign, used: int = 0) -> Canary | None:
    """What the campaign's gate says of its canary (``used``: calls already made, known
    from the database)."""
    if not c.canary:
        return None
    return Canary(int(c.canary["calls"]), int(c.canary["version"]), used)


def _stored(details: dict[str, Any]) -> dict[str, Any] | None:
    """What a transition row keeps of its holds (JSON: times as text)."""
    kept = {k: v for k, v in details.items() if k != "holds"}
    return jsonable(kept) if kept else None


def jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    return value.isoformat() if isinstance(value, datetime) else value


@dataclass(frozen=True)
class _Asked:
    """What the caller asked of the holds: the hold a pause places, a resume's
    acknowledgements and overrides, its canary."""

    hold: HoldSpec | None = None
    release: Release = field(default_factory=Release)
    canary: CanaryWatch | None = None
    reason: str | None = None


def _retryable(exc: OperationalError) -> bool:
    """A deadlock or serialization failure: the transaction rolled back, try again."""
    return getattr(exc.orig, "sqlstate", None) in ("40P01", "40001")


class _Raced(Exception):
    """The campaign row changed between our read and our version-checked update."""
