"""What each of Twilio's status callbacks becomes, and the bounds a Twilio call is given."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from control.api.twilio import call_event
from shared.callbacks import twilio_status_url
from shared.errors import InvalidInput
from shared.states import CallEventKind, CallOutcome, Disposition
from worker.twilio import call_bounds

NOW = datetime(2026, 12, 3, 12, 0, 0, 500_000, tzinfo=UTC)
SID = "CA" + "a" * 32


def form(status: str, **extra: str) -> dict[str, str]:
    return {"CallSid": SID, "CallStatus": status, **extra}


@pytest.mark.parametrize(
    ("status", "kind", "disposition"),
    [
        ("ringing", CallEventKind.RINGING, None),
        ("in-progress", CallEventKind.ANSWERED, None),
        ("completed", CallEventKind.ENDED, Disposition.ANSWERED),
        ("busy", CallEventKind.ENDED, Disposition.BUSY),
        ("no-answer", CallEventKind.ENDED, Disposition.NO_ANSWER),
        ("failed", CallEventKind.ENDED, Disposition.FAILED),
        ("canceled", CallEventKind.ENDED, Disposition.CANCELED),
    ],
)
def test_each_call_status_is_one_event(status, kind, disposition):
    e = call_event(7, form(status), NOW)
    assert (e.attempt_id, e.kind, e.disposition, e.at) == (7, kind, disposition, NOW)
    assert e.provider_call_id == SID


@pytest.mark.parametrize("status", ["initiated", "queued"])
def test_a_call_twilio_has_but_does_not_ring_yet_says_only_that_it_was_accepted(status):
    e = call_event(7, form(status), NOW)
    assert (e.kind, e.outcome, e.provider_call_id) == (
        CallEventKind.PLACED,
        CallOutcome.ACCEPTED,
        SID,
    )


@pytest.mark.parametrize(
    ("answered_by", "disposition"),
    [
        ("human", Disposition.ANSWERED),
        ("unknown", Disposition.ANSWERED),
        ("machine_start", Disposition.MACHINE),
        ("machine_end_beep", Disposition.MACHINE),
        ("fax", Disposition.MACHINE),
    ],
)
def test_a_completed_call_answered_by_a_machine_or_fax_ended_as_machine(answered_by, disposition):
    assert call_event(7, form("completed", AnsweredBy=answered_by), NOW).disposition == disposition


def test_a_failed_call_keeps_its_sip_code_and_twilio_error_and_a_strange_code_is_dropped():
    e = call_event(7, form("failed", SipResponseCode="404", ErrorCode="13224"), NOW)
    assert (e.sip_code, e.error) == (404, "13224")
    assert call_event(7, form("failed", SipResponseCode="99x"), NOW).sip_code is None
    assert call_event(7, form("failed", SipResponseCode="1000"), NOW).sip_code is None


def test_a_late_callback_keeps_the_time_it_happened_and_a_fresh_one_the_arrival_time():
    late = NOW - timedelta(seconds=30)
    stamp = format_datetime(late, usegmt=True)
    assert call_event(7, form("ringing", Timestamp=stamp), NOW).at == late.replace(microsecond=0)
    fresh = format_datetime(NOW, usegmt=True)  # whole seconds: too coarse, not used
    assert call_event(7, form("ringing", Timestamp=fresh), NOW).at == NOW
    assert call_event(7, form("ringing", Timestamp="yesterday"), NOW).at == NOW


def test_a_status_twilio_does_not_have_is_refused_naming_the_field():
    with pytest.raises(InvalidInput, match=r"^CallStatus: 'exploded' is not a status"):
        call_event(7, form("exploded"), NOW)


@pytest.mark.parametrize(
    ("max_seconds", "ring", "expected"),
    [
        (3600, 30, (30, 3570)),
        (60, 5, (5, 55)),
        (20, 30, (10, 10)),  # ringing takes at most half a short call
        (3600, 900, (600, 3000)),  # Twilio rings 600 s at most
        (2.5, 30, (1, 1)),  # each at least Twilio's 1 s
    ],
)
def test_ringing_and_talking_together_stay_within_the_calls_bound(max_seconds, ring, expected):
    assert call_bounds(max_seconds, ring) == expected


def test_the_callback_url_carries_the_attempt():
    assert twilio_status_url("https://x.example/cb", 42) == "https://x.example/cb?attempt=42"
