"""Answers of the HTTP API (pydantic): the ``response_model`` of every JSON route, so the
OpenAPI document describes what each route answers.

The services build their answers as dicts (:mod:`control.campaigns.views` and its
neighbours); these models check and describe them without changing them:

- routes declare ``response_model_exclude_unset=True`` where a key is present only
  sometimes (a field with a default here): a key the builder left out stays out, a key it
  set to ``None`` stays ``null``;
- a key not modelled here passes through unchanged (``extra="allow"``), never dropped;
- instants keep Python's ISO 8601 form (``+00:00``), as before the models.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema

from control.api.schemas import CallingWindow, MonitorRules
from control.auth.roles import Role
from shared.states import Action, DenyReason, Disposition, HoldKind, Source, Status
from shared.supervisor import Supervised


def _iso(value: datetime) -> str:
    return value.isoformat()


Instant = Annotated[
    datetime,
    PlainSerializer(_iso, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]


class Answer(BaseModel):
    model_config = ConfigDict(extra="allow")


# -- campaigns -----------------------------------------------------------------------------
class CapView(Answer):
    """A controlled resume's temporary concurrency cap."""

    max_concurrency: int
    until: Instant


class Dialing(Answer):
    """Why a running campaign dials nothing right now (``blocked_by: null``: nothing)."""

    blocked_by: Literal[DenyReason.CALLING_WINDOW] | None
    opens_at: Instant | None = Field(default=None, description="Only when blocked.")


class GateView(Answer):
    status: str
    version: int


class Propagation(Answer):
    """How many live workers acknowledged the campaign's latest version."""

    version: int
    workers_live: int
    workers_acked: int


class CampaignState(Answer):
    """A campaign's own row, as the database has it."""

    id: int
    name: str
    status: Status
    version: int
    max_concurrency: int
    concurrency: int = Field(description="What the gate enforces: the temporary cap if any.")
    cap: CapView | None
    max_lines: int = Field(description="Live calls at once (dialing, ringing, answered).")
    max_cps: float | None = Field(description="Calls started per second; null: no limit.")
    max_attempts: int
    retry: dict[str, float] = Field(description="Seconds before calling again, by disposition.")
    machine_detection: bool
    timezone: str
    calling_window: CallingWindow | None
    paused_at: Instant | None
    pause_reason: str | None
    pause_source: Source | None
    created_at: Instant
    updated_at: Instant
    allowed_actions: list[Action] = Field(description="The actions your role may take now.")
    dialing: Dialing
    monitor: MonitorRules | None


class CampaignRow(CampaignState):
    """A campaign as the database has it, its contacts counted by state."""

    counts: dict[str, int] = Field(description="Contacts per contact state (every state).")
    dispositions: dict[str, int] = Field(description="Calls ended, per disposition.")
    live: dict[str, int] = Field(description="Calls up right now: ringing, answered.")


class LiveParts(Answer):
    """What Redis knows of a campaign now; ``null`` while Redis is unreachable."""

    inflight: int | None
    propagation: Propagation | None
    emergency_stop: bool | None


class HoldView(Answer):
    """One reason a campaign is paused, who or what placed it, and what releases it."""

    id: int
    kind: HoldKind
    rule: str | None = Field(description="What a resume acknowledges to release it.")
    reason: str | None
    placed_by: str
    placed_role: str | None
    placed_at: Instant
    version: int = Field(description="The transition that placed it.")
    release_requested_by: str | None = Field(description="A compliance hold's asked release.")
    release_expires_at: Instant | None
    released_by: str | None
    released_at: Instant | None
    needs: str | None = Field(description="What releasing it takes (null: released).")


class Cause(Answer):
    """Holds placed for one cause (a rule, or a reason a person gave) lately."""

    kind: HoldKind
    rule: str | None
    reason: str | None
    last_24h: int
    last_7d: int
    last_at: Instant
    times: list[Instant] = Field(description="When, in the last 24 h.")
    repeated: bool = Field(description="Placed 3 times or more in 24 h: fix the cause.")


class HoldsPart(Answer):
    holds: list[HoldView] = Field(description="The holds in force (empty: none).")
    pause_causes: list[Cause] = Field(description="Holds of the last 7 days, per cause.")
    repeated_causes: list[Cause] = Field(description="The causes placed 3+ times in 24 h.")


class Holds(HoldsPart):
    campaign_id: int


class CampaignDetail(CampaignRow, LiveParts, HoldsPart):
    """A campaign with its holds and their causes; the live parts from Redis are ``null``
    while Redis is unreachable."""


class Campaign(CampaignDetail):
    gate: GateView | None


class Campaigns(Answer):
    campaigns: list[CampaignRow]


class GateWrite(Answer):
    """What a transition did to the gate; a pause or cancel also waited for its leases."""

    version: int
    written: bool
    error: str | None = Field(default=None, description="Only when Redis was unreachable.")
    closed: bool | None = None
    drained: bool | None = None
    inflight: int | None = None
    drain_ms: float | None = None
    live_calls: int | None = Field(default=None, description="Calls still up (pause/cancel).")
    hung_up: int | None = Field(default=None, description="Calls the hang-up ended.")
    hangup_complete: bool | None = Field(
        default=None, description="Every call the hang-up targeted ended within the drain."
    )


class GateAnswer(GateWrite):
    status: str | None = Field(default=None, description="The gate's, when Redis answered.")


class Transitioned(CampaignState, LiveParts):
    """The campaign as the transition committed it, with what the gate did and what Redis
    says now; no counts (a transition answers from what its transaction knows: GET the
    campaign for its counts)."""

    gate: GateAnswer
    hold: HoldView | None = Field(default=None, description="pause: the hold it placed.")
    holds: list[HoldView] | None = Field(default=None, description="The holds in force now.")
    released: list[HoldView] | None = Field(
        default=None, description="resume: the holds it released, and how."
    )
    owner: str | None = Field(default=None, description="resume: who owns it (approved it).")


class Finding(Answer):
    code: str
    severity: Literal["info", "warning", "blocking"]
    message: str
    overridable: bool = Field(description='A resume may pass it with "override": [code].')


class Preflight(Answer):
    """What a resume now would do (``would_resume``: no blocking finding)."""

    campaign_id: int
    status: Status
    checked_at: Instant
    would_resume: bool
    findings: list[Finding]
    contacts: dict[str, Any] = Field(
        description="pending, dialable_now, calling_window {contacts, open, opens_at, "
        "closes_at}, dnc, waiting (dial_after later), frequency {limit, contacts, next_at}"
    )
    provider: dict[str, Any] = Field(
        description="recent, failed, failure_share, last_outcome, last_error"
    )
    workers: dict[str, Any] = Field(description="live, acknowledged (the latest version)")
    holds: list[HoldView]


class TransitionRow(Answer):
    version: int
    from_: Status = Field(alias="from")
    to: Status
    action: Action
    actor: str
    source: Source
    reason: str | None
    role: Role | None
    source_ip: str | None
    peer_ip: str | None = Field(
        description="The direct TCP peer: a trusted proxy when source_ip is the client it named."
    )
    request_id: str | None
    at: Instant
    cap: CapView | None
    answered_at: Instant | None
    drained: bool | None
    details: dict[str, Any] | None = Field(
        description="The holds it placed (hold) or released (released, owner, overrides, canary)."
    )
    note: str | None = Field(description='In words, e.g. "resumed by … (approved …)".')


class Transitions(Answer):
    transitions: list[TransitionRow]


class ReasonView(Answer):
    code: str
    title: str
    evidence: str
    fix: str


class Diagnosis(Answer):
    """Every reason the campaign is not placing calls (``ok``: none)."""

    campaign_id: int
    status: Status
    checked_at: Instant
    ok: bool
    reasons: list[ReasonView]


class FirstAfterResume(Answer):
    """The latest resume and the first dial that started after it (if one did)."""

    version: int
    resumed_at: Instant
    attempt_id: int | None = None
    started_at: Instant | None = None
    worker_id: str | None = None
    after_s: float | None = None


class Overview(Answer):
    campaign: Campaign
    transitions: list[TransitionRow]
    first_after_resume: FirstAfterResume | None
    diagnosis: Diagnosis


class ActivityMarker(Answer):
    """A transition of the hour, a marker on the chart's time axis (any action: the chart
    labels it with its name)."""

    version: int
    action: str
    from_: str = Field(alias="from")
    to: str
    actor: str
    source: str
    reason: str | None
    at: Instant
    cap: CapView | None


class Activity(Answer):
    """A campaign's last hour in buckets of ``bucket_s`` seconds from ``start`` to ``end``:
    calls started per bucket, calls ended per bucket by disposition (``unknown``: the
    worker vanished), and the hour's transitions, oldest first."""

    campaign_id: int
    bucket_s: int
    start: Instant
    end: Instant
    started: list[int]
    ended: dict[str, list[int]]
    markers: list[ActivityMarker]


class Rejected(Answer):
    """A contact row that was not imported, where it was (``index`` or ``line``) and why."""

    phone: Any
    error: str
    index: int | None = None
    line: int | None = None


class Imported(Answer):
    accepted: int
    rejected: list[Rejected]


# -- safety --------------------------------------------------------------------------------
class EmergencyState(Answer):
    """Whether the emergency stop is in force and since when; who set it and why for a
    platform admin only."""

    active: bool
    by: str | None = None
    reason: str | None = None
    since: str | None = None


class Drained(Answer):
    closed: bool
    drained: bool
    inflight: int
    drain_ms: float
    hung_up: int | None = None
    hangup_complete: bool | None = None


class EmergencyStopped(EmergencyState):
    gate: Drained
    recorded: bool = Field(description="Whether the database recorded it.")


class PausedCampaign(Answer):
    id: int
    gate: GateWrite


class OrgStopped(Answer):
    """An organisation's emergency stop: each of its running campaigns paused."""

    scope: Literal["org"]
    org: str
    paused: list[PausedCampaign]


class EmergencyLifted(Answer):
    active: bool
    lifted: bool = Field(description="Whether a stop was in force.")
    recorded: bool


class DncEntry(Answer):
    phone: str
    actor: str
    added_at: Instant


class DncEntries(Answer):
    phones: list[DncEntry]


class DncAdded(Answer):
    added: int
    already_listed: int


class DncRemoved(Answer):
    removed: str


class FrequencyLimit(Answer):
    calls: int = Field(description="At most this many calls to one number ...")
    hours: float = Field(description="... within any this many hours (a rolling window).")


class OrgSettingsView(Answer):
    """An organisation's settings (``null``: not set)."""

    org: str
    max_calls_per_number: FrequencyLimit | None = Field(
        description="The contact frequency limit, across all the organisation's campaigns."
    )
    updated_by: str | None
    updated_at: Instant | None


# -- reports -------------------------------------------------------------------------------
class AlertResult(Answer):
    """What became of one alert (``action: none`` with the ``detail`` why)."""

    alert: str
    status: str
    campaign_id: int | None
    action: str = Field(description="paused, emergency_stop, organisation_stop or none")
    detail: str | None = None
    paused: list[PausedCampaign] | None = None


class AlertResults(Answer):
    results: list[AlertResult]


class AttemptRow(Answer):
    id: int
    contact_id: int
    phone: str
    attempt_no: int
    state: str
    disposition: Disposition | None
    sip_code: int | None
    error: str | None
    outcome: str | None = Field(description="What the provider answered at placement.")
    started_at: Instant | None
    ringing_at: Instant | None
    answered_at: Instant | None
    ended_at: Instant | None
    ring_ms: int | None
    talk_ms: int | None
    worker_id: str | None


class Attempts(Answer):
    attempts: list[AttemptRow]


class EventApplied(Answer):
    attempt_id: int
    campaign_id: int
    applied: bool  # False: a duplicate, or older than what the attempt knows
    state: str


class EventsApplied(Answer):
    applied: list[EventApplied]


# -- callers and the fleet -----------------------------------------------------------------
class Me(Answer):
    name: str
    org: str
    role: Role
    platform: bool


class WorkerView(Answer):
    """A live worker as its last heartbeat describes it."""

    id: str
    host: str | None
    pid: int | None
    threads: int | None
    started: float | None
    last_heartbeat: float | None
    inflight: int
    calls: int = Field(description="Calls it placed that are up.")
    applied: dict[str, int] = Field(description="Campaign id → the version it applied.")


class Workers(Answer):
    workers: list[WorkerView]


class TokenView(Answer):
    id: int
    name: str
    org: str
    role: Role
    platform: bool
    prefix: str
    created_by: str
    created_at: Instant
    expires_at: Instant | None
    revoked_at: Instant | None
    last_used_at: Instant | None


class NewToken(TokenView):
    token: str = Field(description="The secret, shown this once.")


class TokenList(Answer):
    tokens: list[TokenView]


class AuditEvent(Answer):
    id: int
    at: Instant
    org: str
    actor: str
    role: Role | None
    source_ip: str | None
    peer_ip: str | None = Field(
        description="The direct TCP peer: a trusted proxy when source_ip is the client it named."
    )
    request_id: str | None
    kind: str
    target: str | None
    details: dict[str, Any] | None


class AuditEvents(Answer):
    events: list[AuditEvent]


# -- probes --------------------------------------------------------------------------------
class Health(Answer):
    status: Literal["ok"]


class Check(Answer):
    ok: bool
    ms: float | None = None
    error: str | None = None


class Checks(Answer):
    database: Check
    redis: Check
    rabbitmq: Check


class Readiness(Answer):
    ready: bool
    status: Literal["ready", "degraded", "unavailable"]
    checks: Checks
    degraded: list[str] = Field(
        default_factory=list,
        description="Supervised processes down or restarted in the last 10 minutes, by name.",
    )
    processes: list[Supervised] | None = Field(
        default=None, description="Every supervised process (None: Redis unreadable)."
    )


# -- webhooks ------------------------------------------------------------------------------
class WebhookView(Answer):
    id: int
    org: str
    url: str
    events: list[str]
    created_by: str
    created_at: Instant
    enabled: bool
    disabled_at: Instant | None
    disabled_reason: str | None = Field(description="Why it was disabled (since when failing).")
    failing_since: Instant | None = Field(description="Every attempt since then has failed.")


class NewWebhook(WebhookView):
    secret: str = Field(description="The signing secret (whsec_…), shown this once.")


class WebhookList(Answer):
    webhooks: list[WebhookView]


class WebhookTestQueued(Answer):
    delivery_id: int
    msg_id: str = Field(description="Its webhook-id header.")
    event: str


class WebhookDeliveryView(Answer):
    id: int
    webhook_id: int
    event: str
    msg_id: str = Field(description="The webhook-id header, the same on every retry.")
    campaign_id: int | None
    created_at: Instant
    attempts: int
    next_attempt_at: Instant | None
    delivered_at: Instant | None
    last_status: int | None = Field(description="The receiver's last HTTP status (null: none).")
    last_error: str | None
    gave_up_at: Instant | None
    state: Literal["pending", "delivered", "gave_up"]


class WebhookDeliveries(Answer):
    deliveries: list[WebhookDeliveryView]
