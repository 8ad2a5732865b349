"""The campaign page's chart data (``control/campaigns/activity.py``): calls started and
ended per 10 s bucket over the last hour, and the hour's transitions as markers, on
PostgreSQL and SQLite (the bucket is computed by each database's own date function)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import update

from control.campaigns.activity import BUCKETS, ENDINGS, activity, window
from shared.models import Transition, utcnow
from tests.support.calls import insert_calls


def test_calls_and_transitions_of_the_hour_land_in_their_10_s_buckets(
    make_stack: Any, db: str
) -> None:
    stack = make_stack(db).start(loops=False)
    cid = stack.make_campaign(contacts=4)
    stack.act(cid, "pause", source="operator", reason="script check")
    stack.act(cid, "resume", max_concurrency=1, for_minutes=5)
    assert stack.stack is not None
    control = stack.stack.control
    with control.sessions.begin() as s:  # the start, two hours ago: not in the hour
        s.execute(
            update(Transition)
            .where(Transition.campaign_id == cid, Transition.action == "start")
            .values(created_at=utcnow() - timedelta(hours=2))
        )
    now = utcnow()
    _, end = window(now)
    base = end - timedelta(seconds=60)  # the start of bucket 354
    at = lambda s: base + timedelta(seconds=s)  # noqa: E731
    insert_calls(
        stack,
        cid,
        [
            (at(1), at(12), "ended", "answered"),  # started in 354, ended in 355
            (at(3), at(15), "ended", "busy"),
            (at(2), at(31), "ended", None),  # ended without a disposition: unknown
            (at(21), None, "ringing", None),  # started in 356, still up
            (at(22), at(35), "unknown", None),  # its worker vanished: unknown in 357
            (at(5), at(6), "parked", None),  # never dialed: no call
            (at(-7200), at(-7190), "ended", "answered"),  # two hours ago
            (at(-3590), at(30), "ended", "failed"),  # started before the hour, ended in it
        ],
    )

    data = activity(control, cid, now=now)

    assert data["end"] == end and data["start"] == end - timedelta(hours=1)
    assert data["bucket_s"] == 10 and len(data["started"]) == BUCKETS == 360
    assert {i: n for i, n in enumerate(data["started"]) if n} == {354: 3, 356: 2}
    assert set(data["ended"]) == set(ENDINGS)
    ended = {(name, i): n for name, s in data["ended"].items() for i, n in enumerate(s) if n}
    assert ended == {
        ("answered", 355): 1,
        ("busy", 355): 1,
        ("unknown", 357): 2,
        ("failed", 357): 1,
    }
    pause, resume = data["markers"]
    assert (pause["action"], pause["from"], pause["to"]) == ("pause", "running", "paused")
    assert (pause["reason"], pause["source"], pause["cap"]) == ("script check", "operator", None)
    assert (resume["action"], resume["cap"]["max_concurrency"]) == ("resume", 1)
    assert data["start"] <= pause["at"] <= resume["at"] < end

    answer = stack.api("GET", f"/campaigns/{cid}/activity")  # the same, as JSON
    assert sum(answer["started"]) == 5 and sum(answer["ended"]["unknown"]) == 2
    assert [m["action"] for m in answer["markers"]] == ["pause", "resume"]
    assert answer["markers"][1]["cap"]["max_concurrency"] == 1
    stack.api("GET", "/campaigns/999999/activity", expect=404)
