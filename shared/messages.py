"""Message contracts between the control service and the workers.

A :class:`ControlEvent` is what the outbox relay broadcasts on ``<namespace>.control``
after each committed transition. Workers validate it strictly; anything that does not
parse is logged and dropped. An event can only make a worker *more* careful: it raises
the minimum gate version the worker accepts, it never opens a gate.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.states import Action, Status


class ControlEvent(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["campaign.transition"] = "campaign.transition"
    campaign_id: int = Field(ge=1)
    version: int = Field(ge=1)
    action: Action
    status: Status
    at: datetime


SIGNATURE_HEADER = "x-dialgate-sig"
MAX_CONTROL_BYTES = 4096


def sign(body: bytes, key: str) -> str:
    """HMAC-SHA256 of a control message body with the shared ``DIALGATE_CONTROL_KEY``."""
    return hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


def signed_by(body: bytes, signature: object, key: str) -> bool:
    return isinstance(signature, str) and hmac.compare_digest(sign(body, key), signature)


class DialArgs(BaseModel):
    """Keyword arguments of the ``dial`` actor."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    attempt_id: int = Field(ge=1)
    campaign_id: int = Field(ge=1)
    contact_id: int = Field(ge=1)
    phone: str = Field(min_length=2, max_length=20, pattern=r"^\+[1-9][0-9]{1,18}$")
    # The database epoch the feeder wrote the attempt in: a worker drops a message of
    # another database (left in the queue after the database was recreated).
    epoch: str = Field(min_length=1, max_length=64)
    # Which call of this contact this is, and its campaign's retry policy: a failure with
    # calls left sends the contact to retry_wait instead of failed.
    attempt_no: int = Field(default=1, ge=1)
    max_attempts: int = Field(default=1, ge=1)
    retry_backoff_s: float = Field(default=0.0, ge=0)
