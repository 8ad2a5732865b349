""" "Why isn't it dialing?": every reason a campaign is not placing calls, with evidence.

The facts are gathered once (:func:`gather`: the campaign row, its counts, its last
pause, what Redis holds, the broker (probed once for every diagnosis of the last few
seconds: :class:`shared.clients.BrokerProbe`), the outbox); then each check in :data:`CHECKS`
looks at them and returns a :class:`Reason` (what, evidence, fix) or ``None``. A check
is a small function of :class:`Facts`: add one to :data:`CHECKS` to diagnose more.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from control.campaigns.org import held_by_frequency
from control.campaigns.service import Control
from control.loops.relay import backlog
from shared.clients import REDIS_ERRORS, broker_probe
from shared.gate import GateState
from shared.states import TERMINAL, Action, ContactState, Status

# Unsent outbox rows older than this mean the relay is not keeping up (or not running).
RELAY_BACKLOG_AGE_S = 5.0


@dataclass(frozen=True)
class Reason:
    code: str
    title: str
    evidence: str
    fix: str


@dataclass
class Facts:
    campaign: dict[str, Any]  # the campaign's view (Control.campaign), with counts
    last_pause: dict[str, Any] | None  # the transition that paused it, if paused
    now: datetime
    redis_error: str | None = None
    gate: GateState | None = None
    inflight: int = 0
    lines: int = 0
    live_workers: tuple[str, ...] = ()
    acks: dict[str, int] | None = None
    estop: dict[str, Any] | None = None
    broker_error: str | None = None
    outbox_unsent: int = 0
    outbox_oldest_s: float | None = None
    # The organisation's frequency limit and the pending contacts it holds back now
    # (control.campaigns.org.held_by_frequency).
    frequency: dict[str, Any] | None = None


Check = Callable[[Facts], Reason | None]


def gather(control: Control, campaign_id: int) -> Facts:
    c = control.campaign(campaign_id)
    now = datetime.now(UTC)
    with control.sessions() as s:
        last_pause = None
        if c["status"] == Status.PAUSED.value:
            t = control.latest_transition(s, campaign_id, Action.PAUSE)
            if t is not None:
                last_pause = {
                    "actor": t.actor,
                    "source": t.source,
                    "reason": t.reason,
                    "at": t.created_at,
                }
        unsent = backlog(s)
    facts = Facts(c, last_pause, now, outbox_unsent=unsent.unsent)
    if c["counts"].get(ContactState.PENDING.value):
        facts.frequency = held_by_frequency(control, campaign_id)
    if unsent.oldest is not None:
        facts.outbox_oldest_s = max(0.0, (now - unsent.oldest).total_seconds())
    try:
        snap = control.gate.snapshot(campaign_id, time.time() - control.settings.worker_ttl)
        facts.gate, facts.inflight, facts.lines = snap.gate, snap.inflight, snap.lines
        facts.live_workers, facts.acks = snap.live_workers, snap.acks
        if snap.estop is not None:
            try:
                facts.estop = dict(json.loads(snap.estop))
            except (ValueError, TypeError):
                facts.estop = {"reason": str(snap.estop)}
    except REDIS_ERRORS as exc:
        facts.redis_error = f"{type(exc).__name__}: {exc}"[:300]
    facts.broker_error = broker_probe(control.settings)()  # a few seconds old at most
    return facts


def _hold(h: dict[str, Any]) -> str:
    return f"{h['kind']}" + (f" {h['rule']}" if h.get("rule") else "") + f" ({h['needs']})"


# -- the checks, one per reason -----------------------------------------------------------
def not_running(f: Facts) -> Reason | None:
    c = f.campaign
    status = c["status"]
    cid = c["id"]
    if status == Status.PAUSED.value:
        p = f.last_pause or {}
        who = f"{p.get('actor', '?')} ({p.get('source') or c.get('pause_source') or '?'})"
        why = c.get("pause_reason") or "no reason given"
        held = c.get("holds") or []
        acks = "".join(f" --ack {h['rule']}" for h in held if h.get("rule"))
        more = f"; {len(held)} holds: " + ", ".join(_hold(h) for h in held) if held else ""
        return Reason(
            "paused",
            "The campaign is paused",
            f"paused at {_iso(c.get('paused_at'))} by {who}: {why}{more}",
            f"once the cause is understood: dialgate resume {cid} --dry-run, then "
            f"dialgate resume {cid}{acks} (or, supervised: --canary 20, or "
            "--max-concurrency 2 --for-minutes 15)",
        )
    if status == Status.DRAFT.value:
        return Reason(
            "draft", "The campaign was never started", "status draft", f"dialgate start {cid}"
        )
    if status in TERMINAL:
        return Reason(
            status,
            f"The campaign is {status} (final)",
            f"status {status}: nothing dials again",
            "create a new campaign to dial these contacts again",
        )
    return None


def emergency_stop(f: Facts) -> Reason | None:
    if f.estop is None:
        return None
    e = f.estop
    return Reason(
        "emergency_stop",
        "An emergency stop is in force: no campaign dials",
        # Who set it and why are a platform admin's to read (GET /api/v1/emergency-stop):
        # every reader of a campaign reads its diagnosis.
        f"since {e.get('since', '?')} (who and why: a platform admin's dialgate status)",
        "when it is safe: dialgate estop --lift",
    )


def no_pending_contacts(f: Facts) -> Reason | None:
    counts = f.campaign["counts"]
    if f.campaign["status"] in TERMINAL:
        return None
    still = (ContactState.PENDING, ContactState.QUEUED, ContactState.RETRY_WAIT)
    if any(counts.get(s, 0) for s in still):
        return None  # a contact waiting for its retry is queued again when it is due
    done = ", ".join(f"{k} {v}" for k, v in counts.items() if v) or "no contacts at all"
    return Reason(
        "no_pending_contacts",
        "No contacts are left to dial",
        f"0 pending, 0 queued, 0 waiting for a retry ({done})",
        f"import contacts: dialgate contacts import {f.campaign['id']} FILE.csv",
    )


def concurrency_saturated(f: Facts) -> Reason | None:
    if f.gate is None or f.inflight < f.gate.max_concurrency:
        return None
    cap = f.campaign.get("cap")
    limit = f"{f.gate.max_concurrency}" + (
        f" (temporary cap until {_iso(cap['until'])})" if cap else ""
    )
    return Reason(
        "concurrency_saturated",
        "Every dialing slot is taken",
        f"{f.inflight} dials in flight, concurrency limit {limit}",
        "wait for the dials in flight to end"
        + (", or let the temporary cap lift" if cap else "; raise max_concurrency if needed"),
    )


def lines_full(f: Facts) -> Reason | None:
    limit = None if f.gate is None else f.gate.max_lines or f.gate.max_concurrency
    if limit is None or f.lines < limit:
        return None
    unknown = int(f.campaign["counts"].get("unknown", 0))
    held = f"{f.lines} of {limit} lines are held by calls up"
    if unknown:
        held += (
            f"; the campaign has {unknown} calls of unknown fate (their worker died), whose "
            "lines are held until DIALGATE_MAX_CALL_SECONDS after they started"
        )
    return Reason(
        "lines_full",
        "Every line is taken",
        held,
        "wait for calls to end (or their lines to expire); raise max_lines if the trunk has room",
    )


def redis_unreachable(f: Facts) -> Reason | None:
    if f.redis_error is None:
        return None
    return Reason(
        "redis_unreachable",
        "Redis (the gate) is unreachable: every claim is denied",
        f.redis_error,
        "bring Redis back (DIALGATE_REDIS_URL); the reconciler rewrites every gate",
    )


def no_live_workers(f: Facts) -> Reason | None:
    if f.redis_error is not None or f.live_workers:
        return None
    return Reason(
        "no_live_workers",
        "No worker is alive",
        "no worker heartbeat within the worker TTL",
        "start workers: dialgate worker (see dialgate workers)",
    )


def workers_not_acknowledging(f: Facts) -> Reason | None:
    if f.acks is None or not f.live_workers:
        return None
    version = int(f.campaign["version"])
    behind = [w for w in f.live_workers if f.acks.get(w, 0) < version]
    if not behind:
        return None
    shown = ", ".join(f"{w}@{f.acks.get(w, 0)}" for w in behind[:5])
    return Reason(
        "workers_not_acknowledging",
        "Workers have not acknowledged the latest version",
        f"{len(behind)} of {len(f.live_workers)} live workers behind version {version}: {shown}",
        "check the broker and the relay (below), and those workers' logs; "
        "they still read the gate before every dial",
    )


def gate_out_of_date(f: Facts) -> Reason | None:
    if f.redis_error is not None:
        return None
    c = f.campaign
    if f.gate is None:
        return Reason(
            "gate_missing",
            "The campaign's gate is missing from Redis: claims are denied",
            f"no gate for campaign {c['id']} (database at version {c['version']})",
            "the reconciler rebuilds it within DIALGATE_RECONCILE_INTERVAL: "
            "make sure the control loops run (dialgate control --role loops)",
        )
    if f.gate.version < int(c["version"]) or f.gate.status != c["status"]:
        return Reason(
            "gate_behind",
            "The gate is behind the database",
            f"gate {f.gate.status}@{f.gate.version}, database {c['status']}@{c['version']}",
            "the reconciler rewrites it within DIALGATE_RECONCILE_INTERVAL: "
            "make sure the control loops run (dialgate control --role loops)",
        )
    return None


def broker_unreachable(f: Facts) -> Reason | None:
    if f.broker_error is None:
        return None
    return Reason(
        "broker_unreachable",
        "RabbitMQ is unreachable: no dial messages, no broadcasts",
        f.broker_error,
        "bring RabbitMQ back (DIALGATE_AMQP_URL); the outbox keeps every event until then",
    )


def relay_backlog(f: Facts) -> Reason | None:
    if f.outbox_oldest_s is None or f.outbox_oldest_s < RELAY_BACKLOG_AGE_S:
        return None
    return Reason(
        "relay_backlog",
        "The outbox relay is behind",
        f"{f.outbox_unsent} events unsent, the oldest for {f.outbox_oldest_s:.0f} s",
        "make sure the control loops run (dialgate control --role loops) and reach RabbitMQ",
    )


def frequency_limit(f: Facts) -> Reason | None:
    held = f.frequency or {}
    limit, n = held.get("limit"), int(held.get("contacts") or 0)
    if not limit or n == 0 or f.campaign["status"] in TERMINAL:
        return None
    hours = f"{float(limit['hours']):g}"
    return Reason(
        "frequency_limit",
        "Contacts are held back by the organisation's contact frequency limit",
        f"{n} pending contact{'s' if n != 1 else ''} whose number was already called "
        f"{limit['calls']} times within {hours} h (the limit: {limit['calls']} calls per "
        f"number per {hours} h, across every campaign of the organisation); the next may "
        f"be called at {held.get('next_at')}",
        "nothing to do: each waits until its number's oldest counted call leaves the window "
        "(the limit is the organisation's: dialgate org show / dialgate org set "
        "--max-calls-per-number)",
    )


CHECKS: list[Check] = [
    not_running,
    emergency_stop,
    no_pending_contacts,
    concurrency_saturated,
    lines_full,
    redis_unreachable,
    no_live_workers,
    workers_not_acknowledging,
    gate_out_of_date,
    broker_unreachable,
    relay_backlog,
    frequency_limit,
]


def diagnose(control: Control, campaign_id: int) -> dict[str, Any]:
    facts = gather(control, campaign_id)
    reasons = [r for check in CHECKS if (r := check(facts)) is not None]
    return {
        "campaign_id": campaign_id,
        "status": facts.campaign["status"],
        "checked_at": facts.now,
        "ok": not reasons,
        "reasons": [asdict(r) for r in reasons],
    }


def _iso(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)
