"""Message contracts between the control service and the workers.

A :class:`ControlEvent` is what the outbox relay broadcasts on ``<namespace>.control``
after each committed transition (whose outbox row is written from this model). Workers
validate it strictly; anything that does not parse is logged and dropped. An event can
only make a worker *more* careful: it raises the minimum gate version the worker accepts,
it never opens a gate.

A :class:`DialBatch` is a dial message: which queued attempts to dial, never a number (the
worker dials the contact's number as stored, read by its own start of the attempt). Both
kinds are signed with one helper (:func:`sign`, :func:`signed_by`) and the shared
``DIALGATE_CONTROL_KEY``: a control event's body in a header, a dial message's actor
arguments (:func:`dial_body`) in its ``sig`` argument.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_serializer

from shared.states import Action, Status


class ControlEvent(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["campaign.transition"] = "campaign.transition"
    campaign_id: int = Field(ge=1)
    version: int = Field(ge=1)
    action: Action
    status: Status
    at: AwareDatetime  # with its offset: the subscriber measures the event's age

    @field_serializer("at", when_used="json")
    def _iso(self, at: datetime) -> str:
        """Python's ISO 8601 (``+00:00``, not pydantic's ``Z``), as the outbox always had."""
        return at.isoformat()


SIGNATURE_HEADER = "x-dialgate-sig"
MAX_CONTROL_BYTES = 4096


def sign(body: bytes, key: str) -> str:
    """HMAC-SHA256 of a message body (a control event's, or :func:`dial_body`) with the
    shared ``DIALGATE_CONTROL_KEY``."""
    return hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


def signed_by(body: bytes, signature: object, key: str) -> bool:
    """Whether ``signature`` is the signature of ``body`` with ``key`` (constant time)."""
    return isinstance(signature, str) and hmac.compare_digest(sign(body, key), signature)


SIG = "sig"  # the dial actor's argument that carries the message's signature


def dial_body(kwargs: Mapping[str, Any]) -> bytes:
    """What a dial message's signature covers: its actor arguments but the signature, as
    canonical JSON (sorted keys, no spaces). The feeder signs the arguments it enqueues and
    the worker checks the ones it received (after their JSON round trip through the broker,
    which gives the same canonical JSON back) before anything else."""
    rest = {k: v for k, v in kwargs.items() if k != SIG}
    return json.dumps(rest, sort_keys=True, separators=(",", ":")).encode()


PHONE = r"^\+[1-9][0-9]{1,18}$"


class QueuedDial(BaseModel):
    """One attempt of a :class:`DialBatch`, with what the dial path needs to know of it
    before its start: the attempt, its campaign and contact, and no number."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    attempt_id: int = Field(ge=1)
    campaign_id: int = Field(ge=1)
    contact_id: int = Field(ge=1)
    # The database epoch the feeder wrote the attempt in: a worker drops a message of
    # another database (left in the queue after the database was recreated).
    epoch: str = Field(min_length=1, max_length=64)
    # Which call of this contact this is, and its campaign's retry policy: a failure with
    # calls left sends the contact to retry_wait instead of failed.
    attempt_no: int = Field(default=1, ge=1)
    max_attempts: int = Field(default=1, ge=1)
    retry_backoff_s: float = Field(default=0.0, ge=0)

    def dialing(self, phone: str) -> DialArgs:
        """This attempt, started, with its contact's number as the start read it."""
        return DialArgs(**{**self.model_dump(), "phone": phone})


class DialArgs(QueuedDial):
    """A started attempt: ``phone`` is its contact's number as stored, read by the worker's
    own ``queued → dialing`` start (never a number a message carries)."""

    phone: str = Field(min_length=2, max_length=20, pattern=PHONE)


MAX_BATCH = 100


class DialTarget(BaseModel):
    """One attempt inside a dial message."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    attempt_id: int = Field(ge=1)
    contact_id: int = Field(ge=1)
    attempt_no: int = Field(default=1, ge=1)


class DialBatch(BaseModel):
    """Keyword arguments of the ``dial`` actor: attempts of one campaign, dialed one after
    the other by one worker thread, each through the whole dial path (its own conditional
    ``queued → dialing`` update, checks and gate claim). Batching spares the broker and the
    worker a message per call; it never groups two calls behind one gate claim."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    campaign_id: int = Field(ge=1)
    epoch: str = Field(min_length=1, max_length=64)
    max_attempts: int = Field(default=1, ge=1)
    retry_backoff_s: float = Field(default=0.0, ge=0)
    attempts: list[DialTarget] = Field(min_length=1, max_length=MAX_BATCH)
    # HMAC-SHA256 of the other arguments (:func:`dial_body`) with DIALGATE_CONTROL_KEY;
    # None when the feeder has no key.
    sig: str | None = Field(default=None, max_length=64)

    def args(self) -> list[QueuedDial]:
        return [
            QueuedDial(
                campaign_id=self.campaign_id,
                epoch=self.epoch,
                max_attempts=self.max_attempts,
                retry_backoff_s=self.retry_backoff_s,
                **t.model_dump(),
            )
            for t in self.attempts
        ]

    def signed(self, key: str | None) -> DialBatch:
        """This message signed with ``key`` (unsigned without one, as control events)."""
        if not key:
            return self.model_copy(update={SIG: None})
        return self.model_copy(update={SIG: sign(dial_body(self.model_dump()), key)})

    @classmethod
    def of(cls, rows: list[QueuedDial]) -> DialBatch:
        """The message of attempts of one campaign (the policy is the first row's), unsigned."""
        first = rows[0]
        return cls(
            campaign_id=first.campaign_id,
            epoch=first.epoch,
            max_attempts=first.max_attempts,
            retry_backoff_s=first.retry_backoff_s,
            attempts=[
                DialTarget(
                    attempt_id=r.attempt_id, contact_id=r.contact_id, attempt_no=r.attempt_no
                )
                for r in rows
            ],
        )
