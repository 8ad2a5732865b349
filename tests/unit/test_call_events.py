"""The one function that applies a call's events (:func:`shared.calls.apply_events`), on an
in-memory SQLite database: idempotent, monotonic, strict, and what an ended call does to its
contact (retry by disposition, bounded by ``max_attempts``)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, create_engine, insert, select
from sqlalchemy.dialects import postgresql, sqlite

from shared.calls import SET_ATTEMPT, SET_CONTACT, CallEvent, apply_events
from shared.errors import Conflict, NotFound
from shared.models import Attempt, Base, Campaign, Contact
from shared.states import CallEventKind, CallOutcome, Disposition

T = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
PLACED, RINGING, ANSWERED, ENDED = (
    CallEventKind.PLACED,
    CallEventKind.RINGING,
    CallEventKind.ANSWERED,
    CallEventKind.ENDED,
)


@pytest.fixture
def db() -> Iterator[Connection]:
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    with engine.begin() as conn:
        yield conn
    engine.dispose()


def dialing(
    db: Connection,
    *,
    retry: dict[str, float] | None = None,
    max_attempts: int = 3,
    attempt_no: int = 1,
    status: str = "running",
    state: str = "dialing",
) -> int:
    """A campaign with one contact whose attempt is in ``state``; the attempt's id."""
    cid = db.execute(
        insert(Campaign).values(
            name="c", status=status, retry=retry, max_attempts=max_attempts, max_lines=4
        )
    ).inserted_primary_key[0]
    kid = db.execute(
        insert(Contact).values(campaign_id=cid, phone="+33612345678", state="dialing")
    ).inserted_primary_key[0]
    return int(
        db.execute(
            insert(Attempt).values(
                campaign_id=cid, contact_id=kid, state=state, attempt_no=attempt_no, started_at=T
            )
        ).inserted_primary_key[0]
    )


def ev(aid: int, kind: CallEventKind, s: float = 0, **kw: Any) -> CallEvent:
    return CallEvent(aid, kind, at=T + timedelta(seconds=s), **kw)


def attempt(db: Connection, aid: int) -> dict[str, Any]:
    return dict(db.execute(select(Attempt).where(Attempt.id == aid)).mappings().one())


def contact(db: Connection, aid: int) -> dict[str, Any]:
    q = select(Contact).join(Attempt, Attempt.contact_id == Contact.id).where(Attempt.id == aid)
    return dict(db.execute(q).mappings().one())


def test_a_whole_life_records_its_times_durations_and_disposition(db: Connection):
    aid = dialing(db)
    events = [
        ev(aid, PLACED, 0.1, outcome=CallOutcome.ACCEPTED, provider_call_id="c-1", gate_version=4),
        ev(aid, RINGING, 0.2),
        ev(aid, ANSWERED, 2.5),
        ev(aid, ENDED, 10.5, disposition=Disposition.ANSWERED, sip_code=200),
    ]
    applied = apply_events(db, events)
    assert [a.state if a else None for a in applied] == ["dialing", "ringing", "answered", "ended"]
    assert [a.ended for a in applied if a] == [False, False, False, True]
    a = attempt(db, aid)
    assert (a["state"], a["disposition"], a["sip_code"], a["outcome"]) == (
        "ended",
        "answered",
        200,
        "accepted",
    )
    assert (a["provider_call_id"], a["gate_version"]) == ("c-1", 4)
    assert (a["ring_ms"], a["talk_ms"]) == (2500, 8000)
    assert a["finished_at"] == T + timedelta(seconds=10.5)
    assert contact(db, aid)["state"] == "done"


def test_a_duplicate_event_changes_nothing(db: Connection):
    aid = dialing(db)
    apply_events(db, [ev(aid, RINGING, 1)])
    again = apply_events(db, [ev(aid, RINGING, 3)])
    assert again[0] is not None and not again[0].applied
    assert attempt(db, aid)["ringing_at"] == T + timedelta(seconds=1)


def test_a_late_ringing_never_overwrites_answered(db: Connection):
    aid = dialing(db)
    apply_events(db, [ev(aid, ANSWERED, 2)])
    late = apply_events(db, [ev(aid, RINGING, 1)])
    assert late[0] is not None and not late[0].applied
    a = attempt(db, aid)
    assert (a["state"], a["ringing_at"]) == ("answered", None)


def test_nothing_overwrites_a_final_disposition(db: Connection):
    aid = dialing(db)
    apply_events(db, [ev(aid, ENDED, 1, disposition=Disposition.BUSY, sip_code=486)])
    later = apply_events(
        db,
        [ev(aid, ANSWERED, 2), ev(aid, ENDED, 3, disposition=Disposition.ANSWERED, sip_code=200)],
    )
    assert all(a is not None and not a.applied and not a.ended for a in later)
    a = attempt(db, aid)
    assert (a["state"], a["disposition"], a["sip_code"]) == ("ended", "busy", 486)


def test_an_event_for_an_unknown_attempt_is_refused_and_nothing_is_stored(db: Connection):
    aid = dialing(db)
    with pytest.raises(NotFound, match=f"attempt {aid + 1} does not exist"):
        apply_events(db, [ev(aid, RINGING), ev(aid + 1, RINGING)])
    assert attempt(db, aid)["state"] == "dialing"


@pytest.mark.parametrize("state", ["queued", "parked", "cancelled", "blocked_dnc"])
def test_an_event_for_an_attempt_never_dialed_is_refused(db: Connection, state: str):
    aid = dialing(db, state=state)
    with pytest.raises(Conflict, match=f"never dialed \\(it is {state}\\)"):
        apply_events(db, [ev(aid, ENDED, disposition=Disposition.ANSWERED)])
    assert attempt(db, aid)["state"] == state


def test_the_workers_lenient_mode_skips_what_strict_mode_refuses(db: Connection):
    aid = dialing(db)
    queued = dialing(db, state="queued")
    applied = apply_events(
        db, [ev(aid + 99, RINGING), ev(queued, RINGING), ev(aid, RINGING)], False
    )
    assert applied[:2] == [None, None]
    assert applied[2] is not None and applied[2].applied


def test_the_recovery_sweeps_unknown_still_takes_the_calls_end_and_nothing_else(db: Connection):
    aid = dialing(db, state="unknown")
    assert not apply_events(db, [ev(aid, RINGING)])[0].applied  # type: ignore[union-attr]
    end = apply_events(db, [ev(aid, ENDED, 4, disposition=Disposition.NO_ANSWER)])[0]
    assert end is not None and end.ended
    assert attempt(db, aid)["disposition"] == "no_answer"


def test_what_the_provider_answered_at_placement_fills_in_even_after_the_end(db: Connection):
    # The far end's busy may be written before the worker's record of the placement.
    aid = dialing(db)
    apply_events(db, [ev(aid, ENDED, 1, disposition=Disposition.BUSY)])
    placed = apply_events(db, [ev(aid, PLACED, outcome=CallOutcome.ACCEPTED, provider_call_id="x")])
    assert placed[0] is not None and placed[0].applied and not placed[0].ended
    a = attempt(db, aid)
    assert (a["state"], a["outcome"], a["provider_call_id"]) == ("ended", "accepted", "x")


@pytest.mark.parametrize(
    ("disposition", "retry", "attempt_no", "state", "delay"),
    [
        (Disposition.BUSY, {"busy": 600}, 1, "retry_wait", 600),
        (Disposition.NO_ANSWER, {"busy": 600, "no_answer": 3600}, 2, "retry_wait", 3600),
        (Disposition.BUSY, {"busy": 600}, 3, "failed", None),  # max_attempts 3 reached
        (Disposition.DECLINED, {"busy": 600}, 1, "failed", None),  # not listed: final
        (Disposition.FAILED, None, 1, "failed", None),  # no retry policy at all
        (Disposition.MACHINE, {"machine": 60}, 1, "done", None),  # reached: never retried
        (Disposition.ANSWERED, {"answered": 60}, 1, "done", None),
    ],
)
def test_an_ended_call_settles_its_contact_by_the_campaigns_retry_policy(
    db: Connection,
    disposition: Disposition,
    retry: dict[str, float] | None,
    attempt_no: int,
    state: str,
    delay: int | None,
):
    aid = dialing(db, retry=retry, attempt_no=attempt_no)
    apply_events(db, [ev(aid, ENDED, 5, disposition=disposition)])
    k = contact(db, aid)
    assert k["state"] == state
    want = None if delay is None else T + timedelta(seconds=5 + delay)
    assert k["retry_at"] == want


def test_a_retry_of_a_cancelled_campaign_cancels_the_contact_instead(db: Connection):
    aid = dialing(db, retry={"busy": 600}, status="cancelled")
    apply_events(db, [ev(aid, ENDED, disposition=Disposition.BUSY)])
    assert contact(db, aid)["state"] == "cancelled"


def test_an_ended_event_needs_a_disposition_and_only_it_has_one():
    with pytest.raises(ValueError, match="disposition"):
        CallEvent(1, ENDED)
    with pytest.raises(ValueError, match="disposition"):
        CallEvent(1, RINGING, disposition=Disposition.BUSY)


def test_many_calls_end_in_one_write_on_both_dialects(db: Connection):
    # One statement per kind of change, executemany: nothing in them may expand a list.
    ids = [dialing(db, retry={"busy": 60}) for _ in range(3)]
    done = apply_events(db, [ev(i, ENDED, 1, disposition=Disposition.BUSY) for i in ids])
    assert all(a is not None and a.ended for a in done)
    assert {contact(db, i)["state"] for i in ids} == {"retry_wait"}
    for stmt in (SET_ATTEMPT, SET_CONTACT):
        for dialect in (postgresql.dialect(), sqlite.dialect()):
            assert not any(b.expanding for b in stmt.compile(dialect=dialect).binds.values())
