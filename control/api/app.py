"""The HTTP app (FastAPI): middleware, the one error answer, and the routers.

Thin routes (one module per resource in this package, the pages in :mod:`control.web`)
parse, call :class:`control.campaigns.service.Control`, and answer.

Requests pass, outermost first: the security headers
(:class:`control.api.headers.SecurityHeaders`, outside even Starlette's error middleware,
so an unhandled error's 500 carries them too), the request id, the body limit
(:class:`control.api.limits.BodyLimit`), then the gatekeeper
(:class:`control.auth.security.Gatekeeper`), which authenticates and authorizes the caller
before any body is read.

``/docs`` and the pages' static files are served by dialgate itself
(:mod:`control.web.assets`), so no file of another site runs in this site's origin.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI, Request, Response

from control.api import admin, campaigns, org, probes, reports, safety, twilio, webhooks
from control.api.errors import HANDLED, answer
from control.api.headers import ASGIApp, SecurityHeaders
from control.api.limits import BodyLimit
from control.auth.memory import Remembered
from control.auth.security import Gatekeeper, Security
from control.auth.tokens import Checked, Tokens
from control.campaigns.service import Control
from control.web import assets, login, pages


class App(FastAPI):
    """FastAPI with :class:`SecurityHeaders` around its whole middleware stack."""

    def build_middleware_stack(self) -> ASGIApp:
        return SecurityHeaders(super().build_middleware_stack())


# A request id a client may give (correlation only; the audit records it as given).
REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,64}")


def create_app(control: Control) -> FastAPI:
    memory: Remembered[Checked] = Remembered(control.redis, control.keys.credentials_changed)
    tokens = Tokens(control.settings, control.sessions, memory)
    security = Security(control, tokens)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        memory.start()  # credentials are remembered only while revocations are heard
        try:
            yield
        finally:
            memory.stop()

    app = App(title="dialgate", version="0.1.0", docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.control = control
    app.state.tokens = tokens
    app.state.security = security
    app.add_middleware(Gatekeeper, security=security, refuse=answer)  # type: ignore[arg-type]
    app.add_middleware(
        BodyLimit,  # type: ignore[arg-type]
        limit=control.settings.max_body_bytes,
        import_limit=control.settings.max_import_bytes,
    )

    @app.middleware("http")
    async def request_id(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        rid = request.headers.get("x-request-id") or ""
        if not REQUEST_ID.fullmatch(rid):  # the caller's id for correlation, if it is one
            rid = uuid.uuid4().hex
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=rid[:64])
        request.state.request_id = rid[:64]
        response = await call_next(request)
        response.headers["X-Request-ID"] = rid[:64]
        return response

    for kind in (*HANDLED, Exception):  # one answer for every error: control.api.errors
        app.add_exception_handler(kind, answer)

    app.include_router(probes.router(control))
    app.include_router(login.router(security))
    app.include_router(assets.router())
    for module in (admin, campaigns, safety, org, reports, twilio, webhooks):
        app.include_router(module.r)
    app.include_router(pages.router(control))
    return app
