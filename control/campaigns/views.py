"""How a campaign, its history and the fleet are shown: plain dicts built from rows.

Every answer that shows a campaign (API, page, CLI) is built here, so they cannot drift.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shared import windows
from shared.fleet import Record
from shared.models import Attempt, Campaign, Transition, utcnow
from shared.states import AttemptState, ContactState, Disposition, Status, allowed_actions

COUNTED_STATES = [s.value for s in ContactState]
DISPOSITIONS = [d.value for d in Disposition]
# The live states a campaign's ``live`` shows (``dialing`` is counted with ``ringing``:
# both are calls not answered yet).
LIVE_SHOWN = [AttemptState.RINGING.value, AttemptState.ANSWERED.value]


def campaign_view(
    c: Campaign, counts: dict[str, int], calls: dict[str, dict[str, int]]
) -> dict[str, Any]:
    """The campaign as the database has it, with its contacts counted by state and its
    calls by disposition (``dispositions``) and by live state (``live``)."""
    return {
        **campaign_state(c),
        "counts": counts,
        "dispositions": calls["dispositions"],
        "live": calls["live"],
    }


def campaign_state(c: Campaign) -> dict[str, Any]:
    """The campaign's own row: what a transition's answer carries (no counts: a transition
    answers from what its transaction knows)."""
    return {
        "id": c.id,
        "name": c.name,
        "status": c.status,
        "version": c.version,
        "max_concurrency": c.max_concurrency,
        "concurrency": c.concurrency,
        "cap": cap_view(c.cap_concurrency, c.cap_until),
        "max_lines": c.max_lines,
        "max_cps": c.max_cps,
        "max_attempts": c.max_attempts,
        "retry": c.retry or {},
        "machine_detection": c.machine_detection,
        "timezone": c.timezone,
        "calling_window": c.calling_window,
        "paused_at": c.paused_at,
        "pause_reason": c.pause_reason,
        "pause_source": c.pause_source,
        "created_at": c.created_at,
        "updated_at": c.updated_at,
        "allowed_actions": [a.value for a in allowed_actions(Status(c.status))],
        "dialing": dialing_view(c),
        "monitor": c.monitor,
    }


def attempt_view(a: Attempt, phone: str) -> dict[str, Any]:
    """One dialed attempt: who, how it went (the SIP code or provider error), when."""
    return {
        "id": a.id,
        "contact_id": a.contact_id,
        "phone": phone,
        "attempt_no": a.attempt_no,
        "state": a.state,
        "disposition": a.disposition,
        "sip_code": a.sip_code,
        "error": a.error_code,
        "outcome": a.outcome,
        "started_at": a.started_at,
        "ringing_at": a.ringing_at,
        "answered_at": a.answered_at,
        "ended_at": a.finished_at,
        "ring_ms": a.ring_ms,
        "talk_ms": a.talk_ms,
        "worker_id": a.worker_id,
    }


def transition_view(t: Transition) -> dict[str, Any]:
    return {
        "version": t.version,
        "from": t.from_status,
        "to": t.to_status,
        "action": t.action,
        "actor": t.actor,
        "source": t.source,
        "reason": t.reason,
        "role": t.role,
        "source_ip": t.source_ip,
        "peer_ip": t.peer_ip,
        "request_id": t.request_id,
        "at": t.created_at,
        "cap": cap_view(t.cap_concurrency, t.cap_until),
        "answered_at": t.answered_at,
        "drained": t.drained,
        "details": t.details,
        "note": transition_note(t.action, t.actor, t.details),
    }


def transition_note(action: str, actor: str, details: dict[str, Any] | None) -> str | None:
    """A transition's holds in words: "held: compliance (…)", "resumed by bob (approved
    bob; released: operator hold of alice, monitor failure_ratio acknowledged)"."""
    d = details or {}
    if "hold" in d:
        h = d["hold"]
        return f"held: {h['kind']}" + (f" {h['rule']}" if h.get("rule") else "")
    if action != "resume" or "released" not in d:
        return None
    parts = []
    for h in d["released"]:
        what = f"{h['kind']}" + (f" {h['rule']}" if h.get("rule") else "") + f" of {h['placed_by']}"
        if h.get("acknowledged"):
            what += " acknowledged"
        if h.get("approved_by"):
            what += f" (release asked by {h['requested_by']}, approved by {h['approved_by']})"
        parts.append(what)
    note = f"resumed by {actor} (approved {d.get('owner', actor)}"
    note += f"; released: {', '.join(parts)}" if parts else ""
    if d.get("overrides"):
        note += f"; overrode: {', '.join(d['overrides'])}"
    if d.get("canary"):
        note += f"; canary of {d['canary']['calls']} calls"
    return note + ")"


def cap_view(cap: int | None, until: datetime | None) -> dict[str, Any] | None:
    return None if cap is None else {"max_concurrency": cap, "until": until}


def dialing_view(c: Campaign, at: datetime | None = None) -> dict[str, Any]:
    """Why a running campaign dials nothing right now, when it is its calling window."""
    if c.status != Status.RUNNING.value:
        return {"blocked_by": None}
    verdict = windows.check(c.calling_window, c.timezone, None, at or utcnow())
    if verdict.open:
        return {"blocked_by": None}
    return {"blocked_by": "calling_window", "opens_at": verdict.opens_at}


def worker_view(record: Record, worker_id: str) -> dict[str, Any]:
    """A worker as its heartbeat record describes it."""
    return {
        "id": worker_id,
        "host": record.host,
        "pid": record.pid,
        "threads": record.threads,
        "started": record.started,
        "last_heartbeat": record.last,
        "inflight": record.inflight,
        "calls": record.calls,
        "applied": record.applied,
    }
