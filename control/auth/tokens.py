"""API tokens and web sessions (the audit trail is :mod:`control.auth.trail`).

A token is ``dg_`` + 32 random bytes (URL-safe base64); only its SHA-256 is stored, so a
stolen database does not yield usable tokens, and the secret is shown once, at creation.
Tokens are high-entropy, so a plain (unsalted) hash is enough to make them unguessable
from the digest, and it lets a request find its token with one indexed lookup.

A web session lasts no longer than the credential that opened it: a token's sessions end
when it is revoked or expires, and a session opened with ``DIALGATE_ADMIN_TOKEN`` ends
when that token is replaced (it keeps an HMAC of its own id keyed with the token, which
only the same token reproduces; without the session id, the stored MAC says nothing
about the token).

A passed check is remembered for a few seconds, and forgotten by every API process the
moment any credential ends (:mod:`control.auth.memory`).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from control.auth.memory import Remembered
from control.auth.roles import Principal, Role, Who
from control.auth.trail import record
from shared.errors import InvalidInput, NotFound, Unauthenticated
from shared.models import DEFAULT_ORG, ApiToken, WebSession, utcnow
from shared.settings import Settings

TOKEN_PREFIX = "dg_"
ENV_ADMIN_NAME = "admin-token"


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def admin_mac(admin_token: str, sid: str) -> str:
    """What ties a session to the admin token that opened it."""
    return hmac.new(admin_token.encode(), f"web-session:{sid}".encode(), "sha256").hexdigest()


def new_secret() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def env_admin(settings: Settings) -> Principal:
    return Principal(ENV_ADMIN_NAME, DEFAULT_ORG, Role.ADMIN, platform=True)


def token_view(t: ApiToken) -> dict[str, Any]:
    return {
        "id": t.id,
        "name": t.name,
        "org": t.org,
        "role": t.role,
        "platform": t.platform,
        "prefix": t.prefix,
        "created_by": t.created_by,
        "created_at": t.created_at,
        "expires_at": t.expires_at,
        "revoked_at": t.revoked_at,
        "last_used_at": t.last_used_at,
    }


# What a remembered check gives: the principal, and the CSRF token of a web session.
Checked = tuple[Principal, str | None]


class Tokens:
    def __init__(
        self, settings: Settings, sessions: sessionmaker[Session], memory: Remembered[Checked]
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.memory = memory

    # -- tokens --------------------------------------------------------------------------
    def create(
        self,
        who: Who,
        *,
        name: str,
        org: str,
        role: Role,
        expires_in_days: float | None = None,
    ) -> dict[str, Any]:
        if org != who.org and not who.principal.platform:
            raise InvalidInput("org", f"you may create tokens only in your organisation {who.org}")
        secret = new_secret()
        now = utcnow()
        with self.sessions.begin() as s:
            t = ApiToken(
                name=name,
                org=org,
                role=role.value,
                platform=False,
                secret_hash=digest(secret),
                prefix=secret[:10],
                created_by=who.name,
                created_at=now,
                expires_at=now + timedelta(days=expires_in_days) if expires_in_days else None,
            )
            s.add(t)
            s.flush()
            record(s, who, "token.created", f"token:{t.id}", org, name=name, role=role.value)
            view = token_view(t)
        return {**view, "token": secret}

    def list(self, who: Who) -> list[dict[str, Any]]:
        with self.sessions() as s:
            q = select(ApiToken).order_by(ApiToken.id)
            if not who.principal.platform:
                q = q.where(ApiToken.org == who.org)
            return [token_view(t) for t in s.scalars(q)]

    def revoke(self, who: Who, token_id: int) -> dict[str, Any]:
        with self.sessions.begin() as s:
            t = s.get(ApiToken, token_id)
            if t is None or (t.org != who.org and not who.principal.platform):
                raise NotFound(f"token {token_id} does not exist")
            if t.revoked_at is None:
                t.revoked_at = utcnow()
                s.execute(
                    update(WebSession)
                    .where(WebSession.token_id == t.id)
                    .values(expires_at=t.revoked_at)
                )
                record(s, who, "token.revoked", f"token:{t.id}", t.org, name=t.name)
            view = token_view(t)
        self.memory.changed()
        return view

    # -- authentication ------------------------------------------------------------------
    def remembers(self, kind: str, secret: str) -> bool:
        """Whether a check of this credential (``token`` or ``session``) needs no query."""
        return self.memory.get(f"{kind}:{digest(secret)}") is not None

    def authenticate(self, secret: str) -> Principal:
        """The principal of a bearer token, or :class:`Unauthenticated`."""
        admin = self.settings.secret("admin_token")
        if admin and hmac.compare_digest(secret.encode(), admin.encode()):
            return env_admin(self.settings)
        key = f"token:{digest(secret)}"
        hit = self.memory.get(key)
        if hit is not None:
            return hit[0]
        generation = self.memory.generation()
        with self.sessions() as s:
            t = s.scalar(select(ApiToken).where(ApiToken.secret_hash == digest(secret)))
            principal = self._principal(s, t)
            self.memory.put(key, (principal, None), generation, t.expires_at if t else None)
            return principal

    def _principal(self, s: Session, t: ApiToken | None) -> Principal:
        now = utcnow()
        if t is None:
            raise Unauthenticated("the token is not valid; ask an admin for one")
        if t.revoked_at is not None:
            raise Unauthenticated(f"the token {t.name!r} was revoked at {t.revoked_at}")
        if t.expires_at is not None and t.expires_at <= now:
            raise Unauthenticated(f"the token {t.name!r} expired at {t.expires_at}")
        if t.last_used_at is None or now - t.last_used_at > timedelta(minutes=1):
            s.execute(update(ApiToken).where(ApiToken.id == t.id).values(last_used_at=now))
            s.commit()
        return Principal(t.name, t.org, Role(t.role), platform=t.platform, token_id=t.id)

    # -- web sessions --------------------------------------------------------------------
    def sign_in(self, secret: str) -> tuple[str, str, Principal]:
        """Check a token and open a session: (session id, CSRF token, principal)."""
        principal = self.authenticate(secret)
        sid = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(24)
        now = datetime.now(UTC)
        admin = self.settings.secret("admin_token")
        tie = admin_mac(admin, sid) if principal.token_id is None and admin else None
        with self.sessions.begin() as s:
            s.add(
                WebSession(
                    id_hash=digest(sid),
                    token_id=principal.token_id,
                    admin_mac=tie,
                    csrf=csrf,
                    created_at=now,
                    expires_at=now + timedelta(hours=self.settings.session_hours),
                )
            )
        return sid, csrf, principal

    def session(self, sid: str) -> tuple[Principal, str]:
        """The principal and CSRF token of a live session, or :class:`Unauthenticated`."""
        key = f"session:{digest(sid)}"
        hit = self.memory.get(key)
        if hit is not None and hit[1] is not None:
            return hit[0], hit[1]
        generation = self.memory.generation()
        with self.sessions() as s:
            ws = s.get(WebSession, digest(sid))
            if ws is None or ws.expires_at <= utcnow():
                raise Unauthenticated("your session has ended; sign in again")
            if ws.token_id is None:
                admin = self.settings.secret("admin_token")
                if not (admin and ws.admin_mac) or not hmac.compare_digest(
                    ws.admin_mac, admin_mac(admin, sid)
                ):
                    raise Unauthenticated(
                        "your session has ended: the admin token it was opened with is no "
                        "longer the one configured; sign in again"
                    )
                principal, until = env_admin(self.settings), ws.expires_at
            else:
                t = s.get(ApiToken, ws.token_id)
                principal = self._principal(s, t)
                until = (
                    ws.expires_at
                    if t is None or t.expires_at is None
                    else min(ws.expires_at, t.expires_at)
                )
            self.memory.put(key, (principal, ws.csrf), generation, until)
            return principal, ws.csrf

    def sign_out(self, sid: str) -> None:
        with self.sessions.begin() as s:
            s.execute(
                update(WebSession)
                .where(WebSession.id_hash == digest(sid))
                .values(expires_at=utcnow())
            )
        self.memory.changed()
