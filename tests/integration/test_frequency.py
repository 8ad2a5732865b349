"""Contact frequency limits: an organisation's limit of calls per number within a rolling
window, across all its campaigns, taken atomically at dial time; over it a contact waits."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import redis
from sqlalchemy import select, update

from control.campaigns.org import held_by_frequency
from shared.frequency import FrequencySet, Limit
from shared.keys import Keys
from shared.models import Attempt, Contact, OrgSettings, utcnow
from tests.integration.test_auth import bearer, make_token
from tests.integration.test_gate import client  # noqa: F401 - one Redis node and a cluster
from tests.integration.test_retries import MONITORS_OFF
from tests.support.stack import TestStack, phones, wait_for

NUMBERS = phones(4)


@pytest.fixture
def counts(client: redis.Redis) -> Iterator[FrequencySet]:  # noqa: F811
    keys = Keys("t" + uuid.uuid4().hex[:10])
    yield FrequencySet(client, keys)
    for key in client.scan_iter(f"{keys.namespace}:*"):
        client.delete(key)


def test_a_numbers_slots_are_taken_atomically_and_unknown_counts_deny(counts: FrequencySet):
    hour = Limit(2, 1)
    assert counts.take("acme", hour, [(1, "+331")]) is None  # never built: fail closed
    started = datetime.now(UTC) - timedelta(minutes=30)
    assert counts.rebuild("acme", hour, lambda: [(10, "+331", started)]) == 1
    assert counts.take("acme", hour, [(1, "+331"), (2, "+332")]) == [0, 0]
    (wait,) = counts.take("acme", hour, [(3, "+331")]) or [0]
    assert 29 * 60_000 < wait <= 30 * 60_000 + 1_000  # until the call of 30 minutes ago leaves
    assert counts.take("acme", hour, [(1, "+331")]) == [0]  # its own slot: not counted twice
    assert counts.take("other", hour, [(4, "+331")]) is None  # each organisation its own

    # Twenty workers at once for one number: exactly the limit goes through.
    got: list[int] = []
    lock = threading.Lock()

    def take(attempt: int) -> None:
        answer = counts.take("acme", hour, [(attempt, "+339")])
        with lock:
            got.extend(answer or [-1])

    threads = [threading.Thread(target=take, args=(100 + i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got)[:3] == [0, 0, min(w for w in got if w)] and got.count(0) == 2

    # A shorter window prunes the sets: a longer one then needs a rebuild.
    assert counts.take("acme", Limit(5, 0.25), [(5, "+333")]) == [0]
    assert counts.covered("acme") == 900_000
    assert counts.take("acme", hour, [(6, "+333")]) is None
    counts.forget("acme")
    assert counts.covered("acme") is None


def contacts(stack: TestStack, cids: list[int]) -> list[tuple[str, datetime | None]]:
    assert stack.stack is not None
    with stack.stack.control.sessions() as s:
        q = select(Contact.state, Contact.dial_after).where(Contact.campaign_id.in_(cids))
        return [(st, after) for st, after in s.execute(q)]


def quiet(stack: TestStack, cids: list[int]) -> bool:
    """Nothing of these campaigns is left to dial now: each contact is over, or pending
    and not due before 50 minutes from now."""
    soon = datetime.now(UTC) + timedelta(minutes=50)
    return all(
        st in ("done", "failed") or (st == "pending" and after and after > soon)
        for st, after in contacts(stack, cids)
    )


def waiting(stack: TestStack, cids: list[int]) -> list[tuple[str, bool]]:
    soon = datetime.now(UTC) + timedelta(minutes=50)
    return [(st, bool(after and after > soon)) for st, after in contacts(stack, cids)]


def test_workers_of_three_campaigns_never_call_a_number_more_often_than_the_limit(make_stack):
    # Every call ends unanswered and is retried at once, up to 3 times per campaign: without
    # the limit each number would be called 9 times.
    stack: TestStack = make_stack(sim_dispositions="no_answer=1", **MONITORS_OFF).start()
    limit = {"calls": 2, "hours": 1}
    stack.api("PUT", "/org/settings", json={"max_calls_per_number": limit})
    workers = [stack.start_worker(processes=2, threads=4), stack.start_worker(threads=4)]
    stack.wait_workers(3)
    retry = {"max_attempts": 3, "retry": {"no_answer": 0.05}}
    cids = [stack.make_campaign(0, 4, False, NUMBERS, **retry) for _ in range(3)]
    for cid in cids:  # started together: every campaign dials the same 4 numbers at once
        stack.act(cid, "start")
    wait_for(lambda: quiet(stack, cids), 40, "nothing left to dial now")

    # The far end is the witness: no number was called more than the limit allows.
    per_number = Counter(c["phone"] for c in stack.calls())
    assert per_number == dict.fromkeys(NUMBERS, 2), per_number
    assert waiting(stack, cids) == [("pending", True)] * 12  # waiting for the limit, not failed
    assert stack.check_calls(set(cids)).ok
    assert stack.stack is not None
    control = stack.stack.control
    with control.sessions() as s:
        reasons = Counter(s.scalars(select(Attempt.deny_reason).where(Attempt.deny_reason != "")))
    assert reasons["frequency"] >= 4, reasons
    metric = 'dialgate_dials_denied_total{reason="frequency"}'
    counted = sum(stack.worker_metrics(w).get(metric, 0) for w in workers)
    assert counted == reasons["frequency"], (counted, reasons)
    held = [held_by_frequency(control, cid) for cid in cids]
    assert sum(h["contacts"] for h in held) == 12 and all(h["limit"] == limit for h in held)
    first = min(datetime.fromisoformat(h["next_at"]) for h in held)
    assert timedelta(minutes=55) < first - datetime.now(UTC) <= timedelta(hours=1)
    reason = {r["code"]: r for r in stack.api("GET", f"/campaigns/{cids[0]}/diagnosis")["reasons"]}
    why = reason["frequency_limit"]
    assert (
        "4 pending contacts" in why["evidence"] and "2 calls per number per 1 h" in why["evidence"]
    )

    # Redis loses the counts: the dials fail closed until the reconciler rebuilt them from
    # the attempts dialed, and still no number is called a third time.
    # (A setting changed in the last second is the change's to rebuild: the reconciler waits.)
    with control.sessions.begin() as s:
        s.execute(update(OrgSettings).values(updated_at=utcnow()))
    for key in stack.redis.scan_iter(f"{stack.namespace}:{{f:default}}*"):
        stack.redis.delete(key)
    with control.sessions.begin() as s:
        s.execute(update(Contact).where(Contact.campaign_id.in_(cids)).values(dial_after=None))
    wait_for(lambda: stack.redis.get(stack.keys.frequency_ready("default")), 10, "a rebuild")
    wait_for(lambda: waiting(stack, cids) == [("pending", True)] * 12, 30, "all waiting again")
    assert Counter(c["phone"] for c in stack.calls()) == per_number
    with control.sessions() as s:
        reasons = Counter(s.scalars(select(Attempt.deny_reason).where(Attempt.deny_reason != "")))
    assert reasons["frequency_unknown"] >= 1, reasons  # denied while the counts were unknown


def test_the_limit_is_read_set_and_cleared_by_an_admin_and_a_bad_one_changes_nothing(make_stack):
    stack: TestStack = make_stack("sqlite").start(loops=False)  # the other test: PostgreSQL
    assert stack.api("GET", "/org/settings")["max_calls_per_number"] is None
    got = stack.api(
        "PUT", "/org/settings", json={"max_calls_per_number": {"calls": 3, "hours": 24}}
    )
    assert got["max_calls_per_number"] == {"calls": 3, "hours": 24}
    assert got["org"] == "default" and got["updated_by"] == "admin-token"
    assert stack.redis.get(stack.keys.frequency_ready("default")) == str(24 * 3_600_000)

    for bad, field in [
        ({"calls": 0, "hours": 24}, "max_calls_per_number.calls"),
        ({"calls": 3, "hours": 721}, "max_calls_per_number.hours"),
        ({"calls": 3}, "max_calls_per_number.hours"),
        ({"calls": 3, "hours": 24, "days": 1}, "max_calls_per_number.days"),
        ("3/24h", "max_calls_per_number"),
    ]:
        err = stack.api("PUT", "/org/settings", expect=422, json={"max_calls_per_number": bad})
        assert err["error"]["message"].startswith(f"{field}: "), err
    err = stack.api("PUT", "/org/settings", expect=422, json={})["error"]["message"]
    assert err.startswith("max_calls_per_number: "), err
    assert stack.api("GET", "/org/settings")["max_calls_per_number"] == {"calls": 3, "hours": 24}

    viewer = bearer(make_token(stack, "supervisor", "default"))
    assert stack.http.get("/api/v1/org/settings", headers=viewer).status_code == 200
    body = {"max_calls_per_number": None}
    assert stack.http.put("/api/v1/org/settings", json=body, headers=viewer).status_code == 403

    out = stack.cli("org", "set", "--max-calls-per-number", "5/2d")
    assert out.returncode == 0 and "5 per 48 h" in out.stdout, out.stderr
    out = stack.cli("org", "set", "--max-calls-per-number", "3 per day")
    assert out.returncode == 2 and "--max-calls-per-number: must be CALLS/HOURSh" in out.stderr
    assert stack.api("PUT", "/org/settings", json=body)["max_calls_per_number"] is None
    assert stack.redis.get(stack.keys.frequency_ready("default")) is None  # no longer kept
    out = stack.cli("org", "show")
    assert out.returncode == 0 and "no limit" in out.stdout, out.stderr
    kinds = [e for e in stack.api("GET", "/audit")["events"] if e["kind"] == "org.settings_changed"]
    assert len(kinds) == 3 and kinds[0]["details"] == {
        "max_calls_per_number": None,
        "before": {"calls": 5, "hours": 48},
    }
