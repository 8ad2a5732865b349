"""From a denial to the attempt's and the contact's states.

Pure parts of the dial path: the denial tables of :mod:`worker.runtime`, the do-not-call and
frequency verdicts of :mod:`worker.checks` (:meth:`Runtime.park` writes the database and is
left to the integration tests; what a call's events do is in ``test_call_events.py``).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from sqlalchemy.exc import OperationalError

from shared.dnc import READY, DncSet
from shared.frequency import Limit
from shared.keys import Keys
from shared.messages import DialArgs
from shared.states import AttemptState, ContactState, Status
from worker.checks import RETRY, Denial, DialChecks
from worker.runtime import ENDS

T = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)


def args(**over: Any) -> DialArgs:
    base: dict[str, Any] = {
        "attempt_id": 7,
        "campaign_id": 3,
        "contact_id": 70,
        "phone": "+33612345678",
        "epoch": "e1",
    }
    return DialArgs(**{**base, **over})


# -- denials --------------------------------------------------------------------------------
def ends(reason: str) -> tuple[AttemptState, ContactState]:
    """What :meth:`worker.runtime.Runtime.park` does with a denial's reason."""
    return ENDS.get(reason, (AttemptState.PARKED, ContactState.PENDING))


def test_a_cancelled_gate_ends_the_contact_cancelled():
    assert ends(Status.CANCELLED.value) == (AttemptState.CANCELLED, ContactState.CANCELLED)


def test_a_number_on_the_do_not_call_list_ends_the_contact_blocked():
    assert ends("dnc") == (AttemptState.BLOCKED_DNC, ContactState.BLOCKED_DNC)


@pytest.mark.parametrize(
    "reason",
    [
        "paused",
        "draft",
        "completed",
        "gate_missing",
        "gate_behind",
        "concurrency",
        "estop",
        "redis_error",
        "calling_window",
        "dnc_unknown",
        "frequency",
        "frequency_unknown",
        "aborted",
    ],
)
def test_every_other_denial_parks_the_attempt_and_sends_the_contact_back_to_pending(
    reason: str,
):
    assert ends(reason) == (AttemptState.PARKED, ContactState.PENDING)


# -- the do-not-call verdict ----------------------------------------------------------------
def checks() -> DialChecks:
    # The verdict reads neither the database nor Redis: only the clock.
    return DialChecks(engine=None, dnc=None, clock=lambda: T)  # type: ignore[arg-type]


def test_a_listed_number_is_denied_for_good():
    assert checks().dnc_verdict((True, True)) == Denial("dnc")


def test_a_number_not_listed_goes_on():
    assert checks().dnc_verdict((False, True)) is None


@pytest.mark.parametrize("members", [None, (False, False), (True, False)])
def test_an_unknown_list_or_an_unreachable_redis_denies_and_tries_again_shortly(
    members: tuple[bool, bool] | None,
):
    assert checks().dnc_verdict(members) == Denial("dnc_unknown", T + RETRY)


def test_the_probes_ask_for_the_number_and_for_the_ready_marker_of_its_organisation():
    dnc = DncSet(None, Keys("ns"))  # type: ignore[arg-type]
    assert dnc.probes("acme", "+33612345678") == [
        ("ns:{dnc:acme}", "+33612345678"),
        ("ns:{dnc:acme}", READY),
    ]
    assert DncSet.verdict((True, True)) is True
    assert DncSet.verdict((False, True)) is False
    assert DncSet.verdict((True, False)) is None


# -- the frequency verdicts -------------------------------------------------------------------
class Counts:
    """The frequency script's answers, as given (None: unknown; an exception: raised)."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.asked: list[list[tuple[int, str]]] = []

    def take(self, org: str, limit: Limit, dials: list[tuple[int, str]]) -> Any:
        self.asked.append(dials)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


class DatabaseAway:
    def connect(self) -> None:
        raise OperationalError("SELECT", {}, Exception("away"))


def frequency_checks(limit: Limit | None, answer: Any) -> tuple[DialChecks, Counts]:
    counts = Counts(answer)
    c = DialChecks(DatabaseAway(), None, lambda: T, counts)  # type: ignore[arg-type]
    c._windows[3] = (time.monotonic(), "acme", "UTC", None, limit)  # read just now
    return c, counts


def test_without_a_limit_no_slot_is_asked_for():
    c, counts = frequency_checks(None, None)
    assert c.frequency(3, [args(), args(attempt_id=8)]) == [None, None]
    assert counts.asked == []


def test_a_number_at_the_limit_waits_until_a_slot_is_free_rounded_up_to_a_second():
    c, counts = frequency_checks(Limit(3, 24), [0, 1_500, 3_600_000])
    three = [args(), args(attempt_id=8, phone="+33612345679"), args(attempt_id=9)]
    assert c.frequency(3, three) == [
        None,
        Denial("frequency", T + timedelta(seconds=2)),
        Denial("frequency", T + timedelta(hours=1)),
    ]
    assert counts.asked == [[(7, "+33612345678"), (8, "+33612345679"), (9, "+33612345678")]]


@pytest.mark.parametrize("answer", [None, redis.ConnectionError("away")])
def test_unknown_counts_or_an_unreachable_redis_deny_every_dial_and_try_again_shortly(
    answer: Any,
):
    c, _ = frequency_checks(Limit(3, 24), answer)
    assert (
        c.frequency(3, [args(), args(attempt_id=8)]) == [Denial("frequency_unknown", T + RETRY)] * 2
    )
