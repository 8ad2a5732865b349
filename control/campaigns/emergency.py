"""Emergency stop: one Redis write closes every gate of the namespace at once.

It works while the database is down: the stop is the Redis key, which every claim reads;
the database row is its record, written when the database answers (the answer says
whether it was). Setting it waits, like a pause, until every live lease has drained.
A lost key (Redis restarted empty) is set again by the reconciler from the latest record
before any gate is rebuilt; so a lift is recorded first, and refused without a database.
Every caller may see that the global stop is in force and since when; who set it and why
(free text, perhaps about one organisation's incident) only a platform admin.
"""

from __future__ import annotations

import contextlib
import json
import time
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy.exc import SQLAlchemyError

from control.auth.roles import Can, Who
from control.auth.trail import record
from control.campaigns import webhooks
from control.campaigns.hangups import hang_up
from control.campaigns.service import Control
from shared import metrics
from shared.clients import REDIS_ERRORS
from shared.errors import Conflict, Unavailable
from shared.gate import Gate
from shared.messages import HANGUP_ROUTING_KEY, HangupRequest
from shared.models import DEFAULT_ORG, EmergencyStop, Outbox
from shared.states import Action, Hangup, HoldKind, Source, Status

log = structlog.get_logger("dialgate.estop")


def state(control: Control, who: Who) -> dict[str, Any]:
    """The global stop as ``who`` may see it: a platform admin its whole record (``by``,
    ``reason``, ``since``); any other caller whether it is in force and ``since`` when."""
    current = _current(control)
    if not current["active"] or who.principal.can(Can.PLATFORM):
        return current
    return {"active": True, "since": current.get("since")}


def _current(control: Control) -> dict[str, Any]:
    try:
        raw = control.gate.estop()
    except REDIS_ERRORS as exc:
        raise Unavailable(f"Redis is unreachable, the emergency stop is unknown: {exc}") from exc
    if raw is None:
        return {"active": False}
    try:
        record = json.loads(raw)
    except ValueError:
        record = {"reason": raw}
    return {"active": True, **record}


def stop(
    control: Control,
    actor: str,
    reason: str | None,
    request_id: str | None,
    drain_timeout: float | None,
    who: Who | None = None,
    hangup: Hangup = Hangup.RINGING,
) -> dict[str, Any]:
    """Close every gate, wait for the placements in flight, record it; then the calls not
    yet answered (``hangup``) are hung up by their workers, told over the broadcast."""
    now = datetime.now(UTC)
    started = time.monotonic()
    record = {"by": actor, "reason": reason, "since": now.isoformat()}
    try:
        if control.gate.estop() is None:
            control.gate.set_estop(json.dumps(record))
        timeout = control.settings.drain_timeout if drain_timeout is None else drain_timeout
        d = control.gate.drain(None, timeout)
    except REDIS_ERRORS as exc:
        raise Unavailable(
            f"Redis is unreachable, the emergency stop was not set: {exc}. Workers cannot "
            "claim without Redis, so nothing dials while it is away; retry when it is back."
        ) from exc
    metrics.observe_drain("estop", d.drain_ms, d.drained)
    recorded = _record(control, "stop", actor, reason, request_id, now, d.drained, who, hangup)
    with contextlib.suppress(*REDIS_ERRORS):
        control.redis.publish(control.keys.outbox_nudge, 0)  # the hang-up goes out at once
    left = max(0.0, timeout - (time.monotonic() - started))
    hung = hang_up(control.sessions, None, hangup, left) if recorded else {}
    log.warning("emergency_stop", by=actor, reason=reason, drained=d.drained, inflight=d.inflight)
    return {  # for a platform admin (or their Alertmanager): the whole record
        **_current(control),
        "gate": {
            "closed": True,
            "drained": d.drained,
            "inflight": d.inflight,
            "drain_ms": d.drain_ms,
            **hung,
        },
        "recorded": recorded,
    }


def lift(
    control: Control,
    actor: str,
    reason: str | None,
    request_id: str | None,
    who: Who | None = None,
) -> dict[str, Any]:
    """Lift the stop: recorded in the database first, then the Redis key goes. A lift the
    database did not record is refused (503): the reconciler restores a stop whose latest
    record is a stop, so an unrecorded lift would not last (fail closed)."""
    now = datetime.now(UTC)
    try:
        active = control.gate.estop() is not None
    except REDIS_ERRORS as exc:
        raise Unavailable(
            f"Redis is unreachable, the emergency stop is still in force: {exc}"
        ) from exc
    if active and not _record(control, "lift", actor, reason, request_id, now, None, who):
        raise Unavailable(
            "the database is unreachable, so the lift cannot be recorded; the emergency "
            "stop stays in force; retry when the database answers"
        )
    try:
        was = control.gate.lift_estop() if active else False
    except REDIS_ERRORS as exc:
        raise Unavailable(
            f"Redis is unreachable, the emergency stop is still in force: {exc}"
        ) from exc
    log.warning("emergency_stop_lifted", by=actor, was_active=was)
    return {"active": False, "lifted": was, "recorded": active}


def restore(gate: Gate, latest: EmergencyStop | None) -> bool:
    """Set the stop again when its latest record is a stop and Redis has lost the key
    (Redis keeps nothing on disk in many deployments): the reconciler's first step,
    before any gate is rewritten. True if it was restored."""
    if latest is None or latest.action != "stop" or gate.estop() is not None:
        return False
    since = latest.created_at.isoformat() if latest.created_at else None
    record = {"by": latest.actor, "reason": latest.reason, "since": since, "restored": True}
    gate.set_estop(json.dumps(record))
    log.warning("emergency_stop_restored", by=latest.actor, since=since)
    return True


def stop_org(
    control: Control,
    who: Who,
    reason: str | None,
    drain_timeout: float | None,
    hangup: Hangup = Hangup.RINGING,
) -> dict[str, Any]:
    """An organisation admin's emergency stop: an ``org_stop`` hold on every running or
    paused campaign of the organisation, each through the transition service (resume
    stays deliberate: it releases the hold with the others)."""
    why = f"emergency stop of {who.org}" + (f": {reason}" if reason else "")
    paused: list[dict[str, Any]] = []
    held = control.campaign_ids(who.org, Status.RUNNING) | control.campaign_ids(
        who.org, Status.PAUSED
    )
    for cid in sorted(held):
        try:
            result = control.transition(
                cid,
                Action.PAUSE,
                actor=who.name,
                source=Source.OPERATOR,
                reason=why,
                request_id=who.request_id,
                drain_timeout=drain_timeout,
                who=who,
                hangup=hangup,
                hold=HoldKind.ORG_STOP,
            )
        except Conflict:  # cancelled meanwhile, or already held by an organisation stop
            continue
        paused.append({"id": cid, "gate": result.gate})
    log.warning("org_emergency_stop", org=who.org, by=who.name, paused=len(paused))
    return {"scope": "org", "org": who.org, "paused": paused}


def _record(
    control: Control,
    action: str,
    actor: str,
    reason: str | None,
    request_id: str | None,
    at: datetime,
    drained: bool | None,
    who: Who | None,
    hangup: Hangup = Hangup.NONE,
) -> bool:
    """Write the stop's (or lift's) record and audit event; False if the database did not
    take them (the answer says so; a stop already set in Redis stays in force)."""
    # A stop of every organisation is filed under the platform's own organisation.
    org = who.org if who else DEFAULT_ORG
    try:
        with control.sessions.begin() as s:
            record(s, who, f"emergency_stop.{action}", "all", org, reason=reason, drained=drained)
            s.add(
                EmergencyStop(
                    action=action,
                    actor=actor,
                    reason=reason,
                    request_id=request_id,
                    created_at=at,
                    answered_at=datetime.now(UTC),
                    drained=drained,
                )
            )
            webhooks.enqueue(
                s,
                None,
                f"emergency_stop.{action}",
                {"scope": "all", "action": action, "at": at.isoformat(), "drained": drained},
            )
            if hangup is not Hangup.NONE:
                request = HangupRequest(hangup=hangup, at=at)
                s.add(
                    Outbox(routing_key=HANGUP_ROUTING_KEY, payload=request.model_dump(mode="json"))
                )
        return True
    except SQLAlchemyError as exc:  # unreachable, or a value it refused: never a 500 here
        log.error("emergency_stop_not_recorded", action=action, error=str(exc))
        return False
