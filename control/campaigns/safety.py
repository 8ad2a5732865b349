"""``dialgate check-calls``: an independent safety checker.

It replays the simulated provider's call log against the transition log in the database
and lists, for the campaigns in the log or the database:

- **late calls**: a call that started while its campaign was closed, i.e. after a pause or
  cancel had answered with ``drained: true`` and before the next transition (the resume)
  was committed, or while an emergency stop was in force (after it answered drained, until
  it was lifted);
- **double dials**: an attempt with more than one call, or a contact called again after a
  call that did not fail (a retry follows a call that did not reach the person, as the
  campaign's ``retry`` says);
- **wrong numbers**: a call whose number is not its contact's number as stored (or whose
  contact is not one of its campaign's);
- **lost contacts**: a contact neither dialed, nor pending, nor cancelled (nor ended
  ``unknown`` or ``blocked_dnc``, which are accounted for).

It shares no code with the gate or the workers: only the database rows and the log.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from shared.models import Attempt, Contact, EmergencyStop, Transition
from shared.states import REACHED, Action, AttemptState, ContactState

Interval = tuple[float, float]
# Its own reading of the states (not the transition service's CLOSING): the closings that
# answer drained, and the contact states of a contact that was rightly not dialed.
CLOSINGS = frozenset({Action.PAUSE, Action.CANCEL})
ACCOUNTED = frozenset(
    {ContactState.PENDING, ContactState.CANCELLED, ContactState.UNKNOWN, ContactState.BLOCKED_DNC}
)


@dataclass
class Report:
    calls: int = 0
    campaigns: int = 0
    closings: int = 0
    late: list[dict[str, Any]] = field(default_factory=list)
    doubled: list[dict[str, Any]] = field(default_factory=list)
    wrong: list[dict[str, Any]] = field(default_factory=list)
    lost: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.late or self.doubled or self.wrong or self.lost)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "calls": self.calls,
            "campaigns": self.campaigns,
            "closings": self.closings,
            "late": self.late,
            "doubled": self.doubled,
            "wrong": self.wrong,
            "lost": self.lost,
        }


def read_calls(path: Path) -> list[dict[str, Any]]:
    calls = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    calls.append(json.loads(line))
                except ValueError as exc:
                    raise ValueError(f"{path}:{n}: not a JSON line ({exc})") from None
    return calls


def closed_intervals(transitions: list[Transition]) -> list[Interval]:
    """Drained pause/cancel answered → next transition committed (or forever)."""
    ordered = sorted(transitions, key=lambda t: t.version)
    out = []
    for i, t in enumerate(ordered):
        if t.action in CLOSINGS and t.drained and t.answered_at is not None:
            end = ordered[i + 1].created_at.timestamp() if i + 1 < len(ordered) else math.inf
            out.append((t.answered_at.timestamp(), end))
    return out


def estop_intervals(rows: list[EmergencyStop]) -> list[Interval]:
    out = []
    ordered = sorted(rows, key=lambda r: r.id)
    for i, r in enumerate(ordered):
        if r.action == "stop" and r.drained and r.answered_at is not None:
            lift = next((x for x in ordered[i + 1 :] if x.action == "lift"), None)
            out.append(
                (r.answered_at.timestamp(), lift.created_at.timestamp() if lift else math.inf)
            )
    return out


def check_calls(
    sessions: sessionmaker[Session],
    calls: list[dict[str, Any]],
    campaign_ids: set[int] | None = None,
) -> Report:
    report = Report(calls=len(calls))
    ids = campaign_ids or {int(c["campaign_id"]) for c in calls}
    with sessions() as s:
        if campaign_ids is None:
            ids |= set(s.scalars(select(Transition.campaign_id).distinct()))
        by_campaign: dict[int, list[Transition]] = defaultdict(list)
        for t in s.scalars(select(Transition).where(Transition.campaign_id.in_(ids))):
            by_campaign[t.campaign_id].append(t)
        estops = estop_intervals(list(s.scalars(select(EmergencyStop))))
        failed = set(
            s.scalars(
                select(Attempt.id).where(
                    Attempt.campaign_id.in_(ids),
                    Attempt.state == AttemptState.ENDED.value,
                    Attempt.disposition.not_in([d.value for d in REACHED]),
                )
            )
        )
        contacts = list(
            s.execute(
                select(Contact.id, Contact.campaign_id, Contact.phone, Contact.state).where(
                    Contact.campaign_id.in_(ids)
                )
            )
        )
    report.campaigns = len(ids)
    closed = {cid: closed_intervals(ts) for cid, ts in by_campaign.items()}
    report.closings = sum(len(v) for v in closed.values()) + len(estops)
    for call in calls:
        cid, at = int(call["campaign_id"]), float(call["t"])
        if cid not in ids:
            continue
        windows = [(a, b, "campaign closed") for a, b in closed.get(cid, [])]
        windows += [(a, b, "emergency stop") for a, b in estops]
        hit = next(((a, why) for a, b, why in windows if a < at < b), None)
        if hit is not None:
            report.late.append(
                {**call, "why": hit[1], "after_answer_ms": round((at - hit[0]) * 1000, 3)}
            )
    by_contact: dict[tuple[int, int], list[dict[str, Any]]] = defaultdict(list)
    for c in sorted(calls, key=lambda c: float(c["t"])):
        by_contact[(int(c["campaign_id"]), int(c["contact_id"]))].append(c)
    dialed = {key: len(cs) for key, cs in by_contact.items()}
    report.doubled = [
        {"campaign_id": cid, "contact_id": k, "calls": len(cs)}
        for (cid, k), cs in sorted(by_contact.items())
        if cid in ids and _doubled([int(c["attempt_id"]) for c in cs], failed)
    ]
    numbers = {(cid, k): phone for k, cid, phone, _ in contacts}
    report.wrong = [
        {**c, "contact_phone": numbers.get(_contact(c))}
        for c in calls
        if int(c["campaign_id"]) in ids and c.get("phone") != numbers.get(_contact(c), _NONE)
    ]
    report.lost = [
        {"campaign_id": cid, "contact_id": k, "phone": phone, "state": state}
        for k, cid, phone, state in contacts
        # unknown: its dial started when its worker vanished; blocked_dnc: on the
        # do-not-call list at dial time. Both accounted for, not lost.
        if (cid, k) not in dialed and state not in ACCOUNTED
    ]
    return report


_NONE = object()  # the number of a contact its campaign does not have: no call's equals it


def _contact(call: dict[str, Any]) -> tuple[int, int]:
    return int(call["campaign_id"]), int(call["contact_id"])


def _doubled(attempts: list[int], failed: set[int]) -> bool:
    """Calls of one contact, in order: an attempt called twice, or a call after one that
    was not a failed attempt."""
    return len(set(attempts)) < len(attempts) or any(a not in failed for a in attempts[:-1])


def print_report(r: Report) -> None:
    print(
        f"checked {r.calls} calls in {r.campaigns} campaigns against {r.closings} drained "
        "closings (pauses, cancels, emergency stops)"
    )
    for c in r.late:
        print(
            f"  LATE   campaign {c['campaign_id']} contact {c['contact_id']} "
            f"{c['after_answer_ms']} ms after the answer ({c['why']}), worker {c['worker_id']}"
        )
    for d in r.doubled:
        print(f"  DOUBLE campaign {d['campaign_id']} contact {d['contact_id']}: {d['calls']} calls")
    for w in r.wrong:
        print(
            f"  WRONG  campaign {w['campaign_id']} contact {w['contact_id']} called "
            f"{w.get('phone')}, its number is {w['contact_phone']}, worker {w.get('worker_id')}"
        )
    for x in r.lost:
        print(f"  LOST   campaign {x['campaign_id']} contact {x['contact_id']} ({x['state']})")
    print(
        f"wrong numbers: {len(r.wrong)}, late calls: {len(r.late)}, double dials: "
        f"{len(r.doubled)}, lost contacts: {len(r.lost)} -> {'OK' if r.ok else 'FAILED'}"
    )
