"""Every campaign state-machine transition, legal and illegal."""

from __future__ import annotations

import itertools

import pytest

from shared.errors import IllegalTransition
from shared.states import (
    OPERATOR_ACTIONS,
    Action,
    DenyReason,
    Status,
    allowed_actions,
    next_status,
)

LEGAL = {
    (Status.DRAFT, Action.START): Status.RUNNING,
    (Status.RUNNING, Action.PAUSE): Status.PAUSED,
    (Status.PAUSED, Action.RESUME): Status.RUNNING,
    (Status.DRAFT, Action.CANCEL): Status.CANCELLED,
    (Status.RUNNING, Action.CANCEL): Status.CANCELLED,
    (Status.PAUSED, Action.CANCEL): Status.CANCELLED,
    (Status.RUNNING, Action.COMPLETE): Status.COMPLETED,
    (Status.RUNNING, Action.LIFT_CAP): Status.RUNNING,
    (Status.PAUSED, Action.LIFT_CAP): Status.PAUSED,
    (Status.PAUSED, Action.HOLD): Status.PAUSED,
    (Status.RUNNING, Action.CANARY_PASSED): Status.RUNNING,
}
ALL = list(itertools.product(Status, Action))


@pytest.mark.parametrize(("status", "action"), [k for k in ALL if k in LEGAL])
def test_a_legal_transition_leads_to_its_state(status, action):
    assert next_status(status, action) is LEGAL[(status, action)]


@pytest.mark.parametrize(("status", "action"), [k for k in ALL if k not in LEGAL])
def test_an_illegal_transition_is_refused_with_what_is_allowed(status, action):
    with pytest.raises(IllegalTransition) as err:
        next_status(status, action)
    assert err.value.status_code == 409
    message = err.value.message
    assert f"cannot {action.value} a campaign that is {status.value}" in message
    allowed = [a.value for a in allowed_actions(status)]
    assert ("allowed: " + (", ".join(allowed) or "none (a final state)")) in message


def test_final_states_allow_nothing_and_complete_is_never_offered_to_operators():
    assert allowed_actions(Status.CANCELLED) == []
    assert allowed_actions(Status.COMPLETED) == []
    assert Action.COMPLETE not in allowed_actions(Status.RUNNING)
    assert Action.LIFT_CAP not in allowed_actions(Status.PAUSED)
    assert allowed_actions(Status.RUNNING) == [Action.PAUSE, Action.CANCEL]
    assert allowed_actions(Status.PAUSED) == [Action.RESUME, Action.CANCEL]


def test_every_status_but_running_is_a_reason_the_gate_denies_a_dial():
    # The gate's claim answers the gate's status when it is not running.
    assert {s for s in Status if s is not Status.RUNNING} <= set(DenyReason)


def test_the_operator_may_take_every_action_but_the_system_ones():
    assert OPERATOR_ACTIONS == (Action.START, Action.PAUSE, Action.RESUME, Action.CANCEL)
