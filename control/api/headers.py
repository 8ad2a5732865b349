"""Security headers on every answer (an ASGI middleware outside all others).

- Pages (``text/html``): a Content-Security-Policy that runs scripts, styles and requests
  of this site only (no inline script or style, no plugin, no ``<base>``), posts forms to
  this site only and lets no site frame them (``frame-ancestors 'none'``, and
  ``X-Frame-Options: DENY`` for older browsers). Images may also be ``data:`` URIs (the
  Swagger UI stylesheet's icons); a ``data:`` image runs nothing.
- Every other answer: ``default-src 'none'``, so a JSON answer opened as a page runs nothing.
- Every answer: ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: same-origin`` (no
  page's address goes to another site; ``no-referrer`` would make the browser send
  ``Origin: null`` on this site's own form posts, which the sign-in refuses), and
  ``Cache-Control: no-store`` unless the answer set its own (the static files revalidate
  with ``no-cache``), so no page or data answer is kept by a browser or a shared cache.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.datastructures import MutableHeaders

ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]

PAGE_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
OTHER_POLICY = "default-src 'none'; frame-ancestors 'none'"


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                page = headers.get("content-type", "").startswith("text/html")
                headers["Content-Security-Policy"] = PAGE_POLICY if page else OTHER_POLICY
                if page:
                    headers["X-Frame-Options"] = "DENY"
                headers["X-Content-Type-Options"] = "nosniff"
                headers["Referrer-Policy"] = "same-origin"
                if "cache-control" not in headers:
                    headers["Cache-Control"] = "no-store"
            await send(message)

        await self.app(scope, receive, with_headers)
