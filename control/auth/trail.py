"""The audit trail: every transition and administrative change, with who, from where.

Events are added to the caller's transaction, so a change and its record commit together.
Each is filed under the organisation whose object changed (a campaign's own, whoever or
whatever acted: a platform admin, the monitor, the feeder), never the actor's by default.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from control.auth.roles import Who
from shared.models import AuditEvent, utcnow


def record(
    s: Session,
    who: Who | None,
    kind: str,
    target: str | None,
    org: str,
    **details: Any,
) -> None:
    """Add one audit event to the caller's transaction (so it commits with the change).
    ``org``: the organisation the changed object belongs to (its admins read the event)."""
    s.add(
        AuditEvent(
            at=utcnow(),
            org=org,
            actor=who.name if who else "system",
            role=who.role if who else None,
            source_ip=who.source_ip if who else None,
            peer_ip=who.peer_ip if who else None,
            request_id=who.request_id if who else None,
            kind=kind,
            target=target,
            details=details or None,
        )
    )


def events(sessions: sessionmaker[Session], who: Who, limit: int = 200) -> list[dict[str, Any]]:
    """The newest events of the caller's organisation (all of them for a platform admin)."""
    with sessions() as s:
        q = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
        if not who.principal.platform:
            q = q.where(AuditEvent.org == who.org)
        return [
            {
                "id": e.id,
                "at": e.at,
                "org": e.org,
                "actor": e.actor,
                "role": e.role,
                "source_ip": e.source_ip,
                "peer_ip": e.peer_ip,
                "request_id": e.request_id,
                "kind": e.kind,
                "target": e.target,
                "details": e.details,
            }
            for e in s.scalars(q)
        ]
