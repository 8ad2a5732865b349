"""Routes of an organisation's settings: its contact frequency limit."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from control.api import answers
from control.api.deps import Caller, Service
from control.api.schemas import OrgSettingsIn
from control.campaigns import org

r = APIRouter(prefix="/api/v1")


@r.get("/org/settings", response_model=answers.OrgSettingsView)
def settings_read(w: Caller, control: Service) -> dict[str, Any]:
    return org.read(control, w)


@r.put("/org/settings", response_model=answers.OrgSettingsView)
def settings_put(body: OrgSettingsIn, w: Caller, control: Service) -> dict[str, Any]:
    return org.put(control, w, body.model_dump())
