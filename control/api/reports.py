"""Routes where automation reports facts: Alertmanager's webhook, provider outcomes."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter

from control.api import answers
from control.api.deps import Caller, Service
from control.api.schemas import ProviderEvent
from control.auth.roles import scope
from control.campaigns import alerts

r = APIRouter(prefix="/api/v1")


@r.post(
    "/alerts/alertmanager", response_model=answers.AlertResults, response_model_exclude_unset=True
)
def alertmanager(body: alerts.AlertmanagerPayload, w: Caller, control: Service) -> dict[str, Any]:
    return alerts.receive(control, body, w)


@r.post("/provider/events", response_model=answers.EventsApplied)
def provider_event(body: ProviderEvent, w: Caller, control: Service) -> dict[str, Any]:
    applied = control.record_events([body.call_event()], scope(w))
    return {"applied": [asdict(a) for a in applied]}
