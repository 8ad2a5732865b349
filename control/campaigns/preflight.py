"""Resume preflight: what a resume now would do, from live facts
(``GET /api/v1/campaigns/{id}/preflight``, ``dialgate resume ID --dry-run``, the page's
Resume dialog).

It says which contacts may be dialed now and which are held back (by the calling window,
with when it opens; by the do-not-call list; by the organisation's frequency limit:
:func:`control.campaigns.org.held_by_frequency`), how
the provider's last calls went, which workers are live and have applied the campaign's
latest version, which holds a resume must release (and what each needs) and whether the
emergency stop is in force. Each finding has a severity: ``info``, ``warning`` or
``blocking``. A blocking finding makes a plain resume answer 409 (:func:`require`) unless
the resume names its code in ``override`` (recorded in the transition); a hold is not
overridden but released (acknowledged or approved: :mod:`control.campaigns.holds`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from control.campaigns import holds, org
from control.campaigns.reads import Reads
from shared import windows
from shared.clients import REDIS_ERRORS
from shared.errors import Conflict
from shared.models import Attempt, Campaign, Contact, Dnc, utcnow
from shared.states import (
    PROVIDER_ERRORS,
    CallOutcome,
    ContactState,
    Disposition,
    HoldKind,
    Status,
)

# Findings a resume may override, by code.
OVERRIDABLE = ("emergency_stop", "provider_failing")
# The provider's last outcomes looked at, and how many make a failure share meaningful.
RECENT = 50
MIN_SAMPLES = 10
# Contacts whose own zone is judged one by one (contact_local_time) at most.
ZONED_AT_MOST = 5000


@dataclass(frozen=True)
class Finding:
    code: str
    severity: str  # info | warning | blocking
    message: str

    def view(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "severity": self.severity,
            "message": self.message,
            "overridable": self.code in OVERRIDABLE,
        }


class PreflightBlocked(Conflict):
    code = "preflight_blocked"

    def __init__(self, campaign_id: int, blocking: list[Finding]) -> None:
        codes = ", ".join(f.code for f in blocking)
        super().__init__(
            f"campaign {campaign_id} was not resumed: "
            + "; ".join(f.message for f in blocking)
            + f'. Once understood, resume with "override": [{codes}] (recorded)'
        )
        self.details = [f.view() for f in blocking]


def require(control: Reads, campaign_id: int, override: frozenset[str]) -> None:
    """Before a resume: its blocking findings, unless overridden (cheap: the emergency
    stop and the provider's last outcomes only)."""
    with control.sessions() as s:
        provider = _provider(s, campaign_id)
    found = [f for f in (_estop(control), _provider_finding(control, provider)) if f]
    blocking = [f for f in found if f.severity == "blocking" and f.code not in override]
    if blocking:
        raise PreflightBlocked(campaign_id, blocking)


def preflight(control: Reads, campaign_id: int) -> dict[str, Any]:
    now = utcnow()
    with control.sessions() as s:
        c = control.get(s, campaign_id)
        contacts = _contacts(s, c, now)
        provider = _provider(s, campaign_id)
        held = [holds.view(h) for h in holds.active(s, campaign_id)]
    contacts["frequency"] = org.held_by_frequency(control, campaign_id)  # type: ignore[arg-type]
    findings: list[Finding] = []
    if c.status != Status.PAUSED.value:
        findings.append(
            Finding("not_paused", "info", f"the campaign is {c.status}: there is nothing to resume")
        )
    for h in held:
        if h["kind"] in (HoldKind.MONITOR, HoldKind.ALERT, HoldKind.CANARY, HoldKind.COMPLIANCE):
            findings.append(
                Finding(f"hold_{h['id']}", "blocking", f"hold #{h['id']}: {h['needs']}")
            )
    workers = _workers(control, c)
    findings += [f for f in (_estop(control), _provider_finding(control, provider)) if f]
    findings += _contact_findings(contacts)
    if workers["live"] == 0:
        findings.append(
            Finding("no_workers", "warning", "no worker is live: nothing would be dialed")
        )
    elif workers["acknowledged"] < workers["live"]:
        findings.append(
            Finding(
                "workers_behind",
                "warning",
                f"{workers['live'] - workers['acknowledged']} of {workers['live']} live workers "
                f"have not applied version {c.version} yet",
            )
        )
    blocking = [f for f in findings if f.severity == "blocking"]
    return {
        "campaign_id": c.id,
        "status": c.status,
        "checked_at": now,
        "would_resume": c.status == Status.PAUSED.value and not blocking,
        "findings": [f.view() for f in findings],
        "contacts": contacts,
        "provider": provider,
        "workers": workers,
        "holds": held,
    }


def _contacts(s: Session, c: Campaign, now: datetime) -> dict[str, Any]:
    pending = (Contact.campaign_id == c.id, Contact.state == ContactState.PENDING.value)
    total = int(s.scalar(select(func.count()).select_from(Contact).where(*pending)) or 0)
    dnc = int(
        s.scalar(
            select(func.count())
            .select_from(Contact)
            .join(Dnc, (Dnc.phone == Contact.phone) & (Dnc.org == c.org))
            .where(*pending)
        )
        or 0
    )
    later = int(
        s.scalar(
            select(func.count())
            .select_from(Contact)
            .where(*pending, Contact.dial_after.is_not(None), Contact.dial_after > now)
        )
        or 0
    )
    window: dict[str, Any] = {"contacts": 0, "open": True, "opens_at": None, "closes_at": None}
    verdict = windows.check(c.calling_window, c.timezone, None, now)
    if not verdict.open:
        window.update(contacts=total - dnc, open=False, opens_at=verdict.opens_at)
    elif c.calling_window:
        window["closes_at"] = _closes_at(c.calling_window, c.timezone, now)
    elif c.calling_window and c.calling_window.get("contact_local_time"):
        phones = s.scalars(select(Contact.phone).where(*pending).limit(ZONED_AT_MOST))
        verdicts = [windows.check(c.calling_window, c.timezone, p, now) for p in phones]
        shut = [v for v in verdicts if not v.open]
        window["contacts"] = len(shut)
        window["opens_at"] = min((v.opens_at for v in shut if v.opens_at), default=None)
    held = window["contacts"] + dnc + later
    return {
        "pending": total,
        "dialable_now": max(0, total - held),
        "calling_window": window,
        "dnc": dnc,
        "waiting": later,
    }


def _closes_at(raw: dict[str, Any], tz: str, now: datetime) -> datetime | None:
    """When an open window next closes, to the minute (None: not within 8 days)."""
    step = timedelta(minutes=5)
    at = now
    while at < now + timedelta(days=8):
        if not windows.check(raw, tz, None, at + step).open:
            while windows.check(raw, tz, None, at + timedelta(minutes=1)).open:
                at += timedelta(minutes=1)
            return (at + timedelta(minutes=1)).replace(second=0, microsecond=0)
        at += step
    return None


def _contact_findings(contacts: dict[str, Any]) -> list[Finding]:
    out = []
    w = contacts["calling_window"]
    if w["contacts"]:
        opens = (
            w["opens_at"].isoformat(timespec="minutes") if w["opens_at"] else "not within 8 days"
        )
        out.append(
            Finding(
                "calling_window",
                "warning",
                f"{w['contacts']} contacts are outside their calling window now (opens {opens})",
            )
        )
    closes = w.get("closes_at")
    if closes is not None:
        out.append(
            Finding(
                "calling_window_closes",
                "info",
                f"the calling window is open until {closes.isoformat(timespec='minutes')}",
            )
        )
    if contacts["dnc"]:
        out.append(
            Finding(
                "dnc", "info", f"{contacts['dnc']} pending contacts are on the do-not-call list"
            )
        )
    if contacts["waiting"]:
        out.append(
            Finding(
                "waiting",
                "info",
                f"{contacts['waiting']} contacts wait for a later time (dial_after)",
            )
        )
    f = contacts.get("frequency") or {}
    if f.get("contacts"):
        limit = f["limit"]
        out.append(
            Finding(
                "frequency",
                "info",
                f"{f['contacts']} contacts were called {limit['calls']} times in the last "
                f"{limit['hours']:g} h (the organisation's limit); the next may be called at "
                f"{f['next_at']}",
            )
        )
    if contacts["dialable_now"] == 0:
        out.append(Finding("nothing_to_dial", "warning", "no contact may be dialed now"))
    return out


def _provider(s: Session, campaign_id: int) -> dict[str, Any]:
    rows = list(
        s.execute(
            select(
                Attempt.outcome,
                Attempt.disposition,
                Attempt.error_code,
                Attempt.sip_code,
                Attempt.finished_at,
            )
            .where(Attempt.campaign_id == campaign_id, Attempt.outcome.is_not(None))
            .order_by(Attempt.id.desc())
            .limit(RECENT)
        )
    )
    failed = [r for r in rows if r[0] in PROVIDER_ERRORS or r[1] == Disposition.FAILED]
    last = failed[0] if failed else None
    return {
        "recent": len(rows),
        "failed": len(failed),
        "failure_share": round(len(failed) / len(rows), 3) if rows else None,
        "last_outcome": rows[0][0] if rows else None,
        "last_error": None
        if last is None
        else {"outcome": last[0], "error": last[2], "sip_code": last[3], "at": last[4]},
    }


def _provider_finding(control: Reads, p: dict[str, Any]) -> Finding | None:
    limit = control.settings.monitor_failure_ratio
    if p["last_outcome"] == CallOutcome.AUTH_ERROR.value:
        return Finding(
            "provider_failing", "blocking", "the provider refused our credentials on the last call"
        )
    if p["recent"] >= MIN_SAMPLES and p["failure_share"] >= limit:
        err = p["last_error"] or {}
        what = err.get("error") or (f"SIP {err['sip_code']}" if err.get("sip_code") else "failed")
        return Finding(
            "provider_failing",
            "blocking",
            f"{p['failed']} of the provider's last {p['recent']} calls failed "
            f"({p['failure_share']:.0%}, the monitor's limit {limit:.0%}; last: {what})",
        )
    return None


def _estop(control: Reads) -> Finding | None:
    try:
        raw = control.gate.estop()
    except REDIS_ERRORS as exc:
        return Finding("redis_unreachable", "warning", f"Redis is unreachable ({exc})")
    if raw is None:
        return None
    try:
        why = json.loads(raw).get("reason") or "no reason given"
    except (ValueError, AttributeError):
        why = str(raw)
    return Finding(
        "emergency_stop", "blocking", f"the emergency stop is in force ({why}): nothing dials"
    )


def _workers(control: Reads, c: Campaign) -> dict[str, Any]:
    try:
        snap = control.gate.snapshot(c.id, time.time() - control.settings.worker_ttl)
    except REDIS_ERRORS:
        return {"live": 0, "acknowledged": 0, "known": False}
    live = set(snap.live_workers)
    acked = sum(1 for w, v in snap.acks.items() if w in live and v >= c.version)
    return {"live": len(live), "acknowledged": acked, "known": True}
