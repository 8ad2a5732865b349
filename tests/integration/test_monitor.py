"""The monitor pauses a running campaign by itself when dialing goes wrong, once."""

from __future__ import annotations

import re
import threading
from datetime import datetime
from typing import Any

import psycopg
from sqlalchemy import insert, select

from control.loops.monitor import Monitor
from shared import metrics
from shared.models import Attempt, Contact, Transition, utcnow
from tests.conftest import PG_URL
from tests.support.stack import TestStack, wait_for


def pause_of(stack: TestStack, cid: int) -> dict[str, Any]:
    """The campaign's one pause, once its answer is recorded (the monitor's process writes
    ``answered_at`` just after the commit that the campaign's status already shows)."""

    def answered() -> dict[str, Any] | None:
        history = stack.api("GET", f"/campaigns/{cid}/transitions")["transitions"]
        pauses = [t for t in history if t["action"] == "pause"]
        assert len(pauses) == 1, history
        return dict(pauses[0]) if pauses[0]["answered_at"] else None

    found: dict[str, Any] = wait_for(answered, 10, "the pause's answer to be recorded")
    return found


def calls_after(stack: TestStack, cid: int, answered: str) -> list[dict[str, Any]]:
    t = datetime.fromisoformat(answered).timestamp()
    return [c for c in stack.calls() if c["campaign_id"] == cid and c["t"] > t]


def test_a_provider_that_starts_failing_mid_run_pauses_the_campaign_with_the_reason(
    make_stack, tmp_path
):
    fault = tmp_path / "fault"
    # 2000 contacts, 2 at a time at 20 ms: the list lasts far longer than a monitor round,
    # so the campaign cannot run out of contacts before the monitor looks.
    stack: TestStack = make_stack(sim_fault_file=str(fault), sim_latency_ms=20).start()
    cid = stack.make_campaign(contacts=2000, max_concurrency=2, start=False)
    rules = {"failure_ratio": 0.5, "failure_window": 40, "failure_min_samples": 20}
    rules["consecutive_errors"] = 1000  # only the ratio rule, here
    stack.api("PATCH", f"/campaigns/{cid}", json={"monitor": rules})
    stack.act(cid, "start")
    stack.start_worker()
    stack.wait_calls(40)
    fault.write_text("error")  # the provider starts refusing every call

    c = stack.wait_status(cid, "paused", timeout=30)
    assert c["pause_source"] == "system"
    assert c["pause_reason"].startswith("failure rate ")
    assert c["pause_reason"].endswith("over the last 40 attempts exceeds 50%")
    assert [(x["kind"], x["rule"], x["last_24h"]) for x in c["pause_causes"]] == [
        ("monitor", "failure_ratio", 1)
    ]

    def firings() -> int | None:  # counted just after the pause has answered
        return metrics.loop_counts(stack.redis, stack.keys).get("monitor_firings")

    wait_for(lambda: firings() == 1, 5, "the monitor to count its firing")
    pause = pause_of(stack, cid)
    assert pause["actor"] == "monitor:failure_ratio" and pause["source"] == "system"
    assert pause["drained"] is True
    assert calls_after(stack, cid, pause["answered_at"]) == []
    out = stack.cli("show", str(cid))
    assert "by system: failure rate" in out.stdout
    assert "held for      monitor failure_ratio: 1 in 24 h, 1 in 7 days" in out.stdout
    assert (
        'releasing it takes: a supervisor or admin resumes acknowledging "failure_ratio"'
        in out.stdout
    )


def test_an_authentication_error_pauses_on_the_first_one(make_stack, tmp_path):
    fault = tmp_path / "fault"
    fault.write_text("auth")
    stack: TestStack = make_stack(sim_fault_file=str(fault)).start()
    stack.start_worker()
    stack.wait_workers(1)
    cid = stack.make_campaign(contacts=2000, max_concurrency=1)  # outlasts a monitor round
    c = stack.wait_status(cid, "paused", timeout=30)
    assert c["pause_reason"] == "the provider refused our credentials (auth error)"
    pause = pause_of(stack, cid)
    assert pause["actor"] == "monitor:auth_error"
    # (That one outcome is enough is tests/unit/test_monitor.py's business.)
    assert calls_after(stack, cid, pause["answered_at"]) == []


def test_a_broken_outcome_writer_makes_the_monitor_pause(make_stack):
    stack: TestStack = make_stack(monitor_outcome_bound=1.0).start()
    assert stack._pg_db is not None
    # The outcome writer breaks: the database refuses every outcome write from now on.
    with psycopg.connect(
        PG_URL.replace("+psycopg", "").rsplit("/", 1)[0] + f"/{stack._pg_db}", autocommit=True
    ) as conn:
        conn.execute(
            "CREATE FUNCTION refuse_outcome() RETURNS trigger AS $$ BEGIN "
            "RAISE EXCEPTION 'outcome writer broken'; END $$ LANGUAGE plpgsql"
        )
        conn.execute(
            "CREATE TRIGGER refuse_outcome BEFORE UPDATE ON attempts FOR EACH ROW "
            "WHEN (NEW.outcome IS NOT NULL) EXECUTE FUNCTION refuse_outcome()"
        )
    stack.start_worker()
    cid = stack.make_campaign(contacts=50, max_concurrency=2)
    c = stack.wait_status(cid, "paused", timeout=30)
    reason = r"\d+ attempts without a recorded outcome, the oldest for \d+ s \(bound 1 s\)"
    assert re.fullmatch(reason, c["pause_reason"]), c["pause_reason"]
    assert pause_of(stack, cid)["actor"] == "monitor:outcomes_not_recorded"


def test_two_monitors_pause_once_and_a_second_firing_while_paused_does_nothing(make_stack):
    stack: TestStack = make_stack().start(loops=False)
    assert stack.stack is not None
    cid = stack.make_campaign(contacts=3, max_concurrency=1)
    sessions = stack.stack.control.sessions
    with sessions.begin() as s:
        contact = s.scalars(select(Contact.id).where(Contact.campaign_id == cid)).first()
        attempt = s.scalar(
            insert(Attempt)
            .values(
                campaign_id=cid,
                contact_id=contact,
                state="ringing",
                outcome="accepted",
                started_at=utcnow(),  # after the campaign started: the monitor looks at it
            )
            .returning(Attempt.id)
        )
    # The trunk says later, through the provider webhook, that it refused our credentials.
    event = {"attempt_id": attempt, "event": "ended", "disposition": "failed", "sip_code": 401}
    got = stack.api("POST", "/provider/events", json=event)
    assert got["applied"][0]["campaign_id"] == cid and got["applied"][0]["ended"]
    with sessions() as s:
        row = s.get(Attempt, attempt)
        assert row is not None and (row.disposition, row.sip_code) == ("failed", 401)
    bad = stack.api("POST", "/provider/events", expect=422, json={"attempt_id": attempt})
    assert bad["error"]["message"].startswith("event: ")

    monitors = [Monitor(stack.settings, stack.stack.control) for _ in range(2)]
    start = threading.Barrier(2)
    paused: list[int] = []

    def run(m: Monitor) -> None:
        start.wait()
        paused.append(m.step())

    threads = [threading.Thread(target=run, args=(m,)) for m in monitors]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(paused) == [0, 1]
    assert monitors[0].step() == 0  # still firing, already paused: nothing
    with sessions() as s:
        actors = list(s.scalars(select(Transition.actor).where(Transition.campaign_id == cid)))
    assert actors == ["admin-token", "monitor:auth_error"]
    causes = stack.campaign(cid)["pause_causes"]
    assert [(x["kind"], x["rule"], x["last_24h"]) for x in causes] == [("monitor", "auth_error", 1)]
    wait_for(lambda: stack.campaign(cid)["status"] == "paused", 5, "paused")
