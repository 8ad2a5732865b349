"""The request size limit, enforced before the app reads a body."""

from __future__ import annotations

import json
from collections.abc import MutableMapping
from typing import Any

from control.auth.security import ASGIApp
from shared.errors import TooLarge


class BodyLimit:
    """ASGI middleware: refuse bodies over the limit (413) before the app reads them,
    by their ``Content-Length`` or, when streamed, as they arrive."""

    def __init__(self, app: ASGIApp, limit: int, import_limit: int) -> None:
        self.app = app
        self.limit = limit
        self.import_limit = import_limit

    def _limit_for(self, path: str) -> int:
        """The import limit for a campaign's contact import only (a CSV of any length)."""
        if path.startswith("/api/v1/campaigns/") and path.endswith("/contacts"):
            return self.import_limit
        return self.limit

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
