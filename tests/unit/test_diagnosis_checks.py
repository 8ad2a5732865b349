"""Each "why isn't it dialing?" check on hand-built facts: its reason, or none.

:func:`healthy` is what :func:`control.campaigns.diagnosis.gather` finds for a campaign
that dials: running, contacts pending, its gate current, a live worker that acknowledged
the version, the broker up, the outbox empty. Each test changes one fact.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from control.campaigns.diagnosis import (
    CHECKS,
    RELAY_BACKLOG_AGE_S,
    Facts,
    Reason,
    broker_unreachable,
    concurrency_saturated,
    emergency_stop,
    frequency_limit,
    gate_out_of_date,
    lines_full,
    no_live_workers,
    no_pending_contacts,
    not_running,
    redis_unreachable,
    relay_backlog,
    workers_not_acknowledging,
)
from shared.gate import GateState

NOW = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
PAUSED_AT = datetime(2026, 5, 4, 11, 30, tzinfo=UTC)
STATES = ["pending", "queued", "dialing", "done", "failed", "retry_wait", "cancelled"]


def campaign(**over: Any) -> dict[str, Any]:
    counts = dict.fromkeys(STATES, 0)
    counts.update(pending=40, done=10)
    c: dict[str, Any] = {
        "id": 12,
        "status": "running",
        "version": 3,
        "counts": counts,
        "cap": None,
        "paused_at": None,
        "pause_reason": None,
        "pause_source": None,
    }
    return {**c, **over}


def healthy(**over: Any) -> Facts:
    f = Facts(
        campaign=campaign(),
        last_pause=None,
        now=NOW,
        gate=GateState("running", 3, 5),
        inflight=2,
        live_workers=("w1", "w2"),
        acks={"w1": 3, "w2": 3},
    )
    return replace(f, **over)


def reasons(f: Facts) -> list[str]:
    return [r.code for check in CHECKS if (r := check(f)) is not None]


def test_a_campaign_that_dials_has_no_reason_not_to():
    assert reasons(healthy()) == []


# -- not_running ----------------------------------------------------------------------------
def test_a_paused_campaign_says_who_paused_it_when_and_why_and_how_to_resume():
    f = healthy(
        campaign=campaign(status="paused", paused_at=PAUSED_AT, pause_reason="too many failures"),
        last_pause={"actor": "monitor:failure_ratio", "source": "system", "reason": "x"},
    )
    r = not_running(f)
    assert r is not None and r.code == "paused"
    assert r.evidence == (
        "paused at 2026-05-04T11:30:00+00:00 by monitor:failure_ratio (system): too many failures"
    )
    assert "dialgate resume 12" in r.fix and "--max-concurrency" in r.fix


def test_a_pause_without_its_transition_falls_back_to_the_campaigns_own_columns():
    f = healthy(campaign=campaign(status="paused", paused_at=PAUSED_AT, pause_source="api"))
    r = not_running(f)
    assert r is not None
    assert r.evidence.endswith("by ? (api): no reason given")


def test_a_draft_campaign_needs_starting():
    r = not_running(healthy(campaign=campaign(status="draft")))
    assert r == Reason(
        "draft", "The campaign was never started", "status draft", "dialgate start 12"
    )


@pytest.mark.parametrize("status", ["cancelled", "completed"])
def test_a_final_campaign_never_dials_again(status: str):
    r = not_running(healthy(campaign=campaign(status=status)))
    assert r is not None and r.code == status
    assert "(final)" in r.title and "new campaign" in r.fix


def test_a_running_campaign_is_running():
    assert not_running(healthy()) is None


# -- emergency_stop -------------------------------------------------------------------------
def test_an_emergency_stop_says_since_when_not_who_or_why_and_how_to_lift_it():
    stop = {"since": "2026-05-04T11:00:00Z", "by": "alice", "reason": "carrier incident"}
    r = emergency_stop(healthy(estop=stop))  # every reader of a campaign reads this
    assert r is not None and r.code == "emergency_stop"
    assert (
        r.evidence == "since 2026-05-04T11:00:00Z (who and why: a platform admin's dialgate status)"
    )
    assert r.fix == "when it is safe: dialgate estop --lift"


def test_an_emergency_stop_stored_as_plain_text_still_shows():
    # gather() turns a stop that is not JSON into {"reason": <the text>}.
    r = emergency_stop(healthy(estop={"reason": "stop"}))
    assert r is not None and r.evidence.startswith("since ? ") and "stop" not in r.evidence


def test_no_emergency_stop_no_reason():
    assert emergency_stop(healthy()) is None


# -- no_pending_contacts --------------------------------------------------------------------
def test_a_campaign_with_nothing_pending_or_queued_has_nothing_to_dial():
    counts = dict.fromkeys(STATES, 0) | {"done": 8, "failed": 2}
    r = no_pending_contacts(healthy(campaign=campaign(counts=counts)))
    assert r is not None and r.code == "no_pending_contacts"
    assert r.evidence == "0 pending, 0 queued, 0 waiting for a retry (done 8, failed 2)"
    assert r.fix == "import contacts: dialgate contacts import 12 FILE.csv"


def test_a_campaign_without_any_contact_says_so():
    r = no_pending_contacts(healthy(campaign=campaign(counts=dict.fromkeys(STATES, 0))))
    assert r is not None
    assert r.evidence == "0 pending, 0 queued, 0 waiting for a retry (no contacts at all)"


@pytest.mark.parametrize("state", ["pending", "queued"])
def test_one_pending_or_queued_contact_is_something_to_dial(state: str):
    counts = dict.fromkeys(STATES, 0) | {state: 1}
    assert no_pending_contacts(healthy(campaign=campaign(counts=counts))) is None


@pytest.mark.parametrize("status", ["cancelled", "completed"])
def test_a_final_campaign_is_not_also_blamed_for_its_empty_list(status: str):
    counts = dict.fromkeys(STATES, 0)
    assert no_pending_contacts(healthy(campaign=campaign(status=status, counts=counts))) is None


def test_contacts_waiting_for_their_retry_are_still_to_dial():
    counts = dict.fromkeys(STATES, 0) | {"retry_wait": 5, "failed": 1}
    assert no_pending_contacts(healthy(campaign=campaign(counts=counts))) is None


# -- lines_full --------------------------------------------------------------------------------
def test_every_line_taken_names_the_calls_of_unknown_fate_that_hold_them():
    assert lines_full(healthy(lines=4)) is None
    counts = {**campaign()["counts"], "unknown": 3}
    r = lines_full(healthy(lines=5, campaign=campaign(counts=counts)))
    assert r is not None and r.code == "lines_full"
    assert r.evidence.startswith("5 of 5 lines are held by calls up; the campaign has 3 calls")
    assert "DIALGATE_MAX_CALL_SECONDS" in r.evidence and "raise max_lines" in r.fix


# -- concurrency_saturated ------------------------------------------------------------------
def test_every_slot_taken_says_how_many_and_suggests_raising_the_limit():
    r = concurrency_saturated(healthy(inflight=5))
    assert r is not None and r.code == "concurrency_saturated"
    assert r.evidence == "5 dials in flight, concurrency limit 5"
    assert r.fix.endswith("raise max_concurrency if needed")


def test_a_temporary_cap_is_named_with_its_end():
    until = datetime(2026, 5, 4, 12, 15, tzinfo=UTC)
    f = healthy(
        campaign=campaign(cap={"max_concurrency": 2, "until": until}),
        gate=GateState("running", 3, 2),
        inflight=2,
    )
    r = concurrency_saturated(f)
    assert r is not None
    assert r.evidence == (
        "2 dials in flight, concurrency limit 2 (temporary cap until 2026-05-04T12:15:00+00:00)"
    )
    assert r.fix.endswith("or let the temporary cap lift")


def test_a_free_slot_or_an_unknown_gate_is_not_saturation():
    assert concurrency_saturated(healthy(inflight=4)) is None
    assert concurrency_saturated(healthy(gate=None, inflight=9)) is None


# -- redis_unreachable, and what Redis being away hides ---------------------------------------
def test_redis_away_is_the_one_reason_for_what_redis_holds():
    f = healthy(
        redis_error="ConnectionError: Connection refused",
        gate=None,
        inflight=0,
        live_workers=(),
        acks=None,
    )
    r = redis_unreachable(f)
    assert r is not None and r.evidence == "ConnectionError: Connection refused"
    assert no_live_workers(f) is None
    assert gate_out_of_date(f) is None
    assert workers_not_acknowledging(f) is None
    assert concurrency_saturated(f) is None
    assert reasons(f) == ["redis_unreachable"]


def test_redis_reachable_no_reason():
    assert redis_unreachable(healthy()) is None


# -- no_live_workers ------------------------------------------------------------------------
def test_no_heartbeat_means_no_live_worker():
    r = no_live_workers(healthy(live_workers=(), acks={}))
    assert r is not None and r.code == "no_live_workers"
    assert "dialgate worker" in r.fix


def test_one_live_worker_is_enough():
    assert no_live_workers(healthy(live_workers=("w1",))) is None


# -- workers_not_acknowledging --------------------------------------------------------------
def test_workers_behind_the_version_are_named_with_the_version_they_acknowledged():
    r = workers_not_acknowledging(healthy(acks={"w1": 3, "w2": 2}))
    assert r is not None and r.code == "workers_not_acknowledging"
    assert r.evidence == "1 of 2 live workers behind version 3: w2@2"


def test_a_worker_that_never_acknowledged_counts_as_version_zero():
    r = workers_not_acknowledging(healthy(acks={"w1": 3}))
    assert r is not None and r.evidence.endswith("w2@0")


def test_at_most_five_lagging_workers_are_shown():
    live = tuple(f"w{i}" for i in range(8))
    r = workers_not_acknowledging(healthy(live_workers=live, acks={}))
    assert r is not None
    assert r.evidence == "8 of 8 live workers behind version 3: w0@0, w1@0, w2@0, w3@0, w4@0"


def test_a_worker_ahead_of_the_database_is_not_behind():
    assert workers_not_acknowledging(healthy(acks={"w1": 4, "w2": 3})) is None


def test_without_live_workers_nobody_is_blamed_for_lagging():
    assert workers_not_acknowledging(healthy(live_workers=(), acks={})) is None


# -- gate_out_of_date -----------------------------------------------------------------------
def test_a_missing_gate_names_the_database_version_and_the_reconciler():
    r = gate_out_of_date(healthy(gate=None))
    assert r is not None and r.code == "gate_missing"
    assert r.evidence == "no gate for campaign 12 (database at version 3)"
    assert "dialgate control --role loops" in r.fix


@pytest.mark.parametrize(
    ("gate", "evidence"),
    [
        (GateState("running", 2, 5), "gate running@2, database running@3"),
        (GateState("paused", 3, 5), "gate paused@3, database running@3"),
    ],
)
def test_a_gate_behind_the_database_in_version_or_status_is_shown_beside_it(
    gate: GateState, evidence: str
):
    r = gate_out_of_date(healthy(gate=gate))
    assert r is not None and r.code == "gate_behind" and r.evidence == evidence


def test_a_gate_ahead_of_the_database_version_is_not_behind():
    assert gate_out_of_date(healthy(gate=GateState("running", 4, 5))) is None


# -- broker_unreachable ---------------------------------------------------------------------
def test_the_broker_away_is_a_reason_with_its_error():
    r = broker_unreachable(healthy(broker_error="AMQPConnectionError: refused"))
    assert r is not None and r.code == "broker_unreachable"
    assert r.evidence == "AMQPConnectionError: refused"


def test_the_broker_up_no_reason():
    assert broker_unreachable(healthy()) is None


# -- relay_backlog --------------------------------------------------------------------------
def test_an_outbox_older_than_the_threshold_means_the_relay_is_behind():
    r = relay_backlog(healthy(outbox_unsent=14, outbox_oldest_s=RELAY_BACKLOG_AGE_S))
    assert r is not None and r.code == "relay_backlog"
    assert r.evidence == "14 events unsent, the oldest for 5 s"


def test_a_young_or_empty_outbox_is_not_a_backlog():
    assert relay_backlog(healthy(outbox_unsent=3, outbox_oldest_s=4.9)) is None
    assert relay_backlog(healthy(outbox_unsent=0, outbox_oldest_s=None)) is None


# -- several at once ------------------------------------------------------------------------
def test_every_reason_that_holds_is_listed_in_the_order_of_the_checks():
    f = healthy(
        campaign=campaign(status="paused", paused_at=PAUSED_AT),
        estop={"reason": "stop"},
        gate=GateState("running", 3, 5),  # the gate still says running: behind
        broker_error="refused",
        outbox_unsent=2,
        outbox_oldest_s=60.0,
    )
    assert reasons(f) == [
        "paused",
        "emergency_stop",
        "gate_behind",
        "broker_unreachable",
        "relay_backlog",
    ]


# -- frequency_limit --------------------------------------------------------------------------
def test_contacts_held_back_by_the_frequency_limit_say_how_many_the_limit_and_when():
    held = {"limit": {"calls": 3, "hours": 24}, "contacts": 7, "next_at": "2026-05-04T13:00:00"}
    r = frequency_limit(healthy(frequency=held))
    assert r is not None and r.code == "frequency_limit"
    assert r.evidence.startswith("7 pending contacts whose number was already called 3 times")
    assert "3 calls per number per 24 h" in r.evidence and r.evidence.endswith("13:00:00")
    assert "dialgate org set --max-calls-per-number" in r.fix


@pytest.mark.parametrize(
    "held",
    [
        None,
        {"limit": None, "contacts": 0, "next_at": None},
        {"limit": {"calls": 3, "hours": 24}, "contacts": 0, "next_at": None},
    ],
)
def test_a_limit_holding_no_contact_back_is_no_reason(held: dict[str, Any] | None):
    assert frequency_limit(healthy(frequency=held)) is None
