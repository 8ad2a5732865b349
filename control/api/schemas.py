"""Request bodies of the HTTP API (pydantic). Unknown fields are refused with their name;
every free-text field is checked by :func:`shared.text.checked` (no control or format
characters)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from control.auth.roles import Role
from shared.calls import CallEvent
from shared.states import CallEventKind, Disposition, Source
from shared.text import Text, checked

Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAYS: tuple[Day, ...] = get_args(Day)
HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
# Optional free text with its length limit (a limit given beside ``| None`` would be
# checked as a generic length, with a misleading message).
Reason = Annotated[str, Field(max_length=1000), AfterValidator(checked)]
Label = Annotated[str, Field(max_length=200), AfterValidator(checked)]
Code = Annotated[str, Field(max_length=64), AfterValidator(checked)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CallingWindow(Strict):
    """Local times in the campaign's timezone; ``end`` before ``start`` spans midnight."""

    days: list[Day] = Field(default=list(DAYS), min_length=1)
    start: str = Field(default="09:00", description="HH:MM")
    end: str = Field(default="21:00", description="HH:MM")
    contact_local_time: bool = Field(
        default=False,
        description="Also hold the window in each contact's local time (from its number).",
    )

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        if not HHMM.match(v):
            raise ValueError("must be a 24-hour time HH:MM, e.g. 09:00")
        return v

    @model_validator(mode="after")
    def _not_empty(self) -> CallingWindow:
        if self.start == self.end:
            raise ValueError("start and end are equal: the window would be empty")
        return self


class MonitorRules(Strict):
    """Per-campaign overrides of the monitor's global thresholds (docs/monitors.md)."""

    failure_ratio: float | None = Field(default=None, gt=0, le=1)
    failure_window: int | None = Field(default=None, ge=1, le=10_000)
    failure_min_samples: int | None = Field(default=None, ge=1, le=10_000)
    consecutive_errors: int | None = Field(default=None, ge=1, le=10_000)
    outcome_bound_s: float | None = Field(default=None, gt=0, le=86_400)

    def stored(self) -> dict[str, Any] | None:
        return self.model_dump(exclude_none=True) or None


# Dispositions a campaign may retry (a call that reached the person is never retried).
RetryDisposition = Literal["busy", "no_answer", "declined", "failed", "canceled"]
# disposition -> seconds to wait before the next call (at most a week)
RetryPolicy = dict[RetryDisposition, Annotated[float, Field(ge=0, le=604_800)]]


class CallLimits(Strict):
    """Lines, calls per second and retries: the fields create and PATCH share."""

    max_lines: int | None = Field(
        default=None, ge=1, le=100_000, description="live calls at once (default: max_concurrency)"
    )
    max_cps: float | None = Field(
        default=None, gt=0, le=10_000, description="calls started per second (default: no limit)"
    )
    retry: RetryPolicy | None = Field(
        default=None,
        description='seconds before calling again, by disposition, e.g. {"busy": 600}; '
        "a disposition not listed is final",
    )
    machine_detection: bool | None = Field(
        default=None, description="answering-machine detection, where the back end has it"
    )

    def stored_retry(self) -> dict[str, float] | None:
        """The retry policy as the campaign row keeps it."""
        return None if self.retry is None else {str(d): s for d, s in self.retry.items()}


class CampaignCreate(CallLimits):
    name: Text = Field(min_length=1, max_length=200)
    max_concurrency: int = Field(default=1, ge=1, le=10_000)
    max_attempts: int = Field(default=1, ge=1, le=10, description="calls per contact at most")
    timezone: str = "UTC"
    calling_window: CallingWindow | None = None
    monitor: MonitorRules | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        v = v.strip()
        if not v:
            raise ValueError("must not be blank")
        return v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        return _known_timezone(v)


class CampaignUpdate(CallLimits):
    """What may change on an existing campaign (at any status): its calling window, its
    monitor overrides, lines, calls per second and retries (``null`` removes a calling
    window, monitor overrides, a calls-per-second limit or the retry policy)."""

    timezone: str | None = None
    calling_window: CallingWindow | None = None
    monitor: MonitorRules | None = None

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str | None) -> str | None:
        if v is None:
            raise ValueError("must be an IANA timezone (it cannot be removed)")
        return _known_timezone(v)

    @field_validator("max_lines", "machine_detection")
    @classmethod
    def _kept(cls, v: Any) -> Any:
        if v is None:
            raise ValueError("cannot be removed; give a value")
        return v


def _known_timezone(v: str) -> str:
    try:
        ZoneInfo(v)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("unknown IANA timezone, e.g. Europe/Paris or America/New_York") from None
    return v


class ContactIn(BaseModel):
    # Validated row by row in the service, so one bad row does not refuse the rest.
    model_config = ConfigDict(extra="forbid")

    phone: Any = None
    name: Any = None
    attributes: Any = None


class ContactsIn(Strict):
    contacts: list[ContactIn] = Field(max_length=100_000)


class CanaryIn(Strict):
    """A canary resume: the first ``calls`` after it are watched, and more than
    ``max_failure_ratio`` of them failing pauses the campaign again by itself."""

    calls: int = Field(ge=1, le=1000)
    max_failure_ratio: float = Field(ge=0, lt=1)


class TransitionIn(Strict):
    reason: Reason | None = None
    actor: Label | None = None
    source: Source = Source.API
    confirm: bool = False
    # Controlled resume: a temporary concurrency cap that lifts by itself (both or neither).
    max_concurrency: int | None = Field(default=None, ge=1, le=10_000)
    for_minutes: float | None = Field(default=None, gt=0, le=24 * 60)
    hold: Literal["operator", "compliance"] | None = Field(
        default=None,
        description="pause: the hold it places (default: the caller's own, e.g. operator; a "
        "compliance hold is released by two people)",
    )
    acknowledge: list[Label] = Field(
        default_factory=list,
        max_length=100,
        description="resume: the rules of monitor, alert and canary holds it releases",
    )
    override: list[Literal["emergency_stop", "provider_failing"]] = Field(
        default_factory=list,
        description="resume: blocking preflight findings to resume past (recorded)",
    )
    canary: CanaryIn | None = Field(default=None, description="resume: watch the first calls")

    @model_validator(mode="after")
    def _cap_pair(self) -> TransitionIn:
        if (self.max_concurrency is None) != (self.for_minutes is None):
            missing = "for_minutes" if self.for_minutes is None else "max_concurrency"
            raise ValueError(
                f"{missing} is required too: a temporary cap needs both max_concurrency "
                "and for_minutes"
            )
        return self


class DncIn(Strict):
    phones: list[Any] = Field(min_length=1, max_length=100_000)
    actor: Label | None = None


class OrgSettingsIn(Strict):
    # Checked by the service (control.campaigns.org.validated): its message names the
    # field and what is allowed.
    max_calls_per_number: Any = Field(
        description='The contact frequency limit: {"calls": 1-1000, "hours": above 0, at most '
        "720}: at most that many calls to one number within any that many hours, across "
        "all the organisation's campaigns (3 per 24 h: Florida's rule); null: no limit."
    )


class ProviderEvent(Strict):
    """What a provider's webhook reports of one attempt's call (:mod:`shared.calls`)."""

    attempt_id: int = Field(ge=1, le=2**63 - 1)
    event: CallEventKind
    disposition: Disposition | None = Field(default=None, description="required for ended")
    sip_code: int | None = Field(default=None, ge=100, le=699)
    error: Code | None = None
    at: AwareDatetime | None = None

    @model_validator(mode="after")
    def _ended_has_disposition(self) -> ProviderEvent:
        if (self.event == CallEventKind.ENDED) != (self.disposition is not None):
            raise ValueError("disposition: required for an ended event, and only for one")
        return self

    def call_event(self) -> CallEvent:
        return CallEvent(
            self.attempt_id,
            self.event,
            at=self.at or datetime.now(UTC),
            disposition=self.disposition,
            sip_code=self.sip_code,
            error=self.error,
        )


class EmergencyIn(Strict):
    reason: Reason | None = None
    actor: Label | None = None
    scope: Literal["all", "org"] | None = Field(
        default=None,
        description="all: every organisation (platform admin only; the default for one); "
        "org: pause every running campaign of your organisation (the default otherwise).",
    )


NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._:@-]{0,99}")


class TokenCreate(Strict):
    name: Text = Field(min_length=1, max_length=100)
    role: Role
    org: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$",
        description="Default: your own organisation (others: platform admin only).",
    )
    expires_in_days: float | None = Field(default=None, gt=0, le=3650)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME.fullmatch(v):
            raise ValueError(
                "1-100 letters, digits, spaces or . _ : @ - (starting with a letter or digit)"
            )
        return v


class WebhookCreate(Strict):
    url: Annotated[str, Field(min_length=1, max_length=2000), AfterValidator(checked)] = Field(
        description="http:// or https://; refused when it resolves to a loopback, "
        "link-local or private address (docs/webhooks.md)."
    )
    events: list[str] = Field(
        min_length=1,
        max_length=20,
        description="Event names (campaign.paused, …) or families (campaign.*, emergency_stop.*).",
    )
    actor: Label | None = None
