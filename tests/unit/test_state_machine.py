"""The state machine as a whole (test_states.py walks every pair): its messages word for
word, the shape of the graph, and the sets the write path relies on."""

from __future__ import annotations

import pytest

from shared.errors import Conflict, IllegalTransition
from shared.states import (
    CLOSING,
    SYSTEM_ONLY,
    TERMINAL,
    TRANSITIONS,
    Action,
    Status,
    allowed_actions,
    next_status,
)


@pytest.mark.parametrize(
    ("status", "action", "message"),
    [
        (
            Status.RUNNING,
            Action.RESUME,
            "cannot resume a campaign that is running; allowed: pause, cancel",
        ),
        (
            Status.PAUSED,
            Action.PAUSE,
            "cannot pause a campaign that is paused; allowed: resume, cancel",
        ),
        (
            Status.DRAFT,
            Action.PAUSE,
            "cannot pause a campaign that is draft; allowed: start, cancel",
        ),
        (
            Status.PAUSED,
            Action.COMPLETE,
            "cannot complete a campaign that is paused; allowed: resume, cancel",
        ),
        (
            Status.COMPLETED,
            Action.START,
            "cannot start a campaign that is completed; allowed: none (a final state)",
        ),
        (
            Status.CANCELLED,
            Action.CANCEL,
            "cannot cancel a campaign that is cancelled; allowed: none (a final state)",
        ),
        (
            Status.DRAFT,
            Action.LIFT_CAP,
            "cannot lift_cap a campaign that is draft; allowed: start, cancel",
        ),
    ],
)
def test_a_refused_transition_says_what_is_allowed_instead(
    status: Status, action: Action, message: str
):
    with pytest.raises(IllegalTransition) as err:
        next_status(status, action)
    assert err.value.message == message
    assert str(err.value) == message
    assert isinstance(err.value, Conflict)
    assert (err.value.status_code, err.value.code) == (409, "illegal_transition")


def test_a_draft_campaign_may_start_or_cancel_only():
    assert allowed_actions(Status.DRAFT) == [Action.START, Action.CANCEL]


def test_a_paused_campaign_may_resume_or_cancel_only():
    assert allowed_actions(Status.PAUSED) == [Action.RESUME, Action.CANCEL]


def test_the_system_only_actions_are_never_offered_from_any_state():
    for status in Status:
        assert not set(allowed_actions(status)) & SYSTEM_ONLY
    assert {Action.COMPLETE, Action.LIFT_CAP, Action.CANARY_PASSED, Action.HOLD} == SYSTEM_ONLY


def test_the_final_states_are_exactly_those_no_action_leaves():
    left = {s for sources, _ in TRANSITIONS.values() for s in sources}
    assert set(Status) - left == TERMINAL == {Status.CANCELLED, Status.COMPLETED}


def test_every_state_can_be_reached_from_draft():
    seen, todo = {Status.DRAFT}, [Status.DRAFT]
    while todo:
        status = todo.pop()
        for action in Action:
            try:
                after = next_status(status, action)
            except IllegalTransition:
                continue
            if after not in seen:
                seen.add(after)
                todo.append(after)
    assert seen == set(Status)


def test_lifting_a_cap_keeps_the_status():
    assert next_status(Status.RUNNING, Action.LIFT_CAP) is Status.RUNNING
    assert next_status(Status.PAUSED, Action.LIFT_CAP) is Status.PAUSED


def test_the_closing_actions_are_the_operators_ways_out_of_running():
    # complete leaves running too, but only once nothing is left to dial: no drain to wait for
    out = {a for a in Action if next_status_or_none(Status.RUNNING, a) not in (None, "running")}
    assert out - SYSTEM_ONLY == CLOSING - {Action.HOLD} == {Action.PAUSE, Action.CANCEL}
    # a hold closes a gate that is closed already: its answer waits for the drain too
    assert Action.HOLD in CLOSING


def next_status_or_none(status: Status, action: Action) -> Status | None:
    try:
        return next_status(status, action)
    except IllegalTransition:
        return None


def test_the_state_machine_takes_its_values_as_strings_too():
    # Rows store plain strings; StrEnum members compare equal to them.
    assert next_status(Status("paused"), Action("resume")) == "running"
    with pytest.raises(ValueError):
        Status("open")
