""" "Why isn't it dialing?": the API and ``dialgate why`` name every reason, with evidence."""

from __future__ import annotations

import json
import time
from datetime import timedelta

from sqlalchemy import update

from control.campaigns.diagnosis import diagnose
from control.server import build
from shared.models import Outbox, utcnow
from shared.states import Action, Source
from tests.support.stack import TestStack, free_port


def codes(stack: TestStack, cid: int) -> dict[str, dict[str, str]]:
    d = stack.api("GET", f"/campaigns/{cid}/diagnosis")
    return {r["code"]: r for r in d["reasons"]}


def fake_live_worker(stack: TestStack, worker: str, acked: int, cid: int) -> None:
    """A worker heartbeat and acknowledgement as a worker writes them (no process)."""
    stack.redis.zadd(stack.keys.workers, {worker: time.time()})
    stack.redis.hset(stack.keys.acks(cid), worker, acked)


def test_a_running_campaign_with_contacts_gate_and_acknowledging_workers_has_no_reason(
    make_stack,
):
    stack = make_stack().start(loops=False)
    cid = stack.make_campaign(contacts=3)
    fake_live_worker(stack, "w1", acked=1, cid=cid)
    d = stack.api("GET", f"/campaigns/{cid}/diagnosis")
    assert d["ok"] is True and d["reasons"] == [] and d["status"] == "running", d


def test_a_system_pause_is_diagnosed_with_who_why_when_and_how_to_resume(make_stack):
    stack = make_stack().start(loops=False)
    cid = stack.make_campaign(contacts=2)
    assert stack.stack is not None
    stack.stack.control.transition(
        cid, Action.PAUSE, actor="monitor:abandon-rate", source=Source.SYSTEM, reason="abandon 9%"
    )
    reasons = codes(stack, cid)
    paused = reasons["paused"]
    assert "by monitor:abandon-rate (system): abandon 9%" in paused["evidence"]
    assert stack.campaign(cid)["paused_at"][:19] in paused["evidence"]
    assert f"dialgate resume {cid}" in paused["fix"]
    assert "no_live_workers" in reasons  # nothing dials after resume either: said too

    out = stack.cli("why", str(cid))
    assert out.returncode == 0, out.stderr
    assert "- The campaign is paused [paused]" in out.stdout
    assert "evidence  paused at" in out.stdout and "abandon 9%" in out.stdout
    assert "- No worker is alive [no_live_workers]" in out.stdout
    out = stack.cli("why", str(cid), "--json")
    assert {r["code"] for r in json.loads(out.stdout)["reasons"]} == set(reasons)


def test_estop_empty_list_missing_gate_and_old_outbox_rows_are_each_a_reason(make_stack, db):
    stack = make_stack(db).start(loops=False)
    cid = stack.make_campaign(contacts=0)
    stack.api("POST", "/emergency-stop", json={"actor": "ops", "reason": "carrier outage"})
    stack.redis.delete(stack.keys.gate(cid))
    assert stack.stack is not None
    with stack.stack.control.sessions.begin() as s:  # the relay is not running in this stack
        s.execute(update(Outbox).values(created_at=utcnow() - timedelta(minutes=2)))
    reasons = codes(stack, cid)
    assert set(reasons) == {
        "emergency_stop",
        "no_pending_contacts",
        "no_live_workers",
        "gate_missing",
        "relay_backlog",
    }, reasons
    evidence = reasons["emergency_stop"]["evidence"]
    assert evidence.startswith("since ") and "carrier outage" not in evidence  # a platform
    assert "admin-token" not in evidence  # admin's to read, not every campaign reader's
    assert reasons["emergency_stop"]["fix"] == "when it is safe: dialgate estop --lift"
    assert "0 pending, 0 queued" in reasons["no_pending_contacts"]["evidence"]
    assert (
        f"no gate for campaign {cid} (database at version 1)" in reasons["gate_missing"]["evidence"]
    )
    assert "events unsent, the oldest for 1" in reasons["relay_backlog"]["evidence"]


def test_saturated_concurrency_a_stale_gate_and_lagging_workers_are_each_a_reason(make_stack):
    stack = make_stack().start(loops=False)
    cid = stack.make_campaign(contacts=5, max_concurrency=2)
    fake_live_worker(stack, "w-ok", acked=1, cid=cid)
    fake_live_worker(stack, "w-late", acked=0, cid=cid)
    expiry = int(time.time() * 1000) + 60_000
    stack.redis.zadd(stack.keys.leases(cid), {"1:w-ok:a:v1": expiry, "2:w-ok:b:v1": expiry})
    stack.redis.hset(stack.keys.gate(cid), "version", 0)  # as if the CAS never landed
    reasons = codes(stack, cid)
    assert set(reasons) == {"concurrency_saturated", "workers_not_acknowledging", "gate_behind"}
    assert reasons["concurrency_saturated"]["evidence"].startswith(
        "2 dials in flight, concurrency limit 2"
    )
    assert (
        "1 of 2 live workers behind version 1: w-late@0"
        in reasons["workers_not_acknowledging"]["evidence"]
    )
    assert reasons["gate_behind"]["evidence"] == "gate running@0, database running@1"


def test_an_unreachable_broker_is_a_reason(make_stack):
    stack = make_stack(amqp_url=f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F")
    stack.start(loops=False)
    cid = stack.make_campaign(contacts=1)
    reasons = codes(stack, cid)
    assert "broker_unreachable" in reasons, reasons
    assert "RabbitMQ is unreachable" in reasons["broker_unreachable"]["title"]


def test_diagnosing_an_unknown_campaign_is_404(make_stack):
    stack = make_stack().start(loops=False)
    err = stack.api("GET", "/campaigns/999/diagnosis", expect=404)["error"]
    assert err == {"code": "not_found", "message": "campaign 999 does not exist"}
    out = stack.cli("why", "999")
    assert out.returncode == 1 and "campaign 999 does not exist" in out.stderr


def test_an_unreachable_redis_is_a_reason_and_hides_the_checks_that_need_it(make_stack):
    stack = make_stack().start(loops=False)
    cid = stack.make_campaign(contacts=1)
    # A second control service on the same database whose Redis cannot be reached.
    away = build(
        stack.settings.model_copy(
            update={"redis_url": f"redis://127.0.0.1:{free_port()}/0", "redis_cluster_nodes": None}
        )
    )
    try:
        reasons = {r["code"]: r for r in diagnose(away.control, cid)["reasons"]}
    finally:
        away.control.sessions.kw["bind"].dispose()
    assert set(reasons) == {"redis_unreachable"}, reasons
    assert "ConnectionError" in reasons["redis_unreachable"]["evidence"]
