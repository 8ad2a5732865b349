"""Routes of the webhook subscriptions (admin): list, add, remove, test, delivery log."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from control.api import answers
from control.api.deps import Caller, ObjectId, Service, actor
from control.api.schemas import WebhookCreate

r = APIRouter(prefix="/api/v1")


@r.get("/webhooks", response_model=answers.WebhookList)
def list_webhooks(w: Caller, control: Service) -> dict[str, Any]:
    return {"webhooks": control.webhooks.entries(w)}


@r.post("/webhooks", status_code=201, response_model=answers.NewWebhook)
def create_webhook(body: WebhookCreate, w: Caller, control: Service) -> dict[str, Any]:
    return control.webhooks.create(w, body.url, body.events, actor(w, body.actor))


@r.delete("/webhooks/{webhook_id}", response_model=answers.WebhookView)
def remove_webhook(webhook_id: ObjectId, w: Caller, control: Service) -> dict[str, Any]:
    return control.webhooks.remove(w, webhook_id)


@r.post("/webhooks/{webhook_id}/test", status_code=202, response_model=answers.WebhookTestQueued)
def test_webhook(webhook_id: ObjectId, w: Caller, control: Service) -> dict[str, Any]:
    return control.webhooks.test(w, webhook_id)


@r.get("/webhooks/{webhook_id}/deliveries", response_model=answers.WebhookDeliveries)
def webhook_deliveries(
    webhook_id: ObjectId, w: Caller, control: Service, limit: int = Query(50, ge=1, le=1000)
) -> dict[str, Any]:
    return {"deliveries": control.webhooks.deliveries(w, webhook_id, limit)}
