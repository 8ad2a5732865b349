"""PostgreSQL connections terminated while operators pause and resume."""

from __future__ import annotations

import threading
from collections import Counter

import psycopg
from sqlalchemy import select

from shared.models import Outbox, Transition
from tests.conftest import PG_URL
from tests.faults.conftest import Run


def _terminate_forever(database: str, stop: threading.Event, killed: list[int]) -> None:
    """``pg_terminate_backend`` on every connection to this test's own database."""
    with psycopg.connect(PG_URL.replace("+psycopg", ""), autocommit=True) as conn:
        while not stop.is_set():
            row = conn.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (database,),
            ).fetchone()
            killed[0] += int(row[0]) if row else 0
            stop.wait(0.1)


def test_connections_terminated_mid_transition_leave_transition_and_outbox_together_and_503(
    fresh,
):
    # An attempt whose worker lost its outcome is unknown soon; a dial message whose
    # enqueue met a terminated connection is enqueued again after 5 s (60 by default).
    stack = fresh(lease_ttl_ms=2000, feeder_requeue_after=5)
    run = Run.start(stack, contacts=300)
    assert stack._pg_db is not None and stack.stack is not None
    stop, killed = threading.Event(), [0]
    killer = threading.Thread(target=_terminate_forever, args=(stack._pg_db, stop, killed))
    answers: Counter[int] = Counter()
    killer.start()
    try:
        for i in range(20):
            action = "pause" if i % 2 == 0 else "resume"
            resp = stack.http.post(f"/api/v1/campaigns/{run.cid}/{action}", json={})
            answers[resp.status_code] += 1
            assert resp.status_code in (200, 409, 503), resp.text
            if resp.status_code == 503:
                error = resp.json()["error"]
                assert error["code"] == "unavailable" and "database" in error["message"], error
            run.pauses += action == "pause" and resp.status_code == 200
    finally:
        stop.set()
        killer.join(10)
    # Pooled connections the killer terminated after their last use are still in the pool
    # (the service drops them at their next failure, one 503 each): drop them before the
    # checks, which are not what this test is about.
    stack.stack.control.sessions.kw["bind"].dispose()
    run.faults = killed[0]
    assert answers[503] >= 1 and answers[200] >= 1, answers

    # every committed transition has its outbox row, and no outbox row lacks its transition
    with stack.stack.control.sessions() as s:
        mine = Transition.campaign_id == run.cid
        versions = list(s.scalars(select(Transition.version).where(mine)))
        events = [
            p["version"] for p in s.scalars(select(Outbox.payload)) if p["campaign_id"] == run.cid
        ]
    assert sorted(events) == sorted(versions), (sorted(events), sorted(versions))
    # versions have no gap, and the campaign row agrees with its last transition
    assert sorted(versions) == list(range(1, len(versions) + 1))
    assert stack.campaign(run.cid)["version"] == len(versions)
    if stack.campaign(run.cid)["status"] == "paused":
        run.act("resume")
    run.finish(f"postgres connections terminated during 20 pause/resume requests {dict(answers)}")
