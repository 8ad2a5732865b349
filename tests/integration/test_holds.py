"""Holds with owners, the resume preflight, canary resumes and repeated causes."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any

from shared.states import Action, Source
from tests.support.stack import TestStack, wait_for


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def token(stack: TestStack, name: str, role: str) -> dict[str, str]:
    body = {"name": name, "role": role}
    return bearer(str(stack.api("POST", "/tokens", expect=201, json=body)["token"]))


def post(stack: TestStack, cid: int, action: str, who: dict[str, str], **body: Any) -> Any:
    return stack.http.post(f"/api/v1/campaigns/{cid}/{action}", json=body, headers=who)


def monitor_pause(stack: TestStack, cid: int, rule: str) -> None:
    assert stack.stack is not None
    stack.stack.control.transition(
        cid, Action.PAUSE, actor=f"monitor:{rule}", source=Source.SYSTEM, reason=f"{rule} fired"
    )


def test_a_campaign_stays_paused_until_every_hold_is_released_by_whoever_may_release_it(
    make_stack, db
):
    stack = make_stack(db=db, approval_minutes=0.02).start(loops=False)
    cid = stack.make_campaign(contacts=3)
    alice, bob = token(stack, "alice", "supervisor"), token(stack, "bob", "supervisor")
    operator = token(stack, "olga", "operator")
    monitor_pause(stack, cid, "failure_ratio")
    held = post(stack, cid, "pause", operator, hold="compliance", reason="consent audit").json()
    assert held["status"] == "paused" and held["hold"]["kind"] == "compliance"
    assert [h["kind"] for h in held["holds"]] == ["monitor", "compliance"]
    version = held["version"]
    history = stack.api("GET", f"/campaigns/{cid}/transitions")["transitions"]
    assert [t["action"] for t in history[:2]] == ["hold", "pause"]
    assert history[0]["note"] == "held: compliance" and history[0]["actor"] == "olga"

    # The preflight names both holds and what each needs; nothing is dialable without workers.
    p = stack.api("GET", f"/campaigns/{cid}/preflight")
    assert not p["would_resume"] and p["contacts"]["pending"] == 3
    codes = {f["code"]: f["severity"] for f in p["findings"]}
    assert codes["no_workers"] == "warning"
    assert [codes[f"hold_{h['id']}"] for h in p["holds"]] == ["blocking", "blocking"]

    # An operator may place a hold but not resume; alice's resume asks for the compliance
    # release and is refused (the monitor's rule not acknowledged): nothing else changes.
    assert post(stack, cid, "resume", operator).status_code == 403
    r = post(stack, cid, "resume", alice)
    assert r.status_code == 409 and r.json()["error"]["code"] == "holds_remain"
    needs = {d["kind"]: d["needs"] for d in r.json()["error"]["details"]}
    assert needs["monitor"] == 'acknowledge "failure_ratio" to release it'
    assert needs["compliance"].startswith("release asked for by alice; a different supervisor")
    # ... and she cannot approve her own request.
    r = post(stack, cid, "resume", alice, acknowledge=["failure_ratio"])
    assert r.status_code == 409 and "asked for by this token" in r.json()["error"]["message"]
    assert stack.campaign(cid)["version"] == version

    # An approval comes too late once the request expired (1.2 s here): it asks again.
    time.sleep(1.3)
    r = post(stack, cid, "resume", bob, acknowledge=["failure_ratio"])
    assert r.status_code == 409 and "release asked for by bob" in r.json()["error"]["message"]
    resumed = post(stack, cid, "resume", alice, acknowledge=["failure_ratio"])
    assert resumed.status_code == 200, resumed.text
    body = resumed.json()
    assert body["status"] == "running" and body["holds"] == [] and body["owner"] == "alice"
    assert [(h["kind"], h.get("approved_by")) for h in body["released"]] == [
        ("monitor", None),
        ("compliance", "alice"),
    ]
    last = stack.api("GET", f"/campaigns/{cid}/transitions")["transitions"][0]
    assert last["note"] == (
        "resumed by alice (approved alice; released: monitor failure_ratio of "
        "monitor:failure_ratio acknowledged, compliance of olga (release asked by bob, "
        "approved by alice))"
    )
    out = stack.cli("history", str(cid)).stdout
    assert "resumed by alice (approved alice; released: monitor failure_ratio" in out


def test_a_cause_placed_three_times_in_a_day_is_a_repeated_cause(make_stack):
    stack = make_stack().start(loops=False)
    cid = stack.make_campaign(contacts=3)
    for _ in range(3):
        monitor_pause(stack, cid, "provider_errors")
        stack.act(cid, "resume", acknowledge=["provider_errors"])
    stack.act(cid, "pause", reason="checking the script")
    c = stack.campaign(cid)
    assert [(r["rule"], r["last_24h"], r["last_7d"]) for r in c["repeated_causes"]] == [
        ("provider_errors", 3, 3)
    ]
    assert {(x["kind"], x["last_24h"], x["repeated"]) for x in c["pause_causes"]} == {
        ("monitor", 3, True),
        ("operator", 1, False),
    }
    out = stack.cli("show", str(cid)).stdout
    assert "monitor provider_errors: 3 in 24 h, 3 in 7 days  REPEATED CAUSE" in out
    dry = stack.cli("resume", str(cid), "--dry-run").stdout
    assert f"campaign {cid} (paused): a resume now would go ahead" in dry
    assert "pending 3" in dry and "WARNING" in dry and "no worker is live" in dry


def test_a_blocking_finding_refuses_a_plain_resume_until_it_is_overridden(make_stack):
    stack = make_stack().start(loops=False)
    cid = stack.make_campaign(contacts=3)
    stack.act(cid, "pause")
    stack.api("POST", "/emergency-stop", json={"reason": "drill", "scope": "all"})
    try:
        err = stack.act(cid, "resume", expect=409)["error"]
        assert err["code"] == "preflight_blocked" and "emergency stop" in err["message"]
        assert err["details"][0]["code"] == "emergency_stop"
        assert stack.campaign(cid)["status"] == "paused"
        ok = stack.act(cid, "resume", override=["emergency_stop"])
        assert ok["status"] == "running"
    finally:
        stack.api("DELETE", "/emergency-stop")
    last = stack.api("GET", f"/campaigns/{cid}/transitions")["transitions"][0]
    assert last["details"]["overrides"] == ["emergency_stop"]
    assert "overrode: emergency_stop" in last["note"]
    bad = stack.act(cid, "pause", expect=422, override=["emergency_stop"])["error"]
    assert bad["message"].startswith("acknowledge: only a resume")


def test_a_canary_resume_dials_no_more_than_its_calls_before_its_verdict(
    make_stack, tmp_path: Path
):
    fault = tmp_path / "fault"
    stack: TestStack = make_stack(sim_fault_file=str(fault), monitor_interval=0.2).start()
    cid = stack.make_campaign(contacts=400, max_concurrency=4)
    stack.start_worker(threads=4)
    stack.wait_calls(8)
    stack.act(cid, "pause")

    def calls_since(answer: dict[str, Any]) -> list[dict[str, Any]]:
        at = datetime.fromisoformat(answer["updated_at"]).timestamp()
        return [c for c in stack.calls() if c["campaign_id"] == cid and c["t"] >= at]

    # The provider refuses every call: the canary pauses again by itself.
    fault.write_text("error")
    canary = {"calls": 10, "max_failure_ratio": 0.3}
    resumed = stack.act(cid, "resume", canary=canary)
    c = stack.wait_status(cid, "paused", timeout=30)
    [h] = c["holds"]
    assert h["kind"] == "canary" and h["reason"].startswith("canary: ")
    assert h["reason"].endswith("of 10 calls failed (at most 30% allowed)")
    time.sleep(1.0)  # nothing more starts: the gate granted 10 calls, then the pause
    assert 4 <= len(calls_since(resumed)) <= 10, len(calls_since(resumed))
    err = stack.act(cid, "resume", expect=409, canary=canary)["error"]
    assert 'acknowledge "canary"' in err["message"]

    # Fixed: the preflight still sees the failed calls, so the resume says it knows; the
    # canary's calls go well, it passes, and dialing goes on.
    fault.unlink()
    ack = {"acknowledge": ["canary"], "canary": canary}
    err = stack.act(cid, "resume", expect=409, **ack)["error"]
    assert err["code"] == "preflight_blocked" and err["details"][0]["code"] == "provider_failing"
    resumed = stack.act(cid, "resume", override=["provider_failing"], **ack)

    def passed() -> bool:
        history = stack.api("GET", f"/campaigns/{cid}/transitions")["transitions"]
        return history[0]["action"] == "canary_passed"

    wait_for(passed, 30, "the canary to pass")
    last = stack.api("GET", f"/campaigns/{cid}/transitions")["transitions"][0]
    assert last["reason"] == "canary passed: 0 of 10 calls failed (at most 30%)"
    verdict = datetime.fromisoformat(last["at"]).timestamp()
    before = [c for c in calls_since(resumed) if c["t"] < verdict]
    assert len(before) == 10  # exactly the canary's calls before its verdict
    wait_for(lambda: len(calls_since(resumed)) > 20, 30, "dialing to go on after the canary")
    report = stack.check_calls({cid})
    assert report.late == [] and report.doubled == [], report.as_dict()
