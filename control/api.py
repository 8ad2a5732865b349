"""HTTP API (FastAPI). Thin routes: parse, call :class:`control.services.Control`, answer.

Errors are answered as ``{"error": {"code", "message"}}``; the message names the field.
"""

from __future__ import annotations

import io
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import pika
import structlog
from fastapi import Body, Depends, FastAPI, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from starlette.concurrency import run_in_threadpool

from control import alerts, contacts, diagnosis, emergency, login, trail, web
from control.authz import Can, Role, Who, offered, scope
from control.observe import read_state
from control.overview import overview
from control.schemas import (
    CampaignCreate,
    CampaignUpdate,
    ContactsIn,
    DncIn,
    EmergencyIn,
    ProviderEvent,
    TokenCreate,
    TransitionIn,
)
from control.security import MAX_ID, BodyLimit, Gatekeeper, Security, current
from control.services import Cap, Control
from control.tokens import Tokens
from shared import metrics
from shared.clients import amqp_parameters
from shared.errors import DialgateError, Forbidden, InvalidInput, Unauthenticated
from shared.states import Action, Source

log = structlog.get_logger("dialgate.api")

ObjectId = Annotated[int, Path(ge=1, le=MAX_ID)]


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
    security = Security(control, Tokens(control.settings, control.sessions))
    app = FastAPI(
        title="dialgate",
        version="0.1.0",
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.control = control
    state = CollectorRegistry(auto_describe=False)
    state.register(metrics.StateCollector(lambda: read_state(control)))
    app.add_middleware(
        Gatekeeper,  # type: ignore[arg-type]
        security=security,
        refuse=_answer,
    )
    app.add_middleware(
        BodyLimit,  # type: ignore[arg-type]
        limit=control.settings.max_body_bytes,
        import_limit=control.settings.max_import_bytes,
    )

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

    app.add_exception_handler(DialgateError, _answer)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _invalid)  # type: ignore[arg-type]
    app.add_exception_handler(OperationalError, _answer)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _answer)

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

    @app.get("/metrics", include_in_schema=False)
    def prometheus() -> Response:
        body = metrics.render(metrics.CONTROL) + metrics.render(state)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    # -- sign-in -------------------------------------------------------------------------
    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    def login_form(next: str = "/") -> Response:
        return login.form(next)

    @app.post("/login", include_in_schema=False)
    async def login_submit(request: Request) -> Response:
        return await login.sign_in(request, security)

    @app.post("/logout", include_in_schema=False)
    def logout(request: Request) -> Response:
        return login.sign_out(request, security)

    @app.get("/api/v1/whoami")
    def whoami(w: Who = Depends(current)) -> dict[str, Any]:
        p = w.principal
        return {"name": p.name, "org": p.org, "role": p.role.value, "platform": p.platform}

    # -- campaigns -----------------------------------------------------------------------
    @app.post("/api/v1/campaigns", status_code=201)
    def create_campaign(body: CampaignCreate, w: Who = Depends(current)) -> dict[str, Any]:
        return offered(w, control.create_campaign(body, w))

    @app.get("/api/v1/campaigns")
    def list_campaigns(w: Who = Depends(current)) -> dict[str, Any]:
        return {"campaigns": [offered(w, c) for c in _scoped(control, w)]}

    @app.get("/api/v1/campaigns/{campaign_id}")
    def get_campaign(campaign_id: ObjectId, w: Who = Depends(current)) -> dict[str, Any]:
        return offered(w, control.campaign(campaign_id))

    @app.patch("/api/v1/campaigns/{campaign_id}")
    def update_campaign(campaign_id: int, body: CampaignUpdate) -> dict[str, Any]:
        return control.update_campaign(campaign_id, body)

    @app.get("/api/v1/campaigns/{campaign_id}/transitions")
    def transitions(
        campaign_id: ObjectId, limit: int = Query(100, ge=1, le=1000)
    ) -> dict[str, Any]:
        return {"transitions": control.transitions(campaign_id, limit)}

    @app.get("/api/v1/campaigns/{campaign_id}/diagnosis")
    def diagnose(campaign_id: ObjectId) -> dict[str, Any]:
        return diagnosis.diagnose(control, campaign_id)

    @app.get("/api/v1/campaigns/{campaign_id}/overview")
    def campaign_overview(campaign_id: ObjectId, w: Who = Depends(current)) -> dict[str, Any]:
        facts = overview(control, campaign_id)
        return {**facts, "campaign": offered(w, facts["campaign"])}

    @app.post(
        "/api/v1/campaigns/{campaign_id}/contacts",
        openapi_extra={"requestBody": {"content": {"text/csv": {}, "application/json": {}}}},
    )
    async def add_contacts(campaign_id: ObjectId, request: Request) -> dict[str, Any]:
        """JSON ``{"contacts": [...]}`` (at most 100,000), or a CSV body of any length
        (``Content-Type: text/csv``, header ``phone,name``), received in chunks."""
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
        if request.headers.get("content-type", "").startswith("text/csv"):
            try:
                text = body.decode("utf-8-sig")
            except UnicodeDecodeError as exc:
                raise InvalidInput("body", f"the CSV must be UTF-8 ({exc})") from None
            rows, where = contacts.csv_rows(io.StringIO(text, newline="")), "line"
        else:
            try:
                parsed = ContactsIn.model_validate_json(bytes(body))
            except ValidationError as exc:
                raise RequestValidationError(exc.errors()) from None
            rows, where = enumerate(c.model_dump() for c in parsed.contacts), "index"
        return await run_in_threadpool(contacts.add_contacts, control, campaign_id, rows, where)

    @app.post("/api/v1/campaigns/{campaign_id}/{action}")
    def act(
        request: Request,
        campaign_id: ObjectId,
        action: str,
        body: TransitionIn | None = Body(default=None),
        drain_timeout: float | None = Query(None, ge=0, le=60),
        w: Who = Depends(current),
    ) -> dict[str, Any]:
        if action not in ("start", "pause", "resume", "cancel"):
            raise InvalidInput("action", "must be one of start, pause, resume, cancel")
        body = body or TransitionIn()
        monitor = w.principal.role is Role.MONITOR
        if monitor and not (body.reason or "").strip():
            raise InvalidInput("reason", "a monitor's pause must say why (reason is required)")
        result = control.transition(
            campaign_id,
            Action(action),
            actor=w.name if not body.actor else f"{w.name} ({body.actor})",
            source=Source.SYSTEM if monitor else Source(body.source),
            reason=body.reason,
            request_id=request.state.request_id,
            confirm=body.confirm,
            drain_timeout=drain_timeout,
            cap=None
            if body.max_concurrency is None or body.for_minutes is None
            else Cap(body.max_concurrency, body.for_minutes),
            who=w,
        )
        view = offered(w, result.campaign)
        return {**view, "gate": {**(view.get("gate") or {}), **result.gate}}

    @app.get("/api/v1/emergency-stop")
    def estop_state() -> dict[str, Any]:
        return emergency.state(control)

    @app.post("/api/v1/emergency-stop")
    def estop_set(
        request: Request,
        body: EmergencyIn | None = Body(default=None),
        drain_timeout: float | None = Query(None, ge=0, le=60),
        w: Who = Depends(current),
    ) -> dict[str, Any]:
        body = body or EmergencyIn()
        if _estop_scope(w, body) == "org":
            return emergency.stop_org(control, w, body.reason, drain_timeout)
        actor = w.name if not body.actor else f"{w.name} ({body.actor})"
        return emergency.stop(
            control, actor, body.reason, request.state.request_id, drain_timeout, w
        )

    @app.delete("/api/v1/emergency-stop")
    def estop_lift(
        request: Request, body: EmergencyIn | None = Body(default=None), w: Who = Depends(current)
    ) -> dict[str, Any]:
        body = body or EmergencyIn()
        if _estop_scope(w, body) == "org":
            raise InvalidInput(
                "scope",
                "an organisation's emergency stop paused each campaign; resume each one "
                "deliberately (POST /api/v1/campaigns/{id}/resume)",
            )
        actor = w.name if not body.actor else f"{w.name} ({body.actor})"
        return emergency.lift(control, actor, body.reason, request.state.request_id, w)

    @app.get("/api/v1/dnc")
    def dnc_list(w: Who = Depends(current)) -> dict[str, Any]:
        return {"phones": control.dnc.entries(w.org)}

    @app.post("/api/v1/dnc")
    def dnc_add(body: DncIn, w: Who = Depends(current)) -> dict[str, Any]:
        actor = w.name if not body.actor else f"{w.name} ({body.actor})"
        added = control.dnc.add(body.phones, actor, w.org)
        trail.log_event(control.sessions, w, "dnc.added", "dnc", count=added["added"])
        return added

    @app.delete("/api/v1/dnc/{phone}")
    def dnc_remove(phone: str, w: Who = Depends(current)) -> dict[str, Any]:
        removed = control.dnc.remove(phone, w.org)
        trail.log_event(control.sessions, w, "dnc.removed", "dnc", phone=phone)
        return removed

    @app.post("/api/v1/alerts/alertmanager")
    def alertmanager(body: alerts.AlertmanagerPayload, w: Who = Depends(current)) -> dict[str, Any]:
        return alerts.receive(control, body, w)

    @app.post("/api/v1/provider/events")
    def provider_event(body: ProviderEvent, w: Who = Depends(current)) -> dict[str, Any]:
        return control.record_outcome(
            body.attempt_id, body.outcome, body.error_code, body.duration_ms, scope(w)
        )

    @app.get("/api/v1/workers")
    def workers(w: Who = Depends(current)) -> dict[str, Any]:
        views = control.workers()
        if not w.principal.platform:  # versions of other organisations' campaigns stay hidden
            mine = {str(i) for i in control.campaign_ids(w.org)}
            for v in views:
                v["applied"] = {k: n for k, n in v["applied"].items() if k in mine}
        return {"workers": views}

    # -- tokens and audit ------------------------------------------------------------------
    @app.get("/api/v1/tokens")
    def list_tokens(w: Who = Depends(current)) -> dict[str, Any]:
        return {"tokens": security.tokens.list(w)}

    @app.post("/api/v1/tokens", status_code=201)
    def create_token(body: TokenCreate, w: Who = Depends(current)) -> dict[str, Any]:
        return security.tokens.create(
            w,
            name=body.name,
            org=body.org or w.org,
            role=Role(body.role),
            expires_in_days=body.expires_in_days,
        )

    @app.delete("/api/v1/tokens/{token_id}")
    def revoke_token(token_id: ObjectId, w: Who = Depends(current)) -> dict[str, Any]:
        return security.tokens.revoke(w, token_id)

    @app.get("/api/v1/audit")
    def audit_events(
        limit: int = Query(200, ge=1, le=5000), w: Who = Depends(current)
    ) -> dict[str, Any]:
        return {"events": trail.events(control.sessions, w, limit)}

    app.include_router(web.router(control))
    return app


def _answer(request: Request, exc: Exception) -> Response:
    """The one error answer: ``{"error": {"code", "message"}}``, or sign-in for a page."""
    if isinstance(exc, DialgateError):
        if (
            isinstance(exc, Unauthenticated)
            and request.method == "GET"
            and not request.url.path.startswith("/api/")
        ):  # a page: send the visitor to sign in, and back here afterwards
            return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
        return _error(exc.status_code, exc.code, exc.message)
    if isinstance(exc, OperationalError):
        log.error("database_unavailable", error=str(exc.orig))
        return _error(503, "unavailable", "the database is unreachable or timed out; retry")
    log.exception("unhandled_error", exc_info=exc)
    return _error(500, "internal", f"internal error ({type(exc).__name__}); see the logs")


def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
    return _error(422, InvalidInput.code, _validation_message(exc))


def _scoped(control: Control, w: Who) -> list[dict[str, Any]]:
    return control.campaigns(scope(w))


def _estop_scope(w: Who, body: EmergencyIn) -> str:
    scope = body.scope or ("all" if w.principal.platform else "org")
    if scope == "all" and not w.principal.can(Can.PLATFORM):
        raise Forbidden(
            "an emergency stop of every organisation needs a platform admin; "
            'send {"scope": "org"} to pause every running campaign of your organisation'
        )
    return scope


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
