"""Holds: each reason a paused campaign stays paused, with its owner.

A pause places a hold (an operator's, a monitor rule's, an Alertmanager alert's, the
organisation stop's, a compliance hold, a failed canary's); a pause of a campaign that is
already paused places one more (the ``hold`` transition), unless the same hold is already
there. The campaign is ``paused`` while any hold remains, and a resume releases every hold
or none (:func:`judge`):

- an operator's or the organisation stop's hold: whoever may resume (supervisor, admin);
- a monitor's, an alert's or a canary's hold: the resume must acknowledge its rule
  (``"acknowledge": ["failure_ratio"]``);
- a compliance hold: two people. A resume asks for its release (recorded, expires after
  ``DIALGATE_APPROVAL_MINUTES``); a resume by another token approves it.

Who released each hold, and how, is recorded on the hold and in the resume's transition.
The holds of the last 7 days, counted per cause (:func:`causes`), show repeated pauses.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from control.auth.roles import Role, Who
from shared.errors import Conflict
from shared.models import Hold
from shared.states import ACKNOWLEDGED, HoldKind, Source

# A cause placed this often in 24 h is a "repeated cause".
REPEATED = 3


@dataclass(frozen=True)
class HoldSpec:
    """The hold a pause places: its kind and what a resume acknowledges to release it."""

    kind: HoldKind
    rule: str | None = None


@dataclass(frozen=True)
class Release:
    """What a resume brings to release holds and pass its preflight."""

    acknowledge: frozenset[str] = frozenset()
    override: frozenset[str] = frozenset()


@dataclass
class Verdict:
    """What a resume would do to a campaign's holds (:func:`judge`)."""

    released: list[tuple[Hold, dict[str, Any]]] = field(default_factory=list)
    remaining: list[tuple[Hold, str]] = field(default_factory=list)
    request: Hold | None = None  # a compliance hold whose release this resume asks for


class HoldsRemain(Conflict):
    """A resume that would leave holds: nothing changed (but a compliance release asked
    for); ``details`` names each hold and what it needs."""

    code = "holds_remain"

    def __init__(self, campaign_id: int, remaining: list[tuple[Hold, str]]) -> None:
        names = "; ".join(f"{describe(h)}: {why}" for h, why in remaining)
        super().__init__(f"campaign {campaign_id} stays paused, holds remain: {names}")
        self.details = [{**view(h), "needs": why} for h, why in remaining]


def spec_for(actor: str, source: Source, who: Who | None, asked: HoldKind | None) -> HoldSpec:
    """The hold a pause places, from what it asked for and who paused."""
    if asked is not None and asked is not HoldKind.OPERATOR:
        return HoldSpec(asked, "canary" if asked is HoldKind.CANARY else None)
    # An API caller's label is kept beside its token's name: "token (monitor:failures)".
    label = actor.rsplit(" (", 1)[1][:-1] if actor.endswith(")") and " (" in actor else actor
    for prefix, kind in (("monitor:", HoldKind.MONITOR), ("alertmanager:", HoldKind.ALERT)):
        if label.startswith(prefix):
            return HoldSpec(kind, label.removeprefix(prefix))
    if source is Source.SYSTEM or (who is not None and who.principal.role is Role.MONITOR):
        return HoldSpec(HoldKind.MONITOR, label)
    return HoldSpec(HoldKind.OPERATOR)


def active(s: Session, campaign_id: int) -> list[Hold]:
    return list(
        s.scalars(
            select(Hold)
            .where(Hold.campaign_id == campaign_id, Hold.released_at.is_(None))
            .order_by(Hold.id)
        )
    )


def same(holds: list[Hold], spec: HoldSpec) -> Hold | None:
    return next((h for h in holds if (h.kind, h.rule) == (spec.kind.value, spec.rule)), None)


def _key(who: Who | None) -> str | None:
    """The credential a compliance release is asked for or approved with."""
    if who is None:
        return None
    return "admin" if who.principal.token_id is None else str(who.principal.token_id)


def judge(
    holds: list[Hold], who: Who | None, release: Release, now: datetime, approval: timedelta
) -> Verdict:
    """Which holds this resume releases, and which remain (and why). Pure but for the
    compliance request it may name (:attr:`Verdict.request`, to be recorded)."""
    v = Verdict()
    for h in holds:
        kind = HoldKind(h.kind)
        if kind in ACKNOWLEDGED:
            if (h.rule or "") in release.acknowledge:
                v.released.append((h, {"acknowledged": h.rule}))
            else:
                v.remaining.append((h, f'acknowledge "{h.rule}" to release it'))
        elif kind is HoldKind.COMPLIANCE:
            _compliance(v, h, who, now, approval)
        else:
            v.released.append((h, {}))
    return v


def _compliance(v: Verdict, h: Hold, who: Who | None, now: datetime, approval: timedelta) -> None:
    key = _key(who)
    asked = h.release_requested_key is not None and (h.release_expires_at or now) > now
    if key is None:
        v.remaining.append((h, "a compliance hold is released by people, not the system"))
    elif asked and h.release_requested_key != key:
        v.released.append(
            (h, {"requested_by": h.release_requested_by, "approved_by": who.name if who else None})
        )
    elif asked:
        v.remaining.append(
            (
                h,
                "its release was asked for by this token; a different supervisor or admin "
                f"must approve it (resume) before {_iso(h.release_expires_at)}",
            )
        )
    else:
        v.request = h
        h.release_requested_by = who.name if who else None
        h.release_requested_key = key
        h.release_expires_at = now + approval
        v.remaining.append(
            (
                h,
                f"release asked for by {h.release_requested_by}; a different supervisor or "
                f"admin must approve it (resume) before {_iso(h.release_expires_at)}",
            )
        )


def released(h: Hold, by: str, version: int, now: datetime) -> None:
    h.released_by, h.released_version, h.released_at = by, version, now


def place(
    s: Session,
    campaign_id: int,
    spec: HoldSpec,
    reason: str | None,
    actor: str,
    who: Who | None,
    version: int,
    now: datetime,
) -> Hold:
    h = Hold(
        campaign_id=campaign_id,
        kind=spec.kind.value,
        rule=spec.rule,
        reason=reason,
        placed_by=actor,
        placed_role=who.role if who else None,
        placed_version=version,
        placed_at=now,
    )
    s.add(h)
    return h


def describe(h: Hold) -> str:
    what = f"{h.kind} hold" + (f" {h.rule}" if h.rule and h.kind != HoldKind.CANARY else "")
    return f"{what} #{h.id} by {h.placed_by}" + (f" ({h.reason})" if h.reason else "")


def needs(h: Hold) -> str:
    """What releasing this hold takes (for the banner, the CLI and the preflight)."""
    kind = HoldKind(h.kind)
    if kind in ACKNOWLEDGED:
        return f'a supervisor or admin resumes acknowledging "{h.rule}"'
    if kind is HoldKind.COMPLIANCE:
        if h.release_requested_key is not None:
            return (
                f"release asked for by {h.release_requested_by} until "
                f"{_iso(h.release_expires_at)}: another supervisor or admin approves (resumes)"
            )
        return "two people: one supervisor or admin asks (resume), another approves (resume)"
    return "a supervisor or admin resumes"


def view(h: Hold) -> dict[str, Any]:
    return {
        "id": h.id,
        "kind": h.kind,
        "rule": h.rule,
        "reason": h.reason,
        "placed_by": h.placed_by,
        "placed_role": h.placed_role,
        "placed_at": h.placed_at,
        "version": h.placed_version,
        "release_requested_by": h.release_requested_by,
        "release_expires_at": h.release_expires_at,
        "released_by": h.released_by,
        "released_at": h.released_at,
        "needs": None if h.released_at else needs(h),
    }


def causes(s: Session, campaign_id: int, now: datetime) -> list[dict[str, Any]]:
    """Holds placed in the last 7 days, per cause (the rule, or the reason a person gave),
    newest cause first; ``repeated`` when placed :data:`REPEATED` times or more in 24 h."""
    rows = s.execute(
        select(Hold.kind, Hold.rule, Hold.reason, Hold.placed_at)
        .where(Hold.campaign_id == campaign_id, Hold.placed_at >= now - timedelta(days=7))
        .order_by(Hold.placed_at)
    )
    found: dict[tuple[str, str], dict[str, Any]] = defaultdict(
        lambda: {"last_24h": 0, "last_7d": 0, "times": []}
    )
    for kind, rule, reason, at in rows:
        cause = found[(kind, rule or (reason or "").strip().lower())]
        cause.update(kind=kind, rule=rule, reason=reason, last_at=at)
        cause["last_7d"] += 1
        if at >= now - timedelta(hours=24):
            cause["last_24h"] += 1
            cause["times"].append(at)
    out = [{**c, "repeated": c["last_24h"] >= REPEATED} for c in found.values()]
    return sorted(out, key=lambda c: c["last_at"], reverse=True)


def _iso(at: datetime | None) -> str:
    return at.isoformat(timespec="seconds") if at else "?"
