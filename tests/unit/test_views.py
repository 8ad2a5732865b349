"""How a campaign, a transition and a worker are shown, from rows built in memory."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from control.campaigns.views import (
    COUNTED_STATES,
    campaign_view,
    cap_view,
    dialing_view,
    transition_view,
    worker_view,
)
from shared.fleet import Record
from shared.models import Campaign, Transition
from shared.states import ContactState

CREATED = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
UNTIL = datetime(2026, 5, 4, 12, 15, tzinfo=UTC)
# A Monday in Paris, 10:00 (08:00 UTC).
MONDAY_TEN = datetime(2026, 5, 4, 8, 0, tzinfo=UTC)
WEEKENDS = {"days": ["sat", "sun"], "start": "10:00", "end": "16:00"}


def make_campaign(**over: Any) -> Campaign:
    fields: dict[str, Any] = {
        "id": 12,
        "org": "acme",
        "name": "Spring",
        "status": "running",
        "version": 3,
        "max_concurrency": 5,
        "max_lines": 7,
        "max_cps": None,
        "max_attempts": 2,
        "retry": {"busy": 600},
        "machine_detection": False,
        "timezone": "Europe/Paris",
        "calling_window": None,
        "paused_at": None,
        "pause_reason": None,
        "pause_source": None,
        "cap_concurrency": None,
        "cap_until": None,
        "monitor": None,
        "created_at": CREATED,
        "updated_at": CREATED,
    }
    return Campaign(**{**fields, **over})


CALLS = {"dispositions": {"answered": 3, "busy": 1}, "live": {"ringing": 2, "answered": 1}}


def counts(**n: int) -> dict[str, int]:
    return dict.fromkeys(COUNTED_STATES, 0) | n


def test_every_contact_state_is_counted():
    assert [s.value for s in ContactState] == COUNTED_STATES


def test_a_campaign_is_shown_with_its_settings_counts_and_allowed_actions():
    c = make_campaign(monitor={"consecutive_errors": 3})
    view = campaign_view(c, counts(pending=4, done=1), CALLS)
    assert view == {
        "id": 12,
        "name": "Spring",
        "status": "running",
        "version": 3,
        "max_concurrency": 5,
        "concurrency": 5,
        "cap": None,
        "max_lines": 7,
        "max_cps": None,
        "max_attempts": 2,
        "retry": {"busy": 600},
        "machine_detection": False,
        "timezone": "Europe/Paris",
        "calling_window": None,
        "paused_at": None,
        "pause_reason": None,
        "pause_source": None,
        "created_at": CREATED,
        "updated_at": CREATED,
        "counts": counts(pending=4, done=1),
        "dispositions": {"answered": 3, "busy": 1},
        "live": {"ringing": 2, "answered": 1},
        "allowed_actions": ["pause", "cancel"],
        "dialing": {"blocked_by": None},
        "monitor": {"consecutive_errors": 3},
    }


def test_a_campaigns_organisation_is_not_part_of_its_view():
    assert "org" not in campaign_view(make_campaign(), counts(), CALLS)


@pytest.mark.parametrize(
    ("status", "allowed"),
    [
        ("draft", ["start", "cancel"]),
        ("running", ["pause", "cancel"]),
        ("paused", ["resume", "cancel"]),
        ("cancelled", []),
        ("completed", []),
    ],
)
def test_the_allowed_actions_follow_the_state_machine(status: str, allowed: list[str]):
    assert (
        campaign_view(make_campaign(status=status), counts(), CALLS)["allowed_actions"] == allowed
    )


def test_a_temporary_cap_lowers_the_concurrency_shown_until_it_ends():
    view = campaign_view(make_campaign(cap_concurrency=2, cap_until=UNTIL), counts(), CALLS)
    assert view["max_concurrency"] == 5
    assert view["concurrency"] == 2
    assert view["cap"] == {"max_concurrency": 2, "until": UNTIL}


def test_a_cap_above_the_maximum_never_raises_the_concurrency():
    assert campaign_view(make_campaign(cap_concurrency=9), counts(), CALLS)["concurrency"] == 5


def test_a_paused_campaign_shows_when_why_and_by_whom():
    at = datetime(2026, 5, 4, 11, 30, tzinfo=UTC)
    c = make_campaign(status="paused", paused_at=at, pause_reason="calls fail", pause_source="api")
    view = campaign_view(c, counts(), CALLS)
    assert (view["paused_at"], view["pause_reason"], view["pause_source"]) == (
        at,
        "calls fail",
        "api",
    )
    assert view["dialing"] == {"blocked_by": None}  # only a running campaign is "blocked"


def test_cap_view_is_none_without_a_cap():
    assert cap_view(None, UNTIL) is None
    assert cap_view(3, None) == {"max_concurrency": 3, "until": None}


# -- dialing_view ---------------------------------------------------------------------------
def test_a_running_campaign_outside_its_window_is_blocked_until_it_opens():
    c = make_campaign(calling_window=WEEKENDS)
    assert dialing_view(c, MONDAY_TEN) == {
        "blocked_by": "calling_window",
        "opens_at": datetime(2026, 5, 9, 8, 0, tzinfo=UTC),  # Saturday 10:00 in Paris
    }


def test_a_running_campaign_inside_its_window_is_not_blocked():
    window = {"days": ["mon"], "start": "09:00", "end": "18:00"}
    assert dialing_view(make_campaign(calling_window=window), MONDAY_TEN) == {"blocked_by": None}


def test_the_window_is_read_in_the_campaigns_timezone():
    window = {"days": ["mon"], "start": "09:00", "end": "10:00"}
    assert dialing_view(make_campaign(calling_window=window), MONDAY_TEN) == {
        "blocked_by": "calling_window",  # 10:00 in Paris: just closed
        "opens_at": datetime(2026, 5, 11, 7, 0, tzinfo=UTC),
    }
    in_utc = make_campaign(calling_window=window, timezone="UTC")  # 08:00 UTC: not yet open
    assert dialing_view(in_utc, MONDAY_TEN)["opens_at"] == datetime(2026, 5, 4, 9, 0, tzinfo=UTC)


def test_a_window_that_never_opens_blocks_without_an_opening_time():
    c = make_campaign(calling_window={"days": [], "start": "09:00", "end": "18:00"})
    assert dialing_view(c, MONDAY_TEN) == {"blocked_by": "calling_window", "opens_at": None}
    # campaign_view reads the clock itself: a window with no day is closed at any time.
    assert campaign_view(c, counts(), CALLS)["dialing"] == {
        "blocked_by": "calling_window",
        "opens_at": None,
    }


@pytest.mark.parametrize("status", ["draft", "paused", "cancelled", "completed"])
def test_a_campaign_that_is_not_running_is_never_blocked_by_its_window(status: str):
    c = make_campaign(status=status, calling_window=WEEKENDS)
    assert dialing_view(c, MONDAY_TEN) == {"blocked_by": None}


# -- transition_view ------------------------------------------------------------------------
RELEASED = {
    "owner": "alice",
    "released": [
        {"kind": "operator", "rule": None, "placed_by": "bob"},
        {
            "kind": "monitor",
            "rule": "failure_ratio",
            "placed_by": "monitor:failure_ratio",
            "acknowledged": "failure_ratio",
        },
        {
            "kind": "compliance",
            "rule": None,
            "placed_by": "carol",
            "requested_by": "carol",
            "approved_by": "alice",
        },
    ],
}


def test_a_transition_is_shown_with_who_did_it_from_where_and_its_answer():
    at = datetime(2026, 5, 4, 11, 0, tzinfo=UTC)
    answered = datetime(2026, 5, 4, 11, 0, 1, tzinfo=UTC)
    t = Transition(
        campaign_id=12,
        version=4,
        from_status="paused",
        to_status="running",
        action="resume",
        actor="alice",
        source="api",
        reason="provider fixed",
        role="supervisor",
        source_ip="10.0.0.8",
        peer_ip="10.0.0.2",
        request_id="req-1",
        created_at=at,
        cap_concurrency=2,
        cap_until=UNTIL,
        answered_at=answered,
        drained=None,
        details=RELEASED,
    )
    assert transition_view(t) == {
        "version": 4,
        "from": "paused",
        "to": "running",
        "action": "resume",
        "actor": "alice",
        "source": "api",
        "reason": "provider fixed",
        "role": "supervisor",
        "source_ip": "10.0.0.8",
        "peer_ip": "10.0.0.2",
        "request_id": "req-1",
        "at": at,
        "cap": {"max_concurrency": 2, "until": UNTIL},
        "answered_at": answered,
        "drained": None,
        "details": RELEASED,
        "note": "resumed by alice (approved alice; released: operator of bob, monitor "
        "failure_ratio of monitor:failure_ratio acknowledged, compliance of carol (release "
        "asked by carol, approved by alice))",
    }


def test_a_transition_without_a_cap_shows_none():
    t = Transition(version=1, from_status="draft", to_status="running", action="start")
    assert transition_view(t)["cap"] is None


# -- worker_view ----------------------------------------------------------------------------
def test_a_worker_is_shown_with_its_heartbeat_fields_typed():
    info = {
        "host": "node-1",
        "pid": "4242",
        "threads": "8",
        "started": "1777881600.5",
        "last": "1777881660.25",
        "inflight": "3",
        "calls": "5",
        "applied": '{"12": 3}',
    }
    assert worker_view(Record.from_redis(info), "node-1-4242-ab12") == {
        "id": "node-1-4242-ab12",
        "host": "node-1",
        "pid": 4242,
        "threads": 8,
        "started": 1777881600.5,
        "last_heartbeat": 1777881660.25,
        "inflight": 3,
        "calls": 5,
        "applied": {"12": 3},
    }


def test_a_worker_that_reported_nothing_yet_shows_empty_fields():
    assert worker_view(Record.from_redis({}), "w") == {
        "id": "w",
        "host": None,
        "pid": None,
        "threads": None,
        "started": None,
        "last_heartbeat": None,
        "inflight": 0,
        "calls": 0,
        "applied": {},
    }
