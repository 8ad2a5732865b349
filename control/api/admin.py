"""Routes about callers and the fleet: who am I, tokens, the audit trail, live workers."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from control.api import answers
from control.api.deps import Caller, ObjectId, Service, TokenService
from control.api.schemas import TokenCreate
from control.auth import trail

r = APIRouter(prefix="/api/v1")


@r.get("/whoami", response_model=answers.Me)
def whoami(w: Caller) -> dict[str, Any]:
    p = w.principal
    return {"name": p.name, "org": p.org, "role": p.role.value, "platform": p.platform}


@r.get("/workers", response_model=answers.Workers)
def workers(w: Caller, control: Service) -> dict[str, Any]:
    views = control.workers()
    if not w.principal.platform:  # versions of other organisations' campaigns stay hidden
        mine = {str(i) for i in control.campaign_ids(w.org)}
        for v in views:
            v["applied"] = {k: n for k, n in v["applied"].items() if k in mine}
    return {"workers": views}


@r.get("/tokens", response_model=answers.TokenList)
def list_tokens(w: Caller, tokens: TokenService) -> dict[str, Any]:
    return {"tokens": tokens.list(w)}


@r.post("/tokens", status_code=201, response_model=answers.NewToken)
def create_token(body: TokenCreate, w: Caller, tokens: TokenService) -> dict[str, Any]:
    return tokens.create(
        w,
        name=body.name,
        org=body.org or w.org,
        role=body.role,
        expires_in_days=body.expires_in_days,
    )


@r.delete("/tokens/{token_id}", response_model=answers.TokenView)
def revoke_token(token_id: ObjectId, w: Caller, tokens: TokenService) -> dict[str, Any]:
    return tokens.revoke(w, token_id)


@r.get("/audit", response_model=answers.AuditEvents)
def audit_events(
    w: Caller, control: Service, limit: int = Query(200, ge=1, le=5000)
) -> dict[str, Any]:
    return {"events": trail.events(control.sessions, w, limit)}
