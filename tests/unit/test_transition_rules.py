"""The rules a transition meets before anything is written: a temporary cap's columns
(:func:`_cap_values`) and the preconditions checked at the top of ``transition``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from control.campaigns.transitions import Cap, Transitions, _cap_values
from shared.errors import ConfirmationRequired, Conflict, InvalidInput
from shared.models import Campaign
from shared.states import Action, Source

NOW = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)


def campaign(**over: Any) -> Campaign:
    fields: dict[str, Any] = {"id": 12, "max_concurrency": 5, "cap_concurrency": None}
    return Campaign(**{**fields, "cap_until": None, **over})


def test_a_capped_resume_sets_the_cap_until_its_minutes_are_up():
    values = _cap_values(campaign(), Action.RESUME, Cap(2, 15), NOW)
    assert values == {"cap_concurrency": 2, "cap_until": NOW + timedelta(minutes=15)}


def test_a_cap_may_equal_the_campaigns_maximum_but_not_exceed_it():
    assert _cap_values(campaign(), Action.RESUME, Cap(5, 1), NOW)["cap_concurrency"] == 5
    with pytest.raises(InvalidInput) as err:
        _cap_values(campaign(), Action.RESUME, Cap(6, 1), NOW)
    assert err.value.field == "max_concurrency"
    assert "at most the campaign's max_concurrency (5), got 6" in err.value.message


def test_a_pause_keeps_the_cap_it_found():
    c = campaign(cap_concurrency=2, cap_until=NOW + timedelta(minutes=5))
    assert _cap_values(c, Action.PAUSE, None, NOW) == {}


@pytest.mark.parametrize("action", [Action.RESUME, Action.START, Action.CANCEL, Action.COMPLETE])
def test_any_other_transition_clears_the_cap(action: Action):
    c = campaign(cap_concurrency=2, cap_until=NOW + timedelta(minutes=5))
    assert _cap_values(c, action, None, NOW) == {"cap_concurrency": None, "cap_until": None}


def test_a_cap_is_lifted_once_its_time_is_up_and_not_before():
    due = campaign(cap_concurrency=2, cap_until=NOW)
    assert _cap_values(due, Action.LIFT_CAP, None, NOW) == {
        "cap_concurrency": None,
        "cap_until": None,
    }
    early = campaign(cap_concurrency=2, cap_until=NOW + timedelta(seconds=1))
    with pytest.raises(Conflict, match="campaign 12 has no temporary cap whose time is up"):
        _cap_values(early, Action.LIFT_CAP, None, NOW)
    with pytest.raises(Conflict):
        _cap_values(campaign(), Action.LIFT_CAP, None, NOW)


# -- refused before any I/O ----------------------------------------------------------------
# An instance without database, gate or executor: each call below must be refused by the
# preconditions alone (reaching the write path would fail with AttributeError instead).
BARE = Transitions.__new__(Transitions)


@pytest.mark.parametrize("action", [Action.PAUSE, Action.START, Action.CANCEL])
def test_a_temporary_cap_is_refused_on_anything_but_resume(action: Action):
    with pytest.raises(InvalidInput) as err:
        BARE.transition(12, action, actor="alice", source=Source.API, confirm=True, cap=Cap(2, 10))
    assert err.value.field == "max_concurrency"


@pytest.mark.parametrize("source", list(Source))
def test_a_cancel_without_confirmation_is_refused(source: Source):
    with pytest.raises(ConfirmationRequired) as err:
        BARE.transition(12, Action.CANCEL, actor="alice", source=source)
    assert err.value.field == "confirm" and err.value.status_code == 422


@pytest.mark.parametrize("reason", [None, "", "   "])
def test_a_system_pause_must_say_why(reason: str | None):
    with pytest.raises(InvalidInput) as err:
        BARE.transition(12, Action.PAUSE, actor="monitor", source=Source.SYSTEM, reason=reason)
    assert err.value.field == "reason"
