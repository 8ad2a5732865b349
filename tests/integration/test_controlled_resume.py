"""Controlled resume: a temporary concurrency cap the gate enforces, lifted by itself."""

from __future__ import annotations

from datetime import datetime

from tests.support.stack import TestStack, wait_for


def paused_campaign(stack: TestStack, max_concurrency: int = 4) -> int:
    cid = stack.make_campaign(contacts=2, max_concurrency=max_concurrency)  # never completes
    stack.act(cid, "pause", source="operator")
    return cid


def gate_concurrency(stack: TestStack, cid: int) -> int:
    return int(stack.redis.hget(stack.keys.gate(cid), "max_concurrency") or -1)


def test_a_capped_resume_answers_with_the_cap_and_its_end_and_the_gate_enforces_it(make_stack):
    stack = make_stack().start(loops=False)
    cid = paused_campaign(stack, max_concurrency=4)
    c = stack.act(cid, "resume", source="operator", max_concurrency=1, for_minutes=15)
    assert c["status"] == "running" and c["max_concurrency"] == 4 and c["concurrency"] == 1
    start = datetime.fromisoformat(
        stack.api("GET", f"/campaigns/{cid}/transitions")["transitions"][0]["at"]
    )
    until = datetime.fromisoformat(c["cap"]["until"])
    assert c["cap"]["max_concurrency"] == 1 and (until - start).total_seconds() == 900
    assert gate_concurrency(stack, cid) == 1

    assert stack.stack is not None
    gate = stack.stack.control.gate
    first = gate.claim(cid, 1, "w1", min_version=c["version"], ttl_ms=60_000)
    second = gate.claim(cid, 2, "w1", min_version=c["version"], ttl_ms=60_000)
    assert first.ok and not second.ok and second.reason == "concurrency"

    last = stack.api("GET", f"/campaigns/{cid}/transitions")["transitions"][0]
    assert last["action"] == "resume" and last["cap"]["max_concurrency"] == 1


def test_the_cap_lifts_by_itself_as_a_recorded_system_transition(make_stack):
    stack = make_stack(cap_lift_interval=0.1).start()
    cid = paused_campaign(stack, max_concurrency=3)
    c = stack.act(cid, "resume", source="operator", max_concurrency=2, for_minutes=0.01)
    assert c["cap"]["max_concurrency"] == 2

    lifted = wait_for(lambda: (x := stack.campaign(cid))["cap"] is None and x, 30, "the lift")
    assert lifted["status"] == "running" and lifted["concurrency"] == 3
    assert lifted["version"] == c["version"] + 1
    wait_for(lambda: gate_concurrency(stack, cid) == 3, 10, "the gate back at 3")
    t = stack.api("GET", f"/campaigns/{cid}/transitions")["transitions"][0]
    assert (t["action"], t["from"], t["to"], t["source"], t["actor"]) == (
        "lift_cap",
        "running",
        "running",
        "system",
        "cap-lifter",
    )
    assert t["reason"] == "temporary concurrency cap of 2 ended"


def test_a_cap_paused_over_lifts_while_paused_and_a_plain_resume_clears_a_cap(make_stack):
    stack = make_stack(cap_lift_interval=0.1).start()
    cid = paused_campaign(stack)
    stack.act(cid, "resume", source="operator", max_concurrency=1, for_minutes=0.01)
    paused = stack.act(cid, "pause", source="operator")
    assert paused["cap"]["max_concurrency"] == 1  # a pause keeps the cap's clock running
    lifted = wait_for(lambda: (x := stack.campaign(cid))["cap"] is None and x, 30, "the lift")
    assert lifted["status"] == "paused"
    t = stack.api("GET", f"/campaigns/{cid}/transitions")["transitions"][0]
    assert (t["action"], t["from"], t["to"]) == ("lift_cap", "paused", "paused")

    stack.act(cid, "resume", source="operator", max_concurrency=1, for_minutes=60)
    stack.act(cid, "pause", source="operator")
    plain = stack.act(cid, "resume", source="operator")
    assert plain["cap"] is None and plain["concurrency"] == 4
    assert gate_concurrency(stack, cid) == 4


def test_a_bad_cap_is_refused_with_the_field_named_and_changes_nothing(make_stack):
    stack = make_stack().start(loops=False)
    cid = paused_campaign(stack, max_concurrency=4)
    version = stack.campaign(cid)["version"]
    cases = [
        ({"max_concurrency": 2}, "for_minutes is required too"),
        ({"for_minutes": 5}, "max_concurrency is required too"),
        ({"max_concurrency": 0, "for_minutes": 5}, "max_concurrency: "),
        ({"max_concurrency": 2, "for_minutes": 0}, "for_minutes: "),
        ({"max_concurrency": 2, "for_minutes": 2000}, "for_minutes: "),
        (
            {"max_concurrency": 9, "for_minutes": 5},
            "max_concurrency: a temporary cap must be at most the campaign's max_concurrency (4)",
        ),
    ]
    for body, needle in cases:
        err = stack.act(cid, "resume", expect=422, **body)["error"]
        assert err["code"] == "invalid_input" and needle in err["message"], (body, err)
    stack.act(cid, "resume")
    err = stack.act(cid, "pause", expect=422, max_concurrency=1, for_minutes=5)["error"]
    assert "only allowed on resume" in err["message"]
    after = stack.campaign(cid)
    assert after["version"] == version + 1 and after["status"] == "running"
    assert after["cap"] is None


def test_the_cli_resumes_with_a_cap_and_shows_it(make_stack):
    stack = make_stack().start(loops=False)
    cid = paused_campaign(stack, max_concurrency=4)
    out = stack.cli("resume", str(cid), "--max-concurrency", "2", "--for-minutes", "15")
    assert out.returncode == 0, out.stderr
    assert "status        running" in out.stdout
    assert "temporary cap 2 until " in out.stdout and "(lifts by itself)" in out.stdout
    out = stack.cli("show", str(cid))
    assert "temporary cap 2 until " in out.stdout
    stack.cli("pause", str(cid))
    out = stack.cli("resume", str(cid), "--max-concurrency", "2")
    assert out.returncode == 1 and "for_minutes is required too" in out.stderr
