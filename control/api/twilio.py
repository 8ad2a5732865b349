"""Twilio's status callback: ``POST /api/v1/provider/twilio/status?attempt=ID``.

Twilio posts a call's progress (``initiated``, ``ringing``, ``in-progress``, then how it
ended) to the URL the worker gave it (:func:`shared.callbacks.twilio_status_url`). Twilio
sends no token, so the route is public (``control/auth/roles.py``) and trusts a request only
when its ``X-Twilio-Signature`` is Twilio's signature, with ``DIALGATE_TWILIO_AUTH_TOKEN``,
of *that* URL (rebuilt from ``DIALGATE_TWILIO_CALLBACK_URL``, not read from the request,
whose URL differs behind a proxy) and the form fields. Anything else is 403 and nothing is
recorded; so is every callback while no auth token is configured.

A signed callback becomes one :class:`~shared.calls.CallEvent` (:func:`call_event`),
applied by :meth:`Control.record_events` like every provider's event: idempotent (Twilio's
retries and duplicates change nothing) and monotonic (a late ``ringing`` after the end
changes nothing). An attempt that does not exist is 404, one never dialed 409.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Annotated, Any
from urllib.parse import parse_qsl

import structlog
from fastapi import APIRouter, Depends, Query, Request
from twilio.request_validator import RequestValidator

from control.api import answers
from control.api.deps import Service
from control.auth.security import MAX_ID
from shared.callbacks import TWILIO_STATUS_PATH, twilio_status_url
from shared.calls import CallEvent
from shared.errors import Forbidden, InvalidInput
from shared.states import CallEventKind, CallOutcome, Disposition

log = structlog.get_logger("dialgate.control")

r = APIRouter()

SIGNATURE = "X-Twilio-Signature"  # (headers are looked up regardless of case)
# How a call ended, by the CallStatus of Twilio's last callback.
ENDS = {
    "completed": Disposition.ANSWERED,
    "busy": Disposition.BUSY,
    "no-answer": Disposition.NO_ANSWER,
    "failed": Disposition.FAILED,
    "canceled": Disposition.CANCELED,
}
PROGRESS = {"ringing": CallEventKind.RINGING, "in-progress": CallEventKind.ANSWERED}
# Statuses of a call Twilio has and has not started to ring yet.
PLACED = frozenset({"initiated", "queued"})
# AnsweredBy values (answering machine detection) that mean no person answered.
MACHINE = frozenset(
    {"machine_start", "machine_end_beep", "machine_end_silence", "machine_end_other", "fax"}
)
# A callback whose Timestamp is older than this was delayed (a retry): its time is used
# instead of the arrival's. Timestamps have whole seconds, too coarse for fresh callbacks.
LATE = timedelta(seconds=2)


async def form_of(request: Request) -> dict[str, str]:
    """The form fields of the body (``application/x-www-form-urlencoded``, as Twilio posts
    them), read without a multipart parser; a field given twice keeps its last value (the
    signature then fails: Twilio sends each once)."""
    body = (await request.body()).decode("utf-8", errors="replace")
    return dict(parse_qsl(body, keep_blank_values=True))


Form = Annotated[dict[str, str], Depends(form_of)]


def _int(form: dict[str, str], name: str, low: int, high: int) -> int | None:
    try:
        value = int(form.get(name, ""))
    except ValueError:
        return None
    return value if low <= value <= high else None


def _when(form: dict[str, str], now: datetime) -> datetime:
    """When the event happened: now, or the callback's Timestamp when it came late."""
    try:
        stamp = parsedate_to_datetime(form.get("Timestamp", ""))
    except (TypeError, ValueError):
        return now
    if stamp.tzinfo is None:
        return now
    return stamp if stamp < now - LATE else now


def call_event(attempt_id: int, form: dict[str, str], now: datetime) -> CallEvent:
    """What a status callback says of the attempt's call; an unknown status is 422."""
    status = form.get("CallStatus", "")
    call = form.get("CallSid") or None
    at = _when(form, now)
    if status in PLACED:
        return CallEvent(
            attempt_id,
            CallEventKind.PLACED,
            at=at,
            outcome=CallOutcome.ACCEPTED,
            provider_call_id=call,
        )
    if status in PROGRESS:
        return CallEvent(attempt_id, PROGRESS[status], at=at, provider_call_id=call)
    if status in ENDS:
        disposition = ENDS[status]
        if disposition == Disposition.ANSWERED and form.get("AnsweredBy") in MACHINE:
            disposition = Disposition.MACHINE
        return CallEvent(
            attempt_id,
            CallEventKind.ENDED,
            at=at,
            disposition=disposition,
            sip_code=_int(form, "SipResponseCode", 100, 699),
            error=form.get("ErrorCode") or None,
            provider_call_id=call,
        )
    raise InvalidInput("CallStatus", f"{status[:40]!r} is not a status of a Twilio call")


# The form Twilio posts, as the OpenAPI document shows it (the route reads the body itself:
# every field goes into the signature, so none may be dropped or converted).
FORM_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "required": ["CallSid", "CallStatus"],
                    "properties": {
                        "CallSid": {"type": "string"},
                        "CallStatus": {
                            "type": "string",
                            "enum": sorted({*PLACED, *PROGRESS, *ENDS}),
                        },
                        "AnsweredBy": {"type": "string"},
                        "SipResponseCode": {"type": "string"},
                        "ErrorCode": {"type": "string"},
                        "Timestamp": {"type": "string", "description": "RFC 2822"},
                    },
                    "additionalProperties": {"type": "string"},
                }
            }
        },
    }
}


@r.post(
    TWILIO_STATUS_PATH,
    response_model=answers.EventsApplied,
    openapi_extra=FORM_DOC,
    summary="Twilio's status callback of an attempt's call (signed by Twilio)",
)
def twilio_status(
    request: Request,
    form: Form,
    control: Service,
    attempt: Annotated[int, Query(ge=1, le=MAX_ID)],
) -> dict[str, Any]:
    settings = control.settings
    token, base = settings.secret("twilio_auth_token"), settings.twilio_callback_url
    if not token or not base:
        raise Forbidden(
            "Twilio callbacks are refused: set DIALGATE_TWILIO_AUTH_TOKEN and "
            "DIALGATE_TWILIO_CALLBACK_URL on the control service"
        )
    url = twilio_status_url(base, attempt)
    signature = request.headers.get(SIGNATURE, "")
    if not signature or not RequestValidator(token).validate(url, form, signature):
        log.warning("twilio_callback_refused", attempt_id=attempt, signed=bool(signature))
        raise Forbidden(
            f"missing or wrong {SIGNATURE} header: not signed by Twilio for {url} with "
            "DIALGATE_TWILIO_AUTH_TOKEN (is DIALGATE_TWILIO_CALLBACK_URL the URL Twilio calls?)"
        )
    applied = control.record_events([call_event(attempt, form, datetime.now(UTC))])
    return {"applied": [asdict(a) for a in applied]}
