"""The write path of a transition (:meth:`Transitions.transition`):

1. one SQL transaction: version-checked update of the campaign row, validated against
   the state machine, a transition row, its audit event, an outbox row, a webhook
   delivery per subscription that names its event (and, on cancel, every pending/queued
   contact marked cancelled);
2. after the commit, the gate's versioned compare-and-set in Redis;
3. for pause and cancel, wait (bounded) for the campaign's leases to drain;
4. answer with the campaign as it now is and what the gate did.
"""

from __future__ import annotations

import contextlib
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from control.auth.roles import Who
from control.auth.trail import record
from control.campaigns import webhooks
from control.campaigns.hangups import hang_up
from control.campaigns.reads import Reads
from control.campaigns.views import campaign_state
from shared import metrics
from shared.clients import REDIS_ERRORS
from shared.errors import ConfirmationRequired, Conflict, InvalidInput, Unavailable
from shared.gate import Drain
from shared.keys import Keys
from shared.messages import ControlEvent
from shared.models import Attempt, Campaign, Contact, Outbox, Transition, utcnow
from shared.states import (
    CLOSING,
    Action,
    AttemptState,
    ContactState,
    Hangup,
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
    ) -> TransitionResult:
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
        started = time.perf_counter()
        c = self._commit_transition(
            campaign_id, action, actor, source, reason, request_id, cap, who, scope
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
        view = {**campaign_state(c), **self._live_view(campaign_id, c.version)}
        recorded.result()
        return TransitionResult(view, gate)

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
                            peer_ip=who.peer_ip if who else None,
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
                        webhooks.transition_data(
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
                        campaign_id,
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
                stored = self.gate.write(*gate_values, notify=notify)
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


def _retryable(exc: OperationalError) -> bool:
    """A deadlock or serialization failure: the transaction rolled back, try again."""
    return getattr(exc.orig, "sqlstate", None) in ("40P01", "40001")


class _Raced(Exception):
    """The campaign row changed between our read and our version-checked update."""
