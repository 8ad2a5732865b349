"""An organisation's settings: its contact frequency limit (``max_calls_per_number``).

The row in ``org_settings`` is the truth; workers read it with each campaign's calling
window and count the calls in Redis (:mod:`shared.frequency`). A change is audited
(``org.settings_changed``) in its transaction. Before the commit the counts' ready marker
is removed (dials of the organisation are denied until the counts are rebuilt: fail
closed; Redis away refuses the change, nothing changed); after it, the counts are rebuilt
from the database's dialed attempts of the window, once every worker's reading of the old
setting has expired (:data:`shared.frequency.READ_TTL_S`) when there was no limit before,
so that no call placed without a count is missed. The reconciler rebuilds them too when
Redis lost them.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from control.auth.roles import Who
from control.auth.trail import record
from shared.clients import REDIS_ERRORS
from shared.errors import Conflict, InvalidInput, Unavailable
from shared.frequency import MAX_CALLS, MAX_HOURS, READ_TTL_S, FrequencySet, Limit
from shared.models import DEFAULT_ORG, Attempt, Campaign, Contact, OrgSettings, utcnow
from shared.states import DIALED, ContactState

if TYPE_CHECKING:
    from control.campaigns.service import Control

log = structlog.get_logger("dialgate.control")

FIELD = "max_calls_per_number"
ALLOWED = (
    f'{{"calls": an integer 1-{MAX_CALLS}, "hours": a number above 0, at most {MAX_HOURS:g}}}, '
    "or null for no limit"
)
# A reading of the old setting has expired this long after the commit.
SETTLE_S = READ_TTL_S + 0.2


def validated(raw: Any) -> Limit | None:
    """The limit a request asks for (None: no limit), or :class:`InvalidInput` naming the
    field and what is allowed."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise InvalidInput(FIELD, f"must be {ALLOWED}")
    unknown = sorted(set(raw) - {"calls", "hours"})
    if unknown:
        raise InvalidInput(f"{FIELD}.{unknown[0]}", f"unknown field; {FIELD} is {ALLOWED}")
    calls, hours = raw.get("calls"), raw.get("hours")
    if isinstance(calls, bool) or not isinstance(calls, int) or not 1 <= calls <= MAX_CALLS:
        raise InvalidInput(f"{FIELD}.calls", f"must be an integer from 1 to {MAX_CALLS}")
    if (
        isinstance(hours, bool)
        or not isinstance(hours, int | float)
        or not math.isfinite(hours)
        or not 0 < hours <= MAX_HOURS
    ):
        raise InvalidInput(
            f"{FIELD}.hours", f"must be a number of hours above 0 and at most {MAX_HOURS:g}"
        )
    return Limit(calls, float(hours))


def _view(org: str, row: OrgSettings | None) -> dict[str, Any]:
    return {
        "org": org,
        FIELD: None if row is None else row.max_calls_per_number,
        "updated_by": None if row is None else row.updated_by,
        "updated_at": None if row is None else row.updated_at,
    }


def limit_of(sessions: sessionmaker[Session], org: str) -> Limit | None:
    with sessions() as s:
        return Limit.of(
            s.scalar(select(OrgSettings.max_calls_per_number).where(OrgSettings.org == org))
        )


def read(control: Control, who: Who | None) -> dict[str, Any]:
    org = who.org if who else DEFAULT_ORG
    with control.sessions() as s:
        return _view(org, s.get(OrgSettings, org))


def put(control: Control, who: Who | None, body: dict[str, Any]) -> dict[str, Any]:
    """Set (or, with null, clear) the organisation's frequency limit."""
    org = who.org if who else DEFAULT_ORG
    limit = validated(body.get(FIELD))
    counts = FrequencySet(control.redis, control.keys)
    before = limit_of(control.sessions, org)
    if before == limit:
        return read(control, who)
    try:  # until rebuilt, the counts are unknown: the organisation's dials are denied
        counts.forget(org)
    except REDIS_ERRORS as exc:
        raise Unavailable(f"Redis is unreachable ({exc}); nothing was changed") from exc
    try:
        view, unlimited_until = _write(control, who, org, limit)
    except IntegrityError:  # the row was made concurrently
        raise Conflict("the organisation's settings changed meanwhile; retry") from None
    log.info("org_settings_changed", org=org, limit=view[FIELD])
    if limit is not None:
        # A dial may have read "no limit" up to READ_TTL_S after the limit was last absent:
        # wait until every such call is written, so that the rebuild counts it.
        wait = (unlimited_until + timedelta(seconds=SETTLE_S) - utcnow()).total_seconds()
        if wait > 0:
            time.sleep(wait)
        try:
            rebuild(control.sessions, counts, org, limit)
        except REDIS_ERRORS as exc:  # fail closed until the reconciler rebuilds them
            log.warning("frequency_rebuild_failed", org=org, error=str(exc))
    return view


def _write(
    control: Control, who: Who | None, org: str, limit: Limit | None
) -> tuple[dict[str, Any], datetime]:
    """The change and its audit event, in one transaction: the settings' view, and until
    when the organisation last had no limit (now, if it had none)."""
    with control.sessions.begin() as s:
        row = s.get(OrgSettings, org, with_for_update=True)
        actor = who.name if who else "system"
        now = utcnow()
        if row is None:
            row = OrgSettings(org=org, updated_by=actor)
            s.add(row)
        was = row.max_calls_per_number
        # Set less than SETTLE_S ago: some worker may still read it as absent.
        unlimited_until = now if was is None else row.updated_at
        row.max_calls_per_number = None if limit is None else limit.stored()
        row.updated_by, row.updated_at = actor, now
        # Contacts waiting for a limit that changed are looked at again (the workers judge).
        s.execute(
            update(Contact)
            .where(
                Contact.campaign_id.in_(select(Campaign.id).where(Campaign.org == org)),
                Contact.state == ContactState.PENDING.value,
                Contact.dial_after.is_not(None),
            )
            .values(dial_after=None)
        )
        record(
            s,
            who,
            "org.settings_changed",
            f"org:{org}",
            org,
            **{FIELD: row.max_calls_per_number, "before": was},
        )
        return _view(org, row), unlimited_until


def dialed_within(
    sessions: sessionmaker[Session], org: str, limit: Limit, phones: Any = None
) -> list[tuple[int, str, datetime]]:
    """The organisation's attempts that were dialed within the limit's window: (attempt id,
    phone as stored, start), oldest first; only those to ``phones`` (a selectable or a list)
    when given."""
    since = datetime.now(UTC) - timedelta(milliseconds=limit.window_ms)
    q = (
        select(Attempt.id, Contact.phone, Attempt.started_at)
        .join(Contact, Contact.id == Attempt.contact_id)
        .join(Campaign, Campaign.id == Attempt.campaign_id)
        .where(
            Campaign.org == org,
            Attempt.state.in_([s.value for s in DIALED]),
            Attempt.started_at >= since,
        )
        .order_by(Attempt.started_at)
    )
    if phones is not None:
        q = q.where(Contact.phone.in_(phones))
    with sessions() as s:
        return [(a, p, t) for a, p, t in s.execute(q) if t is not None]


def rebuild(sessions: sessionmaker[Session], counts: FrequencySet, org: str, limit: Limit) -> int:
    return counts.rebuild(org, limit, lambda: dialed_within(sessions, org, limit))


def reconcile(sessions: sessionmaker[Session], counts: FrequencySet) -> dict[str, int]:
    """Rebuild the counts of every organisation with a limit whose counts are missing or
    cover a shorter window (a change of the last ``SETTLE_S`` is left to its request);
    organisation -> calls counted, for those rebuilt."""
    settled = utcnow() - timedelta(seconds=SETTLE_S)
    with sessions() as s:
        rows = list(
            s.execute(
                select(OrgSettings.org, OrgSettings.max_calls_per_number).where(
                    OrgSettings.max_calls_per_number.is_not(None),
                    OrgSettings.updated_at <= settled,
                )
            )
        )
    rebuilt = {}
    for org, stored in rows:
        limit = Limit.of(stored)
        if limit is None:
            continue
        covered = counts.covered(org)
        if covered is None or covered < limit.window_ms:
            rebuilt[org] = rebuild(sessions, counts, org, limit)
    return rebuilt


def held_by_frequency(control: Control, campaign_id: int) -> dict[str, Any]:
    """The campaign's pending contacts whose number is at its organisation's limit now,
    from the database: ``{"limit": {...} | None, "contacts": n, "next_at": iso | None}``
    (``next_at``: when the first of them may be called again)."""
    with control.sessions() as s:
        org = s.scalar(select(Campaign.org).where(Campaign.id == campaign_id))
    limit = None if org is None else limit_of(control.sessions, org)
    if org is None or limit is None:
        return {"limit": None, "contacts": 0, "next_at": None}
    pending = select(Contact.phone).where(
        Contact.campaign_id == campaign_id, Contact.state == ContactState.PENDING.value
    )
    starts: dict[str, list[datetime]] = {}
    for _, phone, started in dialed_within(control.sessions, org, limit, pending):
        starts.setdefault(phone, []).append(started)
    window = timedelta(milliseconds=limit.window_ms)
    # A number at the limit is free again when enough of its calls have left the window.
    free_at = [t[len(t) - limit.calls] + window for t in starts.values() if len(t) >= limit.calls]
    return {
        "limit": limit.stored(),
        "contacts": len(free_at),
        "next_at": min(free_at).isoformat() if free_at else None,
    }
