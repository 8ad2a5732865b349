"""The API's front door: authentication, the role check, organisation scoping, CSRF,
and rate limits on failed sign-ins.

:class:`Gatekeeper` is an ASGI middleware around the whole app: it finds the request's
capability in :data:`control.auth.roles.ROUTES` by its method and URL and, unless the
route is public, has :meth:`Security.authorize` authenticate the caller (a bearer token,
or the web session cookie plus its CSRF header for changes), check the role and answer
404 for a campaign of another organisation (existence does not leak) — all before a byte
of the body is read, so no request costs memory before its credential is known.

A caller whose credential this process remembers (:mod:`control.auth.memory`), asking
about a campaign whose organisation it knows, is let through in the event loop itself:
no query and no thread hop before the route runs.

The client's address is the TCP peer's, unless that peer is a trusted proxy
(``DIALGATE_TRUSTED_PROXIES``, :mod:`control.auth.proxies`); the audit records both.

Failed credential checks are counted per client address and per presented credential
(its first characters); past ``DIALGATE_AUTH_FAILURES_PER_MINUTE`` a failing check answers
429 instead of 401. A valid credential is never refused by this limiter: one anonymous
client sharing an address with operators (an ingress) cannot make pause unavailable.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, TypeVar

import structlog
from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from control.auth.proxies import FORWARDED_FOR, Origin, Proxies
from control.auth.roles import Can, Principal, Who, match
from control.auth.tokens import Tokens
from control.campaigns.service import Control
from shared.clients import REDIS_ERRORS
from shared.errors import (
    Forbidden,
    InvalidInput,
    NotFound,
    TooManyRequests,
    Unauthenticated,
)

log = structlog.get_logger("dialgate.security")

SESSION_COOKIE = "dialgate_session"
CSRF_COOKIE = "dialgate_csrf"
CSRF_HEADER = "x-csrf-token"
T = TypeVar("T")
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]


MAX_ID = 2**63 - 1


def object_id(field: str, raw: str) -> int:
    """A path's object id, checked before any query uses it (a database's BIGINT range)."""
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_ID:
        raise InvalidInput(field, f"must be a whole number from 1 to {MAX_ID}")
    return int(raw)


class Security:
    def __init__(self, control: Control, tokens: Tokens) -> None:
        self.control = control
        self.tokens = tokens
        self.settings = control.settings
        self.proxies = Proxies(self.settings.trusted_networks)

    def origin(self, request: Request) -> Origin:
        """Where the request came from: the client (as trusted proxies vouch for it) and
        the direct peer."""
        peer = request.client.host if request.client else "unknown"
        return self.proxies.origin(peer, request.headers.getlist(FORWARDED_FOR))

    def authorize(self, request: Request, cap: Can, path_params: dict[str, Any]) -> Who:
        """The caller of a route that needs ``cap``, or the error that refuses them."""
        principal = self.authenticate(request)
        if not principal.can(cap):
            raise Forbidden(
                f"the role {principal.role.value!r} of {principal.name!r} may not do this "
                f"(it needs the {cap.value!r} right); see docs/security.md for the roles"
            )
        raw = path_params.get("campaign_id")
        if raw is not None:
            campaign_id = object_id("campaign_id", str(raw))
            if not principal.platform and self.control.campaign_org(campaign_id) != principal.org:
                raise NotFound(f"campaign {campaign_id} does not exist")
        origin = self.origin(request)
        request_id = getattr(request.state, "request_id", None)
        who = Who(principal, origin.client, request_id, peer_ip=origin.peer)
        request.state.who = who
        return who

    @staticmethod
    def credential(request: Request) -> tuple[str, str] | None:
        """What the request presents: (``token``, secret) from its bearer header, else
        (``session``, id) from its cookie; None: nothing."""
        header = request.headers.get("authorization")
        if header:
            scheme, _, secret = header.partition(" ")
            secret = secret.strip()
            if scheme.lower() != "bearer" or not secret:
                raise Unauthenticated("send the token as `Authorization: Bearer <token>`")
            return "token", secret
        sid = request.cookies.get(SESSION_COOKIE)
        return ("session", sid) if sid else None

    def remembered(self, request: Request, path_params: dict[str, Any]) -> bool:
        """Whether :meth:`authorize` can answer from memory alone (no query, no I/O)."""
        try:
            presented = self.credential(request)
        except Unauthenticated:
            return False  # answered by the full check, which counts the failure
        raw = path_params.get("campaign_id")
        return (
            presented is not None
            and self.tokens.remembers(*presented)
            and (raw is None or self.control.org_known(str(raw)))
        )

    def authenticate(self, request: Request) -> Principal:
        presented = self.credential(request)
        if presented is None:
            raise Unauthenticated(
                "sign in: send `Authorization: Bearer <token>` (the CLI reads DIALGATE_TOKEN), "
                "or sign in on the web page at /login"
            )
        kind, secret = presented
        if kind == "token":
            return self.checked(request, secret, lambda: self.tokens.authenticate(secret))
        principal, csrf = self.checked(request, secret, lambda: self.tokens.session(secret))
        if request.method in UNSAFE and request.headers.get(CSRF_HEADER) != csrf:
            raise Forbidden(
                f"missing or wrong {CSRF_HEADER} header (the page sends it; reload the page)"
            )
        return principal

    def checked(self, request: Request, credential: str, check: Callable[[], T]) -> T:
        """Run a credential check; a failure is counted against the client's address and
        the presented credential, and answers 429 once either is over the limit. A valid
        credential always passes, however many failures its address has seen."""
        try:
            return check()
        except Unauthenticated:
            client = self.origin(request).client
            if self._failed(client, credential):
                raise TooManyRequests(
                    f"too many failed sign-ins from {client} or with this "
                    "credential; wait a minute (a valid token is still accepted)"
                ) from None
            raise

    def _failed(self, address: str, credential: str) -> bool:
        """Count one failure; whether the address or the credential is over the limit."""
        keys = self.control.keys
        # The credential's first characters name it (a token's stored prefix is 10 long);
        # hashed so that whatever a caller sends makes a well-formed key.
        presented = hashlib.sha256(credential[:10].encode()).hexdigest()[:16]
        counters = (keys.auth_failures(f"ip:{address}"), keys.auth_failures(f"cred:{presented}"))
        try:
            pipe = self.control.redis.pipeline(transaction=False)
            for key in counters:
                pipe.incr(key)
                pipe.expire(key, 60, nx=True)
            counts = pipe.execute()[::2]
        except REDIS_ERRORS as exc:  # the limiter fails open; the check itself does not
            log.warning("auth_rate_limit_unavailable", error=str(exc))
            return False
        over = max(int(n) for n in counts) > self.settings.auth_failures_per_minute
        if over:
            log.warning("auth_failures_over_limit", client=address, failures=counts)
        return over


class Gatekeeper:
    """ASGI middleware: the caller is authenticated and authorized for the request's
    route, found in the table by its URL, before the app reads the request's body
    (FastAPI parses a JSON body before it runs a route's dependencies). A refusal is
    answered by ``refuse``, the app's own error answer, without reading the body."""

    def __init__(
        self,
        app: ASGIApp,
        security: Security,
        refuse: Callable[[Request, Exception], Response],
    ) -> None:
        self.app = app
        self.security = security
        self.refuse = refuse

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cap, params = match(scope["method"], scope["path"])
        if cap is not Can.PUBLIC:
            request = Request(scope)
            try:
                if self.security.remembered(request, params):
                    self.security.authorize(request, cap, params)
                else:
                    await run_in_threadpool(self.security.authorize, request, cap, params)
            except Exception as exc:  # answered as the app answers it (401, 403, 404, 503...)
                await self.refuse(request, exc)(scope, receive, send)
                return
        await self.app(scope, receive, send)
