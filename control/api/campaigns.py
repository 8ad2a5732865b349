"""Campaign routes: create, list, read, change settings, import contacts, transitions,
history, diagnosis, the page's overview and its chart's last hour of activity."""

from __future__ import annotations

import io
from typing import Any

from fastapi import APIRouter, Body, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from control.api import answers
from control.api.deps import Caller, ObjectId, Service, actor, source
from control.api.schemas import CampaignCreate, CampaignUpdate, ContactsIn, TransitionIn
from control.auth.roles import Role, offered, scope
from control.campaigns import activity, contacts, diagnosis, preflight
from control.campaigns.holds import Release
from control.campaigns.overview import overview
from control.campaigns.service import CanaryWatch, Cap
from shared.errors import InvalidInput
from shared.states import OPERATOR_ACTIONS, Action, Disposition, Hangup, HoldKind

r = APIRouter(prefix="/api/v1/campaigns")
ACTIONS = ", ".join(a.value for a in OPERATOR_ACTIONS)


@r.post("", status_code=201, response_model=answers.Campaign, response_model_exclude_unset=True)
def create_campaign(body: CampaignCreate, w: Caller, control: Service) -> dict[str, Any]:
    return offered(w, control.create_campaign(body, w))


@r.get("", response_model=answers.Campaigns, response_model_exclude_unset=True)
def list_campaigns(w: Caller, control: Service) -> dict[str, Any]:
    return {"campaigns": [offered(w, c) for c in control.campaigns(scope(w))]}


@r.get("/{campaign_id}", response_model=answers.Campaign, response_model_exclude_unset=True)
def get_campaign(campaign_id: ObjectId, w: Caller, control: Service) -> dict[str, Any]:
    return offered(w, control.campaign(campaign_id))


@r.patch("/{campaign_id}", response_model=answers.Campaign, response_model_exclude_unset=True)
def update_campaign(
    campaign_id: ObjectId, body: CampaignUpdate, w: Caller, control: Service
) -> dict[str, Any]:
    return offered(w, control.update_campaign(campaign_id, body, w))


@r.get("/{campaign_id}/transitions", response_model=answers.Transitions)
def transitions(
    campaign_id: ObjectId, control: Service, limit: int = Query(100, ge=1, le=1000)
) -> dict[str, Any]:
    return {"transitions": control.transitions(campaign_id, limit)}


@r.get("/{campaign_id}/attempts", response_model=answers.Attempts)
def attempts(
    campaign_id: ObjectId,
    control: Service,
    limit: int = Query(100, ge=1, le=1000),
    disposition: Disposition | None = Query(None, description="only calls that ended so"),
) -> dict[str, Any]:
    """The campaign's dialed attempts, newest first."""
    return {"attempts": control.attempts(campaign_id, limit, disposition)}


@r.get("/{campaign_id}/diagnosis", response_model=answers.Diagnosis)
def diagnose(campaign_id: ObjectId, control: Service) -> dict[str, Any]:
    return diagnosis.diagnose(control, campaign_id)


@r.get("/{campaign_id}/preflight", response_model=answers.Preflight)
def resume_preflight(campaign_id: ObjectId, control: Service) -> dict[str, Any]:
    """What a resume now would do: contacts dialable and held back, the provider's last
    calls, workers, holds, the emergency stop; each finding with a severity."""
    return preflight.preflight(control, campaign_id)


@r.get("/{campaign_id}/holds", response_model=answers.Holds)
def campaign_holds(campaign_id: ObjectId, control: Service) -> dict[str, Any]:
    """The holds in force, and every cause of the last 7 days counted."""
    return control.holds(campaign_id)


@r.get("/{campaign_id}/activity", response_model=answers.Activity)
def campaign_activity(campaign_id: ObjectId, control: Service) -> dict[str, Any]:
    """The last hour in 10 s buckets: calls started, calls ended by disposition, and every
    transition as a marker (the campaign page's chart)."""
    return activity.activity(control, campaign_id)


@r.get(
    "/{campaign_id}/overview", response_model=answers.Overview, response_model_exclude_unset=True
)
def campaign_overview(campaign_id: ObjectId, w: Caller, control: Service) -> dict[str, Any]:
    facts = overview(control, campaign_id)
    return {**facts, "campaign": offered(w, facts["campaign"])}


@r.post(
    "/{campaign_id}/contacts",
    response_model=answers.Imported,
    response_model_exclude_unset=True,
    openapi_extra={"requestBody": {"content": {"text/csv": {}, "application/json": {}}}},
)
async def add_contacts(
    campaign_id: ObjectId, request: Request, w: Caller, control: Service
) -> dict[str, Any]:
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
    return await run_in_threadpool(contacts.add_contacts, control, campaign_id, rows, where, w)


@r.post(
    "/{campaign_id}/{action}",
    response_model=answers.Transitioned,
    response_model_exclude_unset=True,
)
def act(
    request: Request,
    campaign_id: ObjectId,
    action: str,
    w: Caller,
    control: Service,
    body: TransitionIn | None = Body(default=None),
    drain_timeout: float | None = Query(None, ge=0, le=60),
    hangup: Hangup | None = Query(
        None,
        description="pause and cancel: which live calls to end (none, ringing, all); "
        "default: none for a pause, ringing for a cancel",
    ),
) -> dict[str, Any]:
    if action not in OPERATOR_ACTIONS:
        raise InvalidInput("action", f"must be one of {ACTIONS}")
    body = body or TransitionIn()
    if w.principal.role is Role.MONITOR and not (body.reason or "").strip():
        raise InvalidInput("reason", "a monitor's pause must say why (reason is required)")
    result = control.transition(
        campaign_id,
        Action(action),
        actor=actor(w, body.actor),
        source=source(w, body.source),
        reason=body.reason,
        request_id=request.state.request_id,
        confirm=body.confirm,
        drain_timeout=drain_timeout,
        cap=None
        if body.max_concurrency is None or body.for_minutes is None
        else Cap(body.max_concurrency, body.for_minutes),
        who=w,
        hangup=hangup,
        hold=None if body.hold is None else HoldKind(body.hold),
        release=Release(frozenset(body.acknowledge), frozenset(body.override))
        if body.acknowledge or body.override
        else None,
        canary=None
        if body.canary is None
        else CanaryWatch(body.canary.calls, body.canary.max_failure_ratio),
    )
    view = offered(w, result.campaign)
    return {**view, "gate": {**(view.get("gate") or {}), **result.gate}}
