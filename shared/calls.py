"""A call's life in the database: the one function that applies what a back end reports.

Every back end (the worker's simulated and SIP engines, the worker's placement of a
Twilio call) and every webhook (``POST /api/v1/provider/events``, Twilio's status
callback) hands its :class:`CallEvent` s to :func:`apply_events`, and nothing else writes
an attempt's call fields. It is

- **idempotent**: an event already applied changes nothing (answer ``duplicate``);
- **monotonic**: ``placed < ringing < answered < ended``; a late ``ringing`` never
  overwrites ``answered``, and nothing overwrites ``ended`` (answer ``duplicate``). An
  attempt the recovery sweep marked ``unknown`` still takes its ``ended``: it is what
  happened;
- **strict**: an event for an attempt that does not exist raises :class:`NotFound`; one for
  an attempt that was never dialed (``queued``, ``parked``, ...) raises :class:`Conflict`.
  Nothing is stored as something else.

An ``ended`` event settles the contact, in the same transaction: ``done`` when the call
reached the person (``answered``, ``machine``); else ``retry_wait`` when the campaign's
``retry`` lists the disposition and the contact has calls left (``cancelled`` instead when
the campaign was cancelled meanwhile); else ``failed``. Rows are locked campaign → attempts
→ contacts, the order a cancel takes them in.

The caller releases the lines of the attempts whose ``ended`` it applied
(:attr:`Applied.ended`), after the commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, or_, select, update

from shared.errors import Conflict, NotFound
from shared.models import Attempt, Campaign, Contact, utcnow
from shared.states import (
    DIALED,
    REACHED,
    AttemptState,
    CallEventKind,
    CallOutcome,
    ContactState,
    Disposition,
    Status,
)

# Each kind's rank, and the state it moves an attempt to (placed: the state stays).
RANK = {
    AttemptState.DIALING: 0,
    AttemptState.UNKNOWN: 0,
    AttemptState.RINGING: 1,
    AttemptState.ANSWERED: 2,
    AttemptState.ENDED: 3,
}
MOVES = {
    CallEventKind.PLACED: (0, None),
    CallEventKind.RINGING: (1, AttemptState.RINGING),
    CallEventKind.ANSWERED: (2, AttemptState.ANSWERED),
    CallEventKind.ENDED: (3, AttemptState.ENDED),
}


@dataclass(frozen=True)
class CallEvent:
    """One thing that happened to the call of an attempt. ``ended`` needs a
    ``disposition``; ``placed`` says what the provider answered (``outcome``)."""

    attempt_id: int
    kind: CallEventKind
    at: datetime = field(default_factory=utcnow)
    disposition: Disposition | None = None
    sip_code: int | None = None
    error: str | None = None  # the provider's error, as it said it
    outcome: CallOutcome | None = None
    provider_call_id: str | None = None
    gate_version: int | None = None

    def __post_init__(self) -> None:
        if (self.kind == CallEventKind.ENDED) != (self.disposition is not None):
            raise ValueError("an ended event needs a disposition, and only an ended one has one")


@dataclass(frozen=True)
class Applied:
    attempt_id: int
    campaign_id: int
    applied: bool  # False: a duplicate or an event older than what the attempt knows
    state: str  # the attempt's state afterwards
    ended: bool = False  # this event ended the call: its line is to be released


# The attempt's call fields, labelled as SET_ATTEMPT's parameters: a write starts from them.
CALL_FIELDS = {
    "outcome": Attempt.outcome,
    "call": Attempt.provider_call_id,
    "v": Attempt.gate_version,
    "ringing_at": Attempt.ringing_at,
    "answered_at": Attempt.answered_at,
    "ended_at": Attempt.finished_at,
    "disposition": Attempt.disposition,
    "sip": Attempt.sip_code,
    "error": Attempt.error_code,
    "ring_ms": Attempt.ring_ms,
    "talk_ms": Attempt.talk_ms,
}
ROWS = (
    select(
        Attempt.id,
        Attempt.campaign_id,
        Attempt.contact_id,
        Attempt.state,
        Attempt.attempt_no,
        Attempt.started_at,
        *(c.label(name) for name, c in CALL_FIELDS.items()),
    )
    .where(Attempt.id.in_(bindparam("ids", expanding=True)))
    .order_by(Attempt.id)
)
POLICIES = (
    select(Campaign.id, Campaign.status, Campaign.max_attempts, Campaign.retry)
    .where(Campaign.id.in_(bindparam("ids", expanding=True)))
    .order_by(Campaign.id)
    .with_for_update(read=True)
)
SET_ATTEMPT = (
    update(Attempt)
    .where(Attempt.id == bindparam("a_id"), Attempt.state == bindparam("was"))
    .values(state=bindparam("st"), **{c.key: bindparam(name) for name, c in CALL_FIELDS.items()})
)
SET_CONTACT = (
    update(Contact)
    .where(
        Contact.id == bindparam("k_id"),
        # no IN: executemany cannot expand a list
        or_(
            Contact.state == ContactState.DIALING.value, Contact.state == ContactState.UNKNOWN.value
        ),
    )
    .values(state=bindparam("st"), retry_at=bindparam("r"), updated_at=bindparam("t"))
)


def _ms(start: datetime | None, end: datetime | None) -> int | None:
    return None if start is None or end is None else max(0, round((end - start) / _MS))


_MS = timedelta(milliseconds=1)


def apply_events(
    s: Connection, events: Sequence[CallEvent], strict: bool = True
) -> list[Applied | None]:
    """Apply ``events`` (in order) in the caller's transaction; what became of each.
    Raises :class:`NotFound` / :class:`Conflict` (nothing applied) for an unknown attempt or
    one never dialed; with ``strict`` off, such an event is answered None instead (and the
    others applied: the worker's group of writes must not fail for one of them)."""
    if not events:
        return []
    ids = sorted({e.attempt_id for e in events})
    first = list(s.execute(ROWS, {"ids": ids}))
    campaigns = {r.id: r.campaign_id for r in first}
    missing = [i for i in ids if i not in campaigns]
    if missing and strict:
        raise NotFound(f"attempt {missing[0]} does not exist")
    ends = any(e.kind == CallEventKind.ENDED for e in events)
    policies = (
        {p.id: p for p in s.execute(POLICIES, {"ids": sorted(set(campaigns.values()))})}
        if ends
        else {}
    )
    rows: dict[int, dict[str, Any]] = {}
    # Locked after their campaigns (the order a cancel locks them in); SQLite's transaction
    # holds the whole database already, so what was read first stands.
    locked = (
        first if s.dialect.name == "sqlite" else s.execute(ROWS.with_for_update(), {"ids": ids})
    )
    for r in locked:
        row = dict(r._mapping)
        if row["state"] not in DIALED and strict:
            raise Conflict(f"attempt {r.id} was never dialed (it is {row['state']})")
        if row["state"] in DIALED:
            rows[r.id] = row
    results: list[Applied | None] = []
    attempt_writes: dict[int, dict[str, Any]] = {}
    contact_writes: list[dict[str, Any]] = []
    for e in events:
        if e.attempt_id not in rows:
            results.append(None)
            continue
        row = rows[e.attempt_id]
        state = AttemptState(row["state"])
        rank, target = MOVES[e.kind]
        current = RANK[state]
        # What the provider answered at placement fills what is not known yet, in any
        # state (a far end's "busy" may be written before the placement is).
        known = {
            "outcome": None if e.outcome is None else e.outcome.value,
            "call": e.provider_call_id,
            "v": e.gate_version,
        }
        fills = {n: x for n, x in known.items() if x is not None and row[n] is None}
        if target is None and not fills:
            results.append(Applied(e.attempt_id, row["campaign_id"], False, state.value))
            continue
        stale = state == AttemptState.ENDED or rank <= current
        if target is not None and (stale or (state == AttemptState.UNKNOWN and rank < 3)):
            results.append(Applied(e.attempt_id, row["campaign_id"], False, state.value))
            continue
        w = attempt_writes.setdefault(
            e.attempt_id,
            {"a_id": e.attempt_id, "was": state.value, **{n: row[n] for n in CALL_FIELDS}},
        )
        w.update(fills)
        row.update(fills)
        if e.sip_code is not None:
            w["sip"] = e.sip_code
        if e.error is not None:
            w["error"] = e.error[:64]
        new_state = state if target is None else target
        if e.kind == CallEventKind.RINGING:
            w["ringing_at"] = row["ringing_at"] = e.at
        elif e.kind == CallEventKind.ANSWERED:
            w["answered_at"] = row["answered_at"] = e.at
        elif e.kind == CallEventKind.ENDED:
            assert e.disposition is not None
            w["ended_at"] = e.at
            w["disposition"] = e.disposition.value
            answered = row["answered_at"]
            w["ring_ms"] = _ms(row["started_at"], answered or e.at)
            w["talk_ms"] = _ms(answered, e.at)
            contact_writes.append(_settle(row, e, policies[row["campaign_id"]]))
        w["st"] = new_state.value
        row["state"] = new_state.value
        ended = e.kind == CallEventKind.ENDED
        results.append(Applied(e.attempt_id, row["campaign_id"], True, new_state.value, ended))
    if attempt_writes:
        s.execute(SET_ATTEMPT, list(attempt_writes.values()))
    if contact_writes:
        s.execute(SET_CONTACT, contact_writes)
    return results


def _settle(row: dict[str, Any], e: CallEvent, policy: Any) -> dict[str, Any]:
    """The contact's state once its attempt's call ended with ``e.disposition``."""
    assert e.disposition is not None
    delay = (policy.retry or {}).get(e.disposition.value)
    retry_at = None
    if e.disposition in REACHED:
        state = ContactState.DONE
    elif delay is None or row["attempt_no"] >= policy.max_attempts:
        state = ContactState.FAILED
    elif policy.status == Status.CANCELLED.value:
        state = ContactState.CANCELLED
    else:
        state, retry_at = ContactState.RETRY_WAIT, e.at + timedelta(seconds=float(delay))
    return {"k_id": row["contact_id"], "st": state.value, "r": retry_at, "t": e.at}
