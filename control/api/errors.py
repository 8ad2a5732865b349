"""The API's one error answer: ``{"error": {"code", "message"}}``, the message naming the
field; a page that needs a signed-in visitor sends them to sign in instead."""

from __future__ import annotations

import structlog
from fastapi import Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse
from sqlalchemy.exc import OperationalError

from shared.errors import DialgateError, InvalidInput, Unauthenticated

log = structlog.get_logger("dialgate.api")


def error(
    status: int, code: str, message: str, details: list[dict[str, object]] | None = None
) -> JSONResponse:
    body: dict[str, object] = {"code": code, "message": message}
    if details is not None:
        body["details"] = jsonable_encoder(details)
    return JSONResponse({"error": body}, status_code=status)


def answer(request: Request, exc: Exception) -> Response:
    """The answer to any exception a request raised (the app's handlers and the
    gatekeeper's refusals both come here)."""
    if isinstance(exc, RequestValidationError):
        return error(422, InvalidInput.code, validation_message(exc))
    if isinstance(exc, DialgateError):
        if (
            isinstance(exc, Unauthenticated)
            and request.method == "GET"
            and not request.url.path.startswith("/api/")
        ):  # a page: send the visitor to sign in, and back here afterwards
            return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
        return error(exc.status_code, exc.code, exc.message, exc.details)
    if isinstance(exc, OperationalError):
        log.error("database_unavailable", error=str(exc.orig))
        return error(503, "unavailable", "the database is unreachable or timed out; retry")
    log.exception("unhandled_error", exc_info=exc)
    return error(500, "internal", f"internal error ({type(exc).__name__}); see the logs")


def validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = [str(x) for x in err.get("loc", ()) if x not in ("body", "query", "path")]
        field = ".".join(loc) or "body"
        msg = err.get("msg", "invalid")
        if err.get("type") == "extra_forbidden":
            msg = "unknown field (not allowed)"
        parts.append(f"{field}: {msg}")
    return "; ".join(parts)


# The kinds :func:`answer` answers itself; anything else is a 500 (the app registers it
# for ``Exception`` too).
HANDLED: tuple[type[Exception], ...] = (RequestValidationError, DialgateError, OperationalError)
