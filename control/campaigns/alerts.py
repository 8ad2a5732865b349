"""Prometheus Alertmanager's webhook receiver (``POST /api/v1/alerts/alertmanager``).

A *firing* alert with a ``campaign_id`` label pauses that campaign through the transition
service (``source: system``, ``actor: alertmanager:<alertname>``, the alert's name and
summary as the reason); one with ``dialgate_scope="all"`` sets the emergency stop. A
*resolved* alert never resumes anything: resume stays a human act. The whole payload is
validated before anything is done (422 naming the field, nothing changed): labels are
one line of visible text, annotations may also span lines (folded to one line in the
reason), neither may carry other control or format characters (:mod:`shared.text`).
Every alert gets a result; a campaign that is not running, or does not exist, is
reported, not retried (Alertmanager re-sends on any non-2xx answer).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from control.auth.roles import Who, scope
from control.auth.security import MAX_ID
from control.campaigns import emergency
from control.campaigns.service import Control
from shared.errors import Conflict, InvalidInput, NotFound
from shared.states import Action, Source
from shared.text import ACTOR_MAX, Lines, Text, one_line


class Alert(BaseModel):
    model_config = ConfigDict(extra="allow")  # startsAt, endsAt, fingerprint, …

    status: Literal["firing", "resolved"]
    labels: dict[Text, Text]
    annotations: dict[Text, Lines] = Field(default_factory=dict)

    @field_validator("labels")
    @classmethod
    def _named(cls, v: dict[str, str]) -> dict[str, str]:
        if not v.get("alertname"):
            raise ValueError("alertname is required")
        if len(v["alertname"]) > ACTOR_MAX - len("alertmanager:"):
            raise ValueError(
                f"alertname must be at most {ACTOR_MAX - len('alertmanager:')} characters "
                "(it names the pause's actor)"
            )
        return v

    @property
    def name(self) -> str:
        return self.labels["alertname"]

    @property
    def reason(self) -> str:
        summary = self.annotations.get("summary") or self.annotations.get("description")
        return one_line(f"{self.name}: {summary}" if summary else self.name)


class AlertmanagerPayload(BaseModel):
    """Alertmanager's webhook body (version 4); only what dialgate uses is required."""

    model_config = ConfigDict(extra="allow")  # groupKey, receiver, externalURL, …

    status: Literal["firing", "resolved"]
    alerts: list[Alert] = Field(min_length=1, max_length=1000)


def _campaign_ids(payload: AlertmanagerPayload) -> list[int | None]:
    ids: list[int | None] = []
    for i, a in enumerate(payload.alerts):
        raw = a.labels.get("campaign_id")
        if raw is None:
            ids.append(None)
        elif raw.isascii() and raw.isdigit() and 1 <= int(raw) <= MAX_ID:
            ids.append(int(raw))
        else:
            raise InvalidInput(
                f"alerts.{i}.labels.campaign_id",
                f"must be a campaign id (a positive integer), got {raw!r}",
            )
    return ids


def receive(control: Control, payload: AlertmanagerPayload, who: Who) -> dict[str, Any]:
    ids = _campaign_ids(payload)  # all validated before anything is done
    results = []
    for alert, cid in zip(payload.alerts, ids, strict=True):
        results.append(_one(control, alert, cid, who))
    return {"results": results}


def _one(control: Control, alert: Alert, cid: int | None, who: Who) -> dict[str, Any]:
    request_id = who.request_id
    actor = f"alertmanager:{alert.name}"
    result: dict[str, Any] = {"alert": alert.name, "status": alert.status, "campaign_id": cid}
    if alert.status == "resolved":
        return {**result, "action": "none", "detail": "a resolved alert never resumes anything"}
    if alert.labels.get("dialgate_scope") == "all":
        if not who.principal.platform:  # the caller's own organisation, never everyone's
            stopped = emergency.stop_org(control, who, f"{actor}: {alert.reason}", None)
            return {**result, "action": "organisation_stop", "paused": stopped["paused"]}
        emergency.stop(control, actor, alert.reason, request_id, None, who)
        return {**result, "action": "emergency_stop"}
    if cid is not None and scope(who) not in (None, control.campaign_org(cid)):
        return {**result, "action": "none", "detail": f"campaign {cid} does not exist"}
    if cid is None:
        return {**result, "action": "none", "detail": "no campaign_id or dialgate_scope label"}
    try:
        control.transition(
            cid,
            Action.PAUSE,
            actor=actor,
            source=Source.SYSTEM,
            reason=alert.reason,
            request_id=request_id,
            who=who,
        )
    except (Conflict, NotFound) as exc:
        return {**result, "action": "none", "detail": exc.message}
    return {**result, "action": "paused"}
