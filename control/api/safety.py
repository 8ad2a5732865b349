"""Routes of the safety controls: the emergency stop and the do-not-call list."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Query, Request

from control.api import answers
from control.api.deps import Caller, Service, actor
from control.api.schemas import DncIn, EmergencyIn
from control.auth.roles import Can, Who
from control.campaigns import emergency
from shared.errors import Forbidden, InvalidInput
from shared.states import Hangup

r = APIRouter(prefix="/api/v1")


@r.get("/emergency-stop", response_model=answers.EmergencyState, response_model_exclude_unset=True)
def estop_state(w: Caller, control: Service) -> dict[str, Any]:
    return emergency.state(control, w)


@r.post(
    "/emergency-stop",
    response_model=answers.EmergencyStopped | answers.OrgStopped,
    response_model_exclude_unset=True,
)
def estop_set(
    request: Request,
    w: Caller,
    control: Service,
    body: EmergencyIn | None = Body(default=None),
    drain_timeout: float | None = Query(None, ge=0, le=60),
    hangup: Hangup = Query(
        Hangup.RINGING, description="which live calls to end: none, ringing (default), all"
    ),
) -> dict[str, Any]:
    body = body or EmergencyIn()
    if _estop_scope(w, body) == "org":
        return emergency.stop_org(control, w, body.reason, drain_timeout, hangup)
    who = actor(w, body.actor)
    return emergency.stop(
        control, who, body.reason, request.state.request_id, drain_timeout, w, hangup
    )


@r.delete("/emergency-stop", response_model=answers.EmergencyLifted)
def estop_lift(
    request: Request, w: Caller, control: Service, body: EmergencyIn | None = Body(default=None)
) -> dict[str, Any]:
    body = body or EmergencyIn()
    if _estop_scope(w, body) == "org":
        raise InvalidInput(
            "scope",
            "an organisation's emergency stop paused each campaign; resume each one "
            "deliberately (POST /api/v1/campaigns/{id}/resume)",
        )
    return emergency.lift(control, actor(w, body.actor), body.reason, request.state.request_id, w)


@r.get("/dnc", response_model=answers.DncEntries)
def dnc_list(w: Caller, control: Service) -> dict[str, Any]:
    return {"phones": control.dnc.entries(w.org)}


@r.post("/dnc", response_model=answers.DncAdded)
def dnc_add(body: DncIn, w: Caller, control: Service) -> dict[str, Any]:
    return control.dnc.add(body.phones, actor(w, body.actor), w)


@r.delete("/dnc/{phone}", response_model=answers.DncRemoved)
def dnc_remove(phone: str, w: Caller, control: Service) -> dict[str, Any]:
    return control.dnc.remove(phone, w)


def _estop_scope(w: Who, body: EmergencyIn) -> str:
    scope = body.scope or ("all" if w.principal.platform else "org")
    if scope == "all" and not w.principal.can(Can.PLATFORM):
        raise Forbidden(
            "an emergency stop of every organisation needs a platform admin; "
            'send {"scope": "org"} to pause every running campaign of your organisation'
        )
    return scope
