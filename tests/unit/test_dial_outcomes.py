"""From a provider's answer or a denial to the attempt's and the contact's states.

Pure parts of the dial path: :class:`worker.ledger.Outcome` (done / failed / retry_wait,
the retry delay), the denial tables of :mod:`worker.runtime` and the do-not-call verdict of
:mod:`worker.checks`. (:meth:`Outcome.cancelled` and :meth:`Runtime.park` read or write the
database and are left to the integration tests.)
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.dnc import READY, DncSet
from shared.keys import Keys
from shared.messages import DialArgs
from shared.states import AttemptState, ContactState, Status
from worker.checks import RETRY, Denial, DialChecks
from worker.ledger import Outcome
from worker.runtime import ENDS, PER_CONTACT

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


def outcome(accepted: bool, **over: Any) -> Outcome:
    result = "accepted" if accepted else "provider_error"
    return Outcome(args(**over), 4, accepted, result, "sim-1" if accepted else None, T)


def test_an_accepted_call_is_done_for_the_attempt_and_the_contact():
    o = outcome(True, attempt_no=1, max_attempts=3)
    assert not o.retries
    assert o.attempt_row() == {
        "a_id": 7,
        "st": AttemptState.DONE.value,
        "o": "accepted",
        "call": "sim-1",
        "t": T,
        "v": 4,
    }
    assert o.contact_row(cancelled=False) == {"k_id": 70, "st": "done", "r": None, "t": T}


def test_a_refused_call_on_the_last_attempt_fails_the_contact():
    o = outcome(False, attempt_no=2, max_attempts=2, retry_backoff_s=60)
    assert not o.retries
    assert o.attempt_row()["st"] == AttemptState.FAILED.value
    assert o.contact_row(cancelled=False) == {"k_id": 70, "st": "failed", "r": None, "t": T}


def test_a_campaign_without_retries_fails_the_contact_at_its_first_refusal():
    o = outcome(False)  # the message's defaults: one attempt
    assert not o.retries
    assert o.contact_row(cancelled=False)["st"] == ContactState.FAILED.value


@pytest.mark.parametrize(("attempt_no", "delay_s"), [(1, 60), (2, 120), (3, 240), (4, 480)])
def test_a_refused_call_with_calls_left_retries_after_a_doubling_backoff(
    attempt_no: int, delay_s: int
):
    o = outcome(False, attempt_no=attempt_no, max_attempts=5, retry_backoff_s=60)
    assert o.retries
    assert o.attempt_row()["st"] == AttemptState.FAILED.value  # the attempt itself failed
    row = o.contact_row(cancelled=False)
    assert row["st"] == ContactState.RETRY_WAIT.value
    assert row["r"] == T + timedelta(seconds=delay_s)


def test_a_zero_backoff_retries_at_once():
    row = outcome(False, max_attempts=2, retry_backoff_s=0).contact_row(cancelled=False)
    assert row["st"] == "retry_wait" and row["r"] == T


def test_a_retry_of_a_cancelled_campaign_cancels_the_contact_instead():
    o = outcome(False, attempt_no=1, max_attempts=3, retry_backoff_s=60)
    assert o.contact_row(cancelled=True) == {"k_id": 70, "st": "cancelled", "r": None, "t": T}


def test_a_cancel_does_not_change_what_a_finished_call_became():
    assert outcome(True, max_attempts=3).contact_row(cancelled=True)["st"] == "done"
    assert outcome(False, max_attempts=1).contact_row(cancelled=True)["st"] == "failed"


def test_an_attempt_number_past_the_policy_never_retries():
    # A campaign whose max_attempts was lowered after the attempt was queued.
    o = outcome(False, attempt_no=4, max_attempts=2, retry_backoff_s=60)
    assert not o.retries and o.contact_row(cancelled=False)["st"] == "failed"


def test_attempt_and_contact_share_the_names_of_their_final_states():
    # contact_row() writes the attempt's state to the contact when there is no retry.
    for name in ("DONE", "FAILED", "CANCELLED", "UNKNOWN", "BLOCKED_DNC"):
        assert AttemptState[name].value == ContactState[name].value


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
        "aborted",
    ],
)
def test_every_other_denial_parks_the_attempt_and_sends_the_contact_back_to_pending(
    reason: str,
):
    assert ends(reason) == (AttemptState.PARKED, ContactState.PENDING)


def test_only_the_contacts_own_denials_spare_the_rest_of_its_message():
    assert {"dnc", "dnc_unknown", "calling_window"} == PER_CONTACT
    gate_reasons = ["paused", "cancelled", "gate_missing", "gate_behind", "concurrency", "estop"]
    assert not PER_CONTACT & set(gate_reasons)


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
