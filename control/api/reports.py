"""Routes where automation reports facts: Alertmanager's webhook, provider outcomes."""

from __future__ import annotations

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


@r.post("/provider/events", response_model=answers.OutcomeRecorded)
def provider_event(body: ProviderEvent, w: Caller, control: Service) -> dict[str, Any]:
    return control.record_outcome(
        body.attempt_id, body.outcome, body.error_code, body.duration_ms, scope(w)
    )
