"""The HTTP API's contract: answers, errors that name the field, nothing changed on error."""

from __future__ import annotations

from fastapi.testclient import TestClient

from control.server import build
from shared.settings import Settings
from tests.support.stack import phones


def test_creating_a_campaign_answers_201_with_its_state_and_zero_counts(make_stack, db):
    stack = make_stack(db).start(loops=False)
    c = stack.api(
        "POST",
        "/campaigns",
        expect=201,
        json={
            "name": "Renewals",
            "max_concurrency": 3,
            "timezone": "Europe/Paris",
            "calling_window": {"days": ["mon", "tue"], "start": "09:00", "end": "18:30"},
        },
    )
    assert c["status"] == "draft" and c["version"] == 0 and c["max_concurrency"] == 3
    assert c["counts"] == {
        s: 0
        for s in (
            "pending",
            "queued",
            "dialing",
            "done",
            "failed",
            "retry_wait",
            "cancelled",
            "unknown",
            "blocked_dnc",
        )
    }
    assert c["calling_window"] == {
        "days": ["mon", "tue"],
        "start": "09:00",
        "end": "18:30",
        "contact_local_time": False,
    }
    assert c["paused_at"] is None and c["allowed_actions"] == ["start", "cancel"]
    assert c["gate"] == {"status": "draft", "version": 0}
    listed = stack.api("GET", "/campaigns")["campaigns"]
    assert [x["id"] for x in listed] == [c["id"]]


def test_bad_input_is_refused_with_the_field_named_and_nothing_is_created(make_stack):
    stack = make_stack().start(loops=False)
    cases = [
        ({"max_concurrency": 2}, "name: Field required"),
        ({"name": "x", "max_concurrency": 0}, "max_concurrency: "),
        ({"name": "x", "timezone": "Nowhere/Town"}, "timezone: "),
        ({"name": "x", "priority": 9}, "priority: unknown field"),
        ({"name": "x", "calling_window": {"start": "25:00"}}, "calling_window.start: "),
    ]
    for body, needle in cases:
        err = stack.api("POST", "/campaigns", expect=422, json=body)["error"]
        assert err["code"] == "invalid_input" and needle in err["message"], err
    assert stack.api("GET", "/campaigns")["campaigns"] == []


def test_unknown_campaigns_and_actions_are_404_and_422(make_stack):
    stack = make_stack().start(loops=False)
    assert stack.api("GET", "/campaigns/999", expect=404)["error"] == {
        "code": "not_found",
        "message": "campaign 999 does not exist",
    }
    assert stack.act(999, "pause", expect=404)["error"]["code"] == "not_found"
    cid = stack.make_campaign(contacts=1, start=False)
    err = stack.act(cid, "explode", expect=422)["error"]
    assert "start, pause, resume, cancel" in err["message"]
    err = stack.api("POST", f"/campaigns/{cid}/pause?drain_timeout=-1", expect=422)["error"]
    assert "drain_timeout" in err["message"]


def test_contacts_are_validated_row_by_row_and_the_valid_ones_kept(make_stack, db):
    stack = make_stack(db).start(loops=False)
    cid = stack.make_campaign(contacts=0, start=False)
    good = phones(3)
    res = stack.api(
        "POST",
        f"/campaigns/{cid}/contacts",
        json={
            "contacts": [
                {"phone": good[0], "name": "Ada"},
                {"phone": "0612345678"},
                {"phone": good[1], "attributes": {"plan": "gold"}},
                {"phone": good[0]},
                {"name": "no phone"},
                {"phone": good[2], "name": 42},
            ]
        },
    )
    assert res["accepted"] == 2
    assert [(r["index"], r["phone"]) for r in res["rejected"]] == [
        (1, "0612345678"),
        (3, good[0]),
        (4, None),
        (5, good[2]),
    ]
    reasons = [r["error"] for r in res["rejected"]]
    assert "must start with +" in reasons[0]
    assert "duplicate" in reasons[1]
    assert "phone is required" in reasons[2]
    assert "name must be text" in reasons[3]
    again = stack.api(
        "POST",
        f"/campaigns/{cid}/contacts",
        json={"contacts": [{"phone": good[1]}, {"phone": good[2]}]},
    )
    assert again["accepted"] == 1
    assert again["rejected"][0]["error"] == "duplicate: already a contact of this campaign"
    assert stack.campaign(cid)["counts"]["pending"] == 3
    err = stack.api(
        "POST",
        f"/campaigns/{cid}/contacts",
        expect=422,
        json={"contacts": [{"phone": good[0], "email": "x"}]},
    )["error"]
    assert "contacts.0.email: unknown field" in err["message"]


def test_transitions_follow_the_state_machine_and_are_recorded_newest_first(make_stack, db):
    stack = make_stack(db).start(loops=False)
    cid = stack.make_campaign(contacts=2, start=False)
    err = stack.act(cid, "pause", expect=409)["error"]
    assert err == {
        "code": "illegal_transition",
        "message": "cannot pause a campaign that is draft; allowed: start, cancel",
    }
    assert stack.campaign(cid)["version"] == 0  # nothing changed
    stack.act(cid, "start", actor="ops:alice", source="operator")
    err = stack.act(cid, "pause", expect=422, source="system", actor="monitor:x")["error"]
    assert "reason" in err["message"]
    paused = stack.act(
        cid,
        "pause",
        source="system",
        actor="monitor:failures",
        reason="failure rate 31% over the last 200 attempts exceeds 25%",
    )
    assert paused["status"] == "paused" and paused["version"] == 2
    assert paused["pause_source"] == "system"
    assert paused["pause_reason"].startswith("failure rate 31%")
    assert paused["paused_at"] is not None
    assert paused["gate"]["closed"] and paused["gate"]["drained"]
    assert [(h["kind"], h["rule"]) for h in paused["holds"]] == [("monitor", "failures")]
    again = dict(source="system", actor="monitor:failures", reason="again")
    assert stack.act(cid, "pause", expect=409, **again)["error"]["message"].startswith(
        f"campaign {cid} is already paused, and already held so: monitor hold failures"
    )
    # The monitor's hold stays until a resume acknowledges its rule; nothing changes.
    err = stack.act(cid, "resume", expect=409)["error"]
    assert err["code"] == "holds_remain" and 'acknowledge "failures"' in err["message"]
    assert err["details"][0]["rule"] == "failures" and stack.campaign(cid)["version"] == 2
    resp = stack.http.post(
        f"/api/v1/campaigns/{cid}/resume",
        headers={"X-Request-ID": "req-42"},
        json={"actor": "ops:bob", "source": "operator", "acknowledge": ["failures"]},
    )
    assert resp.status_code == 200 and resp.headers["X-Request-ID"] == "req-42"
    resumed = resp.json()
    assert resumed["paused_at"] is None and resumed["pause_reason"] is None
    history = stack.api("GET", f"/campaigns/{cid}/transitions")["transitions"]
    assert [(t["version"], t["action"], t["from"], t["to"]) for t in history] == [
        (3, "resume", "paused", "running"),
        (2, "pause", "running", "paused"),
        (1, "start", "draft", "running"),
    ]
    # The actor is the token's name; the label the client sent is kept beside it.
    assert history[0]["actor"] == "admin-token (ops:bob)" and history[0]["request_id"] == "req-42"
    assert history[0]["note"] == (
        "resumed by admin-token (ops:bob) (approved admin-token (ops:bob); released: monitor "
        "failures of admin-token (monitor:failures) acknowledged)"
    )
    assert history[0]["role"] == "admin" and history[0]["source_ip"] == "127.0.0.1"
    assert history[1]["source"] == "system" and history[1]["reason"].startswith("failure")
    assert all(t["answered_at"] for t in history)
    gate = stack.redis.hgetall(stack.keys.gate(cid))
    assert gate["status"] == "running" and gate["version"] == "3"
    assert stack.outbox_unsent() == 3  # one outbox row per transition


def test_probes_name_each_dependency_and_its_state(make_stack):
    stack = make_stack().start(loops=False)
    assert stack.http.get("/healthz").json() == {"status": "ok"}
    ready = stack.http.get("/readyz")
    assert ready.status_code == 200
    assert {k: v["ok"] for k, v in ready.json()["checks"].items()} == {
        "database": True,
        "redis": True,
        "rabbitmq": True,
    }

    broken = stack.settings.model_copy(
        update={
            "redis_url": "redis://127.0.0.1:1/0",
            "redis_cluster_nodes": None,
            "amqp_url": "amqp://guest:guest@127.0.0.1:1/%2F",
            "redis_timeout": 0.2,
        }
    )
    client = TestClient(build(Settings(**broken.model_dump())).app, headers=stack.auth)
    answer = client.get("/readyz")
    assert answer.status_code == 503
    checks = answer.json()["checks"]
    assert checks["database"]["ok"] is True
    assert checks["redis"]["ok"] is False and "Connection" in checks["redis"]["error"]
    assert checks["rabbitmq"]["ok"] is False


def test_a_pause_while_redis_is_unreachable_is_committed_and_says_the_gate_was_not_written(
    make_stack,
):
    stack = make_stack().start(loops=False)
    cid = stack.make_campaign(contacts=1)
    broken = stack.settings.model_copy(
        update={
            "redis_url": "redis://127.0.0.1:1/0",
            "redis_cluster_nodes": None,
            "redis_timeout": 0.2,
        }
    )
    client = TestClient(build(Settings(**broken.model_dump())).app, headers=stack.auth)
    answer = client.post(f"/api/v1/campaigns/{cid}/pause")
    assert answer.status_code == 200
    body = answer.json()
    assert body["status"] == "paused"
    assert body["gate"]["written"] is False and "reconciler" in body["gate"]["error"]
    assert body["gate"]["drained"] is False
    # The reconciler (with Redis back) closes the gate from the database.
    stack.stack.reconciler.reconcile()
    assert stack.redis.hget(stack.keys.gate(cid), "status") == "paused"


def test_the_page_lists_campaigns_with_every_name_escaped(make_stack):
    stack = make_stack().start(loops=False)
    stack.api("POST", "/campaigns", expect=201, json={"name": "<script>alert(1)</script>"})
    page = stack.http.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert "<script>alert(1)" not in page.text
