"""Calling windows are checked by the worker at dial time, not only by the feeder."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select

from shared.models import Attempt, Contact
from tests.integration.test_pause_path import assert_each_contact_dialed_once
from tests.support.stack import TestStack, wait_for


def window_around(now: datetime, before: timedelta, after: timedelta) -> dict[str, object]:
    """A window of every day from ``now - before`` to ``now + after`` (wall clock of ``now``)."""
    return {
        "start": (now - before).strftime("%H:%M"),
        "end": (now + after).strftime("%H:%M"),
    }


def closed_now() -> dict[str, object]:
    return window_around(datetime.now(UTC), -timedelta(hours=3), timedelta(hours=4))


def open_now() -> dict[str, object]:
    return window_around(datetime.now(UTC), timedelta(hours=1), timedelta(hours=2))


def test_queued_dials_are_parked_when_the_window_closes_and_dialed_once_it_opens(make_stack):
    stack: TestStack = make_stack().start()
    cid = stack.make_campaign(contacts=8, max_concurrency=2)  # no worker yet
    wait_for(lambda: stack.campaign(cid)["counts"]["queued"] == 4, 15, "4 queued attempts")

    # The window closes while 4 dial messages wait in the queue.
    c = stack.api("PATCH", f"/campaigns/{cid}", json={"calling_window": closed_now()})
    assert c["status"] == "running"
    assert c["dialing"]["blocked_by"] == "calling_window"
    opens = datetime.fromisoformat(c["dialing"]["opens_at"])
    assert timedelta(hours=2, minutes=58) < opens - datetime.now(UTC) <= timedelta(hours=3)

    stack.start_worker()
    wait_for(lambda: stack.campaign(cid)["counts"]["pending"] == 8, 30, "all 8 back to pending")
    assert stack.calls() == []
    assert stack.stack is not None
    with stack.stack.control.sessions() as s:
        reasons = set(s.scalars(select(Attempt.deny_reason).where(Attempt.campaign_id == cid)))
        waits = list(s.scalars(select(Contact.dial_after).where(Contact.dial_after.is_not(None))))
    assert reasons == {"calling_window"}
    assert len(waits) == 4 and all(abs(w - opens) < timedelta(minutes=1) for w in waits)
    assert stack.campaign(cid)["status"] == "running"

    # The window opens (here by moving it): every contact is dialed, once.
    stack.api("PATCH", f"/campaigns/{cid}", json={"calling_window": open_now()})
    done = stack.wait_status(cid, "completed", timeout=60)
    assert done["counts"]["done"] == 8
    assert_each_contact_dialed_once(stack, cid, 8)


def test_a_contact_outside_its_own_local_window_waits_while_the_others_are_dialed(make_stack):
    stack: TestStack = make_stack().start()
    window = {
        **window_around(
            datetime.now(ZoneInfo("Europe/Paris")), timedelta(hours=1), timedelta(hours=2)
        ),
        "contact_local_time": True,
    }
    c = stack.api(
        "POST",
        "/campaigns",
        expect=201,
        json={
            "name": "w",
            "max_concurrency": 2,
            "timezone": "Europe/Paris",
            "calling_window": window,
        },
    )
    cid = c["id"]
    assert c["dialing"] == {"blocked_by": None}
    paris = ["+33612340001", "+33612340002", "+33612340003"]
    new_york = ["+12125550100", "+12125550101"]  # 6 hours behind Paris: outside the window
    rows = [{"phone": p} for p in paris + new_york]
    assert stack.api("POST", f"/campaigns/{cid}/contacts", json={"contacts": rows})["accepted"] == 5
    stack.act(cid, "start")
    stack.start_worker()

    def waiting() -> dict[str, datetime]:
        assert stack.stack is not None
        with stack.stack.control.sessions() as s:
            rows = s.execute(
                select(Contact.phone, Contact.dial_after).where(
                    Contact.dial_after.is_not(None), Contact.state == "pending"
                )
            )
            return {phone: after for phone, after in rows}

    def settled() -> bool:
        return stack.campaign(cid)["counts"]["done"] == 3 and len(waiting()) == 2

    wait_for(settled, 30, "the Paris contacts done and the New York ones waiting")
    assert sorted(x["phone"] for x in stack.calls()) == paris
    assert set(waiting()) == set(new_york)
    # 3 hours of window in Paris and 3 in New York, 6 hours apart, never overlap: they are
    # looked at again in a day (the window must hold in the campaign's zone and theirs).
    for after in waiting().values():
        assert timedelta(hours=23) < after - datetime.now(UTC) <= timedelta(hours=24)
    assert stack.campaign(cid)["status"] == "running"


def test_a_bad_window_is_refused_naming_the_field_and_changes_nothing(make_stack):
    stack: TestStack = make_stack().start(loops=False)
    c = stack.api("POST", "/campaigns", expect=201, json={"name": "w"})
    for body, field in [
        ({"calling_window": {"start": "9:00"}}, "calling_window.start"),
        ({"calling_window": {"days": ["funday"]}}, "calling_window.days"),
        ({"calling_window": {"start": "10:00", "end": "10:00"}}, "calling_window"),
        ({"timezone": "Moon/Base"}, "timezone"),
        ({"timezone": None}, "timezone"),
        ({"window": {}}, "window"),
    ]:
        err = stack.api("PATCH", f"/campaigns/{c['id']}", expect=422, json=body)["error"]
        assert err["message"].startswith(field), err
    assert stack.campaign(c["id"])["calling_window"] is None
    assert stack.campaign(c["id"])["timezone"] == "UTC"
