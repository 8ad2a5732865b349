"""HTTP API (FastAPI). Thin routes: parse, call :class:`control.services.Control`, answer.

Errors are answered as ``{"error": {"code", "message"}}``; the message names the field.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pika
import structlog
from fastapi import Body, FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from control import alerts, contacts, emergency
from control.page import render
from control.schemas import (
    CampaignCreate,
    CampaignUpdate,
    ContactsIn,
    DncIn,
    EmergencyIn,
    ProviderEvent,
    TransitionIn,
)
from control.services import Control
from shared.clients import amqp_parameters
from shared.errors import DialgateError, InvalidInput
from shared.states import Action, Source

log = structlog.get_logger("dialgate.api")


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = [str(x) for x in err.get("loc", ()) if x not in ("body", "query", "path")]
        field = ".".join(loc) or "body"
        msg = err.get("msg", "invalid")
        if err.get("type") == "extra_forbidden":
            msg = "unknown field (not allowed)"
        parts.append(f"{field}: {msg}")
    return "; ".join(parts)


def create_app(control: Control) -> FastAPI:
    app = FastAPI(title="dialgate", version="0.1.0", docs_url="/docs", redoc_url=None)
    app.state.control = control

    @app.middleware("http")
    async def request_id(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        rid = request.headers.get("x-request-id") or uuid.uuid4().hex
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=rid[:64])
        request.state.request_id = rid[:64]
        response = await call_next(request)
        response.headers["X-Request-ID"] = rid[:64]
        return response

    @app.exception_handler(DialgateError)
    async def dialgate_error(_: Request, exc: DialgateError) -> JSONResponse:
        return _error(exc.status_code, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, InvalidInput.code, _validation_message(exc))

    @app.exception_handler(OperationalError)
    async def db_down(_: Request, exc: OperationalError) -> JSONResponse:
        log.error("database_unavailable", error=str(exc.orig))
        return _error(503, "unavailable", "the database is unreachable or timed out; retry")

    @app.exception_handler(Exception)
    async def crash(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled_error")
        return _error(500, "internal", f"internal error ({type(exc).__name__}); see the logs")

    # -- probes --------------------------------------------------------------------------
    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        checks = {
            "database": _check(lambda: _ping_db(control)),
            "redis": _check(lambda: control.gate.r.ping()),
            "rabbitmq": _check(lambda: _ping_amqp(control)),
        }
        ready = all(c["ok"] for c in checks.values())
        return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        return render(control.campaigns())

    # -- campaigns -----------------------------------------------------------------------
    @app.post("/api/v1/campaigns", status_code=201)
    def create_campaign(body: CampaignCreate) -> dict[str, Any]:
        return control.create_campaign(body)

    @app.get("/api/v1/campaigns")
    def list_campaigns() -> dict[str, Any]:
        return {"campaigns": control.campaigns()}

    @app.get("/api/v1/campaigns/{campaign_id}")
    def get_campaign(campaign_id: int) -> dict[str, Any]:
        return control.campaign(campaign_id)

    @app.patch("/api/v1/campaigns/{campaign_id}")
    def update_campaign(campaign_id: int, body: CampaignUpdate) -> dict[str, Any]:
        return control.update_campaign(campaign_id, body)

    @app.get("/api/v1/campaigns/{campaign_id}/transitions")
    def transitions(campaign_id: int, limit: int = Query(100, ge=1, le=1000)) -> dict[str, Any]:
        return {"transitions": control.transitions(campaign_id, limit)}

    @app.post("/api/v1/campaigns/{campaign_id}/contacts")
    def add_contacts(campaign_id: int, body: ContactsIn) -> dict[str, Any]:
        rows = [c.model_dump() for c in body.contacts]
        return contacts.add_contacts(control, campaign_id, rows)

    @app.post("/api/v1/campaigns/{campaign_id}/{action}")
    def act(
        request: Request,
        campaign_id: int,
        action: str,
        body: TransitionIn | None = Body(default=None),
        drain_timeout: float | None = Query(None, ge=0, le=60),
    ) -> dict[str, Any]:
        if action not in ("start", "pause", "resume", "cancel"):
            raise InvalidInput("action", "must be one of start, pause, resume, cancel")
        body = body or TransitionIn()
        result = control.transition(
            campaign_id,
            Action(action),
            actor=body.actor or "api",
            source=Source(body.source),
            reason=body.reason,
            request_id=request.state.request_id,
            confirm=body.confirm,
            drain_timeout=drain_timeout,
        )
        return {**result.campaign, "gate": {**(result.campaign.get("gate") or {}), **result.gate}}

    @app.get("/api/v1/emergency-stop")
    def estop_state() -> dict[str, Any]:
        return emergency.state(control)

    @app.post("/api/v1/emergency-stop")
    def estop_set(
        request: Request,
        body: EmergencyIn | None = Body(default=None),
        drain_timeout: float | None = Query(None, ge=0, le=60),
    ) -> dict[str, Any]:
        body = body or EmergencyIn()
        return emergency.stop(
            control, body.actor or "api", body.reason, request.state.request_id, drain_timeout
        )

    @app.delete("/api/v1/emergency-stop")
    def estop_lift(
        request: Request, body: EmergencyIn | None = Body(default=None)
    ) -> dict[str, Any]:
        body = body or EmergencyIn()
        return emergency.lift(control, body.actor or "api", body.reason, request.state.request_id)

    @app.get("/api/v1/dnc")
    def dnc_list() -> dict[str, Any]:
        return {"phones": control.dnc.entries()}

    @app.post("/api/v1/dnc")
    def dnc_add(body: DncIn) -> dict[str, Any]:
        return control.dnc.add(body.phones, body.actor or "api")

    @app.delete("/api/v1/dnc/{phone}")
    def dnc_remove(phone: str) -> dict[str, Any]:
        return control.dnc.remove(phone)

    @app.post("/api/v1/alerts/alertmanager")
    def alertmanager(request: Request, body: alerts.AlertmanagerPayload) -> dict[str, Any]:
        return alerts.receive(control, body, request.state.request_id)

    @app.post("/api/v1/provider/events")
    def provider_event(body: ProviderEvent) -> dict[str, Any]:
        return control.record_outcome(
            body.attempt_id, body.outcome, body.error_code, body.duration_ms
        )

    @app.get("/api/v1/workers")
    def workers() -> dict[str, Any]:
        return {"workers": control.workers()}

    return app


def _check(fn: Callable[[], object]) -> dict[str, Any]:
    start = time.perf_counter()
    try:
        fn()
    except Exception as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    return {"ok": True, "ms": round((time.perf_counter() - start) * 1000, 2)}


def _ping_db(control: Control) -> None:
    with control.sessions() as s:
        s.execute(text("SELECT 1"))


def _ping_amqp(control: Control) -> None:
    params = amqp_parameters(control.settings)
    params.socket_timeout = 2
    params.stack_timeout = 3
    pika.BlockingConnection(params).close()
