"""Message contracts between the control service and the workers.

A :class:`ControlEvent` is what the outbox relay broadcasts on ``<namespace>.control``
after each committed transition (whose outbox row is written from this model). Workers
validate it strictly; anything that does not parse is logged and dropped. An event can
only make a worker *more* careful: it raises the minimum gate version the worker accepts,
it never opens a gate. It may ask the workers to hang up live calls (``hangup``), as a
:class:`HangupRequest` does for an emergency stop: hanging up is more careful too.

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
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, field_serializer

from shared.states import Action, Hangup, Status


class ControlEvent(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["campaign.transition"] = "campaign.transition"
    campaign_id: int = Field(ge=1)
    version: int = Field(ge=1)
    action: Action
    status: Status
    at: AwareDatetime  # with its offset: the subscriber measures the event's age
    # Which live calls the workers hang up (pause: ``?hangup=``; cancel: ringing ones).
    hangup: Hangup = Hangup.NONE

    @field_serializer("at", when_used="json")
    def _iso(self, at: datetime) -> str:
        """Python's ISO 8601 (``+00:00``, not pydantic's ``Z``), as the outbox always had."""
        return at.isoformat()


class HangupRequest(BaseModel):
    """ "Hang up these live calls": what an emergency stop broadcasts (a pause's or a cancel's
    hang-up rides on its :class:`ControlEvent`). ``campaign_id`` None: every campaign."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["calls.hangup"] = "calls.hangup"
    campaign_id: int | None = Field(default=None, ge=1)
    hangup: Hangup
    at: AwareDatetime

    @field_serializer("at", when_used="json")
    def _iso(self, at: datetime) -> str:
        return at.isoformat()


# What the control exchange carries, told apart by ``type``.
ControlMessage = TypeAdapter(Annotated[ControlEvent | HangupRequest, Field(discriminator="type")])
HANGUP_ROUTING_KEY = "calls.hangup"

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
    # Answering-machine detection asked of the back end (the campaign's setting).
    machine_detection: bool = False

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


class DialBatch(BaseModel):
    """Keyword arguments of the ``dial`` actor: attempts of one campaign, dialed one after
    the other by one worker thread, each through the whole dial path (its own conditional
    ``queued → dialing`` update, checks and gate claim). Batching spares the broker and the
    worker a message per call; it never groups two calls behind one gate claim."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    campaign_id: int = Field(ge=1)
    epoch: str = Field(min_length=1, max_length=64)
    machine_detection: bool = False
    attempts: list[DialTarget] = Field(min_length=1, max_length=MAX_BATCH)
    # HMAC-SHA256 of the other arguments (:func:`dial_body`) with DIALGATE_CONTROL_KEY;
    # None when the feeder has no key.
    sig: str | None = Field(default=None, max_length=64)

    def args(self) -> list[QueuedDial]:
        return [
            QueuedDial(
                campaign_id=self.campaign_id,
                epoch=self.epoch,
                machine_detection=self.machine_detection,
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
        """The message of attempts of one campaign (its settings the first row's), unsigned."""
        first = rows[0]
        return cls(
            campaign_id=first.campaign_id,
            epoch=first.epoch,
            machine_detection=first.machine_detection,
            attempts=[DialTarget(attempt_id=r.attempt_id, contact_id=r.contact_id) for r in rows],
        )
