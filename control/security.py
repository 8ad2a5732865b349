"""The API's front door: authentication, the role check, organisation scoping, CSRF,
rate limits on failed sign-ins, and the request size limit.

:meth:`Security.authorize` is one FastAPI dependency on the whole app. It finds the
route's capability in :data:`control.authz.ROUTES`, authenticates the caller (a bearer
token, or the web session cookie plus its CSRF header for changes), checks the role, and
answers 404 for a campaign of another organisation (existence does not leak).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, TypeVar

import redis
import structlog
from fastapi import Request

from control.authz import Can, Principal, Who, required
from control.services import Control
from control.tokens import Tokens
from shared.errors import (
    Forbidden,
    InvalidInput,
    NotFound,
    TooLarge,
    TooManyRequests,
    Unauthenticated,
)

log = structlog.get_logger("dialgate.security")

SESSION_COOKIE = "dialgate_session"
CSRF_COOKIE = "dialgate_csrf"
CSRF_HEADER = "x-csrf-token"
T = TypeVar("T")
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


MAX_ID = 2**63 - 1


def object_id(field: str, raw: str) -> int:
    """A path's object id, checked before any query uses it (a database's BIGINT range)."""
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_ID:
        raise InvalidInput(field, f"must be a whole number from 1 to {MAX_ID}")
    return int(raw)


async def current(request: Request) -> Who:
    """The caller, as :meth:`Security.authorize` found them (a route's dependency; async:
    it reads what is there, without a trip through the thread pool)."""
    w: Who | None = getattr(request.state, "who", None)
    if w is None:  # a route listed as public asked for a caller: a bug in the table
        raise Unauthenticated("this route needs a signed-in caller")
    return w


class Security:
    def __init__(self, control: Control, tokens: Tokens) -> None:
        self.control = control
        self.tokens = tokens
        self.settings = control.settings

    def authorize(self, request: Request) -> Who | None:
        route = request.scope.get("route")
        path = getattr(route, "path", request.url.path)
        cap = required(request.method, path, request.path_params.get("action"))
        if cap is Can.PUBLIC:
            return None
        principal = self.authenticate(request)
        if not principal.can(cap):
            raise Forbidden(
                f"the role {principal.role.value!r} of {principal.name!r} may not do this "
                f"(it needs the {cap.value!r} right); see docs/security.md for the roles"
            )
        raw = request.path_params.get("campaign_id")
        if raw is not None:
            campaign_id = object_id("campaign_id", raw)
            if not principal.platform and self.control.campaign_org(campaign_id) != principal.org:
                raise NotFound(f"campaign {campaign_id} does not exist")
        who = Who(principal, client_ip(request), getattr(request.state, "request_id", None))
        request.state.who = who
        return who

    def authenticate(self, request: Request) -> Principal:
        header = request.headers.get("authorization")
        if header:
            scheme, _, secret = header.partition(" ")
            if scheme.lower() != "bearer" or not secret.strip():
                raise Unauthenticated("send the token as `Authorization: Bearer <token>`")
            return self.checked(request, lambda: self.tokens.authenticate(secret.strip()))
        sid = request.cookies.get(SESSION_COOKIE)
        if sid:
            principal, csrf = self.checked(request, lambda: self.tokens.session(sid))
            if request.method in UNSAFE and request.headers.get(CSRF_HEADER) != csrf:
                raise Forbidden(
                    f"missing or wrong {CSRF_HEADER} header (the page sends it; reload the page)"
                )
            return principal
        raise Unauthenticated(
            "sign in: send `Authorization: Bearer <token>` (the CLI reads DIALGATE_TOKEN), "
            "or sign in on the web page at /login"
        )

    def checked(self, request: Request, check: Callable[[], T]) -> T:
        """Run a credential check, refusing an address after too many failures."""
        key = self.control.keys.auth_failures(client_ip(request))
        r = self.control.gate.r
        limit = self.settings.auth_failures_per_minute
        try:
            failures = int(r.get(key) or 0)
        except redis.RedisError as exc:  # the limiter fails open; the check itself does not
            log.warning("auth_rate_limit_unavailable", error=str(exc))
            failures = 0
        if failures >= limit:
            raise TooManyRequests(
                f"too many failed sign-ins from {client_ip(request)}; wait a minute"
            )
        try:
            return check()
        except Unauthenticated:
            try:
                pipe = r.pipeline(transaction=False)
                pipe.incr(key)
                pipe.expire(key, 60, nx=True)
                pipe.execute()
            except redis.RedisError:
                pass
            raise


ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]


class BodyLimit:
    """ASGI middleware: refuse bodies over the limit (413) before the app reads them,
    by their ``Content-Length`` or, when streamed, as they arrive."""

    def __init__(self, app: ASGIApp, limit: int, import_limit: int) -> None:
        self.app = app
        self.limit = limit
        self.import_limit = import_limit

    def _limit_for(self, path: str) -> int:
        return self.import_limit if path.endswith(("/contacts", "/dnc")) else self.limit

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit_for(scope["path"])
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await _too_large(send, limit)
            return
        seen = 0
        refused = False

        async def counted() -> Any:
            nonlocal seen, refused
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit and not refused:
                    refused = True
                    await _too_large(send, limit)
                    return {"type": "http.disconnect"}
            return message

        async def guarded(message: Any) -> None:
            if not refused:  # once refused, the app's own answer is dropped
                await send(message)

        await self.app(scope, counted, guarded)


async def _too_large(send: Any, limit: int) -> None:
    body = json.dumps(
        {"error": {"code": TooLarge.code, "message": f"the request body is over {limit} bytes"}}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"connection", b"close")],
        }
    )
    await send({"type": "http.response.body", "body": body})
