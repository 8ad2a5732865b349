"""The do-not-call list: the table is the truth, the Redis set (:mod:`shared.dnc`) what
every dial checks. Additions reach the set before the table's commit (and again after),
removals leave the table first: the set never lacks a listed number."""

from __future__ import annotations

import contextlib
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from control.auth.roles import Who
from control.auth.trail import record
from shared.clients import REDIS_ERRORS
from shared.dnc import DncSet
from shared.errors import Conflict, InvalidInput, NotFound, Unavailable
from shared.models import DEFAULT_ORG, Campaign, Dnc, utcnow
from shared.phones import normalise_phone
from shared.text import problem


def checked_phone(raw: Any) -> str:
    """A number in E.164, or ``ValueError`` (control or format characters in the text
    refused first: what a file shows must be the number that is listed)."""
    if isinstance(raw, str) and (bad := problem(raw)):
        raise ValueError(bad)
    return normalise_phone(raw)


def normalise_all(raw: list[Any]) -> list[str]:
    """Every phone in E.164, or InvalidInput naming the first bad one (nothing changes)."""
    phones = []
    for i, p in enumerate(raw):
        try:
            phones.append(checked_phone(p))
        except ValueError as exc:
            raise InvalidInput(f"phones[{i}]", str(exc)) from None
    return list(dict.fromkeys(phones))


class DncList:
    def __init__(self, sessions: sessionmaker[Session], dnc: DncSet) -> None:
        self.sessions = sessions
        self.set = dnc

    def orgs(self) -> set[str]:
        """Every organisation with a campaign or a listed number."""
        with self.sessions() as s:
            found = set(s.scalars(select(Campaign.org).distinct()))
            return found | set(s.scalars(select(Dnc.org).distinct())) | {DEFAULT_ORG}

    def phones(self, org: str = DEFAULT_ORG) -> set[str]:
        with self.sessions() as s:
            return set(s.scalars(select(Dnc.phone).where(Dnc.org == org)))

    def entries(self, org: str = DEFAULT_ORG) -> list[dict[str, Any]]:
        with self.sessions() as s:
            rows = s.scalars(select(Dnc).where(Dnc.org == org).order_by(Dnc.phone))
            return [{"phone": d.phone, "actor": d.actor, "added_at": d.created_at} for d in rows]

    def add(self, raw: list[Any], actor: str, who: Who | None = None) -> dict[str, Any]:
        """List numbers of the caller's organisation (audited in the same transaction)."""
        org = who.org if who else DEFAULT_ORG
        phones = normalise_all(raw)
        try:
            self.set.add(org, phones)  # before the commit: never a listed number missing
        except REDIS_ERRORS as exc:
            raise Unavailable(f"Redis is unreachable ({exc}); nothing was added") from exc
        for _ in range(3):
            new: list[str] = []
            try:
                with self.sessions.begin() as s:
                    known = set(
                        s.scalars(select(Dnc.phone).where(Dnc.org == org, Dnc.phone.in_(phones)))
                    )
                    new = [p for p in phones if p not in known]
                    now = utcnow()
                    s.add_all(Dnc(org=org, phone=p, actor=actor, created_at=now) for p in new)
                    record(s, who, "dnc.added", "dnc", org, count=len(new))
                break
            except IntegrityError:
                continue  # added concurrently: read again
        else:
            raise Conflict("the do-not-call list is changing too fast; retry")
        # Again after the commit, in case a rebuild swapped the set in between.
        with contextlib.suppress(*REDIS_ERRORS):  # the first write holds
            self.set.add(org, phones)
        return {"added": len(new), "already_listed": len(phones) - len(new)}

    def remove(self, raw: str, who: Who | None = None) -> dict[str, Any]:
        """Unlist a number of the caller's organisation (audited in the same transaction)."""
        org = who.org if who else DEFAULT_ORG
        try:
            phone = checked_phone(raw)
        except ValueError as exc:
            raise InvalidInput("phone", str(exc)) from None
        with self.sessions.begin() as s:
            gone = s.execute(delete(Dnc).where(Dnc.org == org, Dnc.phone == phone))
            if gone.rowcount != 1:  # type: ignore[attr-defined]
                raise NotFound(f"{phone} is not on the do-not-call list")
            record(s, who, "dnc.removed", "dnc", org, phone=phone)
        # If Redis is away the number stays blocked (the safe side) until the rebuild.
        with contextlib.suppress(*REDIS_ERRORS):
            self.set.remove(org, phone)
        return {"removed": phone}

    def reconcile(self, org: str = DEFAULT_ORG) -> int | None:
        """Rebuild the set when it is missing or differs in size from the table."""
        phones = self.phones(org)
        if self.set.size(org) == len(phones):
            return None
        return self.set.rebuild(org, lambda: self.phones(org))
