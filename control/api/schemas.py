"""Request bodies of the HTTP API (pydantic). Unknown fields are refused with their name;
every free-text field is checked by :func:`shared.text.checked` (no control or format
characters)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from control.auth.roles import Role
from shared.states import ReportedOutcome, Source
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


class CampaignCreate(Strict):
    name: Text = Field(min_length=1, max_length=200)
    max_concurrency: int = Field(default=1, ge=1, le=10_000)
    max_attempts: int = Field(default=1, ge=1, le=10, description="calls per contact at most")
    retry_backoff_s: float = Field(
        default=60.0, ge=0, le=86_400, description="wait after the first failure, doubling"
    )
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


class CampaignUpdate(Strict):
    """What may change on an existing campaign (at any status): its calling window and
    its monitor overrides (``null`` removes either)."""

    timezone: str | None = None
    calling_window: CallingWindow | None = None
    monitor: MonitorRules | None = None

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str | None) -> str | None:
        if v is None:
            raise ValueError("must be an IANA timezone (it cannot be removed)")
        return _known_timezone(v)


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


class TransitionIn(Strict):
    reason: Reason | None = None
    actor: Label | None = None
    source: Source = Source.API
    confirm: bool = False
    # Controlled resume: a temporary concurrency cap that lifts by itself (both or neither).
    max_concurrency: int | None = Field(default=None, ge=1, le=10_000)
    for_minutes: float | None = Field(default=None, gt=0, le=24 * 60)

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


class ProviderEvent(Strict):
    """A real provider's outcome of one attempt (its webhook)."""

    attempt_id: int = Field(ge=1, le=2**63 - 1)
    outcome: ReportedOutcome
    error_code: Code | None = None
    duration_ms: int | None = Field(default=None, ge=0, le=2**31 - 1)


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
